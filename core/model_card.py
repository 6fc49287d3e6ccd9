"""Model directory format: ``model.joblib`` plus ``model.json``, the model card.

The card's ``id`` is the sha256 of ``model.joblib``; every reader checks it before
unpickling, so a model directory cannot silently change under its name.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.atomic import atomic_write, replace_dir
from core.errors import ModelDirError
from core.features import FEATURES_BY_NAME, TARGET

MODEL_FILE = "model.joblib"
CARD_FILE = "model.json"
MODEL_FILES = (MODEL_FILE, CARD_FILE)  # the card last: on S3 it marks a model complete
MAX_CARD_BYTES = 1 << 20


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


class HoldoutMetrics(BaseModel):
    """Scores on the seeded holdout rows (mpg)."""

    rmse: float
    mae: float
    r2: float


class CandidateScore(BaseModel):
    """Cross-validated RMSE of one candidate at its best grid point."""

    model_config = ConfigDict(frozen=True)

    name: str
    cv_rmse_mean: float
    cv_rmse_std: float
    best_params: dict[str, Any]


class Metrics(BaseModel):
    """How good the model is: CV on the training rows, the holdout, and every candidate's CV."""

    cv_rmse_mean: float
    cv_rmse_std: float
    holdout: HoldoutMetrics
    train_rows: int
    holdout_rows: int
    candidates: dict[str, CandidateScore]


class Histogram(BaseModel):
    """How a quantity fell in the training rows: bins cut at its deciles, and each bin's share.

    Bin ``i`` holds ``cuts[i-1] <= v < cuts[i]`` (the first everything below ``cuts[0]``,
    the last everything from ``cuts[-1]``). The shares are counted, not assumed to be
    10 %: with ties (a displacement of 350 in one car of twelve) a decile bin holds more.
    """

    cuts: list[float]
    shares: list[float]

    @classmethod
    def of(cls, values, bins: int = 10) -> Histogram:
        values = np.asarray(values, dtype=float)
        cuts = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
        histogram = cls(cuts=[round(float(c), 6) for c in cuts], shares=[])
        histogram.shares = [round(float(s), 6) for s in histogram.counts(values) / len(values)]
        return histogram

    def counts(self, values) -> np.ndarray:
        """How many of ``values`` fall in each bin."""
        index = np.searchsorted(np.asarray(self.cuts), np.asarray(values, dtype=float), side="right")
        return np.bincount(index, minlength=len(self.cuts) + 1)

    def labels(self) -> list[str]:
        inner = [f"{a:g} to {b:g}" for a, b in zip(self.cuts[:-1], self.cuts[1:], strict=True)]
        return [f"< {self.cuts[0]:g}", *inner, f">= {self.cuts[-1]:g}"]


class FeatureProfile(BaseModel):
    """How one feature was distributed in the training rows: enough to judge drift without the data.

    ``categories``: value -> share, for the features with few distinct values.
    """

    name: str
    histogram: Histogram
    categories: dict[str, float] | None = None


class ReferenceProfile(BaseModel):
    """The training rows and the model's predictions on them, summarised for monitoring."""

    rows: int
    features: list[FeatureProfile]
    predictions: Histogram  # of the model's predictions (mpg) on its training rows


