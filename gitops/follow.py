"""Environments that follow git on this machine: what Argo CD and KServe do in the cluster, for a laptop.

Each environment (staging, production) follows its overlay on a branch of a git repository. Every
``interval`` seconds the branch's commit is read; when it moved, the overlays are rendered with kustomize
at that commit (as Argo CD renders them) and the model URI is taken from the rendered InferenceService.
When it differs from what runs, the model is fetched from the store and verified (KServe's storage
initializer), and a new predictor (``mlops serve``) starts beside the old one, as a rolling update does.

The switch, blue/green: the environment's nginx (the client page's own nginx.conf, the front users and the
page talk to) lists two predictor slots and is never reloaded, so no client connection is ever closed by a
switch (a reload closes the old workers' idle keep-alive connections, and a request racing that close
fails: measured, 1 in 48,000 under 64 connections). The new predictor starts on the free slot; once it
is ready and answers through nginx, both serve for a moment (as pods do in a rolling update); then the
old one stops gracefully (uvicorn finishes its requests): a connection nginx then opens to the old slot
is refused and the request goes to the other slot (``proxy_next_upstream``, which a prediction allows:
it changes nothing). A model that fails to fetch,
verify or become ready leaves the old one serving and the environment ``Degraded`` with the reason, until
git wants another.

The state (what git wants, what runs, in Argo CD's words) is written to ``<state>/environments.json``
after every change; ``mlops gitops status`` reads it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.atomic import atomic_write
from core.errors import MlopsError
from gitops.git import branch_name, git
from infra.http import stop_process

STATE_FILE = "environments.json"
READY_TIMEOUT = 60.0


class FollowError(MlopsError):
    """An environment cannot follow git (no nginx, an unreadable branch, a port in use)."""


@dataclass
class EnvironmentState:
    """One environment in Argo CD's words: ``sync`` compares what git wants with what runs, ``health`` says
    whether what runs serves (Progressing while a new model starts, Degraded with ``reason`` after a failure)."""

    env: str
    url: str
    revision: str = ""  # the followed branch's commit the wanted model was read at
    wanted: str = ""  # model URI in the rendered InferenceService
    running: str = ""  # model URI being served
    health: str = "Progressing"
    reason: str = ""
    predictor_port: int = 0
    predictor_pid: int = 0
    switched_at: float = 0.0
    error: str = ""  # why git's wish cannot be read at ``revision`` (Argo CD's ComparisonError): sync is Unknown

    @property
    def sync(self) -> str:
        if self.error:
            return "Unknown"
        return "Synced" if self.wanted and self.wanted == self.running else "OutOfSync"


def wanted_model(objects: list[dict], env: str) -> str:
    """``spec.predictor.model.storageUri`` of the one InferenceService a rendered overlay holds."""
    services = [o for o in objects if o.get("kind") == "InferenceService"]
    if len(services) != 1:
        raise FollowError(f"overlays/{env} renders {len(services)} InferenceServices, expected 1")
    try:
        return str(services[0]["spec"]["predictor"]["model"]["storageUri"])
    except (KeyError, TypeError) as e:
        raise FollowError(f"overlays/{env}: the InferenceService has no spec.predictor.model.storageUri") from e


def read_states(state_dir: Path) -> dict[str, EnvironmentState]:
    """The last state ``mlops up`` wrote, by environment (empty when it never ran here). A predictor that is
    no longer running (``mlops up`` killed) makes its environment ``Missing``, as Argo CD says of a workload
    that is not there."""
    path = state_dir / STATE_FILE
    if not path.is_file():
        return {}
    try:
        states = {env: EnvironmentState(**state) for env, state in json.loads(path.read_text()).items()}
    except (ValueError, TypeError) as e:
        raise FollowError(f"{path} is not a state mlops up wrote ({e}); delete it and run mlops up again") from e
    for state in states.values():
        if state.health != "Missing" and state.predictor_pid and not _alive(state.predictor_pid):
            state.health, state.reason, state.running = "Missing", "its predictor is not running", ""
    return states


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Predictor:
    port: int
    process: subprocess.Popen
    log: Path

    def stop(self) -> None:
        stop_process(self.process, timeout=15)  # on SIGTERM uvicorn finishes the requests it has, then exits

    def exited(self) -> str:
        """Why it is not running: its exit status and the last line it logged."""
        last = self.log.read_text().strip().splitlines()[-1:] or ["no output"]
        return f"the predictor exited ({self.process.returncode}): {last[0][:200]}"


@dataclass
class Environment:
    """One followed environment: its nginx front on ``state.url`` and the predictor behind it, in one of two
    slots (ports) nginx lists."""

    state: EnvironmentState
    site: Path  # the nginx prefix (conf/, html/), made by infra.nginx.prepare_site
    nginx: subprocess.Popen
    slots: tuple[int, int]
    predictor: Predictor | None = None
    failed: set[str] = field(default_factory=set)  # model URIs that failed: not retried until git changes them

    def apply(self, project, work: Path, log_url: str | None, say) -> None:
        """Serve ``state.wanted``: fetch, verify, start on the free slot, wait until ready, stop the old one."""
        from core.uri import parse_store_uri

        uri, state, new = self.state.wanted, self.state, None
        state.health, state.reason = "Progressing", f"starting {uri}"
        say(state)
        try:
            # only a store URI (git is outside input: a path there would serve a folder of this machine),
            # fetched and verified (hashes) before anything starts
            model_dir, model_id = project.resolve(parse_store_uri(uri))
            port = self.slots[1] if self.predictor and self.predictor.port == self.slots[0] else self.slots[0]
            log = work / f"{state.env}-predictor-{port}.log"
            command = [str(Path(sys.executable).parent / "mlops"), "serve", "--model-uri", str(model_dir)]
            command += ["--source-uri", uri, "--port", str(port)] + (["--log-url", log_url] if log_url else [])
            with open(log, "w") as output:
                new = Predictor(port, subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT), log)
            _wait_ready(new)
            # both serve now; nginx takes the new slot once it has seen it answer (it retries a refused slot
            _wait_front(state.url, model_id)  # after fail_timeout): only then may the old one go
        except (MlopsError, OSError) as e:
            if new is not None:
                new.stop()
            self.failed.add(uri)
            state.health, state.reason = "Degraded", f"{uri} not served: {e}"
            say(state)
            return
        old, self.predictor = self.predictor, new
        if old is not None:
            old.stop()  # graceful: its requests finish; nginx sends the next ones to the new slot
        state.running, state.predictor_port, state.predictor_pid = uri, new.port, new.process.pid
        state.health, state.reason, state.switched_at = "Healthy", "", time.time()
        say(state)

    def serving(self) -> bool:
        """The running predictor has not exited."""
        return self.predictor is not None and self.predictor.process.poll() is None

    def check(self, say) -> None:
        """A predictor that exited on its own makes the environment Degraded."""
        if self.predictor is not None and not self.serving() and self.state.health != "Degraded":
            self.state.health, self.state.reason = "Degraded", self.predictor.exited()
            say(self.state)


def _wait_ready(predictor: Predictor) -> None:
    import httpx

    deadline = time.monotonic() + READY_TIMEOUT
    url = f"http://127.0.0.1:{predictor.port}/v2/models/mpg/ready"
    while time.monotonic() < deadline:
        if predictor.process.poll() is not None:
            raise FollowError(predictor.exited())
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise FollowError(f"the predictor was not ready within {READY_TIMEOUT:.0f} s")


def _wait_front(url: str, model_id: str, timeout: float = 10.0) -> None:
    """Until the front answers from the new predictor (at once, unless nginx is not running)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            if httpx.get(f"{url}/v2/models/mpg", timeout=1).json().get("versions") == [model_id]:
                return
        time.sleep(0.05)
    raise FollowError(f"{url} did not answer from model {model_id[:12]} within {timeout:.0f} s of the switch")


