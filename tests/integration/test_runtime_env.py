"""The runtime install (what the Dockerfile does: constraints.txt, no dev extras) is complete.

Every product module imports there, and the model store publishes to and fetches from
an S3 server on loopback, so nothing a step or the predictor needs arrives only
through the dev extras.
"""

from __future__ import annotations

import re
import shutil
import sys
import tomllib
from pathlib import Path

import pytest

from bench.worktree import copy_worktree
from core.model_card import read_card
from tests.integration.conftest import sh

ROOT = Path(__file__).parents[2]
FOUND = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
DEVELOPMENT_ONLY = ("bench",)  # found in a checkout, never copied into the image
PACKAGES = tuple(name.rstrip("*") for name in FOUND if name.rstrip("*") not in DEVELOPMENT_ONLY)
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
def runtime_python(tmp_path_factory, root) -> Path:
    """The Dockerfile's install, from a copy of the sources (building in place would leave build/ behind)."""
    base = tmp_path_factory.mktemp("runtime")
    source = copy_worktree(root, base / "source")
    for name in DEVELOPMENT_ONLY:  # what the Dockerfile does not copy
        shutil.rmtree(source / name)
    uv = Path(sys.executable).parent / "uv"
    sh(uv, "venv", "-q", "--python", sys._base_executable, base / "venv", cwd=base)
    python = base / "venv" / "bin" / "python"
    sh(uv, "pip", "install", "-q", "--python", python, "-c", source / "constraints.txt", source, cwd=base)
    return python


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