class ModelCard(BaseModel):
    """Everything needed to know where a model came from and how good it is.

    A pure function of code, data, params and library versions: the same inputs give
    a byte-identical card (``code_version`` hashes the training code; no clock, no git
    state), so ``dvc repro`` on unchanged inputs changes nothing it tracks.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    id: str = Field(pattern=r"^[0-9a-f]{64}$")
    name: str = "mpg"
    algorithm: str
    code_version: str | None = None
    data: DataRef
    params: dict[str, Any]
    metrics: Metrics
    features: list[FeatureRange]
    profile: ReferenceProfile | None = None  # None: a card written before monitoring existed
    target: str = TARGET
    libraries: dict[str, str]
    # Cards written before cards became reproducible carry these; they are read, never written.
    created_at: str | None = None
    git_commit: str | None = None

    def training_facts(self) -> dict[str, Any]:
        """The fields ``save_model_dir`` takes, to save another model with this card's context."""
        return self.model_dump(include={"algorithm", "data", "params", "metrics", "features", "profile"})


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def md5_file(path: Path) -> str:
    """Hex md5 of a file: what DVC 3 records as the ``md5`` of a tracked file."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()


#: The code that can change a model, and only that: the domain (``core/``) and the modules of ``training/`` that
#: read the data and fit and score the model. ``code_version`` hashes it, every stage of dvc.yaml depends on it
#: and CI's model gate watches it (tests/unit/test_model_code.py keeps the three equal, and checks that these
#: modules import nothing outside it). The CLI, the gate, batch prediction, DVC plumbing (``infra/``) and the
#: benchmarks (``bench/``) change without a retrain.
MODEL_CODE = (
    "core",
    "training/candidates.py",
    "training/data.py",
    "training/evaluate.py",
    "training/params.py",
    "training/selection.py",
    "training/train.py",
    "training/validation.py",
)


def code_version(project: Path | None = None) -> str:
    """sha256 of ``MODEL_CODE``'s sources (of this installation, or of the tree at ``project``): which code made
    a model."""
    digest = hashlib.sha256()
    project = project or Path(__file__).resolve().parents[1]
    for entry in MODEL_CODE:
        path = project / entry
        for source in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(f"{source.relative_to(project).as_posix()}\0".encode())
            digest.update(source.read_bytes())
    return digest.hexdigest()


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


def _read_regular(path: Path, limit: int | None = None) -> bytes:
    """The bytes of a regular file, never following a symlink and never blocking on a FIFO or device."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as e:  # ELOOP: a symlink
        raise ModelDirError(
            f"{path} cannot be opened as a regular file ({e.strerror}); a model directory holds only regular files"
        ) from e
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ModelDirError(f"{path} is not a regular file; a model directory holds only regular files")
        data = handle.read() if limit is None else handle.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise ModelDirError(f"{path} is larger than {limit} bytes: not a model card")
    return data


def read_card(model_dir: Path) -> ModelCard:
    """Parse ``model.json``; a missing, unreadable or malformed card is a ``ModelDirError``."""
    path = Path(model_dir) / CARD_FILE
    try:
        return ModelCard.model_validate_json(_read_regular(path, MAX_CARD_BYTES))
    except FileNotFoundError as e:
        raise ModelDirError(f"{model_dir} is not a model directory: {CARD_FILE} is missing") from e
    except NotADirectoryError as e:
        raise ModelDirError(f"{model_dir} is not a model directory: it is a file") from e
    except ValidationError as e:
        raise ModelDirError(f"{path} is not a valid model card: {e.errors()[0]['msg']}") from e


def _checked_id(model_dir: Path, card: ModelCard, actual: str, expected_id: str | None) -> ModelCard:
    path = Path(model_dir) / MODEL_FILE
    if actual != card.id:
        raise ModelDirError(
            f"{path} has sha256 {actual[:12]}… but its card says {card.id[:12]}…: the file was changed "
            "after training; refusing to unpickle it. Re-train or fetch the model again."
        )
    if expected_id is not None and actual != expected_id:
        raise ModelDirError(
            f"{model_dir} holds model {actual[:12]}… but model {expected_id[:12]}… was asked for; "
            "refusing to unpickle it. Fetch the model again from its URI."
        )
    return card


def _model_bytes(model_dir: Path) -> bytes:
    try:
        return _read_regular(Path(model_dir) / MODEL_FILE)
    except FileNotFoundError as e:
        raise ModelDirError(f"{model_dir} has a card but no {MODEL_FILE}") from e


def verify_model_dir(model_dir: Path, expected_id: str | None = None) -> ModelCard:
    """The card, after checking that ``model.joblib`` hashes to the card's id (and to ``expected_id``)."""
    card = read_card(model_dir)
    return _checked_id(model_dir, card, hashlib.sha256(_model_bytes(model_dir)).hexdigest(), expected_id)


