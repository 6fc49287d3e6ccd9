"""Both feedback loops end to end, all local and all real but the cluster.

The predictor (`mlops serve --log-url`) posts the CloudEvents KServe's logger would (its
own hook, serving/payload_log.py: KServe's agent is a Go sidecar that needs a cluster)
to the real monitor; requests go through nginx with the repo's nginx.conf; feedback is
typed into the page in headless Chromium. Then: a report that stays quiet on cars like
the training data and alerts (exit 4) on a shifted batch, the feedback ingested as a
new DVC data version on a branch, the committed compiled pipeline run on that branch
(a candidate, gated against production) and the staging bump pushed to a bare git
remote standing in for GitLab.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from bench.worktree import copy_worktree, make_remote
from core.features import FEATURE_NAMES
from core.model_card import md5_file, read_card
from core.uri import parse_store_uri
from infra.http import free_port
from infra.nginx import running_nginx
from infra.overlays import model_file, with_model_uri
from infra.settings import Settings
from infra.store import open_store
from monitoring import db
from monitoring.ingest import read_version
from tests.conftest import one_line_error, run_mlops
from tests.integration.conftest import command_env, sh
from tests.monitoring.conftest import DATA_FILE, running_monitor, sample
from tests.serving.conftest import fill, running_server

pytestmark = pytest.mark.slow
WEIGHT_FACTOR = 1.2
FLEET_TOKEN = "fleet-reporter-token-0123456789"  # noqa: S105 - a test token


@pytest.fixture(scope="module")
def site(tmp_path_factory, trained_dir, root):
    """Monitor (SQLite), predictor logging to it, nginx in front of both; yields the URLs and the db. The
    owners who report consumptions here are a known reporter with a token (their feedback is trusted)."""
    tmp = tmp_path_factory.mktemp("loop")
    db_url, port = f"sqlite:///{tmp / 'monitor.db'}", free_port()
    with (
        running_monitor(db_url, env={"MLOPS_FEEDBACK_TOKENS": f"fleet:{FLEET_TOKEN}"}) as (monitor, _),
        running_server(str(trained_dir), tmp, args=("--log-url", f"{monitor}/")) as (predictor, _, _log),
        running_nginx(root / "k8s" / "base" / "client", predictor, port, monitor),
    ):
        yield {"page": f"http://127.0.0.1:{port}", "predictor": predictor, "monitor": monitor, "db": db_url}


def predict(url: str, cars, request_id: str | None = None) -> httpx.Response:
    headers = {"X-Request-Id": request_id} if request_id else {}
    body = {"instances": [list(map(float, c)) for c in cars]}
    return httpx.post(f"{url}/v1/models/mpg:predict", json=body, headers=headers)


def logged(site, count: int, timeout: float = 20) -> dict:
    """The monitor's summary once it holds ``count`` predictions (the payload log is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        summary = httpx.get(f"{site['monitor']}/summary").json()
        if summary["predictions"] >= count or time.monotonic() > deadline:
            return summary
        time.sleep(0.1)


def feedback(site, request_id: str, token: str | None = FLEET_TOKEN, **actual) -> httpx.Response:
    """One post, at once: the monitor holds it while the prediction is on its way from the payload logger.
    With the fleet's token unless ``token`` is None (anyone on the page)."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{site['page']}/feedback", json={"request_id": request_id, **actual}, headers=headers,
                      timeout=30)  # fmt: skip


def test_the_id_the_caller_gets_is_the_one_feedback_refers_to_and_the_page_chooses_it(site):
    before = httpx.get(f"{site['monitor']}/summary").json()["predictions"]
    mine = predict(site["page"], [[4, 140, 90, 2800, 15.5, 1976, 1]], "car-42")
    theirs = predict(site["page"], [[6, 200, 100, 3200, 15, 1978, 1]])
    ids = [mine.headers["x-request-id"], theirs.headers["x-request-id"]]
    assert all(len(i) == 32 for i in ids) and "car-42" not in ids, "nginx's own ids, never the caller's"
    assert logged(site, before + 2)["predictions"] == before + 2
    stored = feedback(site, ids[1], token=None, actual_l_per_100km=11.5)  # anyone on the page
    assert stored.status_code == 201 and stored.json()["actual_mpg"] == pytest.approx(235.2145 / 11.5, rel=1e-3)
    assert feedback(site, ids[0], actual_mpg=27).status_code == 201
    for unknown in ("car-42", "never-served"):
        answer = feedback(site, unknown, actual_mpg=20)
        assert answer.status_code == 404 and answer.json()["error"].startswith("request_id:"), unknown


def test_callers_racing_under_one_id_each_get_their_own_prediction(site):
    """The review's race: concurrent heavy V8s and light cars all sent with one X-Request-Id, which the monitor
    used to store crosswise (a V8 with the light car's 37 mpg). Through the page each gets its own id, and every
    stored row is the car's own estimate."""
    from concurrent.futures import ThreadPoolExecutor

    light, heavy = [4, 91, 67, 1850, 13.8, 1980, 3], [8, 351, 142, 3955, 13.2, 1981, 1]
    before = httpx.get(f"{site['monitor']}/summary").json()["predictions"]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda car: predict(site["page"], [car], "same-id"), [light, heavy] * 40))
    ids = {a.headers["x-request-id"]: a.json()["predictions"][0]["mpg"] for a in answers}
    assert len(ids) == 80 and "same-id" not in ids
    assert logged(site, before + 80)["predictions"] == before + 80
    engine = db.connect(site["db"], create=False)
    with engine.connect() as connection:
        query = sa.select(db.predictions).where(db.predictions.c.request_id.in_(list(ids)))
        stored = list(connection.execute(query).mappings())
    assert len(stored) == 80
    for row in stored:
        assert row["mpg"] == pytest.approx(ids[row["request_id"]], abs=1e-9)
        assert (row["weight"] == heavy[3]) == (row["mpg"] < 30), "each car with its own estimate"


