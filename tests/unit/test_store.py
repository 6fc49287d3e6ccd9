"""Model store on the embedded local backend: immutable, content-addressed, atomic."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core import store as store_module
from core.features import FEATURE_NAMES
from core.model_card import DataRef, feature_ranges, save_model_dir
from core.settings import Settings
from core.store import StoreError, open_store

REPOSITORY = "s3://models-bucket/models/mpg"


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        store_root=tmp_path / "store", s3_endpoint_url=None, model_repository=REPOSITORY, cache_dir=tmp_path / "cache"
    )


def final_dir(settings: Settings, uri: str) -> Path:
    return settings.store_root / uri.removeprefix("s3://").rstrip("/")


def test_publish_is_content_addressed_and_a_second_publish_is_a_no_op(settings, trained_dir):
    store = open_store(settings)
    first = store.publish(trained_dir, REPOSITORY)
    card_id = (trained_dir / "model.json").read_text().split('"id": "')[1][:64]
    assert first.uri == f"{REPOSITORY}/{card_id}/" and first.created
    again = store.publish(trained_dir, REPOSITORY)
    assert again.uri == first.uri and not again.created
    assert sorted(p.name for p in final_dir(settings, first.uri).iterdir()) == ["model.joblib", "model.json"]


def test_different_content_at_a_published_uri_is_refused(settings, model_copy):
    store = open_store(settings)
    published = store.publish(model_copy, REPOSITORY)
    with open(final_dir(settings, published.uri) / "model.joblib", "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(StoreError, match="immutable"):
        store.publish(model_copy, REPOSITORY)


def test_fetch_returns_a_verified_copy_and_names_a_missing_uri(settings, trained_dir):
    store = open_store(settings)
    uri = store.publish(trained_dir, REPOSITORY).uri
    fetched = store.fetch(uri)
    assert fetched.parent == settings.cache_dir
    assert (fetched / "model.joblib").read_bytes() == (trained_dir / "model.joblib").read_bytes()
    with pytest.raises(StoreError, match="no model at"):
        store.fetch(f"{REPOSITORY}/{'0' * 64}/")
    with pytest.raises(StoreError, match="not an s3://"):
        store.publish(trained_dir, "models/mpg")


def test_interrupted_publish_leaves_nothing_at_the_final_uri_and_a_retry_succeeds(settings, trained_dir, monkeypatch):
    copies = []
    real_copy = shutil.copyfile

    def interrupted_copy(src, dst):
        copies.append(dst)
        if len(copies) == 2:  # the model file is copied, the card is not
            raise KeyboardInterrupt
        return real_copy(src, dst)

    monkeypatch.setattr(store_module.shutil, "copyfile", interrupted_copy)
    store = open_store(settings)
    with pytest.raises(KeyboardInterrupt):
        store.publish(trained_dir, REPOSITORY)
    monkeypatch.undo()
    assert not (settings.store_root / "models-bucket" / "models").exists()
    assert store.publish(trained_dir, REPOSITORY).created


def test_publish_killed_mid_copy_leaves_the_final_uri_absent(tmp_path):
    """A real SIGKILL of `mlops publish` while it copies a large model file."""
    ranges = feature_ranges(dict.fromkeys(FEATURE_NAMES, 0.0), dict.fromkeys(FEATURE_NAMES, 1.0))
    big = save_model_dir(
        np.random.default_rng(0).random(20_000_000),
        tmp_path / "big",
        algorithm="test",
        git_commit=None,
        data=DataRef(path="x", md5="0", rows=0),
        params={},
        metrics={},
        features=ranges,
    )
    env = {**os.environ, "MLOPS_STORE_ROOT": str(tmp_path / "store"), "MLOPS_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("MLOPS_S3_ENDPOINT_URL", None)
    command = [sys.executable, "-m", "mlops.cli", "publish", "--model", str(tmp_path / "big"), "--to", REPOSITORY]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    staging = tmp_path / "store" / "models-bucket" / ".staging"
    deadline = time.monotonic() + 60
    while not (staging.is_dir() and any(staging.rglob("model.joblib"))) and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the publish finished before it could be killed"
    final = tmp_path / "store" / "models-bucket" / "models" / "mpg" / big.id
    assert not final.exists()
    retry = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    assert retry.stdout.strip() == f"{REPOSITORY}/{big.id}/"
    assert (final / "model.json").is_file()