def check_estimator(model: Any, source: Path) -> Any:
    """A model file must hold what training saves: a scikit-learn Pipeline starting with ``FeatureMatrix``."""
    from sklearn.pipeline import Pipeline

    from core.feature_matrix import FeatureMatrix

    if not (isinstance(model, Pipeline) and model.steps and isinstance(model.steps[0][1], FeatureMatrix)):
        raise ModelDirError(
            f"{source} holds a {type(model).__name__}, not a model this project trained "
            "(a scikit-learn Pipeline whose first step is FeatureMatrix)"
        )
    return model


def load_model(model_dir: Path, expected_id: str | None = None) -> tuple[Any, ModelCard]:
    """Verify then unpickle a model directory; returns the estimator and its card.

    The bytes are read once, hashed and unpickled from memory, so the file cannot be
    swapped between the check and the load.
    """
    card = read_card(model_dir)
    data = _model_bytes(model_dir)
    _checked_id(model_dir, card, hashlib.sha256(data).hexdigest(), expected_id)
    try:
        model = joblib.load(io.BytesIO(data))
    except Exception as e:  # unpickling can raise almost anything
        raise ModelDirError(f"cannot load {model_dir}/{MODEL_FILE}: {e}") from e
    return check_estimator(model, Path(model_dir) / MODEL_FILE), card


def write_card(model_dir: Path, card: ModelCard) -> None:
    """Replace a directory's card (e.g. to add context); the id must still match ``model.joblib``."""
    if sha256_file(Path(model_dir) / MODEL_FILE) != card.id:
        raise ModelDirError(f"card id {card.id[:12]}… does not match {model_dir}/{MODEL_FILE}")
    text = card.model_dump_json(indent=2, exclude_none=True) + "\n"
    atomic_write(Path(model_dir) / CARD_FILE, lambda tmp: tmp.write_text(text))


def is_model_dir(path: Path) -> bool:
    """A directory holding a model card and nothing but model files: safe to replace whole."""
    entries = {entry.name for entry in Path(path).iterdir()}
    if not entries <= set(MODEL_FILES) or CARD_FILE not in entries:
        return False
    try:
        read_card(path)
    except ModelDirError:
        return False
    return True


def check_model_dir_target(out_dir: Path) -> None:
    """Refuse, before any work, an output folder that could not or must not be (re)written."""
    _check_replaceable(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent)).rmdir()
    except OSError as e:
        reason = f"cannot write the model directory {out_dir}: {e.strerror}"
        raise ModelDirError(f"{reason}; choose a writable folder") from e


def _check_replaceable(out_dir: Path) -> None:
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise ModelDirError(f"{out_dir} exists and is not a directory; choose another output folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not is_model_dir(out_dir):
        raise ModelDirError(
            f"{out_dir} is not empty and is not a model directory; refusing to replace it. "
            "Choose a new or empty folder, or an existing model directory."
        )


def save_model_dir(model: Any, out_dir: Path, **card_fields: Any) -> ModelCard:
    """Write ``model.joblib`` and its card to ``out_dir``, replacing it whole or not at all.

    ``out_dir`` must be absent, empty, or a model directory (nothing else is ever
    replaced); the new directory is built beside it and swapped in with one rename.
    """
    out_dir = Path(out_dir)
    check_model_dir_target(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        joblib.dump(model, staging / MODEL_FILE)
        card = ModelCard(
            id=sha256_file(staging / MODEL_FILE),
            code_version=code_version(),
            libraries=library_versions(),
            **card_fields,
        )
        write_card(staging, card)
        staging.chmod(0o755)  # mkdtemp makes it 0700; a model directory is as readable as any output
        replace_dir(staging, out_dir)
    finally:
        if staging.is_dir():  # the old model directory after the swap, or the failed attempt
            shutil.rmtree(staging, ignore_errors=True)
    return card
