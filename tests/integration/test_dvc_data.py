"""DVC round trips against real remotes: a local folder and S3 (moto server on loopback)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from core.model_card import md5_file
from tests.conftest import SEED_DATA
from tests.integration.conftest import sh
from training.params import Params
from training.versioning import DataVersionError, Pulled, pull, pull_targets

TARGETS = pull_targets(Params())  # the data and the trusted holdout (absent here: left out)


@pytest.fixture
def data_repo(tmp_path) -> Path:
    """A git + DVC repo tracking the starting data."""
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    shutil.copy(SEED_DATA, repo / "data" / "auto-mpg.csv")
    sh("git", "init", "-q", cwd=repo)
    sh("dvc", "init", "-q", cwd=repo)
    sh("dvc", "add", "-q", "data/auto-mpg.csv", cwd=repo)
    return repo


def drop_cache_and_data(repo: Path) -> None:
    shutil.rmtree(repo / ".dvc" / "cache")
    (repo / "data" / "auto-mpg.csv").unlink()


def test_local_remote_round_trip(data_repo, tmp_path):
    sh("dvc", "remote", "add", "-d", "tmp", tmp_path / "remote", cwd=data_repo)
    sh("dvc", "push", "-q", cwd=data_repo)
    drop_cache_and_data(data_repo)
    assert pull(data_repo, TARGETS) == Pulled(1, ["data/auto-mpg.csv"])
    assert md5_file(data_repo / "data" / "auto-mpg.csv") == md5_file(SEED_DATA)


def test_pull_after_deleting_the_file_says_it_restored_it(data_repo):
    """The cache still holds the data: nothing is downloaded, but the file is restored and the user told."""
    (data_repo / "data" / "auto-mpg.csv").unlink()
    shutil.copy(SEED_DATA.parents[2] / "params.yaml", data_repo)  # marks the project root for `mlops`
    result = sh("mlops", "data", "pull", cwd=data_repo)
    assert result.stdout.startswith("restored data/auto-mpg.csv (0 file(s) downloaded")
    assert md5_file(data_repo / "data" / "auto-mpg.csv") == md5_file(SEED_DATA)
    again = sh("mlops", "data", "pull", cwd=data_repo)
    assert again.stdout.strip() == "data up to date (nothing to fetch or restore)"


def test_s3_remote_round_trip_with_credentials_from_the_environment(data_repo, bucket, s3_env):
    sh("dvc", "remote", "add", "s3", f"s3://{bucket}/dvc", cwd=data_repo)
    sh("dvc", "remote", "modify", "s3", "endpointurl", s3_env["endpoint"], cwd=data_repo)
    assert "testing" not in (data_repo / ".dvc" / "config").read_text()
    sh("dvc", "push", "-q", "-r", "s3", cwd=data_repo)
    drop_cache_and_data(data_repo)
    assert pull(data_repo, TARGETS, remote="s3").downloaded == 1
    assert md5_file(data_repo / "data" / "auto-mpg.csv") == md5_file(SEED_DATA)


def test_pull_from_an_empty_remote_names_the_remote(data_repo, tmp_path):
    sh("dvc", "remote", "add", "-d", "empty", tmp_path / "empty", cwd=data_repo)
    drop_cache_and_data(data_repo)
    with pytest.raises(DataVersionError, match="default remote"):
        pull(data_repo, TARGETS)


def test_the_s3_remote_finds_the_store_from_the_one_endpoint_setting(data_repo, bucket, s3_env, monkeypatch):
    """No endpointurl in DVC's config: MLOPS_S3_ENDPOINT_URL (the overlay's model-store.yaml in the cluster)
    reaches DVC's s3 remote as botocore's AWS_ENDPOINT_URL_S3."""
    sh("dvc", "remote", "add", "s3", f"s3://{bucket}/dvc", cwd=data_repo)
    assert "endpointurl" not in (data_repo / ".dvc" / "config").read_text()
    monkeypatch.setenv("MLOPS_S3_ENDPOINT_URL", s3_env["endpoint"])
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    sh("dvc", "push", "-q", "-r", "s3", cwd=data_repo, AWS_ENDPOINT_URL_S3=s3_env["endpoint"])  # dvc's own way
    (data_repo / "data" / "auto-mpg.csv").unlink()
    shutil.rmtree(data_repo / ".dvc" / "cache")
    assert pull(data_repo, TARGETS, remote="s3").downloaded == 1
    assert "AWS_ENDPOINT_URL_S3" not in os.environ, "set for the call only"
