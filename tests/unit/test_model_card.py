"""Model directory: written whole, card id = sha256 of model.joblib, tampering refused."""

from __future__ import annotations

import json

import pytest

from core.errors import ModelDirError
from core.model_card import load_model, read_card, sha256_file, verify_model_dir


def test_card_id_is_the_sha256_of_the_model_file(tiny_dir):
    card = read_card(tiny_dir)
    assert card.id == sha256_file(tiny_dir / "model.joblib")
    assert [f.name for f in card.features][:2] == ["cylinders", "displacement"]
    assert card.libraries["scikit-learn"]
    assert card.data.md5 and card.data.rows > 300


def test_tampered_model_file_is_refused_before_unpickling(model_copy):
    with open(model_copy / "model.joblib", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelDirError, match="refusing to unpickle"):
        load_model(model_copy)


def test_missing_card_and_malformed_card_are_model_dir_errors(model_copy, tmp_path):
    with pytest.raises(ModelDirError, match="model.json is missing"):
        verify_model_dir(tmp_path)
    card = json.loads((model_copy / "model.json").read_text())
    card["id"] = "not-a-hash"
    (model_copy / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelDirError, match="not a valid model card"):
        read_card(model_copy)
