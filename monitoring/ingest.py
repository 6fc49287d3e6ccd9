"""Update knowledge: new rows become a new DVC version of the training data, or nothing changes.

Rows (a CSV file, or the screened feedback of the monitor) are checked with the rules of
``mlops data validate`` (an error names its line and column and stops everything), exact
duplicates of existing rows are dropped, the rest appended, each with its provenance
(``data/provenance.csv``: where every row of the data came from, so a bad source can be
removed in one step). The order makes every interruption harmless:

1. the new table and the new provenance are written beside the data and checked whole;
2. the table's object goes into the DVC cache and is pushed to the remote;
3. a journal records (previous version, new version);
4. the data's ``.dvc`` file (``data.path`` of params.yaml, plus ``.dvc``) is replaced in one rename: the new
   version exists;
5. the workspace CSV, then the provenance, are replaced in one rename each; the journal is
   removed.

Killed before 4, the previous version is untouched (an unreferenced object may stay in the
cache and the remote). Killed between 4 and 5, the next ingest finds the journal and
finishes step 5 first. A workspace CSV that matches neither version (a hand edit) is never
overwritten: the next ingest stops and says how to keep or drop it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core.atomic import atomic_write, within
from core.errors import DataValidationError, MlopsError
from core.features import FEATURES, TARGET
from core.model_card import md5_file
from infra import dvc
from training.data import read_table, require_columns
from training.validation import canonical_columns, validate_table

PROVENANCE = Path("data/provenance.csv")
QUARANTINE = Path("data/quarantine.csv")
JOURNAL = Path(".mlops/ingest.json")
RAW_COLUMNS = [TARGET, *(f.raw_name for f in FEATURES), "name"]
PROVENANCE_COLUMNS = ["row", "source", "reference", "client", "time"]
MAX_ROWS = 100_000  # rows one ingest takes at most (a million used 1.7 GB)


class IngestError(MlopsError):
    """The data cannot be updated as asked (a hand-edited workspace, DVC refused, ...)."""


@dataclass(frozen=True)
class Version:
    md5: str
    size: int


@dataclass(frozen=True)
class Origin:
    """Where a row came from: ``seed``, ``csv`` (the file's name), ``feedback`` (request id/row, the client's
    address or reporter, when it was reported)."""

    source: str
    reference: str
    client: str = ""
    time: str = ""


@dataclass(frozen=True)
class Ingested:
    previous: Version
    version: Version
    rows_before: int
    added: int
    duplicates: int
    dvc_text: str  # the new .dvc file, for a merge request
    sources: dict[str, int] = field(default_factory=dict)  # source -> rows added
    added_rows: pd.DataFrame | None = None  # the rows added, canonical columns (for the merge request)

    def summary(self) -> str:
        if not self.added:
            duplicates = f": {self.duplicates} duplicate row(s)" if self.duplicates else ""
            return f"nothing new{duplicates}; data version {self.previous.md5[:12]} unchanged"
        return (
            f"data version {self.version.md5[:12]} (was {self.previous.md5[:12]}): "
            f"{self.rows_before} -> {self.rows_before + self.added} rows, {self.added} added, "
            f"{self.duplicates} duplicate(s) dropped"
        )


def dvc_file(data: Path) -> Path:
    return data.with_name(data.name + ".dvc")


def row_key(values: Sequence[str]) -> str:
    """A row's identity in the provenance: the hash of its cells as the data file holds them."""
    return hashlib.sha256("\x1f".join(str(v).strip() for v in values).encode()).hexdigest()[:16]


def read_version(root: Path, data: Path) -> Version:
    pin = dvc.read_pin((root / dvc_file(data)).read_text(), str(dvc_file(data)))
    return Version(pin.md5, pin.size)


def with_version(dvc_text: str, version: Version) -> str:
    return dvc.with_pin(dvc_text, dvc.Pin(version.md5, version.size), "the data's .dvc file")


def _journal(root: Path) -> dict | None:
    path = root / JOURNAL
    return json.loads(path.read_text()) if path.is_file() else None


