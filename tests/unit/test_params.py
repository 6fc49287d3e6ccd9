"""params.yaml: validated, unknown keys rejected, overrides applied like `dvc exp run -S`."""

from __future__ import annotations

import pytest
import yaml

from core.errors import ParamsError
from training.candidates import CANDIDATES
from training.params import Params, TrainParams, apply_overrides, load_params, parse_params


def test_committed_params_file_is_valid_and_writes_out_every_registered_candidate(root):
    params = load_params(root / "params.yaml")
    assert params.train.candidates == [n for n in CANDIDATES if n != "svr"], "all but the exact SVR, in registry order"
    written = yaml.safe_load((root / "params.yaml").read_text())["train"]
    for name, candidate in CANDIDATES.items():
        assert isinstance(getattr(params.train, name), candidate.Params), f"train.{name} is that candidate's block"
        assert name in written or not candidate.Params.model_fields, f"params.yaml spells out train.{name}"
    assert params.train.svr.c == [1.0, 3.0] and params.gate.max_holdout_rmse == 2.8


def test_a_candidate_is_one_registry_entry_and_one_params_block():
    """The registry drives params: the allowed names, and each candidate's block with its own validation."""
    assert set(TrainParams.model_fields) == {"seed", "cv_folds", "candidates", *CANDIDATES}
    with pytest.raises(ParamsError, match="train.gradient_boosting.subsample"):
        parse_params({"train": {"gradient_boosting": {"subsample": 1.5}}})


def test_overrides_parse_yaml_values_without_touching_the_input():
    raw = {"train": {"cv_folds": 5}}
    result = apply_overrides(raw, ["train.cv_folds=3", "train.svr.c=[1.0, 2.0]"])
    assert result["train"]["cv_folds"] == 3 and result["train"]["svr"]["c"] == [1.0, 2.0]
    assert raw == {"train": {"cv_folds": 5}}


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("train.n_trees=3", "train.n_trees"),
        ("train.cv_folds=1", "train.cv_folds"),
        ("split.test_size=1.5", "split.test_size"),
        ("train.candidates=[xgboost]", "train.candidates"),
    ],
)
def test_bad_or_unknown_params_name_the_key(root, override, named):
    with pytest.raises(ParamsError, match=named.replace(".", r"\.")):
        load_params(root / "params.yaml", [override])


def test_override_without_equals_sign_is_rejected():
    with pytest.raises(ParamsError, match="section.key=value"):
        apply_overrides({}, ["train.cv_folds"])


def test_missing_params_file_is_a_params_error(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")


def test_empty_mapping_gives_the_defaults():
    assert parse_params({}) == Params()
