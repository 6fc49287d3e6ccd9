"""Model store against a real S3 API: moto's server on 127.0.0.1."""

from __future__ import annotations

from datetime import timedelta

import boto3
import pytest

from infra import store as store_module
from infra.settings import Settings
from infra.store import StoreError, open_store


@pytest.fixture
def s3_settings(s3_env, bucket, tmp_path) -> Settings:
    return Settings(
        store_root=tmp_path / "unused",
        s3_endpoint_url=s3_env["endpoint"],
        model_repository=f"s3://{bucket}/models/mpg",
        cache_dir=tmp_path / "cache",
    )


def keys(settings: Settings, bucket: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url)
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_publish_fetch_and_no_op_on_s3(s3_settings, bucket, tiny_dir):
    store = open_store(s3_settings)
    published = store.publish(tiny_dir, s3_settings.model_repository)
    assert published.created
    prefix = published.uri.removeprefix(f"s3://{bucket}/")
    assert keys(s3_settings, bucket) == [f"{prefix}model.joblib", f"{prefix}model.json"]
    assert not store.publish(tiny_dir, s3_settings.model_repository).created
    fetched, _ = store.resolve(published.uri)
    assert (fetched / "model.joblib").read_bytes() == (tiny_dir / "model.joblib").read_bytes()
    assert not (s3_settings.store_root).exists(), "the S3 backend must not touch the local store"


def test_interrupted_upload_leaves_the_final_uri_absent_and_a_retry_succeeds(
    s3_settings, bucket, tiny_dir, monkeypatch
):
    store = open_store(s3_settings)
    client = store.backend.client
    real_put = client.put_object
    calls = []

    def interrupted_put(**kwargs):
        calls.append(kwargs["Key"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_put(**kwargs)

    client.put_object = interrupted_put
    with pytest.raises(KeyboardInterrupt):
        store.publish(tiny_dir, s3_settings.model_repository)
    client.put_object = real_put
    assert [k for k in keys(s3_settings, bucket) if "/.scratch/" not in k] == []
    published = store.publish(tiny_dir, s3_settings.model_repository)
    assert published.created and store.resolve(published.uri)[0].is_dir()


def test_scratch_left_by_a_killed_publish_is_removed_once_stale(s3_settings, bucket, tiny_dir, monkeypatch):
    """A SIGKILLed publish skips its cleanup; S3 has no locks, so age tells stale from in progress."""
    store = open_store(s3_settings)
    leftovers = {}
    for prefix in ("models/fresh", "models/stale"):
        leftovers[prefix] = f"{prefix}/.scratch/0123456789abcdef0123456789abcdef/model.joblib"
        store.backend.client.put_object(Bucket=bucket, Key=leftovers[prefix], Body=b"half a model")
    store.publish(tiny_dir, f"s3://{bucket}/models/fresh")
    assert leftovers["models/fresh"] in keys(s3_settings, bucket), "younger than S3_STALE_AFTER: maybe in progress"
    monkeypatch.setattr(store_module, "S3_STALE_AFTER", timedelta(0))  # instead of waiting an hour
    store.publish(tiny_dir, f"s3://{bucket}/models/stale")
    assert leftovers["models/stale"] not in keys(s3_settings, bucket), "the next publish removes stale scratch objects"


def test_tampered_object_at_a_published_uri_is_refused(s3_settings, bucket, tiny_dir):
    store = open_store(s3_settings)
    published = store.publish(tiny_dir, s3_settings.model_repository)
    key = published.uri.removeprefix(f"s3://{bucket}/") + "model.joblib"
    boto3.client("s3", endpoint_url=s3_settings.s3_endpoint_url).put_object(
        Bucket=bucket, Key=key, Body=b"other bytes", ChecksumAlgorithm="SHA256"
    )
    with pytest.raises(StoreError, match="immutable"):
        store.publish(tiny_dir, s3_settings.model_repository)


def test_unreachable_endpoint_is_a_store_error_naming_it(tmp_path, tiny_dir, s3_env):
    settings = Settings(
        store_root=tmp_path,
        s3_endpoint_url="http://127.0.0.1:9",
        model_repository="s3://nowhere/models/mpg",
        cache_dir=tmp_path / "cache",
    )
    with pytest.raises(StoreError, match="127.0.0.1:9"):
        open_store(settings).publish(tiny_dir, settings.model_repository)
