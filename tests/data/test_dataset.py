"""Checks on the real data: the committed starting copy and its DVC version."""

from __future__ import annotations

import yaml

from core.model_card import md5_file
from tests.conftest import SEED_DATA
from training.data import validate_file


def test_starting_data_is_valid_with_only_the_known_missing_horsepower():
    parsed, report = validate_file(SEED_DATA)
    assert report.valid
    assert report.rows == 357
    assert [(i.column, i.severity) for i in report.issues] == [("horsepower", "warning")] * 4


def test_clean_data_covers_the_expected_ranges(dataset):
    frame = dataset.frame
    assert len(frame) == 353
    assert frame["model_year"].between(1970, 1982).all()
    assert set(frame["origin"]) == {1, 2, 3}
    assert frame["mpg"].between(9, 47).all()
    assert frame.notna().all().all()


def test_dvc_pins_a_version_whose_object_is_in_the_committed_local_remote(root):
    pinned = yaml.safe_load((root / "data" / "auto-mpg.csv.dvc").read_text())["outs"][0]["md5"]
    remote = root / "data" / "dvc-remote" / "files" / "md5"
    assert (remote / pinned[:2] / pinned[2:]).is_file()
    seed = md5_file(SEED_DATA)
    assert (remote / seed[:2] / seed[2:]).is_file(), "the starting data must stay restorable"
