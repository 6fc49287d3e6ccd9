"""`mlops data ingest`: new rows become a new DVC version on a real remote, or nothing changes at all.

Each test runs in a copy of the project (git + DVC, the committed folder remote
``data/dvc-remote``); the merge-request test pushes to a bare git remote standing in
for GitLab (tests/gitops/conftest.py).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.worktree import copy_worktree, make_remote
from core.model_card import load_model, md5_file
from monitoring import db
from monitoring.ingest import (
    JOURNAL,
    MAX_ROWS,
    RAW_COLUMNS,
    read_provenance,
    read_version,
    row_key,
)
from tests.conftest import MLOPS, SEED_DATA, one_line_error, run_mlops
from tests.integration.conftest import command_env, sh
from tests.monitoring.conftest import DATA_FILE, DVC_FILE, ingest, sample, served, snapshot
from training.data import read_table

HEADER = "mpg,cyl,dpl,hp,wght,acc,year,org,name\n"
NEW_CARS = "31.5,4,98,68,2045,18.5,81,3,honda civic 1500 gl\n24,4,121,110,2800,15.4,81,2,saab 900s\n"
EXISTING = "18,8,307,130,3507,12,70,1,chevrolet chevelle malibu\n"


def remote_object(project: Path, md5: str) -> Path:
    return project / "data" / "dvc-remote" / "files" / "md5" / md5[:2] / md5[2:]


def test_new_rows_become_a_new_version_on_the_remote_and_pull_back(project, tmp_path):
    original = (project / DATA_FILE).read_text()
    rows_before = len(original.splitlines()) - 1
    new = tmp_path / "new.csv"
    new.write_text(HEADER + NEW_CARS + EXISTING)
    result = ingest(project, new)
    assert result.returncode == 0, result.stderr
    version = read_version(project, DATA_FILE)
    assert result.stdout.startswith(f"data version {version.md5[:12]}")
    assert f"{rows_before} -> {rows_before + 2} rows, 2 added, 1 duplicate(s) dropped" in result.stdout
    text = (project / DATA_FILE).read_text()
    assert text == original + NEW_CARS
    assert md5_file(project / DATA_FILE) == version.md5 and (project / DATA_FILE).stat().st_size == version.size
    assert remote_object(project, version.md5).read_bytes() == text.encode()
    assert not (project / JOURNAL).exists() and not list((project / ".mlops" / "ingest").iterdir())
    status = sh("dvc", "status", "validate", cwd=project).stdout
    assert "modified:" in status and "data/auto-mpg.csv" in status, "`dvc repro` will run on the new version"
    # the remote really holds it: without cache and workspace file, a pull brings this version back
    shutil.rmtree(project / ".dvc" / "cache")
    (project / DATA_FILE).unlink()
    assert run_mlops("data", "pull", cwd=project, env=command_env()).returncode == 0
    assert md5_file(project / DATA_FILE) == version.md5


def test_canonical_columns_and_four_digit_years_are_written_as_the_data_file_writes_them(project, tmp_path):
    new = tmp_path / "canonical.csv"
    new.write_text(
        "mpg,cylinders,displacement,horsepower,weight,acceleration,model_year,origin\n"
        "18,8,307,130,3507,12,1970,1\n"  # the first car of the data, in canonical form: a duplicate
        "34.5,4.0,86,70,1945,16.8,1977,3\n"
    )
    result = ingest(project, new)
    assert result.returncode == 0, result.stderr
    assert "1 added, 1 duplicate(s) dropped" in result.stdout
    assert (project / DATA_FILE).read_text().endswith("\n34.5,4,86,70,1945,16.8,77,3,\n")


def test_an_invalid_row_is_named_and_nothing_changes(project, tmp_path):
    before = snapshot(project)
    new = tmp_path / "bad.csv"
    new.write_text(HEADER + NEW_CARS + "22,4,140,ninety,2600,16,78,1,bad car\n")
    result = ingest(project, new)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "line 4" in result.stderr and "horsepower" in result.stderr and "nothing changed" in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(project) == before


def test_rows_already_in_the_data_change_nothing(project, tmp_path):
    before = snapshot(project)
    new = tmp_path / "old.csv"
    new.write_text(HEADER + EXISTING + EXISTING)
    result = ingest(project, new)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("nothing new: 2 duplicate row(s)")
    assert snapshot(project) == before


def test_a_hand_edited_data_file_is_not_overwritten(project, tmp_path):
    with (project / DATA_FILE).open("a") as data:
        data.write("25,4,98,80,2100,16,82,1,my own car\n")
    before = snapshot(project)
    new = tmp_path / "new.csv"
    new.write_text(HEADER + NEW_CARS)
    result = ingest(project, new)
    assert result.returncode == 1
    assert "dvc add data/auto-mpg.csv" in one_line_error(result)
    assert snapshot(project) == before


def test_an_ingest_interrupted_after_its_commit_point_is_finished_by_the_next(project, tmp_path):
    """The state a kill between the .dvc rename and the data rename leaves: the .dvc names the new
    version, the workspace still holds the old one, the journal says so."""
    original = (project / DATA_FILE).read_bytes()
    previous = read_version(project, DATA_FILE)
    first = tmp_path / "first.csv"
    first.write_text(HEADER + NEW_CARS)
    assert ingest(project, first).returncode == 0
    version = read_version(project, DATA_FILE)
    (project / DATA_FILE).write_bytes(original)
    (project / JOURNAL).write_text(json.dumps({"from": previous.md5, "to": version.md5, "size": version.size}))
    second = tmp_path / "second.csv"
    second.write_text(HEADER + "26.1,4,139,71,2561,14.1,79,1,test coupe\n")
    result = ingest(project, second)
    assert result.returncode == 0, result.stderr
    assert f"(was {version.md5[:12]})" in result.stdout
    text = (project / DATA_FILE).read_text()
    assert text.endswith(NEW_CARS + "26.1,4,139,71,2561,14.1,79,1,test coupe\n")
    assert md5_file(project / DATA_FILE) == read_version(project, DATA_FILE).md5 and not (project / JOURNAL).exists()


def test_feedback_becomes_a_data_merge_request_that_checks_out_with_its_object(project, tmp_path, trained_dir, dataset):
    remote = make_remote(tmp_path / "remote.git")
    sh("git", "remote", "add", "origin", remote, cwd=project)
    sh("git", "push", "-q", "origin", "main", cwd=project)
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    model, card = load_model(trained_dir)
    cars, actual = sample(dataset, 12, seed=3)
    served(db.connect(url), model, card, cars, "fb", actual[:5] + 1.5)
    liar, _ = sample(dataset, 2, seed=4)
    served(db.connect(url), model, card, liar, "liar", np.array([75.0, 70.0]), time0=1.8e9, client="198.51.100.7")
    uncommitted = tmp_path / "uncommitted.csv"  # a plain ingest into the workspace, never committed
    uncommitted.write_text(HEADER + "26.1,4,139,71,2561,14.1,79,1,test coupe\n")
    assert ingest(project, uncommitted).returncode == 0
    before = snapshot(project)

    result = ingest(project, "--from-feedback", "--db", url, "--branch", "mlops/data", "--commit", "--push")
    assert result.returncode == 0, result.stderr
    assert "5 added" in result.stdout and "pushed" in result.stdout and "to origin mlops/data" in result.stdout
    assert "next:" not in result.stdout
    after = snapshot(project)
    assert {k: v for k, v in after.items() if "cache" not in k} == {
        k: v for k, v in before.items() if "cache" not in k
    }, "the checkout is never touched: not its data, not its DVC remote folder"
    (push,) = (json.loads(line) for line in (remote / "pushes.jsonl").read_text().splitlines()[1:])
    assert "merge_request.create" in push["options"] and "merge_request.target=main" in push["options"]
    (description,) = [o for o in push["options"] if o.startswith("merge_request.description=")]
    shown = description.replace("\\n", "\n")
    assert "**5 new row(s)**" in shown and "Sources: feedback 5." in shown
    assert "| weight |" in shown and "| mpg |" in shown, "each feature's distribution, added against existing"
    assert "Residuals of the added rows" in shown and "beyond ±5: 0" in shown
    assert "**Quarantined 2 row(s)** (residual 2)" in shown and "data/quarantine.csv" in shown
    assert "2 feedback row(s) held" in result.stdout

    checkout = tmp_path / "checkout"
    sh("git", "clone", "-q", "-b", "mlops/data", remote, checkout, cwd=tmp_path)
    assert run_mlops("data", "pull", cwd=checkout, env=command_env()).returncode == 0
    rows = (checkout / DATA_FILE).read_text().splitlines()
    committed = sh("git", "show", f"main:{DVC_FILE}", cwd=project).stdout
    assert f"md5: {md5_file(checkout / DATA_FILE)}" not in committed
    assert "test coupe" not in "\n".join(rows), "the workspace's uncommitted rows did not ride along"
    assert len(rows) == len(before[str(DATA_FILE)].decode().splitlines()) - 1 + 5, "the target's rows + 5 feedbacks"
    assert [r.rsplit(",", 1)[1] for r in rows[-5:]] == [f"feedback fb-{i}/0" for i in range(5)]
    held = pd.read_csv(checkout / "data" / "quarantine.csv")
    assert held["client"].tolist() == ["198.51.100.7"] * 2 and held["reason"].tolist() == ["residual"] * 2
    feedback = read_provenance(checkout).query("source == 'feedback'")
    assert feedback["reference"].tolist() == [f"fb-{i}/0" for i in range(5)]
    version = read_version(checkout, DATA_FILE)
    assert md5_file(checkout / DATA_FILE) == version.md5
    assert remote_object(checkout, version.md5).is_file() and not remote_object(project, version.md5).exists()


def test_no_feedback_changes_nothing_and_a_missing_database_is_an_error(project, tmp_path):
    before = snapshot(project)
    db.connect(f"sqlite:///{tmp_path / 'empty.db'}")  # what the monitor creates when it starts
    result = ingest(project, "--from-feedback", "--db", f"sqlite:///{tmp_path / 'empty.db'}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no feedback to ingest: nothing changed"
    line = one_line_error(ingest(project, "--from-feedback", "--db", f"sqlite:///{tmp_path / 'typo.db'}"))
    assert "no monitor database at" in line and "check --db" in line
    assert not (tmp_path / "typo.db").exists(), "a mistyped path does not become an empty database"
    assert snapshot(project) == before


def test_kill_9_at_any_point_keeps_the_previous_version_and_a_retry_succeeds(root, tmp_path):
    """SIGKILL at moments spread over a whole ingest (measured first): after each, the .dvc file names
    the previous version or the new one, the version it names is in the remote, and the same
    command run again ends with the new rows in the data exactly once."""
    new = tmp_path / "new.csv"
    new.write_text(HEADER + NEW_CARS)
    timed = copy_worktree(root, tmp_path / "timed")
    shutil.copy(SEED_DATA, timed / DATA_FILE)
    started = time.monotonic()
    assert ingest(timed, new).returncode == 0
    duration = time.monotonic() - started
    outcomes = set()
    for attempt, delay in enumerate(np.linspace(0.05, duration, 8)):
        project = copy_worktree(root, tmp_path / f"try{attempt}")
        shutil.copy(SEED_DATA, project / DATA_FILE)
        previous = read_version(project, DATA_FILE)
        process = subprocess.Popen(
            [str(MLOPS), "data", "ingest", str(new)], cwd=project, env=command_env(), stdout=subprocess.DEVNULL
        )
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        named = read_version(project, DATA_FILE).md5
        assert named in (previous.md5, read_version(timed, DATA_FILE).md5)
        assert remote_object(project, named).is_file(), "the version the .dvc file names can be pulled"
        outcomes.add("new" if named != previous.md5 else "previous")
        again = ingest(project, new)
        assert again.returncode == 0, again.stderr
        assert (project / DATA_FILE).read_text() == SEED_DATA.read_text() + NEW_CARS
        named = read_version(project, DATA_FILE).md5
        assert md5_file(project / DATA_FILE) == named == read_version(timed, DATA_FILE).md5
    assert "previous" in outcomes, "some kills landed before the commit point"


def test_a_nul_byte_a_formula_or_too_many_rows_is_refused_and_nothing_changes(project, tmp_path):
    """Review findings: ``35\\0garbage`` was stored as 35 (and passed `data validate`), a name starting with
    ``=`` went in verbatim for a spreadsheet to run, a million rows took 1.7 GB."""
    before = snapshot(project)
    nul = tmp_path / "nul.csv"
    nul.write_bytes(HEADER.encode() + NEW_CARS.encode() + b"35\x00garbage,4,98,68,2045,18.5,81,3,nul car\n")
    for command in (("data", "ingest", nul), ("data", "validate", nul)):
        line = one_line_error(run_mlops(*command, cwd=project, env=command_env()))
        assert "line 4, column 1: a control character (byte 0x00)" in line, line
    formula = tmp_path / "formula.csv"
    formula.write_text(HEADER + '31,4,98,68,2045,18.5,81,3,"=HYPERLINK(""http://x"",""car"")"\n')
    result = ingest(project, formula)
    assert result.returncode == 1 and "line 2" in result.stderr and "spreadsheet formula" in result.stderr
    many = tmp_path / "many.csv"
    many.write_text(HEADER + NEW_CARS * (MAX_ROWS // 2) + NEW_CARS[: NEW_CARS.index("\n") + 1])
    line = one_line_error(ingest(project, many))
    assert f"{MAX_ROWS + 1} data rows, at most {MAX_ROWS}" in line and "split the file" in line
    assert snapshot(project) == before


def test_numbers_keep_every_digit_they_were_given(project, tmp_path):
    new = tmp_path / "precise.csv"
    new.write_text(HEADER + "31.55,4,98.123456,68,2045.5,18.1234567,81,3,precise car\n")
    assert ingest(project, new).returncode == 0
    assert (project / DATA_FILE).read_text().endswith("\n31.55,4,98.123456,68,2045.5,18.1234567,81,3,precise car\n")


def test_a_hand_edit_after_an_interrupted_ingest_is_never_overwritten(project, tmp_path):
    """The README's promise, which `recover()` broke: killed after the .dvc rename, then the CSV edited by hand;
    the next ingest stops and names both fixes, the edit intact."""
    previous = read_version(project, DATA_FILE)
    first = tmp_path / "first.csv"
    first.write_text(HEADER + NEW_CARS)
    assert ingest(project, first).returncode == 0
    version = read_version(project, DATA_FILE)
    edited = SEED_DATA.read_text() + "25,4,98,80,2100,16,82,1,my own car\n"
    (project / DATA_FILE).write_text(edited)
    (project / JOURNAL).write_text(json.dumps({"from": previous.md5, "to": version.md5, "size": version.size}))
    line = one_line_error(ingest(project, first))
    assert "edited after an interrupted ingest" in line and "dvc add" in line and "dvc checkout" in line
    assert (project / DATA_FILE).read_text() == edited and (project / JOURNAL).is_file()


def test_every_data_row_has_one_provenance_line_after_adds_and_removals(project, tmp_path):
    """The invariant a data merge request and `remove-source` rely on, kept by every change."""

    def check() -> pd.DataFrame:
        table = read_table(project / DATA_FILE)
        keys = [row_key(values) for values in table[RAW_COLUMNS].itertuples(index=False)]
        lines = read_provenance(project)
        assert sorted(keys) == sorted(lines["row"]), "one provenance line per data row, no orphan"
        return lines

    assert set(check()["source"]) == {"seed"}
    for name, rows in (("a.csv", NEW_CARS), ("b.csv", "26.1,4,139,71,2561,14.1,79,1,test coupe\n")):
        (tmp_path / name).write_text(HEADER + rows)
        assert ingest(project, tmp_path / name).returncode == 0
    assert check().query("source == 'csv'")["reference"].value_counts().to_dict() == {"a.csv": 2, "b.csv": 1}
    result = run_mlops("data", "remove-source", "--source", "csv", "--reference", "a.csv", cwd=project,
                       env=command_env())  # fmt: skip
    assert result.returncode == 0 and "2 row(s) removed" in result.stdout, result.stdout + result.stderr
    assert check().query("source == 'csv'")["reference"].tolist() == ["b.csv"]
    assert (project / DATA_FILE).read_text() == SEED_DATA.read_text() + "26.1,4,139,71,2561,14.1,79,1,test coupe\n"


def test_the_data_is_where_params_yaml_says(project, tmp_path):
    """data.path moves ingest and `mlops data pull` with training (they used to hard-code data/auto-mpg.csv)."""
    sh("dvc", "mv", DATA_FILE, "data/cars.csv", cwd=project)
    params = project / "params.yaml"
    params.write_text(params.read_text().replace(f"path: {DATA_FILE}", "path: data/cars.csv", 1))
    new = tmp_path / "new.csv"
    new.write_text(HEADER + NEW_CARS)
    result = ingest(project, new)
    assert result.returncode == 0 and "2 added" in result.stdout, result.stdout + result.stderr
    assert (project / "data/cars.csv").read_text().endswith(NEW_CARS)
    assert md5_file(project / "data/cars.csv") == read_version(project, Path("data/cars.csv")).md5
    (project / "data/cars.csv").unlink()
    assert run_mlops("data", "pull", cwd=project, env=command_env()).returncode == 0
    assert (project / "data/cars.csv").read_text().endswith(NEW_CARS), "pulled from where params.yaml says"


def test_quarantine_csv_is_written_only_with_rows_held_and_only_once_the_ingest_is_made(
    project, tmp_path, trained_dir, dataset
):
    """A first-hour finding: a failed ingest left a header-only data/quarantine.csv behind, and a successful one
    with nothing held created it empty."""
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    model, card = load_model(trained_dir)
    cars, actual = sample(dataset, 6, seed=5)
    served(db.connect(url), model, card, cars[:3], "honest", actual[:3])
    quarantine = project / "data" / "quarantine.csv"
    assert ingest(project, "--from-feedback", "--db", url).returncode == 0
    assert not quarantine.exists(), "nothing held: no file"

    served(db.connect(url), model, card, cars[3:], "mixed", np.array([actual[3], 75.0, 70.0]), time0=1.8e9)
    with (project / DATA_FILE).open("a") as data:  # the ingest refuses a hand-edited data file
        data.write("25,4,98,80,2100,16,82,1,my own car\n")
    before = snapshot(project)
    failed = ingest(project, "--from-feedback", "--db", url)
    assert "dvc add data/auto-mpg.csv" in one_line_error(failed)
    assert not quarantine.exists() and snapshot(project) == before, "a failed ingest writes nothing"