class Follower:
    """Staging and production (or those named) following ``branch`` of ``repo``."""

    def __init__(self, project, repo: Path, branch: str, ports: dict[str, int], state_dir: Path, monitor_url: str):
        self.project, self.repo, self.branch = project, repo, branch_name(branch)
        self.ports, self.state_dir, self.monitor_url = ports, state_dir, monitor_url
        self.environments: dict[str, Environment] = {}
        self.revision = ""

    def head(self) -> str:
        ref = f"refs/heads/{self.branch}^{{commit}}"
        found = git("rev-parse", "--verify", "--quiet", "--end-of-options", ref, cwd=self.repo, check=False)
        if found.returncode != 0:
            if git("rev-parse", "--git-dir", cwd=self.repo, check=False).returncode != 0:
                raise FollowError(f"{self.repo} is not a git repository: --repo names a clone of this project")
            raise FollowError(f"{self.repo} has no branch {self.branch!r}; name one with --branch")
        return found.stdout.strip()

    def start(self, say) -> None:
        """nginx in front of each environment (a 502 until a predictor is ready)."""
        from infra.http import bind, free_port
        from infra.nginx import nginx_binary, prepare_site, started_nginx

        if nginx_binary() is None:
            raise FollowError("nginx is not installed (Debian: apt-get install nginx-light); make demo installs it")
        client_dir = self.project.root / "k8s" / "base" / "client"
        for env, port in self.ports.items():
            try:
                bind("127.0.0.1", port).close()  # a busy port is one line now
            except MlopsError as e:
                raise FollowError(f"{env}: {str(e).replace('--port', f'--{env}-port')}") from e
            slots = (free_port(), free_port())
            site = prepare_site(client_dir, [f"http://127.0.0.1:{slot}" for slot in slots], port, self.monitor_url)
            state = EnvironmentState(env, f"http://127.0.0.1:{port}")
            try:
                nginx = started_nginx(site, port)
            except MlopsError:
                shutil.rmtree(site, ignore_errors=True)  # made by prepare_site
                raise
            self.environments[env] = Environment(state, site, nginx, slots)
            say(self.environments[env].state)

    def poll(self, work: Path, log_url: str | None, say) -> None:
        """Read the branch; on a new commit render the overlays there; serve what git wants where it changed."""
        from gitops.diff import render_at

        revision = self.head()
        if revision != self.revision:
            for env, environment in self.environments.items():  # each on its own: one broken overlay stops one
                try:
                    wanted = wanted_model(render_at(self.repo, revision, (f"overlays/{env}",))[f"overlays/{env}"], env)
                except MlopsError as e:  # keep serving what runs; say why, once per revision
                    environment.state.revision, environment.state.error = revision, f"at {revision[:12]}: {e}"
                    say(environment.state)
                    continue
                if wanted != environment.state.wanted:
                    environment.failed.discard(wanted)
                environment.state.revision, environment.state.wanted = revision, wanted
                environment.state.error = ""
                if wanted == environment.state.running and environment.serving():
                    # git names the model that runs again (a rollback of a bad bump): nothing left to fail
                    environment.state.health, environment.state.reason = "Healthy", ""
                say(environment.state)
            self.revision = revision
        for environment in self.environments.values():
            environment.check(say)
            state = environment.state
            if not state.error and state.wanted != state.running and state.wanted not in environment.failed:
                environment.apply(self.project, work, log_url, say)

    def save(self) -> None:
        states = {env: asdict(e.state) for env, e in self.environments.items()}
        self.state_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.state_dir / STATE_FILE, lambda tmp: tmp.write_text(json.dumps(states, indent=2)))

    def stop(self) -> None:
        for environment in self.environments.values():
            if environment.predictor is not None:
                environment.predictor.stop()
            stop_process(environment.nginx)
            shutil.rmtree(environment.site, ignore_errors=True)  # made by prepare_site
            environment.state.health, environment.state.reason = "Missing", "mlops up stopped"
        if self.environments:
            self.save()
