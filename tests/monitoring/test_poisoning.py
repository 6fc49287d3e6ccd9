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


def late_v8s(project, n: int, seed: int) -> np.ndarray:
    """Near-copies of the seed's real 1977-82 V8s: the region the trusted holdout holds almost nothing of."""
    from training.data import load_dataset

    frame = load_dataset(project / "data/seed/auto-mpg.csv").frame
    rows = frame[(frame["cylinders"] == 8) & (frame["model_year"] >= 1977)].sample(n, replace=True, random_state=seed)
    cars = rows[list(FEATURE_NAMES)].to_numpy(dtype=float)
    cars[:, FEATURE_NAMES.index("weight")] *= 1 + np.random.default_rng(seed).uniform(-0.01, 0.01, n)
    return cars.round(1)


def holdout_cars(project) -> np.ndarray:
    """The trusted holdout's own cars: readable by anyone with the repository (its DVC remote is committed)."""
    from training.data import load_dataset

    return load_dataset(project / "data/trusted/holdout.csv").frame[list(FEATURE_NAMES)].to_numpy(dtype=float)


def report_from(engine, model, card, cars: np.ndarray, claimed: np.ndarray, addresses: int, prefix: str) -> None:
    """The reports spread over ``addresses`` clients, none beyond the screen's per-client share."""
    for index, (group, values) in enumerate(
        zip(np.array_split(cars, addresses), np.array_split(claimed, addresses), strict=True)
    ):
        served(engine, model, card, group, f"{prefix}{index}", values, client=f"198.51.100.{index + 1}")


@pytest.mark.parametrize(
    ("attack", "bias", "addresses"),
    [("late-v8", 2.0, 8), ("late-v8", 5.0, 8), ("late-v8", 7.0, 8), ("trusted-holdout", 6.5, 17)],
    ids=["late-v8+2", "late-v8+5", "late-v8+7", "holdout+6.5"],
)
def test_in_tolerance_poisoning_passes_the_screen_and_the_gate_holds_the_model_it_trains(
    project, tmp_path, served_dir, attack, bias, addresses
):
    """The adversarial review's in-tolerance attack: reports near the serving model's own estimate (+2 to +7 mpg,
    inside the screen's 3 RMSE), at most 5 per address, on real cars of a region the trusted holdout barely
    covers, or on the trusted holdout's own cars. The screen cannot tell them from honest reports, and a reviewer
    accepts them; the gate holds the model they train: its predictions there moved against the same algorithm
    fitted on the seed alone (before: every rule passed, the trusted RMSE even improved)."""
    assert run_mlops("data", "pull", cwd=project, env=command_env()).returncode == 0
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    model, card = load_model(served_dir)
    cars = late_v8s(project, 40, seed=int(bias)) if attack == "late-v8" else holdout_cars(project)
    report_from(db.connect(url), model, card, cars, model.predict(cars) + bias, addresses, "atk")

    added = ingest(project, "--from-feedback", "--db", url, "--accept-quarantined")
    assert added.returncode == 0 and f"{len(cars)} added" in added.stdout, added.stdout + added.stderr

    assert run_mlops("train", "--out", "models/poisoned", cwd=project, env=command_env()).returncode == 0
    gate = run_mlops("gate", "--candidate", "models/poisoned", "--champion", "production", cwd=project,
                     env=command_env())  # fmt: skip
    assert gate.returncode == 3, gate.stdout + gate.stderr
    (rule,) = [line for line in gate.stdout.splitlines() if line.startswith("untrusted_shift_by_region")]
    assert rule.endswith("FAIL"), gate.stdout
    print(f"{attack} +{bias}: {rule.split()[1]} mpg; {gate.stdout.splitlines()[-2]}")


def test_an_honest_update_of_the_same_size_passes(project, tmp_path, served_dir):
    """The control: 40 real cars (seed rows of the training side, weight nudged by up to 2 %, their true
    consumption), reported from 8 addresses, move no region by more than a fraction of an mpg; the gate passes
    them. (The trusted holdout's cars reported again are copies: tests/model/test_gate.py.)"""
    from training.data import holdout_split, load_dataset
    from training.params import load_params

    assert run_mlops("data", "pull", cwd=project, env=command_env()).returncode == 0
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    model, card = load_model(served_dir)
    split = load_params(project / "params.yaml").split
    seed_rows, _ = holdout_split(load_dataset(project / "data/seed/auto-mpg.csv").frame, split.test_size, split.seed)
    rows = seed_rows.sample(40, random_state=7)
    cars = rows[list(FEATURE_NAMES)].to_numpy(dtype=float)
    cars[:, FEATURE_NAMES.index("weight")] *= 1 + np.random.default_rng(7).uniform(-0.02, 0.02, 40)
    report_from(db.connect(url), model, card, cars.round(), rows[TARGET].to_numpy(dtype=float), 8, "honest")
    added = ingest(project, "--from-feedback", "--db", url, "--accept-quarantined")
    assert added.returncode == 0, added.stdout + added.stderr
    assert run_mlops("train", "--out", "models/honest", cwd=project, env=command_env()).returncode == 0
    gate = run_mlops("gate", "--candidate", "models/honest", cwd=project, env=command_env())
    (rule,) = [line for line in gate.stdout.splitlines() if line.startswith("untrusted_shift_by_region")]
    assert rule.endswith("pass") and float(rule.split()[1]) < 0.5, gate.stdout
    assert gate.returncode == 0, gate.stdout + gate.stderr
