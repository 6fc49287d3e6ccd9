"""The S3 server going away in the middle of a publish or a fetch (moto's server behind a proxy that dies).

Pass: a clear one-line error after a bounded number of retries, nothing at the final
model URI, nothing half-written in the local cache, and a retry against a live server
succeeds.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import boto3
import pytest

from core.model_card import read_card
from infra.settings import Settings
from infra.store import StoreError, open_store
from tests.conftest import one_line_error, run_mlops
from tests.faults.helpers import DyingProxy
from tests.integration.conftest import command_env


def target(endpoint: str) -> tuple[str, int]:
    parts = urlsplit(endpoint)
    return parts.hostname, parts.port


def keys(endpoint: str, bucket: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=endpoint)
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_the_server_dying_mid_upload_is_one_line_and_leaves_no_model(s3_env, bucket, trained_dir, tmp_path):
    proxy = DyingProxy(target(s3_env["endpoint"]), upload_limit=200_000)  # model.joblib is ~600 kB
    env = command_env(MLOPS_S3_ENDPOINT_URL=proxy.url, MLOPS_CACHE_DIR=str(tmp_path / "cache"), **s3_env)
    started = time.monotonic()
    result = run_mlops("publish", "--model", trained_dir, "--to", f"s3://{bucket}/models/mpg", env=env, cwd=tmp_path)
    assert proxy.dead.is_set(), "the server died during the upload"
    line = one_line_error(result)
    assert result.returncode == 1 and "S3" in line and proxy.url in line
    assert time.monotonic() - started < 60, "bounded retries, not a hang"
    assert [k for k in keys(s3_env["endpoint"], bucket) if "/.scratch/" not in k] == [], "no model at any final URI"
    retry = run_mlops("publish", "--model", trained_dir, "--to", f"s3://{bucket}/models/mpg",
                      env={**env, "MLOPS_S3_ENDPOINT_URL": s3_env["endpoint"]}, cwd=tmp_path)  # fmt: skip
    assert retry.returncode == 0, retry.stderr
    assert retry.stdout.strip().endswith(f"/{read_card(trained_dir).id}/")


def test_the_server_dying_mid_download_is_a_store_error_and_caches_nothing(s3_env, bucket, trained_dir, tmp_path):
    live = Settings(s3_endpoint_url=s3_env["endpoint"], store_root=tmp_path / "unused", cache_dir=tmp_path / "cache")
    uri = open_store(live).publish(trained_dir, f"s3://{bucket}/models/mpg").uri
    proxy = DyingProxy(target(s3_env["endpoint"]), download_limit=200_000)
    dying = live.model_copy(update={"s3_endpoint_url": proxy.url})
    started = time.monotonic()
    with pytest.raises(StoreError, match="S3 .* failed at") as error:
        open_store(dying).resolve(uri)
    assert proxy.dead.is_set() and "\n" not in str(error.value)
    assert time.monotonic() - started < 60
    left = [p.relative_to(tmp_path) for p in (tmp_path / "cache").rglob("*") if p.name != ".lock"]
    assert left == [tmp_path.joinpath("cache/.scratch").relative_to(tmp_path)], "nothing half-downloaded stays"
    fetched, _ = open_store(live).resolve(uri)
    assert (fetched / "model.joblib").read_bytes() == (trained_dir / "model.joblib").read_bytes()
