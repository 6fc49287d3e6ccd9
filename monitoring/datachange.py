"""A change of the training data as an edit of a repository tree, and what its merge request shows.

``mlops data ingest`` and ``mlops data remove-source`` make their change either in the workspace or, with
``--branch``, in a temporary worktree of the target branch (``gitops.mergerequest.propose``): the edit pulls
the target's data version from the worktree's own remote, so rows ingested (and not committed) in the user's
checkout never ride along. The description shows a reviewer what the rows are, not only how many: their
sources, each feature's distribution against the existing data, their residuals against what the model
predicted, and what was held in quarantine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.atomic import atomic_write, within
from core.features import FEATURES, TARGET
from monitoring.ingest import (
    PROVENANCE,
    QUARANTINE,
    Ingested,
    Origin,
    Removed,
    dvc_file,
    ingest,
    object_in_repository,
    remove,
)
from training.data import load_dataset


@dataclass
class DataChange:
    """What to add (``table`` with ``origins``) or remove (``matches``), and what the merge request shows."""

    source: str
    data: Path  # params.yaml's data.path
    table: pd.DataFrame | None = None
    origins: list[Origin] | None = None
    matches: object = None  # provenance frame -> mask, for a removal
    quarantine: pd.DataFrame | None = None  # held rows, written to data/quarantine.csv beside the change
    residuals: np.ndarray | None = None  # actual - predicted of the rows added (feedback)
    remote: str | None = None
    results: list = field(default_factory=list)

    def apply(self, tree: Path) -> list[Path]:
        """Make the change under ``tree`` (a workspace or a worktree); the paths it changed."""
        changed = []
        if self.matches is not None:
            done = remove(tree, self.data, self.matches, self.remote)
            moved = done.removed
        else:
            done = ingest(tree, self.data, self.table, self.source, self.origins, self.remote, allow_empty=True)
            moved = done.added
        self.results.append(done)
        if self.quarantine is not None and len(self.quarantine):  # once the change is made, and only rows held
            atomic_write(within(tree, QUARANTINE), lambda tmp: self.quarantine.to_csv(tmp, index=False))
            changed.append(QUARANTINE)
        if not moved:
            return changed
        changed += [dvc_file(self.data), PROVENANCE]
        carried = object_in_repository(tree, done.version, self.remote)  # the committed local remote travels in git
        return changed + ([carried] if carried is not None else [])

    def propose(self, root: Path, proposal):
        """The change on ``proposal.branch``, made in a temporary worktree of its target from the target's own data
        version, committed (and pushed as a merge request); None when it changes nothing."""
        from gitops.changes import BOT_TRAILER
        from gitops.git import toplevel
        from gitops.mergerequest import propose
        from training.params import load_params
        from training.versioning import data_targets, pull

        def edit(tree: Path) -> list[Path]:
            pull(tree, data_targets(load_params(tree / "params.yaml")), self.remote)  # from the worktree's remote
            return self.apply(tree)

        message = lambda: f"{self.title()}\n\n{BOT_TRAILER}: ingest\n"  # noqa: E731 - asked after the edit
        return propose(toplevel(root), proposal, edit, message, self.describe)

    @property
    def done(self) -> Ingested | Removed:
        return self.results[-1]

    def title(self) -> str:
        done = self.done
        if isinstance(done, Removed):
            return f"data: {done.removed} row(s) of {self.source} removed, version {done.version.md5[:12]}"
        if not done.added:
            return f"data: nothing added, {len(self.quarantine)} feedback row(s) held in quarantine for review"
        return f"data: {done.added} new row(s), version {done.version.md5[:12]}"

    def describe(self, tree: Path) -> str:
        """The merge request's description (``tree``: the change's worktree, for the existing data)."""
        done = self.done
        lines = [f"`{dvc_file(self.data)}`: `{done.previous.md5}` -> `{done.version.md5}` (pushed to the DVC remote)."]
        if isinstance(done, Removed):
            return "\n".join([f"**{done.removed} row(s) removed**: every row whose provenance is {self.source}.", "",
                              *lines])  # fmt: skip
        lines = [
            f"**{done.added} new row(s)** ({done.duplicates} duplicate(s) dropped): {done.rows_before} -> "
            f"{done.rows_before + done.added} rows.",
            "",
            "Sources: " + ", ".join(f"{source} {count}" for source, count in sorted(done.sources.items())) + ".",
            "",
            *lines,
            "",
            *self._distribution(tree, done),
            *self._residual_lines(),
            *self._quarantine_lines(),
            "Merging this retrains: CI submits the production pipeline on data changes. The gate judges on the",
            "trusted holdout (`data/trusted/`), which no ingest changes.",
        ]
        return "\n".join(lines)

    def _distribution(self, tree: Path, done: Ingested) -> list[str]:
        existing = load_dataset(tree / self.data).frame
        added = done.added_rows
        added = existing.iloc[0:0] if added is None else added
        rows = ["| feature | added: min / median / max | existing: min / median / max |", "|---|---|---|"]
        for name in [*(f.name for f in FEATURES), TARGET]:
            cells = [f"{s.min():g} / {s.median():g} / {s.max():g}" for s in (added[name].astype(float), existing[name])]
            rows.append(f"| {name} | {cells[0]} | {cells[1]} |")
        return [*rows, ""]

    def _residual_lines(self) -> list[str]:
        if self.residuals is None or not len(self.residuals):
            return []
        r = self.residuals
        return [f"Residuals of the added rows against what the model predicted (actual - predicted, mpg): mean "
                f"{r.mean():+.2f}, largest {r[np.argmax(np.abs(r))]:+.2f}, beyond ±5: {int((np.abs(r) > 5).sum())}.",
                ""]  # fmt: skip

    def _quarantine_lines(self) -> list[str]:
        if self.quarantine is None or self.quarantine.empty:
            return []
        counts = self.quarantine["reason"].value_counts()
        held = ", ".join(f"{reason} {count}" for reason, count in counts.items())
        return [f"**Quarantined {len(self.quarantine)} row(s)** ({held}): see `{QUARANTINE}`; not added. Add them "
                "with `--accept-quarantined` only after checking them.", ""]  # fmt: skip
