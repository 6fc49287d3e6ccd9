"""The poisoning attack an adversarial review ran against the loop, replayed: it is stopped twice.

The attack: through the public page, predict heavy V8 cars (4,000-5,000 lb, years 2015-2024)
and report ~38 mpg for each (the model says ~18). Before the fix, `mlops data ingest
--from-feedback` added them all and the gate passed the retrained model, which then
predicted 39 mpg for a 4,400 lb V8: poisoned rows in the content-hashed holdout made the
champion look worse. Now the screen quarantines them, and if someone accepts them anyway
the gate, judging on the trusted holdout no ingest changes, rejects the model they train.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.features import FEATURE_NAMES, TARGET
from core.model_card import load_model, md5_file
from monitoring import db
from monitoring.ingest import PROVENANCE, QUARANTINE, read_provenance, read_version
from monitoring.screen import screen
from tests.conftest import run_mlops
from tests.integration.conftest import command_env
from tests.monitoring.conftest import DATA_FILE, ingest, served

ATTACKER = "203.0.113.9"


def heavy_v8s(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The attack's cars and the consumption claimed for them."""
    rng = np.random.default_rng(seed)
    cars = np.column_stack(
        [
            np.full(n, 8),
            rng.integers(300, 455, n),
            rng.integers(150, 230, n),
            rng.integers(4000, 5000, n),
            rng.uniform(10, 14, n).round(1),
            rng.integers(2015, 2025, n),
            np.ones(n),
        ]
    ).astype(float)
    return cars, rng.uniform(36, 40, n).round(1)


@pytest.mark.parametrize("n", [80, 300])
def test_poisoned_feedback_is_quarantined_and_accepted_anyway_the_gate_rejects_it(project, tmp_path, served_dir, n):
    assert run_mlops("data", "pull", cwd=project, env=command_env()).returncode == 0  # models, trusted holdout
    original, provenance = read_version(project, DATA_FILE), (project / PROVENANCE).read_bytes()
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    model, card = load_model(served_dir)
    cars, claimed = heavy_v8s(n)
    served(db.connect(url), model, card, cars, "atk", claimed, client=ATTACKER)

    screened = ingest(project, "--from-feedback", "--db", url)
    assert screened.returncode == 0, screened.stderr
    assert f"{n} feedback row(s) held in {QUARANTINE}" in screened.stdout
    assert read_version(project, DATA_FILE) == original, "nothing added"
    assert md5_file(project / DATA_FILE) == original.md5
    held = pd.read_csv(project / QUARANTINE)
    assert len(held) == n and set(held["client"]) == {ATTACKER} and (held["residual"] > 15).all()
    assert set(held["reason"]) == {"residual"}, "the most telling reason of several is named"

    accepted = ingest(project, "--from-feedback", "--db", url, "--accept-quarantined")
    assert accepted.returncode == 0 and f"{n} added" in accepted.stdout, accepted.stdout + accepted.stderr
    lines = read_provenance(project)
    assert (lines["client"] == ATTACKER).sum() == n and set(lines.loc[lines["client"] == ATTACKER, "source"]) == {
        "feedback"
    }

    assert run_mlops("train", "--out", "models/poisoned", cwd=project, env=command_env()).returncode == 0
    gate = run_mlops("gate", "--candidate", "models/poisoned", "--champion", "production", cwd=project,
                     env=command_env())  # fmt: skip
    assert gate.returncode == 3, gate.stdout + gate.stderr
    (increase,) = [line for line in gate.stdout.splitlines() if line.startswith("trusted_rmse_increase_vs_champion")]
    assert increase.endswith("FAIL") and float(increase.split()[1]) > 0.05, gate.stdout  # measured: +0.18, +0.16
    assert "rolling holdout" in gate.stdout

    removed = run_mlops("data", "remove-source", "--source", "feedback", "--client", ATTACKER, cwd=project,
                        env=command_env())  # fmt: skip
    assert removed.returncode == 0 and f"{n} row(s) removed" in removed.stdout, removed.stdout + removed.stderr
    assert read_version(project, DATA_FILE) == original, "removing the source restores the data version before it"
    assert (project / PROVENANCE).read_bytes() == provenance


def frame(residuals, clients, reporters=None, outside=None, model="m" * 64) -> pd.DataFrame:
    """Feedback rows as `feedback_rows` returns them, for the screen: predicted 20 mpg each."""
    n = len(residuals)
    return pd.DataFrame(
        {
            TARGET: [f"{20 + r:g}" for r in residuals],
            **{name: ["1"] * n for name in FEATURE_NAMES},
            "predicted_mpg": [20.0] * n,
            "client": clients,
            "reporter": reporters or [""] * n,
            "outside_training_range": outside or [""] * n,
            "model_id": [model] * n,
        }
    )


def test_the_screen_holds_large_residuals_in_units_of_the_models_holdout_rmse():
    rows = frame([2.0, -5.9, 6.1, -9.0], ["a", "b", "c", "d"])
    assert screen(rows, 3.0, 5, {"m" * 64: 2.0}).tolist() == ["", "", "residual", "residual"]
    assert screen(rows, 3.0, 5, {"m" * 64: 4.0}).tolist() == ["", "", "", ""], "a worse model, a wider screen"
    assert screen(rows, 3.0, 5, {"x" * 64: 1.0, "y" * 64: 2.5}).tolist() == ["", "", "", "residual"], (
        "a model without a card is judged by the largest known unit"
    )


def test_the_screen_holds_every_row_of_a_client_beyond_its_share_and_cars_outside_the_ranges():
    burst = frame([0.5] * 6 + [0.5], ["a"] * 6 + ["b"])
    assert screen(burst, 3.0, 5, {}).tolist() == ["burst"] * 6 + [""]
    assert screen(burst.iloc[1:], 3.0, 5, {}).tolist() == [""] * 6, "five from one client pass"
    outside = frame([0.5, 0.5], ["a", "b"], outside=["", "model_year"])
    assert screen(outside, 3.0, 5, {}).tolist() == ["", "outside the training ranges"]


def test_a_reporter_with_a_token_is_trusted_and_not_screened():
    rows = frame([12.0] * 7, ["a"] * 7, reporters=["garage"] * 7, outside=["weight"] * 7)
    assert screen(rows, 3.0, 5, {"m" * 64: 2.0}).tolist() == [""] * 7
