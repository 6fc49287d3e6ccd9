"""The two installs the Dockerfile makes are complete, and the predictor's is small.

- platform (``.[platform]``, the project image): every product module imports, and the model
  store publishes to and fetches from an S3 server on loopback, so nothing a step needs arrives
  only through the dev extras;
- serving (``.``, the predictor's image): ``mlops serve`` starts and answers from it, and none of
  the pipeline, DVC, database or plotting packages is there.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import httpx
import pytest

from bench import envs
from core.model_card import read_card
from infra.http import free_port
from tests.integration.conftest import command_env, sh
from tests.serving.conftest import wait_until

ROOT = Path(__file__).parents[2]
FOUND = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
PACKAGES = tuple(name.rstrip("*") for name in FOUND)
DEVELOPMENT_ONLY = ("bench",)  # a checkout's (python -m bench), not a package: never in the image
IMPORT_ALL = f"""
import importlib, pkgutil
names = []
for package in {PACKAGES!r}:
    module = importlib.import_module(package)
    names.append(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        importlib.import_module(info.name)
        names.append(info.name)
print(len(names))
"""


@pytest.fixture(scope="module")
def source(tmp_path_factory, root) -> Path:
    """What the Dockerfile copies, apart (building in place would leave build/ behind)."""
    copy = envs.source_copy(root, tmp_path_factory.mktemp("runtime") / "source")
    assert not any((copy / name).exists() for name in DEVELOPMENT_ONLY)
    return copy


@pytest.fixture(scope="module")
def runtime_python(source) -> Path:
    """The platform image's install."""
    return envs.build("platform", source, source.parent / "platform")


@pytest.fixture(scope="module")
def serving_python(source) -> Path:
    """The serving image's install."""
    return envs.build("serving", source, source.parent / "serving")


def test_the_image_copies_every_product_package_and_no_benchmark():
    copied = set(re.findall(r"^COPY (\w+) \1$", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE))
    assert copied == set(PACKAGES) and not copied & set(DEVELOPMENT_ONLY)


def test_every_product_module_imports_without_the_dev_extras(runtime_python, tmp_path):
    assert sh(runtime_python, "-c", "import moto", cwd=tmp_path, check=False).returncode != 0, "moto is dev-only"
    imported = sh(runtime_python, "-c", IMPORT_ALL, cwd=tmp_path, MLOPS_PROJECT_ROOT=str(tmp_path))
    assert int(imported.stdout) > 30


def test_the_runtime_install_publishes_to_and_fetches_from_s3(runtime_python, s3_env, bucket, trained_dir, tmp_path):
    env = {
        "MLOPS_S3_ENDPOINT_URL": s3_env["endpoint"],
        "MLOPS_CACHE_DIR": str(tmp_path / "cache"),
        "MLOPS_PROJECT_ROOT": str(tmp_path),
    }
    mlops = runtime_python.parent / "mlops"
    uri = sh(mlops, "publish", "--model", trained_dir, "--to", f"s3://{bucket}/models/mpg", cwd=tmp_path, **env)
    uri = uri.stdout.strip()
    assert uri == f"s3://{bucket}/models/mpg/{read_card(trained_dir).id}/"
    fetch = "import sys; from infra.settings import Settings; from infra.store import open_store; "
    fetch += "print(open_store(Settings()).resolve(sys.argv[1])[0])"
    fetched = Path(sh(runtime_python, "-c", fetch, uri, cwd=tmp_path, **env).stdout.strip())
    assert (fetched / "model.joblib").read_bytes() == (trained_dir / "model.joblib").read_bytes()


def test_the_serving_install_holds_no_platform_package_and_serves(serving_python, tiny_dir, tmp_path):
    absent = ("dvc", "kfp", "sqlalchemy", "psycopg", "matplotlib", "jsonschema", "kubernetes_validate", "moto")
    probe = "import importlib.util, sys; print([m for m in sys.argv[1:] if importlib.util.find_spec(m)])"
    assert sh(serving_python, "-c", probe, *absent, cwd=tmp_path).stdout.strip() == "[]"
    mlops, port = serving_python.parent / "mlops", free_port()
    assert "serve" in sh(mlops, "--help", cwd=tmp_path, MLOPS_PROJECT_ROOT=str(tmp_path)).stdout
    command = [mlops, "serve", "--model-uri", tiny_dir, "--port", str(port)]
    with subprocess.Popen(command, cwd=tmp_path, env=command_env(MLOPS_PROJECT_ROOT=str(tmp_path)),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as server:  # fmt: skip
        try:
            wait_until(f"http://127.0.0.1:{port}/v2/models/mpg/ready", server)
            car = {"instances": [[4, 140, 90, 2264, 15.5, 1976, 1]]}
            answer = httpx.post(f"http://127.0.0.1:{port}/v1/models/mpg:predict", json=car, timeout=10)
            assert answer.status_code == 200 and 5 < answer.json()["predictions"][0]["mpg"] < 60
        finally:
            server.terminate()


def test_the_serving_install_is_smaller_than_the_platform_one(serving_python, runtime_python):
    serving, platform = (envs.size(python.parent.parent) for python in (serving_python, runtime_python))
    assert serving < 0.7 * platform, f"serving {serving / 2**20:.0f} MiB, platform {platform / 2**20:.0f} MiB"