def recover(root: Path, data: Path) -> None:
    """Finish an ingest that was interrupted after its commit point, or forget one that never reached it.

    The workspace CSV is put right only while it still is the previous version: one edited by hand after the
    interruption is never overwritten."""
    journal = _journal(root)
    if journal is None:
        return
    if read_version(root, data).md5 == journal["to"]:
        current = md5_file(root / data) if (root / data).is_file() else None
        if current == journal["from"]:
            _checkout(root, data, Version(journal["to"], journal["size"]))
        elif current != journal["to"]:
            raise IngestError(
                f"{data} was edited after an interrupted ingest (it is neither version {journal['from'][:12]} "
                f"nor {journal['to'][:12]}): keep it with `dvc add {data}` or drop it with "
                f"`dvc checkout {dvc_file(data)}`, then remove {JOURNAL}"
            )
        staged = root / journal.get("provenance", "")
        if journal.get("provenance") and staged.is_file():
            staged.replace(within(root, PROVENANCE))
    (root / JOURNAL).unlink()


def _checkout(root: Path, data: Path, version: Version) -> None:
    """Put ``version`` (from the DVC cache) at the workspace path, in one rename."""
    cached = dvc.cached_path(root, version.md5)
    atomic_write(root / data, lambda tmp: tmp.write_bytes(cached.read_bytes()))


def _store(root: Path, table_path: Path, version: Version, remote: str | None) -> None:
    """The new version's object into the cache and onto the remote (before anything points to it)."""
    try:
        dvc.cache_and_push(root, table_path, version.md5, remote)
    except dvc.DvcAdapterError as e:
        raise IngestError(f"the new data version: {e}") from e


def object_in_repository(root: Path, version: Version, remote: str | None) -> Path | None:
    """The pushed object's path relative to ``root`` when the remote is a folder of the repository
    (the committed default remote): a merge request must carry it beside the .dvc file."""
    path = dvc.remote_object_path(root, version.md5, remote)
    try:
        return None if path is None else path.relative_to(Path(root).resolve())
    except ValueError:
        return None


