"""`make loop`: the whole GitOps loop on this machine, every step asserted, with a timeline.

New cars -> data merge request -> its CI jobs -> merge -> training publishes a model and opens the staging
bump -> merge -> staging switches -> promotion merge request from CI -> merge -> production switches ->
rollback -> production back; predictions all along reach the monitor.

What stands in for what cannot run here, said once:

- **GitLab**: a bare repository (``bench.worktree.make_remote``) whose hook records each push's merge-request
  push options; a merge is a push of the branch onto ``main`` (``Loop.merge``).
- **GitLab CI**: gitlab-ci-local lists the jobs ``.gitlab-ci.yml`` selects for the event (``--list-json``,
  with the pipeline source; it compares with ``origin/main`` for the changed files). Its 4.56 runs a job
  that names an image only in a container engine, which this machine lacks, so the scenario runs each
  selected job's ``scripts/ci/`` script itself, in stage order. ``tests`` and ``lint`` (this scenario runs
  inside the test suite), ``kubeconform`` and ``dependency-audit`` (network) are listed, not run.
- **Kubeflow**: ``submit-training`` is selected; the same compiled pipeline runs with kfp.local
  (``mlops pipeline run``) with the parameters the job would submit.
- **S3**: moto's S3 server on loopback (store and DVC remote); credentials are throwaway values.
- **Argo CD and KServe**: ``mlops up`` follows ``main`` of the stand-in remote.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from bench.worktree import copy_worktree, make_remote
from core.errors import MlopsError
from infra.http import free_port

BUCKET = "mpg-mlops"
CAR = json.dumps({"instances": [[4, 140, 90, 2264, 15.5, 1976, 1]]})
NOT_RUN = {
    "tests": "the test suite runs this scenario",
    "lint": "make check runs it",
    "kubeconform": "make test runs it",
    "dependency-audit": "needs PyPI's advisory database",
}


class LoopError(MlopsError):
    """A step of the loop did not do what it should."""


@dataclass
class Traffic:
    """Predictions sent to each environment's front all along, and what failed."""

    urls: dict[str, str]
    sent: int = 0
    failed: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        import httpx

        with httpx.Client(timeout=5) as client:
            while not self.stop.is_set():
                for env, url in self.urls.items():
                    try:
                        answer = client.post(f"{url}/v1/models/mpg:predict", content=CAR)
                        if answer.status_code != 200:
                            self.failed.append(f"{env}: HTTP {answer.status_code}")
                    except httpx.HTTPError as e:
                        self.failed.append(f"{env}: {type(e).__name__}")
                    self.sent += 1
                time.sleep(0.02)


