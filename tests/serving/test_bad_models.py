"""A bad model never crashes or hangs the predictor: it stays up, not ready, live 503, reason logged once."""

from __future__ import annotations

import os
import shutil

import httpx
import pytest

from core.model_card import read_card, save_model_dir
from infra.settings import Settings
from infra.store import open_store
from tests.serving.conftest import running_server

REPOSITORY = "s3://mpg-mlops/models/mpg"
CAR = [4, 140, 90, 2800, 15.5, 1976, 1]


def assert_up_and_not_ready(base: str, log, reason: str) -> None:
    assert httpx.get(f"{base}/v2/models/mpg/ready").status_code == 503
    assert httpx.post(f"{base}/v1/models/mpg:predict", json={"instances": [CAR]}).status_code == 503
    live = httpx.get(f"{base}/v2/health/live")
    assert live.status_code == 503 and reason in live.json()["error"]
    text = log.read_text()
    assert text.count("NOT loaded") == 1 and reason in text and "Traceback" not in text


def card_fields(tiny_dir) -> dict:
    return read_card(tiny_dir).training_facts()


def test_a_pickle_that_is_not_a_trained_model_leaves_the_server_not_ready(tmp_path, tiny_dir):
    save_model_dir({"weights": [1, 2, 3]}, tmp_path / "odd", **card_fields(tiny_dir))
    with running_server(str(tmp_path / "odd"), tmp_path, ready=False) as (base, _, log):
        assert_up_and_not_ready(base, log, "not a model this project trained")


def test_a_fifo_in_place_of_the_card_does_not_hang_the_server(tmp_path, tiny_dir):
    model_dir = shutil.copytree(tiny_dir, tmp_path / "fifo")
    (model_dir / "model.json").unlink()
    os.mkfifo(model_dir / "model.json")
    with running_server(str(model_dir), tmp_path, ready=False) as (base, _, log):
        assert_up_and_not_ready(base, log, "not a regular file")


def test_a_symlinked_model_file_is_refused(tmp_path, tiny_dir):
    model_dir = tmp_path / "linked"
    model_dir.mkdir()
    shutil.copyfile(tiny_dir / "model.json", model_dir / "model.json")
    (model_dir / "model.joblib").symlink_to(tiny_dir / "model.joblib")
    with running_server(str(model_dir), tmp_path, ready=False) as (base, _, log):
        assert_up_and_not_ready(base, log, "regular file")


@pytest.mark.parametrize("target", ["empty", "other"])
def test_a_symlinked_cache_entry_is_replaced_by_the_published_model(tmp_path, tiny_dir, model_copy, target):
    settings = Settings(store_root=tmp_path / "store", model_repository=REPOSITORY, cache_dir=tmp_path / "cache")
    uri = open_store(settings).publish(tiny_dir, REPOSITORY).uri
    model_id = read_card(tiny_dir).id
    elsewhere = tmp_path / "elsewhere"
    if target == "other":  # a valid model, consistent with its own card, but not the one the URI names
        save_model_dir(["not", "it"], elsewhere, **card_fields(tiny_dir))
    else:
        elsewhere.mkdir()
    settings.cache_dir.mkdir()
    (settings.cache_dir / model_id).symlink_to(elsewhere, target_is_directory=True)
    with running_server(uri, tmp_path) as (base, _, _log):
        assert httpx.get(f"{base}/v2/models/mpg").json()["versions"] == [model_id]
    assert elsewhere.is_dir(), "the link's target is not touched"


def test_a_model_directory_must_hash_to_the_id_of_its_source_uri(tmp_path, tiny_dir):
    other_id = "0" * 64
    args = ("--source-uri", f"{REPOSITORY}/{other_id}/")
    with running_server(str(tiny_dir), tmp_path, ready=False, args=args) as (base, _, log):
        assert_up_and_not_ready(base, log, "was asked for")
    own = ("--source-uri", f"{REPOSITORY}/{read_card(tiny_dir).id}/")
    with running_server(str(tiny_dir), tmp_path, args=own) as (base, _, _log):
        assert httpx.post(f"{base}/v1/models/mpg:predict", json={"instances": [CAR]}).status_code == 200


def test_the_cluster_passes_the_source_uri_through_the_environment(tmp_path, tiny_dir):
    env = {"MLOPS_MODEL_SOURCE_URI": f"{REPOSITORY}/{'1' * 64}/"}
    with running_server(str(tiny_dir), tmp_path, ready=False, env=env) as (base, _, log):
        assert_up_and_not_ready(base, log, "was asked for")