def number_text(value: float) -> str:
    """A number as the data file writes it: every digit it has (12345.67 stays 12345.67), no trailing .0."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _raw_text(name: str, value: float) -> str:
    if pd.isna(value):
        return "?"
    if name == "model_year" and 1900 <= value < 2000:
        value -= 1900  # the data file's two-digit years
    return number_text(value)


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
    return parsed[[TARGET, *(f.name for f in FEATURES)]].apply(lambda row: tuple(map(number_text, row)), axis=1)


def read_provenance(root: Path) -> pd.DataFrame:
    path = root / PROVENANCE
    if not path.is_file():
        return pd.DataFrame(columns=PROVENANCE_COLUMNS, dtype=str)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def provenance_of(rows: pd.DataFrame, origins: Sequence[Origin]) -> pd.DataFrame:
    """Provenance lines for raw ``rows`` (data file columns), one ``Origin`` each."""
    keys = [row_key(values) for values in rows[RAW_COLUMNS].itertuples(index=False)]
    return pd.DataFrame(
        [[key, o.source, o.reference, o.client, o.time] for key, o in zip(keys, origins, strict=True)],
        columns=PROVENANCE_COLUMNS,
    )


def _checked_workspace(root: Path, data: Path) -> tuple[Version, Path]:
    recover(root, data)
    previous = read_version(root, data)
    data_path = within(root, data)
    if not data_path.is_file():
        raise IngestError(f"{data} is not in the workspace; `mlops data pull` fetches it")
    if md5_file(data_path) != previous.md5:
        raise IngestError(
            f"{data} differs from the version {dvc_file(data)} names (a hand edit?); keep it with `dvc add "
            f"{data}` or drop it with `dvc checkout {dvc_file(data)}`, then ingest again"
        )
    return previous, data_path


def ingest(
    root: Path,
    data: Path,
    table: pd.DataFrame,
    source: str,
    origins: Sequence[Origin] | None = None,
    remote: str | None = None,
    allow_empty: bool = False,
) -> Ingested:
    """Append ``table``'s new rows to the data as a new DVC version (pushed), each with its ``origins`` entry
    (default: the CSV ``source``); see the module doc for the order. An empty ``table`` is an error unless
    ``allow_empty`` (feedback the screen held entirely)."""
    previous, data_path = _checked_workspace(root, data)
    if len(table) > MAX_ROWS:
        raise IngestError(f"{source}: {len(table)} rows, at most {MAX_ROWS} per ingest; split it")
    if table.empty and allow_empty:
        return Ingested(previous, previous, 0, 0, 0, (root / dvc_file(data)).read_text())
    origins = list(origins) if origins is not None else [Origin("csv", Path(source).name)] * len(table)
    parsed, report = validate_table(table, require_target=True)
    require_columns(Path(source), report, table.columns)
    if not report.valid:
        raise DataValidationError(f"{source} cannot be ingested, nothing changed:\n{report.summary()}")
    existing = read_table(data_path)
    keys = _keys(parsed)
    fresh = (~keys.isin(set(_keys(validate_table(existing, require_target=True)[0]))) & ~keys.duplicated()).to_numpy()
    added = as_raw(table[fresh], parsed[fresh])
    dvc_text = (root / dvc_file(data)).read_text()
    if added.empty:
        return Ingested(previous, previous, len(existing), 0, len(table), dvc_text)
    kept = [origin for origin, keep in zip(origins, fresh, strict=True) if keep]
    lines = added.to_csv(index=False, header=False, lineterminator="\n")
    text = data_path.read_text()
    provenance = pd.concat([read_provenance(root), provenance_of(added, kept)], ignore_index=True)
    version = _commit_version(root, data, text + ("" if text.endswith("\n") else "\n") + lines, provenance, remote)
    sources = pd.Series([o.source for o in kept]).value_counts().to_dict()
    return Ingested(
        previous, version, len(existing), len(added), len(table) - len(added), with_version(dvc_text, version),
        sources, parsed[fresh],
    )  # fmt: skip


@dataclass(frozen=True)
class Removed:
    previous: Version
    version: Version
    removed: int
    dvc_text: str

    def summary(self) -> str:
        if not self.removed:
            return f"no row matches: data version {self.previous.md5[:12]} unchanged"
        return f"data version {self.version.md5[:12]} (was {self.previous.md5[:12]}): {self.removed} row(s) removed"


def remove(root: Path, data: Path, matches: Callable[[pd.DataFrame], pd.Series], remote: str | None = None) -> Removed:
    """Remove the rows whose provenance ``matches`` (a bad source, in one step) as a new DVC version."""
    previous, data_path = _checked_workspace(root, data)
    provenance = read_provenance(root)
    doomed = set(provenance.loc[matches(provenance).to_numpy(), "row"])
    table = read_table(data_path)
    keys = pd.Series([row_key(values) for values in table[RAW_COLUMNS].itertuples(index=False)], index=table.index)
    dvc_text = (root / dvc_file(data)).read_text()
    if not doomed or not keys.isin(doomed).any():
        return Removed(previous, previous, 0, dvc_text)
    kept = table[~keys.isin(doomed)]
    text = kept.to_csv(index=False, lineterminator="\n")
    version = _commit_version(root, data, text, provenance[~provenance["row"].isin(doomed)], remote)
    return Removed(previous, version, int(keys.isin(doomed).sum()), with_version(dvc_text, version))


def _commit_version(root: Path, data: Path, text: str, provenance: pd.DataFrame, remote: str | None) -> Version:
    """Steps 1-5 of the module doc for a new table ``text`` and its ``provenance``."""
    staging = root / ".mlops" / "ingest"
    staging.mkdir(parents=True, exist_ok=True)
    combined, staged_provenance = staging / data.name, staging / PROVENANCE.name
    atomic_write(combined, lambda tmp: tmp.write_text(text))
    atomic_write(staged_provenance, lambda tmp: provenance.to_csv(tmp, index=False, lineterminator="\n"))
    _, whole = validate_table(read_table(combined), require_target=True)
    if not whole.valid:  # cannot happen when both parts are valid; checked anyway before anything is stored
        raise DataValidationError(f"the combined data would be invalid, nothing changed:\n{whole.summary()}")
    version = Version(md5_file(combined), combined.stat().st_size)
    _store(root, combined, version, remote)
    previous = read_version(root, data)
    journal = {"from": previous.md5, "to": version.md5, "size": version.size}
    journal["provenance"] = staged_provenance.relative_to(root).as_posix()
    atomic_write(root / JOURNAL, lambda tmp: tmp.write_text(json.dumps(journal)))
    new_dvc = with_version((root / dvc_file(data)).read_text(), version)
    atomic_write(within(root, dvc_file(data)), lambda tmp: tmp.write_text(new_dvc))  # the commit point
    combined.replace(within(root, data))
    staged_provenance.replace(within(root, PROVENANCE))
    (root / JOURNAL).unlink()
    return version
