"""Serving manifests: base and overlays render, validate strictly, and keep the model URI in one file."""

from __future__ import annotations

import re

import pytest
import yaml

from infra.image import SERVING_IMAGE
from infra.manifests import render, validate_object
from infra.overlays import read_model_uri

ENVIRONMENTS = ("staging", "production")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_overlay_renders_and_validates_strictly(root, env):
    schemas = root / "k8s" / "schemas"
    assert [p for obj in render(root / "k8s" / "overlays" / env) for p in validate_object(obj, schemas)] == []


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_model_file_holds_only_a_content_addressed_storage_uri(root, env):
    patch = yaml.safe_load((root / "k8s" / "overlays" / env / "model.yaml").read_text())
    assert patch["spec"] == {"predictor": {"model": {"storageUri": patch["spec"]["predictor"]["model"]["storageUri"]}}}
    uri = str(read_model_uri(root, env))
    assert uri == patch["spec"]["predictor"]["model"]["storageUri"]
    rendered = next(o for o in render(root / "k8s" / "overlays" / env) if o["kind"] == "InferenceService")
    assert rendered["spec"]["predictor"]["model"]["storageUri"] == uri
    assert re.fullmatch(r"s3://[a-z0-9.-]+/models/mpg/[0-9a-f]{64}/", uri)


def test_rendered_serving_objects(root):
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render(root / "k8s" / "overlays" / "staging")}
    isvc = objects[("InferenceService", "mpg")]
    model = isvc["spec"]["predictor"]["model"]
    assert set(model) >= {"modelFormat", "runtime", "storageUri", "readinessProbe", "resources"}
    assert "sklearn" not in isvc["spec"]["predictor"], "the old sklearn: field causes webhook diffs in Argo CD"
    runtime = objects[("ServingRuntime", model["runtime"])]
    assert runtime["spec"]["protocolVersions"] == ["v1", "v2"]
    [container] = runtime["spec"]["containers"]
    assert container["image"] == SERVING_IMAGE and container["securityContext"]["runAsNonRoot"]
    assert "--model-uri=/mnt/models" in container["args"]
    client = objects[("Deployment", "mpg-client")]["spec"]["template"]["spec"]
    assert client["securityContext"]["runAsNonRoot"] and client["containers"][0]["ports"][0]["containerPort"] == 8080
    config = next(
        o for (kind, name), o in objects.items() if kind == "ConfigMap" and name.startswith("mpg-client-html")
    )
    assert set(config["data"]) == {"index.html", "app.js", "style.css"}


def test_client_page_loads_nothing_from_elsewhere(root):
    html = (root / "k8s" / "base" / "client" / "html" / "index.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    for name in ("cylinders", "displacement", "horsepower", "weight", "acceleration", "model_year", "origin"):
        assert f'<label for="{name}">' in html and f'id="{name}-error"' in html
    conf = (root / "k8s" / "base" / "client" / "nginx.conf").read_text()
    assert "listen 8080;" in conf and "Content-Security-Policy" in conf
