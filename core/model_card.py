"""Model directory format: ``model.joblib`` plus ``model.json``, the model card.

The card's ``id`` is the sha256 of ``model.joblib``; every reader checks it before
unpickling, so a model directory cannot silently change under its name.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import ModelDirError
from core.features import FEATURES_BY_NAME, TARGET

MODEL_FILE = "model.joblib"
CARD_FILE = "model.json"
_CHUNK = 1 << 20


class FeatureRange(BaseModel):
    """One input feature of the model with the range it was trained on."""

    name: str
    unit: str
    min: float
    max: float


class DataRef(BaseModel):
    """Which data the model was trained on: path, DVC md5 (plain md5 of the file) and row count."""

    path: str
    md5: str
    rows: int


class ModelCard(BaseModel):
    """Everything needed to know where a model came from and how good it is."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    id: str = Field(pattern=r"^[0-9a-f]{64}$")
    name: str = "mpg"
    algorithm: str
    created_at: str
    git_commit: str | None
    data: DataRef
    params: dict[str, Any]
    metrics: dict[str, Any]
    features: list[FeatureRange]
    target: str = TARGET
    libraries: dict[str, str]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def md5_file(path: Path) -> str:
    """Hex md5 of a file: what DVC 3 records as the ``md5`` of a tracked file."""
    digest = hashlib.md5()  # noqa: S324 - content id, not security
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def git_commit(cwd: Path) -> str | None:
    """Commit of the working copy at ``cwd`` (suffixed ``-dirty`` when tracked files changed), or None."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=cwd, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def library_versions() -> dict[str, str]:
    """Versions that decide whether a pickle loads and predicts the same elsewhere."""
    import numpy
    import scipy
    import sklearn

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "joblib": joblib.__version__,
    }


def feature_ranges(minimums: dict[str, float], maximums: dict[str, float]) -> list[FeatureRange]:
    """Training ranges in canonical feature order."""
    return [
        FeatureRange(name=name, unit=FEATURES_BY_NAME[name].unit, min=minimums[name], max=maximums[name])
        for name in FEATURES_BY_NAME
    ]


def save_model_dir(model: Any, out_dir: Path, **card_fields: Any) -> ModelCard:
    """Write ``model.joblib`` and its card to ``out_dir``, replacing it whole or not at all."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        joblib.dump(model, staging / MODEL_FILE)
        card = ModelCard(
            id=sha256_file(staging / MODEL_FILE),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            libraries=library_versions(),
            **card_fields,
        )
        write_card(staging, card)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return card


def write_card(model_dir: Path, card: ModelCard) -> None:
    """Replace a directory's card (e.g. to add context); the id must still match ``model.joblib``."""
    if sha256_file(Path(model_dir) / MODEL_FILE) != card.id:
        raise ModelDirError(f"card id {card.id[:12]}… does not match {model_dir}/{MODEL_FILE}")
    (Path(model_dir) / CARD_FILE).write_text(card.model_dump_json(indent=2) + "\n")


def read_card(model_dir: Path) -> ModelCard:
    """Parse ``model.json``; a missing or malformed card is a ``ModelDirError``."""
    path = Path(model_dir) / CARD_FILE
    try:
        return ModelCard.model_validate_json(path.read_text())
    except FileNotFoundError as e:
        raise ModelDirError(f"{model_dir} is not a model directory: {CARD_FILE} is missing") from e
    except ValidationError as e:
        raise ModelDirError(f"{path} is not a valid model card: {e}") from e


def verify_model_dir(model_dir: Path) -> ModelCard:
    """Return the card after checking ``model.joblib`` hashes to the card's id."""
    card = read_card(model_dir)
    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise ModelDirError(f"{model_dir} has a card but no {MODEL_FILE}")
    actual = sha256_file(path)
    if actual != card.id:
        raise ModelDirError(
            f"{path} has sha256 {actual[:12]}… but its card says {card.id[:12]}…: the file was changed "
            "after training; refusing to unpickle it. Re-train or fetch the model again."
        )
    return card


def load_model(model_dir: Path) -> tuple[Any, ModelCard]:
    """Verify then unpickle a model directory; returns the estimator and its card."""
    card = verify_model_dir(model_dir)
    try:
        return joblib.load(Path(model_dir) / MODEL_FILE), card
    except Exception as e:  # unpickling can raise almost anything
        raise ModelDirError(f"cannot load {model_dir}/{MODEL_FILE}: {e}") from e
