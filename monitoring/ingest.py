"""Update knowledge: new rows become a new DVC version of the training data, or nothing changes.

Rows (a CSV file, or the feedback-labelled predictions of the monitor) are checked
with the rules of ``mlops data validate`` (an error names its line and column and
stops everything), exact duplicates of existing rows are dropped, the rest appended.
The order makes every interruption harmless:

1. the new table is written beside the data and checked whole;
2. its object goes into the DVC cache and is pushed to the remote;
3. a journal records (previous version, new version);
4. ``data/auto-mpg.csv.dvc`` is replaced in one rename: the new version exists;
5. the workspace CSV is replaced in one rename; the journal is removed.

Killed before 4, the previous version is untouched (an unreferenced object may stay
in the cache and the remote). Killed between 4 and 5, the next ingest finds the
journal and finishes step 5 first. A workspace CSV that matches neither version (a
hand edit) is never overwritten.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.atomic import atomic_write
from core.errors import DataValidationError, MlopsError
from core.features import FEATURES, TARGET
from core.model_card import md5_file
from training.data import read_table, require_columns
from training.validation import canonical_columns, validate_table

DATA_FILE = Path("data/auto-mpg.csv")
DVC_FILE = Path("data/auto-mpg.csv.dvc")
JOURNAL = Path(".mlops/ingest.json")
RAW_COLUMNS = [TARGET, *(f.raw_name for f in FEATURES), "name"]


class IngestError(MlopsError):
    """The data cannot be updated as asked (a hand-edited workspace, DVC refused, ...)."""


@dataclass(frozen=True)
class Version:
    md5: str
    size: int


@dataclass(frozen=True)
class Ingested:
    previous: Version
    version: Version
    rows_before: int
    added: int
    duplicates: int
    dvc_text: str  # the new .dvc file, for a merge request

    def summary(self) -> str:
        if not self.added:
            return f"nothing new: {self.duplicates} duplicate row(s); data version {self.previous.md5[:12]} unchanged"
        return (
            f"data version {self.version.md5[:12]} (was {self.previous.md5[:12]}): "
            f"{self.rows_before} -> {self.rows_before + self.added} rows, {self.added} added, "
            f"{self.duplicates} duplicate(s) dropped"
        )


def read_version(root: Path) -> Version:
    text = (root / DVC_FILE).read_text()
    md5, size = re.search(r"md5: (\w+)", text), re.search(r"size: (\d+)", text)
    if not md5 or not size:
        raise IngestError(f"{DVC_FILE} holds no md5 and size: is it a DVC file?")
    return Version(md5[1], int(size[1]))


def with_version(dvc_text: str, version: Version) -> str:
    text = re.sub(r"md5: \w+", f"md5: {version.md5}", dvc_text, count=1)
    return re.sub(r"size: \d+", f"size: {version.size}", text, count=1)


def _journal(root: Path) -> dict | None:
    path = root / JOURNAL
    return json.loads(path.read_text()) if path.is_file() else None


def recover(root: Path) -> None:
    """Finish an ingest that was interrupted after its commit point, or forget one that never reached it."""
    journal = _journal(root)
    if journal is None:
        return
    current = read_version(root).md5
    if current == journal["to"] and md5_file(root / DATA_FILE) != journal["to"]:
        _checkout(root, Version(journal["to"], journal["size"]))
    (root / JOURNAL).unlink()


def _repo(root: Path):
    from dvc.repo import Repo

    return Repo(str(root))


def _checkout(root: Path, version: Version) -> None:
    """Put ``version`` (from the DVC cache) at the workspace path, in one rename."""
    with _repo(root) as repo:
        cached = Path(repo.cache.local.oid_to_path(version.md5))
    atomic_write(root / DATA_FILE, lambda tmp: tmp.write_bytes(cached.read_bytes()))


def _store(root: Path, table_path: Path, version: Version, remote: str | None) -> None:
    """The new version's object into the cache and onto the remote (before anything points to it)."""
    from dvc.exceptions import DvcException
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_objects.fs.local import LocalFileSystem

    try:
        with _repo(root) as repo:
            repo.cache.local.add(str(table_path), LocalFileSystem(), version.md5)
            result = repo.cloud.push([HashInfo("md5", version.md5)], remote=remote)
    except DvcException as e:
        raise IngestError(f"pushing the new data version to {remote or 'the default remote'} failed: {e}") from e
    if result.failed:
        raise IngestError(f"the DVC remote {remote or '(default)'} refused the new data version; nothing changed")


def object_in_repository(root: Path, version: Version, remote: str | None) -> Path | None:
    """The pushed object's path relative to ``root`` when the remote is a folder of the repository
    (the committed default remote): a merge request must carry it beside the .dvc file."""
    with _repo(root) as repo:
        odb = repo.cloud.get_remote_odb(remote, "push")
        if odb.fs.protocol not in ("local", "file"):
            return None
        path = Path(odb.oid_to_path(version.md5)).resolve()
    try:
        return path.relative_to(Path(root).resolve())
    except ValueError:
        return None


