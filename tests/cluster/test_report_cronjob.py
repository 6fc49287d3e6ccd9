"""The daily report's CronJob and Argo CD's health of it, on the real CronJob and Job controllers: from 3.2 Argo CD
judges a CronJob whose last Job failed Degraded (resource_customizations/batch/CronJob/health.lua), so a report
that failed its Job on an alert (exit 4, as it did) turned the Application Degraded and stopped every later sync
at wave 3. The report now records its alerts for Prometheus (`--record`, tests/monitoring/test_loop.py) and its
Job succeeds. The kubelet stand-in reports the exit codes; the schedule is every minute here."""

from __future__ import annotations

import copy

import pytest

from gitops import argocd
from infra.controlplane import wait_until
from tests.cluster.conftest import RELEASES


@pytest.mark.parametrize("cluster", [RELEASES[-1]], indirect=True, ids=["newest"])  # Argo CD's, not KServe's
def test_a_report_job_that_fails_on_an_alert_turns_argo_cd_degraded_one_that_records_it_does_not(cluster):
    report = next(o for o in cluster.tree("overlays/staging") if o["kind"] == "CronJob")
    assert "--record" in report["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    jobs = {}
    # Argo CD calls a CronJob that never succeeded Healthy ("may not be healthy"): the alerting one succeeds on its
    # first day, then raises an alert; the recording one succeeds both days
    for name, exit_code in (("report-alerting", [0, 4]), ("report-recording", 0)):
        cronjob = copy.deepcopy(report)
        cronjob["metadata"]["name"] = name
        cronjob["spec"]["schedule"] = "* * * * *"
        cronjob["spec"].pop("timeZone", None)
        cluster.job_exit_codes[name] = exit_code
        jobs[name] = cronjob
    cluster.plane.apply(list(jobs.values()))

    def settled(name: str, runs: int):
        status = cluster.live(jobs[name]).get("status") or {}
        done = len([j for j in cluster.plane.items("jobs", "mpg-staging") if j["metadata"]["name"].startswith(name)])
        return argocd.health(cluster.live(jobs[name])) if done >= runs and not status.get("active") else None

    alerting = wait_until(lambda: settled("report-alerting", 2), 200, "the alerting CronJob ran twice")
    recording = wait_until(lambda: settled("report-recording", 2), 60, "the recording CronJob ran twice")
    assert alerting.status == "Degraded" and "not completed its last execution" in alerting.message
    assert recording.status == "Healthy", recording
    cluster.plane.kubectl("delete", "cronjob", "report-alerting", "report-recording", "-n", "mpg-staging")
