"""Model store on the embedded local backend: immutable, content-addressed, atomic."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from core.model_card import load_model, read_card, save_model_dir, sha256_file
from core.uri import ModelURIError
from infra import store as store_module
from infra.settings import Settings
from infra.store import SCRATCH, StoreError, open_store

REPOSITORY = "s3://models-bucket/models/mpg"


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        store_root=tmp_path / "store", s3_endpoint_url=None, model_repository=REPOSITORY, cache_dir=tmp_path / "cache"
    )


def final_dir(settings: Settings, uri: str) -> Path:
    return settings.store_root / uri.removeprefix("s3://").rstrip("/")


def test_publish_is_content_addressed_and_a_second_publish_is_a_no_op(settings, tiny_dir):
    store = open_store(settings)
    first = store.publish(tiny_dir, REPOSITORY)
    card_id = (tiny_dir / "model.json").read_text().split('"id": "')[1][:64]
    assert first.uri == f"{REPOSITORY}/{card_id}/" and first.created
    again = store.publish(tiny_dir, REPOSITORY)
    assert again.uri == first.uri and not again.created
    assert sorted(p.name for p in final_dir(settings, first.uri).iterdir()) == ["model.joblib", "model.json"]


def test_different_content_at_a_published_uri_is_refused(settings, model_copy):
    store = open_store(settings)
    published = store.publish(model_copy, REPOSITORY)
    with open(final_dir(settings, published.uri) / "model.joblib", "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(StoreError, match="immutable"):
        store.publish(model_copy, REPOSITORY)


def test_fetch_returns_a_verified_copy_and_names_a_missing_uri(settings, tiny_dir):
    store = open_store(settings)
    uri = store.publish(tiny_dir, REPOSITORY).uri
    fetched, expected_id = store.resolve(uri)
    assert fetched.parent == settings.cache_dir and expected_id == fetched.name
    assert (fetched / "model.joblib").read_bytes() == (tiny_dir / "model.joblib").read_bytes()
    with pytest.raises(StoreError, match="no model at"):
        store.resolve(f"{REPOSITORY}/{'0' * 64}/")
    with pytest.raises(ModelURIError, match="not a model repository"):
        store.publish(tiny_dir, "models/mpg")


def test_interrupted_publish_leaves_nothing_at_the_final_uri_and_a_retry_succeeds(settings, tiny_dir, monkeypatch):
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
        store.publish(tiny_dir, REPOSITORY)
    monkeypatch.undo()
    assert not (settings.store_root / "models-bucket" / "models").exists()
    assert store.publish(tiny_dir, REPOSITORY).created


def test_publish_killed_mid_copy_leaves_the_final_uri_absent(tmp_path, tiny_dir):
    """A real SIGKILL of `mlops publish` while it copies a large model file."""
    big = save_model_dir(
        np.random.default_rng(0).random(20_000_000), tmp_path / "big", **read_card(tiny_dir).training_facts()
    )
    env = {**os.environ, "MLOPS_STORE_ROOT": str(tmp_path / "store"), "MLOPS_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("MLOPS_S3_ENDPOINT_URL", None)
    command = [sys.executable, "-m", "mlops.cli", "publish", "--model", str(tmp_path / "big"), "--to", REPOSITORY]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    scratch = tmp_path / "store" / "models-bucket" / SCRATCH
    deadline = time.monotonic() + 60
    while not (scratch.is_dir() and any(scratch.rglob("model.joblib"))) and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the publish finished before it could be killed"
    final = tmp_path / "store" / "models-bucket" / "models" / "mpg" / big.id
    assert not final.exists()
    assert any(p.name != ".lock" for p in scratch.iterdir()), "the killed publish left its scratch folder"
    retry = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    assert retry.stdout.strip() == f"{REPOSITORY}/{big.id}/"
    assert (final / "model.json").is_file()
    assert [p.name for p in scratch.iterdir()] == [".lock"], "the next publish removes what the killed one left"


def other_model(tmp_path, tiny_dir) -> Path:
    """A second valid model directory (different pickle, its own consistent card)."""
    from core.model_card import load_model

    model, card = load_model(tiny_dir)
    model.steps[-1][1].fitted_marker_ = 1  # changes the pickle, not the behaviour
    fields = card.training_facts()
    save_model_dir(model, tmp_path / "other", **fields)
    return tmp_path / "other"


def test_a_cache_entry_must_hold_the_model_its_uri_names(settings, tiny_dir, tmp_path):
    """Another model (consistent with its own card) put in place of a cached one is never served."""
    store = open_store(settings)
    uri = store.publish(tiny_dir, REPOSITORY).uri
    cached, expected = store.resolve(uri)
    other = other_model(tmp_path, tiny_dir)
    for name in ("model.joblib", "model.json"):
        shutil.copyfile(other / name, cached / name)
    again, _ = store.resolve(uri)
    assert again == cached and sha256_file(again / "model.joblib") == expected
    assert load_model(again, expected)[1].id == expected


def test_a_symlinked_cache_entry_is_replaced_and_its_target_left_alone(settings, tiny_dir, tmp_path):
    store = open_store(settings)
    uri = store.publish(tiny_dir, REPOSITORY).uri
    cached, expected = store.resolve(uri)
    shutil.rmtree(cached)
    other = other_model(tmp_path, tiny_dir)
    cached.symlink_to(other, target_is_directory=True)
    again, _ = store.resolve(uri)
    assert not again.is_symlink() and sha256_file(again / "model.joblib") == expected
    assert sorted(p.name for p in other.iterdir()) == ["model.joblib", "model.json"], "the link's target is intact"


def test_two_publishes_of_one_model_racing_to_the_final_rename_both_succeed(settings, tiny_dir, monkeypatch):
    """Publish A is held after copying its files to scratch until publish B has finished; A then finds B's copy."""
    held, release = threading.Event(), threading.Event()
    real_rename = os.rename

    def rename(src, dst):
        if threading.current_thread().name == "A" and SCRATCH in str(src):
            held.set()
            release.wait(30)
        return real_rename(src, dst)

    monkeypatch.setattr(store_module.os, "rename", rename)
    results = {}
    first = threading.Thread(
        name="A", target=lambda: results.setdefault("A", open_store(settings).publish(tiny_dir, REPOSITORY))
    )
    first.start()
    assert held.wait(30)
    results["B"] = open_store(settings).publish(tiny_dir, REPOSITORY)
    release.set()
    first.join(30)
    assert results["A"].uri == results["B"].uri
    assert results["B"].created and not results["A"].created
    scratch = settings.store_root / "models-bucket" / SCRATCH
    assert [p.name for p in scratch.iterdir()] == [".lock"]