class Loop:
    def __init__(self, root: Path, work: Path, load_seconds: int = 0):
        self.root, self.work, self.load_seconds = root, work, load_seconds
        self.tools = Path(__file__).resolve().parents[1]  # the development checkout this runs from: its venvs, tools
        self.repo, self.remote = work / "repo", work / "remote.git"
        self.started = time.monotonic()
        self.timeline: list[tuple[str, float, str, str, str]] = []
        self.processes: list[subprocess.Popen] = []
        self.ports = {"staging": free_port(), "production": free_port(), "monitor": free_port(), "s3": free_port()}
        self.urls = {env: f"http://127.0.0.1:{self.ports[env]}" for env in ("staging", "production")}
        self.switches: list[dict] = []
        self.env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "MLOPS_S3_ENDPOINT_URL": f"http://127.0.0.1:{self.ports['s3']}",
            "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{self.ports['s3']}",  # for dvc itself, as mlops passes it
            # throwaway credentials for the loopback S3 server (it accepts any)
            "AWS_ACCESS_KEY_ID": secrets.token_hex(8),
            "AWS_SECRET_ACCESS_KEY": secrets.token_hex(16),
            "MLOPS_READONLY_AWS_ACCESS_KEY_ID": secrets.token_hex(8),
            "MLOPS_READONLY_AWS_SECRET_ACCESS_KEY": secrets.token_hex(16),
            "MLOPS_CACHE_DIR": str(work / "cache"),
            "MLOPS_STORE_ROOT": str(work / "local-store"),  # the shipped models, before they go to S3
            "MLOPS_MONITOR_DB": f"sqlite:///{work / 'monitor.db'}",
            "MLOPS_GIT_REMOTE": str(self.remote),
            "CI_DEFAULT_BRANCH": "main",
            "GIT_AUTHOR_NAME": "loop",
            "GIT_AUTHOR_EMAIL": "loop@example.invalid",
            "GIT_COMMITTER_NAME": "loop",
            "GIT_COMMITTER_EMAIL": "loop@example.invalid",
        }
        self.env.pop("MLOPS_PROJECT_ROOT", None)

    # -- plumbing ----------------------------------------------------------------------------------------
    def sh(self, *args, cwd: Path | None = None, env: dict | None = None, ok: tuple[int, ...] = (0,)) -> str:
        result = subprocess.run(
            [str(a) for a in args], cwd=cwd or self.repo, env={**self.env, **(env or {})}, capture_output=True,
            text=True, timeout=900,
        )  # fmt: skip
        if result.returncode not in ok:
            tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise LoopError(f"{' '.join(map(str, args[:4]))} exited {result.returncode}: {' / '.join(tail)}")
        return result.stdout

    def mlops(self, *args, **kwargs) -> str:
        return self.sh(Path(sys.executable).parent / "mlops", *args, **kwargs)

    def git(self, *args, cwd: Path | None = None) -> str:
        return self.sh("git", *args, cwd=cwd).strip()

    def start(self, *args, log: str) -> subprocess.Popen:
        with open(self.work / log, "w") as output:
            process = subprocess.Popen([str(a) for a in args], cwd=self.repo, env=self.env, stdout=output,
                                       stderr=subprocess.STDOUT)  # fmt: skip
        self.processes.append(process)
        return process

    def serving(self, env: str) -> str:
        import httpx

        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, IndexError):
            return httpx.get(f"{self.urls[env]}/v2/models/mpg", timeout=2).json()["versions"][0][:12]
        return "-"

    def wait_serving(self, env: str, model_id: str, what: str, timeout: float = 120.0) -> None:
        """Until ``env`` answers from ``model_id``; a timeout names what was expected and what was seen."""
        deadline = time.monotonic() + timeout
        while (seen := self.serving(env)) != model_id[:12]:
            if time.monotonic() > deadline:
                raise LoopError(
                    f"not within {timeout:.0f} s: {env} should serve {model_id[:12]} ({what}) and serves {seen} "
                    f"(mlops up said: {self.up_log()})"
                )
            time.sleep(0.2)

    def up_log(self) -> str:
        lines = (self.work / "up.log").read_text().strip().splitlines() if (self.work / "up.log").exists() else []
        return " / ".join(lines[-3:])

    def step(self, name: str) -> None:
        head = self.git("log", "-1", "--format=%h %s", "main", cwd=self.remote)
        staging, production = self.serving("staging"), self.serving("production")
        self.timeline.append((name, time.monotonic() - self.started, head, staging, production))
        print(f"[{self.timeline[-1][1]:6.1f} s] {name}: main {head[:60]} | staging {staging} | production {production}")

    @contextlib.contextmanager
    def switching(self, env: str, what: str):
        """Around a merge that switches ``env``: with ``load_seconds``, wrk's 64 connections on its front from
        before the merge to after the switch; its failed requests and p99 go to ``self.switches``."""
        if not self.load_seconds:
            yield
            return
        from bench.serving import run_wrk

        result: dict = {}
        url = f"{self.urls[env]}/v1/models/mpg:predict"
        wrk = threading.Thread(
            target=lambda: result.update(run_wrk(url, CAR, self.load_seconds, 64, errors_expected=True))
        )
        wrk.start()
        time.sleep(1.0)
        yield
        wrk.join()
        failed = int(result["non_2xx"] + result["socket_errors"])
        self.switches.append({"switch": what, "requests": int(result["requests"]), "failed": failed,
                              "p99_ms": result["p99_ms"]})  # fmt: skip
        print(f"    under load (wrk, 64 connections, {self.load_seconds} s): {self.switches[-1]}")

    def merge(self, branch: str) -> list[dict]:
        """GitLab's merge, stood in: a merge commit of the merge request's branch onto main, with GitLab's
        default message, pushed; the jobs .gitlab-ci.yml selects for that push (listed before it goes out:
        gitlab-ci-local finds the changed files against origin/main)."""
        self.git("fetch", "-q", "origin")
        self.git("checkout", "-q", "main")
        self.git("reset", "-q", "--hard", "origin/main")
        self.git("merge", "-q", "--no-ff", "-m", f"Merge branch '{branch}' into 'main'", f"origin/{branch}")
        jobs = self.ci_jobs("push")
        self.git("push", "-q", "origin", "main")
        return jobs

    def pushed_merge_requests(self) -> list[str]:
        """Branches pushed with ``merge_request.create``, in order (the hook's record)."""
        log = self.remote / "pushes.jsonl"
        pushes = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return [
            update[2].removeprefix("refs/heads/")
            for push in pushes
            if "merge_request.create" in push["options"]
            for update in push["updates"]
        ]

    def ci_jobs(self, source: str) -> list[dict]:
        """The jobs .gitlab-ci.yml selects for this event (gitlab-ci-local), in stage order."""
        tool = self.tools / "tests" / "tools" / "node_modules" / ".bin" / "gitlab-ci-local"
        if not tool.exists():
            raise LoopError("gitlab-ci-local is not installed: make test installs it (tests/tools)")
        variables = [f"{name}={value}" for name, value in self.predefined(source).items()]
        listed = json.loads(self.sh(tool, "--list-json", *(a for v in variables for a in ("--variable", v))))
        return [job for job in listed if job["when"] != "never"]

    def predefined(self, source: str) -> dict[str, str]:
        """GitLab's predefined variables of the event that the rules and the scripts read."""
        event = {"CI_PIPELINE_SOURCE": source, "CI_DEFAULT_BRANCH": "main"}
        event["CI_COMMIT_SHA"] = self.git("rev-parse", "HEAD")
        if source == "merge_request_event":
            return {**event, "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main"}
        return {**event, "CI_COMMIT_BRANCH": self.git("branch", "--show-current")}

    def run_jobs(self, selected: list[dict], source: str, expected: set[str], extra_env: dict | None = None):
        """Run the selected jobs' scripts in stage order; ``expected`` must be among them."""
        names = [job["name"] for job in selected]
        if not expected <= set(names):
            raise LoopError(f"{source}: .gitlab-ci.yml selects {names}, expected {sorted(expected)} among them")
        config = yaml.safe_load((self.repo / ".gitlab-ci.yml").read_text())
        stages, ran = config["stages"], []
        for job in sorted(selected, key=lambda j: stages.index(j["stage"])):
            name = job["name"]
            if name in NOT_RUN or name not in expected:
                continue
            script = config[name]["script"]
            script = script if isinstance(script, str) else " && ".join(script)
            self.sh("bash", "-c", script, env={**self.predefined(source), **(extra_env or {})})
            ran.append(name)
        print(f"    {source}: selected {', '.join(names)}; ran {', '.join(ran)}")
        return ran

    # -- the scenario ----------------------------------------------------------------------------------
    def set_up(self) -> None:
        import logging

        import boto3
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise
        self.s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=self.ports["s3"], verbose=False)
        self.s3.start()
        credentials = {"aws_access_key_id": self.env["AWS_ACCESS_KEY_ID"],
                       "aws_secret_access_key": self.env["AWS_SECRET_ACCESS_KEY"]}  # fmt: skip
        s3 = boto3.client("s3", endpoint_url=self.env["MLOPS_S3_ENDPOINT_URL"], region_name="us-east-1", **credentials)
        s3.create_bucket(Bucket=BUCKET)
        # HEAD, not the working tree: an uncommitted ingest or `dvc repro` leaves files DVC would refuse to check
        # out over in the copy; what is left out is said in one line
        copy_worktree(self.root, self.repo, revision="HEAD")
        if uncommitted := self.sh("git", "status", "--porcelain", "--untracked-files=no", cwd=self.root).splitlines():
            paths = ", ".join(line[3:] for line in uncommitted[:5]) + (", …" if len(uncommitted) > 5 else "")
            print(f"the loop runs HEAD ({self.sh('git', 'rev-parse', '--short', 'HEAD', cwd=self.root).strip()}); "
                  f"not in it, uncommitted: {paths}")  # fmt: skip
        for venv in (".venv", ".venv-checkov"):  # scripts/ci/common.sh's `make install`, `make scan`: up to date
            if (self.tools / venv).is_dir():
                (self.repo / venv).symlink_to(self.tools / venv)
        # git archive dates every file at the commit: make would find the pins newer than the linked venv's
        # install and reinstall this checkout's package editable from the copy (pointing the venv at a folder
        # deleted after the loop). Where the pins are the installed ones, they are dated as installed.
        installed = self.tools / ".venv" / "bin" / ".installed"
        for pins in ("pyproject.toml", "constraints.txt") if installed.exists() else ():
            if (self.repo / pins).read_bytes() != (self.tools / pins).read_bytes():
                raise LoopError(f"{pins} at HEAD differs from the one installed here: commit it, or make install")
            os.utime(self.repo / pins, ns=(installed.stat().st_atime_ns, installed.stat().st_mtime_ns))
        # the repository CI runs for (manifests.sh checks Argo CD syncs it): the one settings.yaml names
        repo_url = yaml.safe_load((self.repo / "k8s/argocd/settings.yaml").read_text())["data"]["repoURL"]
        server, _, path = repo_url.removesuffix(".git").partition("://")[2].partition("/")
        self.env.update(CI_SERVER_URL=f"https://{server}", CI_PROJECT_PATH=path)
        make_remote(self.remote)
        self.git("remote", "add", "origin", str(self.remote))
        self.git("push", "-q", "origin", "main")
        (self.remote / "pushes.jsonl").unlink()
        self.mlops("data", "pull", env={"MLOPS_S3_ENDPOINT_URL": ""})  # the shipped models into the local store
        self.sh("dvc", "push", "-q", "-r", "s3")
        self.shipped = self.publish_shipped()  # what each overlay names: staging may be ahead of production
        self.original = self.shipped["production"]
        self.start(Path(sys.executable).parent / "mlops", "monitor", "serve", "--port", self.ports["monitor"],
                   log="monitor.log")  # fmt: skip
        monitor = f"http://127.0.0.1:{self.ports['monitor']}"
        self.start(Path(sys.executable).parent / "mlops", "up", "--repo", self.remote, "--interval", 0.5,
                   "--staging-port", self.ports["staging"], "--production-port", self.ports["production"],
                   "--log-url", f"{monitor}/", "--monitor", monitor, log="up.log")  # fmt: skip
        for env in self.urls:
            self.wait_serving(env, self.shipped[env], "the model its overlay names")
        self.traffic = Traffic(self.urls)
        threading.Thread(target=self.traffic.run, daemon=True).start()
        self.step("set up: remote, S3 on loopback, monitor, mlops up following main")

    def publish_shipped(self) -> dict[str, str]:
        """The models the overlays name (shipped in the repository, restored by `mlops data pull` into the local
        store) published to the S3 store, where the environments and the gate read them; their ids by env."""
        status = json.loads(self.mlops("gitops", "status", "--json", env={"MLOPS_S3_ENDPOINT_URL": ""}))
        ids = {env: status[env]["model_id"] for env in ("staging", "production")}
        for model_id in set(ids.values()):
            folder = self.work / "local-store" / BUCKET / "models" / "mpg" / model_id
            self.mlops("publish", "--model", folder, "--to", f"s3://{BUCKET}/models/mpg")
        return ids

    def new_cars(self, count: int = 12) -> Path:
        """Cars like the seed data's, not equal to any: rows of it with weight and acceleration nudged."""
        import pandas as pd

        seed = pd.read_csv(self.repo / "data" / "auto-mpg.csv")
        rows = seed.sample(count, random_state=7).copy()
        rng = np.random.default_rng(7)
        rows["wght"] = (rows["wght"] * (1 + rng.uniform(-0.02, 0.02, count))).round()
        rows["acc"] = (rows["acc"] + rng.uniform(-0.3, 0.3, count)).round(1)
        path = self.work / "new-cars.csv"
        rows.to_csv(path, index=False)
        return path

    def scenario(self) -> None:
        print("stand-ins: GitLab = a bare repository (its hook records merge-request push options; a merge is a")
        print("merge commit pushed onto main); its runner = the selected jobs' scripts/ci/ run here; Kubeflow =")
        print("kfp.local; S3 = moto on loopback; Argo CD + KServe = mlops up (see bench/loop.py)")
        self.set_up()

        # 1. new cars -> a data merge request holding exactly them
        cars = self.new_cars()
        self.mlops("data", "ingest", cars, "--dvc-remote", "s3", "--branch", "mlops/data", "--commit", "--push")
        if self.pushed_merge_requests()[-1:] != ["mlops/data"]:
            raise LoopError(f"no merge request for mlops/data: {self.pushed_merge_requests()}")
        diff = self.git("diff", "--unified=0", "main", "origin/mlops/data", "--", "data/provenance.csv")
        added = [line[1:] for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
        removed = [line for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
        if len(added) != 12 or removed or not all(f",csv,{cars.name}," in row for row in added):
            raise LoopError(f"the data merge request should add the 12 cars of {cars.name}, nothing else: {diff}")
        self.step("1. data ingest: merge request mlops/data with 12 new cars")

        # 2. its merge-request pipeline
        self.git("checkout", "-q", "-B", "mlops/data", "origin/mlops/data")
        self.sh("dvc", "pull", "-q", "-r", "s3")
        selected = self.ci_jobs("merge_request_event")
        self.run_jobs(selected, "merge_request_event", {"manifests", "compiled-pipeline", "gitops-diff", "model-gate"})
        self.step("2. merge-request pipeline: manifests, compiled pipeline, gitops diff, model gate passed")

        # 3. merge -> the push pipeline trains (kfp.local for Kubeflow) and its propose step opens the bump
        names = [job["name"] for job in self.merge("mlops/data")]
        if "submit-training" not in names:
            raise LoopError(f"a pushed data version selects {names}, not submit-training")
        revision = self.git("rev-parse", "HEAD")
        self.mlops("pipeline", "run", "--param", f"repo={self.remote}", "--param", f"data_revision={revision}",
                   "--param", "dvc_remote=s3", "--param", "champion_uri=production",
                   "--param", "open_merge_request=true", "--param", "merge_request_target=main",
                   "--summary-json", self.work / "run.json")  # fmt: skip
        self.candidate = json.loads((self.work / "run.json").read_text())["model_uri"].rstrip("/").rsplit("/")[-1]
        if self.pushed_merge_requests()[-1:] != ["mlops/bump-staging"]:
            raise LoopError(f"the pipeline opened no staging bump: {self.pushed_merge_requests()}")
        self.step(f"3. merged; pipeline published {self.candidate[:12]} and opened mlops/bump-staging")

        # 4. merge the bump -> staging switches
        with self.switching("staging", "staging to the new model"):
            bump_jobs = self.merge("mlops/bump-staging")
            self.wait_serving("staging", self.candidate, "the new model")
        self.mlops("gitops", "smoke", "--env", "staging", "--url", self.urls["staging"], "--interval", 0.5)
        self.step("4. bump merged: staging switched, smoke passed")

        # 5. the push pipeline of the bump opens the promotion; merge it -> production switches
        self.run_jobs(bump_jobs, "push", {"promote-staging"}, {"STAGING_URL": self.urls["staging"]})
        if self.pushed_merge_requests()[-1:] != ["mlops/promote-production"]:
            raise LoopError(f"CI opened no promotion: {self.pushed_merge_requests()}")
        with self.switching("production", "production to the new model"):
            promotion_jobs = self.merge("mlops/promote-production")
            self.wait_serving("production", self.candidate, "the new model")
        self.run_jobs(promotion_jobs, "push", {"verify-production"}, {"PRODUCTION_URL": self.urls["production"]})
        self.step("5. promotion merged: production switched, verify-production passed")

        # 6. rollback -> production back on the old model
        self.mlops("gitops", "rollback", "--env", "production", "--branch", "mlops/rollback-production",
                   "--commit", "--push")  # fmt: skip
        with self.switching("production", "production back to the old model"):
            rollback_jobs = self.merge("mlops/rollback-production")
            self.wait_serving("production", self.original, "back on the old model")
        self.run_jobs(rollback_jobs, "push", {"verify-production"}, {"PRODUCTION_URL": self.urls["production"]})
        self.step("6. rollback merged: production back")

        # 7. the monitor saw both models
        rows = {}
        for model_id in (self.original, self.candidate):
            out = self.work / f"report-{model_id[:12]}.json"
            self.mlops("monitor", "report", "--model", f"s3://{BUCKET}/models/mpg/{model_id}/", "--out", out, ok=(0, 4))
            report = json.loads(out.read_text())
            if report["model_id"] != model_id or not report["rows"]:
                raise LoopError(f"the monitor has no predictions of {model_id[:12]}")
            rows[model_id[:12]] = report["rows"]
        self.step(f"7. monitor report covers both models: {rows} predictions")
        self.traffic.stop.set()
        if self.traffic.failed:
            raise LoopError(f"{len(self.traffic.failed)} of {self.traffic.sent} predictions failed: "
                            f"{self.traffic.failed[:5]}")  # fmt: skip
        print(f"predictions sent all along: {self.traffic.sent}, failed: 0")
        failed = [switch for switch in self.switches if switch["failed"]]
        if failed:
            raise LoopError(f"requests failed during a switch under load: {failed}")

    def close(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=30)
        if hasattr(self, "s3"):
            self.s3.stop()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.loop", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="Keep the temporary folder (logs, repo, remote).")
    parser.add_argument(
        "--load", type=int, default=0, metavar="SECONDS", help="wrk (64 connections) on the front during each switch."
    )
    parser.add_argument(
        "--repo", type=Path, metavar="PATH", help="The checkout whose HEAD the loop runs [default: this project]."
    )
    args = parser.parse_args(argv)
    from infra.settings import project_root

    work = Path(tempfile.mkdtemp(prefix="mlops-loop-"))
    loop = Loop((args.repo or project_root()).resolve(), work, args.load)
    try:
        loop.scenario()
    except MlopsError as e:
        print(f"loop failed: {e} (logs, repository and remote kept in {work})", file=sys.stderr)
        return 1
    finally:
        loop.close()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)  # made above
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
