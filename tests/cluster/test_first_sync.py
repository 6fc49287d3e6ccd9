"""The first sync of an environment: the page's nginx resolves the Service names of its upstream.conf when it
starts, and exits on one that does not resolve (here with neither Service present: `host not found in
upstream`). So the page's Deployment syncs after both Services exist (k8s/base: the monitor's Service in wave
0, the InferenceService, whose predictor Service KServe creates, in wave 1, the page in wave 2); the check on the
real controllers records which Services existed when the page's wave was applied."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from infra.nginx import nginx_binary


def test_the_pages_nginx_refuses_to_start_when_its_upstream_names_do_not_resolve(root, tmp_path):
    nginx = nginx_binary()
    if nginx is None:
        pytest.fail("nginx is missing: `make test` installs nginx-light")
    conf = tmp_path / "conf"
    conf.mkdir()
    for name in ("nginx.conf", "upstream.conf"):
        shutil.copy(root / "k8s/base/client" / name, conf / name)
    (tmp_path / "html").mkdir()
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(conf / "nginx.conf"), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert 'host not found in upstream "mpg-predictor:80"' in result.stderr


def test_on_the_real_controllers_both_services_exist_when_the_page_starts(cluster):
    for namespace in ("mpg-staging", "mpg-production"):
        names, missing = cluster.page_starts[namespace]
        assert names == ["mpg-predictor", "mpg-monitor"] and missing == [], (namespace, names, missing)
