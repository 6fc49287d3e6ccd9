"""Shared fixtures: the project's real data, params and one trained model per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from training.data import load_dataset
from training.params import load_params

ROOT = Path(__file__).resolve().parents[1]
SEED_DATA = ROOT / "data" / "seed" / "auto-mpg.csv"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def params():
    return load_params(ROOT / "params.yaml")


@pytest.fixture(scope="session")
def dataset():
    """The committed starting data, validated and cleaned (independent of `dvc pull`)."""
    return load_dataset(SEED_DATA)


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory, dataset, params) -> Path:
    """A model directory trained once with the committed params."""
    from training.train import train

    out = tmp_path_factory.mktemp("model") / "candidate"
    train(dataset, params, out)
    return out


@pytest.fixture(scope="session")
def model(trained_dir):
    from core.model_card import load_model

    return load_model(trained_dir)[0]


@pytest.fixture
def model_copy(trained_dir, tmp_path) -> Path:
    """A private copy of the trained model directory a test may damage."""
    return Path(shutil.copytree(trained_dir, tmp_path / "model"))