def test_the_predictor_takes_the_id_kserves_logger_takes(site):
    """KServe's agent names an event by the Ce-Id header; the predictor echoes that one first."""
    car = {"instances": [[4, 140, 90, 2800, 15.5, 1976, 1]]}
    url = f"{site['predictor']}/v1/models/mpg:predict"
    both = httpx.post(url, json=car, headers={"Ce-Id": "from-agent", "X-Request-Id": "from-caller"})
    assert both.headers["x-request-id"] == "from-agent"
    bad = httpx.post(url, json=car, headers={"X-Request-Id": "no spaces allowed"})
    assert bad.status_code == 400 and bad.json()["error"].startswith("x-request-id:")


def report_actual(browser, value: str) -> None:
    """Type ``value`` into the page's "actual consumption" field (replacing what is there) and send it."""
    from selenium.webdriver.common.by import By

    field = browser.find_element(By.ID, "actual")
    field.clear()
    field.send_keys(value)
    browser.find_element(By.CSS_SELECTOR, "#feedback-form button[type=submit]").click()


def test_the_page_reports_the_actual_consumption(browser, site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(site["page"] + "/")
    car = {"cylinders": "4", "displacement": "1.8", "horsepower": "66", "weight": "1100", "acceleration": "15"}
    fill(browser, {**car, "model_year": "1979", "origin": "3"})
    WebDriverWait(browser, 10).until(ec.visibility_of_element_located((By.ID, "feedback")))
    report_actual(browser, "7.9")
    status = WebDriverWait(browser, 15).until(lambda b: b.find_element(By.ID, "feedback-status").text)
    assert status == "Thank you: 7.9 L/100 km recorded for this estimate."
    assert browser.find_element(By.ID, "actual-error").text == ""
    summary = httpx.get(f"{site['monitor']}/summary").json()
    assert summary["feedback"] >= 1

    report_actual(browser, "-3")
    error = WebDriverWait(browser, 5).until(lambda b: b.find_element(By.ID, "actual-error").text)
    assert error == "enter the consumption you observed, a positive number"
    report_actual(browser, "0.5")  # 470 mpg: the monitor names the field
    error = WebDriverWait(browser, 5).until(
        lambda b: b.find_element(By.ID, "actual-error").text if "plausible" in b.page_source else None
    )
    assert error.startswith("0.5 is not a plausible consumption"), error


def test_the_page_says_so_when_the_monitor_is_down(browser, site, root):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    dead, port = f"http://127.0.0.1:{free_port()}", free_port()
    with running_nginx(root / "k8s" / "base" / "client", site["predictor"], port, dead):
        browser.get(f"http://127.0.0.1:{port}/")
        fill(browser, {"cylinders": "4", "displacement": "1.8", "horsepower": "66", "weight": "1100"})
        WebDriverWait(browser, 10).until(ec.visibility_of_element_located((By.ID, "feedback")))
        report_actual(browser, "7.9")
        error = WebDriverWait(browser, 10).until(lambda b: b.find_element(By.ID, "actual-error").text)
    assert error == "The feedback service is unavailable (HTTP 502). Try again later."
    assert browser.find_element(By.ID, "feedback-status").text == ""


def heavier(cars: np.ndarray) -> np.ndarray:
    """Heavier cars with bigger engines than the training data's."""
    out = cars.copy()
    for name in ("weight", "displacement", "horsepower"):
        out[:, FEATURE_NAMES.index(name)] *= WEIGHT_FACTOR
    return out


def report(site, trained_dir, since: str, out: Path, *more: str):
    return run_mlops(
        "monitor",
        "report",
        "--db",
        site["db"],
        "--model",
        trained_dir,
        "--since",
        since,
        "--metrics-url",
        f"{site['predictor']}/metrics",
        "--out",
        out,
        *more,
    )


def test_monitor_then_update_knowledge_then_retrain(site, trained_dir, dataset, root, tmp_path):
    # 1. Cars like the training data, and their owners' actual consumption (the data's own): no alert.
    start = datetime.now(UTC).isoformat()
    before = httpx.get(f"{site['monitor']}/summary").json()["predictions"]
    cars, actual = sample(dataset, 160, seed=11)
    ids = []
    for car in cars:
        answer = predict(site["page"], [car])
        assert answer.status_code == 200
        ids.append(answer.headers["x-request-id"])  # the id the page gave it: the one feedback names
    assert logged(site, before + 160)["predictions"] == before + 160
    for index in range(40):
        assert feedback(site, ids[index], actual_mpg=float(actual[index])).status_code == 201
    calm = report(site, trained_dir, start, tmp_path / "calm.html")
    assert calm.returncode == 0, calm.stdout + calm.stderr
    html = (tmp_path / "calm.html").read_text()
    assert html.count("data:image/png;base64,") >= 2 and "ALERT" not in calm.stdout

    # 2. A shifted batch, heavier cars (fuel use in proportion to weight, as physics has it): exit 4.
    shift_start = datetime.now(UTC).isoformat()
    light, light_mpg = sample(dataset, 120, seed=12)
    shifted = heavier(light)
    for index, car in enumerate(shifted):
        answer = predict(site["page"], [car])
        assert answer.status_code == 200
        actual_mpg = round(float(light_mpg[index]) / WEIGHT_FACTOR, 1)
        assert feedback(site, answer.headers["x-request-id"], actual_mpg=actual_mpg).status_code == 201
    alarmed = report(site, trained_dir, shift_start, tmp_path / "shifted.json")
    assert alarmed.returncode == 4, alarmed.stdout + alarmed.stderr
    figures = json.loads((tmp_path / "shifted.json").read_text())
    assert {"weight", "displacement"} <= {d["name"] for d in figures["features"] if d["psi"] > 0.25}
    assert any(a.startswith("drift: weight PSI") for a in figures["alerts"])
    # The daily CronJob's form: the alerts recorded for Prometheus (the monitor's /metrics), the Job succeeding
    # (a failed one turns the Application Degraded in Argo CD; tests/cluster shows it on the real controllers).
    recorded = report(site, trained_dir, shift_start, tmp_path / "recorded.json", "--record")
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    assert f"recorded in the monitor's database: {len(figures['alerts'])} alert(s)" in recorded.stdout
    scraped = httpx.get(f"{site['monitor']}/metrics").text
    assert f"mpg_monitor_report_alerts {float(len(figures['alerts']))}" in scraped
    assert re.search(r"^mpg_monitor_report_timestamp_seconds \d", scraped, re.M)

    # 3. Update knowledge: the feedback becomes a new data version on a branch of the (bare) remote.
    #    The DVC remote is a folder outside the repository, as S3 is in production. Production
    #    still serves last year's model, a least-squares fit: the champion the retrain must beat.
    project = copy_worktree(root, tmp_path / "repo")
    shutil.copy(root / "data" / "seed" / "auto-mpg.csv", project / DATA_FILE)
    dvc_remote = tmp_path / "dvc-remote"
    shutil.copytree(project / "data" / "dvc-remote", dvc_remote)
    sh("dvc", "remote", "modify", "local", "url", dvc_remote, cwd=project)
    store = {"MLOPS_STORE_ROOT": str(tmp_path / "store"), "MLOPS_CACHE_DIR": str(tmp_path / "cache")}
    settings = Settings(store_root=tmp_path / "store", cache_dir=tmp_path / "cache")
    sh("mlops", "train", "--out", tmp_path / "older", "--set", "train.candidates=[linear]", cwd=project)
    champion = open_store(settings).publish(tmp_path / "older", settings.model_repository)
    production_file = project / model_file("production")
    production_file.write_text(with_model_uri(production_file.read_text(), parse_store_uri(champion.uri)))
    sh("git", "commit", "-qam", "the DVC remote outside the repository; production serves the older model", cwd=project)
    remote = make_remote(tmp_path / "remote.git")
    sh("git", "push", "-q", remote, "HEAD:refs/heads/main", cwd=project)
    sh("git", "remote", "add", "origin", remote, cwd=project)
    previous = read_version(project, DATA_FILE)
    ingested = run_mlops(
        "data", "ingest", "--from-feedback", "--since", start, "--db", site["db"],
        "--branch", "mlops/data", "--commit", "--push", cwd=project, env=command_env(),
    )  # fmt: skip
    assert ingested.returncode == 0, ingested.stderr
    new_rows = len(np.unique(np.column_stack([shifted, light_mpg]), axis=0))  # the sample repeats some cars
    assert f"{new_rows} added, {160 - new_rows} duplicate(s) dropped" in ingested.stdout, "calm: the data's own"
    dvc_file = sh("git", "show", "mlops/data:data/auto-mpg.csv.dvc", cwd=remote).stdout
    new_md5 = dvc_file.split("md5: ")[1].split()[0]
    assert new_md5 != previous.md5
    assert (dvc_remote / "files" / "md5" / new_md5[:2] / new_md5[2:]).is_file()

    # 4. Retrain: the compiled pipeline on that branch, gated against the model production serves,
    #    proposes the staging bump as a merge request.
    summary_path = tmp_path / "summary.json"
    run = sh(
        "mlops", "pipeline", "run", f"--param=repo={remote}", "--param=data_revision=mlops/data",
        "--param=champion_uri=production", "--param=open_merge_request=true", "--summary-json", summary_path,
        cwd=project, check=False, **store,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "published" and summary["gate"]["passed"]
    card = open_store(settings).card(parse_store_uri(summary["model_uri"]))
    assert card.data.md5 == new_md5 and card.data.rows == read_card(trained_dir).data.rows + new_rows
    bumped = sh("git", "show", "mlops/bump-staging:k8s/overlays/staging/model.yaml", cwd=remote).stdout
    assert summary["model_uri"] in bumped
    pushes = [json.loads(line) for line in (remote / "pushes.jsonl").read_text().splitlines()]
    assert [p["updates"][0][2] for p in pushes[1:]] == ["refs/heads/mlops/data", "refs/heads/mlops/bump-staging"]
    assert md5_file(project / DATA_FILE) == previous.md5, "the workspace is untouched: the change is on branches"


def test_a_monitor_that_is_down_costs_predictions_nothing(trained_dir, tmp_path):
    """The events are dropped and counted; every prediction is answered."""
    dead = f"http://127.0.0.1:{free_port()}/"
    with running_server(str(trained_dir), tmp_path, args=("--log-url", dead)) as (predictor, _, log):
        for index in range(20):
            assert predict(predictor, [[4, 140, 90, 2800, 15.5, 1976, 1]], f"lost-{index}").status_code == 200
        deadline = time.monotonic() + 10
        while (dropped := _counter(predictor, "mpg_payload_log_dropped_total")) < 40 and time.monotonic() < deadline:
            time.sleep(0.1)
    assert dropped == 40
    warnings = [line for line in log.read_text().splitlines() if "payload log to" in line]
    assert len(warnings) == 1, "one line per outage, not one per event"


def _counter(base: str, name: str) -> float:
    lines = httpx.get(f"{base}/metrics").text.splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith(name))


def test_a_log_url_that_is_not_http_is_one_line(tmp_path, trained_dir):
    result = run_mlops("serve", "--model-uri", trained_dir, "--port", free_port(), "--log-url", "ftp://monitor/")
    assert one_line_error(result, 2) == (
        "Error: Invalid value for '--log-url': 'ftp://monitor/' is not a URL of the form http://HOST[:PORT]/PATH "
        "(see 'mlops serve --help')"
    )


def test_events_after_an_idle_spell_longer_than_the_monitors_keep_alive_are_not_lost(trained_dir, tmp_path):
    """The monitor closes an idle kept-alive connection (uvicorn, `--keep-alive`); the logger's next post on it
    used to read nothing and drop the event, so the first prediction after a quiet minute had no feedback."""
    with (
        running_monitor(f"sqlite:///{tmp_path / 'm.db'}", "--keep-alive", "1") as (monitor, _),
        running_server(str(trained_dir), tmp_path, args=("--log-url", f"{monitor}/")) as (predictor, _, _log),
    ):
        car = [[4, 140, 90, 2800, 15.5, 1976, 1]]
        for index in range(8):  # every sender opens its connection
            assert predict(predictor, car, f"warm-{index}").status_code == 200
        time.sleep(2.5)  # longer than the monitor's keep-alive: it closes them all
        assert predict(predictor, car, "after-idle").status_code == 200
        answer = httpx.post(f"{monitor}/feedback", json={"request_id": "after-idle", "actual_mpg": 25}, timeout=30)
        assert answer.status_code == 201, answer.text
        assert _counter(predictor, "mpg_payload_log_dropped_total") == 0
