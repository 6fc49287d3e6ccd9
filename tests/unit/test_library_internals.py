"""Where the code leans on a library's internals (not its documented API), each module says which version it was
checked against; an upgrade fails here, loudly, until someone checks again and moves the pin. The DVC adapter
is also exercised against a real repository and a real folder remote."""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil

import pytest

from infra import dvc, http
from pipelines import local
from serving import server
from tests.conftest import SEED_DATA
from tests.integration.conftest import sh


@pytest.mark.parametrize("checked", [dvc.CHECKED, http.CHECKED, server.CHECKED, local.CHECKED], ids=str)
def test_each_library_is_the_version_its_adapter_was_checked_against(checked):
    installed = {name: importlib.metadata.version(name) for name in checked}
    assert installed == checked, "a library changed: check the module that names it, then move its CHECKED pin"


def test_the_private_hooks_still_exist():
    from kserve import ModelServer
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    for name in ("data_received", "on_message_begin", "connection_made", "connection_lost"):
        assert callable(getattr(HttpToolsProtocol, name))
    assert callable(ModelServer.register_model)


def test_the_dvc_adapter_on_a_real_repository(tmp_path):
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    shutil.copy(SEED_DATA, repo / "data" / "cars.csv")
    sh("git", "init", "-q", cwd=repo)
    sh("dvc", "init", "-q", cwd=repo)
    sh("dvc", "remote", "add", "-d", "folder", repo / "remote", cwd=repo)
    sh("dvc", "add", "-q", "data/cars.csv", cwd=repo)
    text = (repo / "data" / "cars.csv.dvc").read_text()
    content = (repo / "data" / "cars.csv").read_bytes()
    pin = dvc.read_pin(text, "cars.csv.dvc")
    assert pin == dvc.Pin(hashlib.md5(content, usedforsecurity=False).hexdigest(), len(content))

    new = tmp_path / "new.csv"
    new.write_bytes(content + b"31.5,4,98,68,2045,18.5,81,3,honda civic 1500 gl\n")
    new_pin = dvc.Pin(hashlib.md5(new.read_bytes(), usedforsecurity=False).hexdigest(), new.stat().st_size)
    dvc.cache_and_push(repo, new, new_pin.md5, None)
    assert dvc.cached_path(repo, new_pin.md5).read_bytes() == new.read_bytes()
    in_remote = dvc.remote_object_path(repo, new_pin.md5, None)
    assert in_remote.is_relative_to((repo / "remote").resolve()) and in_remote.read_bytes() == new.read_bytes()
    updated = dvc.with_pin(text, new_pin, "cars.csv.dvc")
    assert dvc.read_pin(updated, "cars.csv.dvc") == new_pin
    assert updated.replace(new_pin.md5, pin.md5).replace(f"size: {new_pin.size}", f"size: {pin.size}") == text
    (repo / "data" / "cars.csv.dvc").write_text(updated)
    (repo / "data" / "cars.csv").unlink()
    sh("dvc", "checkout", "-q", cwd=repo)  # DVC itself takes the edited file
    assert (repo / "data" / "cars.csv").read_bytes() == new.read_bytes()
    with pytest.raises(dvc.DvcAdapterError, match="is it a DVC file"):
        dvc.read_pin("outs: []\n", "broken.dvc")