def _raw_text(name: str, value: float) -> str:
    if pd.isna(value):
        return "?"
    if name == "model_year" and 1900 <= value < 2000:
        value -= 1900  # the data file's two-digit years
    return f"{value:g}"


def as_raw(table: pd.DataFrame, parsed: pd.DataFrame) -> pd.DataFrame:
    """Validated rows as the data file writes them: raw column names, two-digit years, ``?`` for missing."""
    raw = pd.DataFrame({TARGET: parsed[TARGET].map(lambda v: _raw_text(TARGET, v))}, index=parsed.index)
    for feature in FEATURES:
        raw[feature.raw_name] = parsed[feature.name].map(lambda v, n=feature.name: _raw_text(n, v))
    names = canonical_columns(table).get("name")
    raw["name"] = names.str.strip() if names is not None else ""
    return raw[RAW_COLUMNS]


def _keys(parsed: pd.DataFrame) -> pd.Series:
    """One hashable value per row: the numbers that make two rows the same car and consumption."""
    return parsed[[TARGET, *(f.name for f in FEATURES)]].apply(lambda row: tuple(f"{v:g}" for v in row), axis=1)


def ingest(root: Path, table: pd.DataFrame, source: str, remote: str | None = None, workspace: bool = True) -> Ingested:
    """Append ``table``'s new rows to the data as a new DVC version (pushed); see the module doc for the order.

    ``workspace`` False leaves the working tree alone (the new .dvc text goes into a
    merge request instead).
    """
    recover(root)
    previous = read_version(root)
    data_path = root / DATA_FILE
    if not data_path.is_file():
        raise IngestError(f"{DATA_FILE} is not in the workspace; `mlops data pull` fetches it")
    if md5_file(data_path) != previous.md5:
        raise IngestError(
            f"{DATA_FILE} differs from the version {DVC_FILE} names (a hand edit?); keep it with `dvc add "
            f"{DATA_FILE}` or drop it with `dvc checkout {DVC_FILE}`, then ingest again"
        )
    parsed, report = validate_table(table, require_target=True)
    require_columns(Path(source), report, table.columns)
    if not report.valid:
        raise DataValidationError(f"{source} cannot be ingested, nothing changed:\n{report.summary()}", report)
    existing = read_table(data_path)
    keys = _keys(parsed)
    fresh = ~keys.isin(set(_keys(validate_table(existing, require_target=True)[0]))) & ~keys.duplicated()
    added = as_raw(table[fresh], parsed[fresh])
    dvc_text = (root / DVC_FILE).read_text()
    if added.empty:
        return Ingested(previous, previous, len(existing), 0, len(table), dvc_text)
    staging = root / ".mlops" / "ingest"
    staging.mkdir(parents=True, exist_ok=True)
    combined = staging / DATA_FILE.name
    text = data_path.read_text()
    lines = added.to_csv(index=False, header=False, lineterminator="\n")
    atomic_write(combined, lambda tmp: tmp.write_text(text + ("" if text.endswith("\n") else "\n") + lines))
    _, whole = validate_table(read_table(combined), require_target=True)
    if not whole.valid:  # cannot happen when both parts are valid; checked anyway before anything is stored
        raise DataValidationError(f"the combined data would be invalid, nothing changed:\n{whole.summary()}", whole)
    version = Version(md5_file(combined), combined.stat().st_size)
    _store(root, combined, version, remote)
    new_dvc = with_version(dvc_text, version)
    if workspace:
        journal = {"from": previous.md5, "to": version.md5, "size": version.size}
        atomic_write(root / JOURNAL, lambda tmp: tmp.write_text(json.dumps(journal)))
        atomic_write(root / DVC_FILE, lambda tmp: tmp.write_text(new_dvc))  # the commit point
        combined.replace(data_path)
        (root / JOURNAL).unlink()
    combined.unlink(missing_ok=True)
    return Ingested(previous, version, len(existing), len(added), len(table) - len(added), new_dvc)


def feedback_rows(engine, since: float = 0.0) -> pd.DataFrame:
    """Feedback-labelled predictions as data rows: the seven features and the actual mpg."""
    import sqlalchemy as sa

    from monitoring import db

    p, f = db.predictions, db.feedback
    query = (
        sa.select(p, f.c.actual_mpg)
        .select_from(p.join(f, (f.c.request_id == p.c.request_id) & (f.c.row == p.c.row)))
        .where(f.c.reported >= since)
        .order_by(p.c.time)
    )
    with engine.connect() as connection:
        rows = pd.DataFrame(connection.execute(query).mappings().all())
    if rows.empty:
        return pd.DataFrame(columns=[TARGET, *(f.name for f in FEATURES), "name"], dtype=str)
    table = pd.DataFrame({TARGET: rows["actual_mpg"].round(2).map("{:g}".format)})
    for feature in FEATURES:
        table[feature.name] = rows[feature.name].map("{:g}".format)
    table["name"] = "feedback " + rows["request_id"] + "/" + rows["row"].astype(str)
    return table
