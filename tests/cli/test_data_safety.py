"""Nothing the user did not ask for is ever deleted: hostile model URIs, output folders, the model store.

Each test runs the real `mlops` console script in a subprocess.
"""

from __future__ import annotations

import json
import shutil

import pytest

from core.model_card import read_card
from tests.conftest import SEED_DATA, one_line_error, run_mlops

FAST = "train.candidates=[linear]"


@pytest.fixture
def workspace(tmp_path, trained_dir, trusted_csv):
    """A local model store with one published model and a warm cache (a gate run fetched it)."""
    env = {
        "MLOPS_STORE_ROOT": str(tmp_path / ".mlops" / "store"),
        "MLOPS_CACHE_DIR": str(tmp_path / ".mlops" / "cache"),
    }
    published = run_mlops("publish", "--model", trained_dir, env=env)
    assert published.returncode == 0, published.stderr
    uri = published.stdout.strip()
    gate = run_mlops("gate", "--candidate", trained_dir, "--champion", uri, "--data", SEED_DATA, "--trusted",
                     trusted_csv, env=env)  # fmt: skip
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert (tmp_path / ".mlops" / "cache" / read_card(trained_dir).id).is_dir()
    return tmp_path, env, uri


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(
    "champion",
    [
        "s3://mpg-mlops/models/..",
        "s3://mpg-mlops/models/../",
        "s3://mpg-mlops/",
        "s3://mpg-mlops/models/mpg/..",
        "http://example.com/models/mpg/",
        "file:///tmp",
    ],
)
def test_a_hostile_champion_uri_is_a_usage_error_and_removes_nothing(workspace, trained_dir, champion):
    root, env, _ = workspace
    before = tree(root / ".mlops")
    result = run_mlops("gate", "--candidate", trained_dir, "--champion", champion, "--data", SEED_DATA, env=env)
    line = one_line_error(result, exit_code=2)
    assert "s3://<bucket>/<prefix>/<64-hex model id>/" in line
    assert tree(root / ".mlops") == before


def test_serve_refuses_a_hostile_uri_before_touching_anything(workspace):
    root, env, _ = workspace
    before = tree(root / ".mlops")
    line = one_line_error(run_mlops("serve", "--model-uri", "s3://mpg-mlops/models/..", env=env), exit_code=2)
    assert "--model-uri" in line
    assert tree(root / ".mlops") == before


def test_train_refuses_a_folder_that_is_not_a_model_directory(tmp_path):
    target = tmp_path / "x"
    target.mkdir()
    (target / "precious").write_text("keep me")
    line = one_line_error(run_mlops("train", "--out", target, "--data", SEED_DATA, "--set", FAST))
    assert "not a model directory" in line and str(target) in line
    assert (target / "precious").read_text() == "keep me"
    assert tree(tmp_path) == ["x", "x/precious"]


def test_train_refuses_the_working_tree(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    one_line_error(run_mlops("train", "--out", ".", "--data", SEED_DATA, "--set", FAST, cwd=tmp_path))
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_train_replaces_a_model_directory_whole(tmp_path):
    target = tmp_path / "model"
    first = run_mlops("train", "--out", target, "--data", SEED_DATA, "--set", FAST)
    assert first.returncode == 0, first.stderr
    old_id = read_card(target).id
    second = run_mlops("train", "--out", target, "--data", SEED_DATA, "--set", "train.candidates=[poly_weight_year]")
    assert second.returncode == 0, second.stderr
    assert read_card(target).id != old_id
    assert tree(tmp_path) == ["model", "model/model.joblib", "model/model.json"], "no staging folder left behind"
    assert target.stat().st_mode & 0o777 == 0o755


def test_a_model_directory_with_other_files_is_not_replaced(tmp_path, trained_dir):
    target = shutil.copytree(trained_dir, tmp_path / "model")
    (target / "notes.md").write_text("mine")
    one_line_error(run_mlops("train", "--out", target, "--data", SEED_DATA, "--set", FAST))
    assert (target / "notes.md").read_text() == "mine"
    assert json.loads((target / "model.json").read_text())["id"] == read_card(trained_dir).id
