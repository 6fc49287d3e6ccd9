"""The control plane's programs, built from their upstream Go modules, once per version, into a cache outside
the repository.

- etcd: ``go.etcd.io/etcd/server/v3`` as a tool of a wrapper module (its own go.mod has ``replace`` lines that
  ``go install`` refuses and that a dependency's go.mod does not carry);
- kube-apiserver and kube-controller-manager: ``k8s.io/kubernetes`` in a wrapper module whose ``replace``
  directives pin every staging module ``k8s.io/*`` to ``v0.<minor>.<patch>`` (the list read from that
  release's go.mod, kubernetes/kubernetes#79384); a staging module the proxy does not serve and the two
  programs do not import (``sample-*``) becomes an empty local stub;
- KServe's manager (controller + webhooks) and agent (the payload logger): ``cmd/manager`` and ``cmd/agent``
  inside a copy of each release's module directory (its go.mod has ``exclude`` and, from 0.16, ``replace``
  lines: it must be the main module).

The versions are in ``infra/controlplane.toml``. Builds take a lock (two test runs never build the same thing
twice), write beside the target and rename, and say what they do as they go; a module the proxy does not serve
is one line naming it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from core.errors import MlopsError

VERSIONS_FILE = Path(__file__).with_name("controlplane.toml")
Progress = Callable[[str], None]


class BuildError(MlopsError):
    """A control-plane program could not be built (no Go, a module the proxy does not serve, a compile error)."""


@dataclass(frozen=True)
class Versions:
    kubernetes: str
    etcd: str
    kserve: tuple[str, ...]
    argocd: str
    prometheus_operator: str

    @property
    def staging(self) -> str:
        """The version of the staging modules ``k8s.io/*`` that go with ``kubernetes`` (v1.34.4 -> v0.34.4)."""
        return "v0." + self.kubernetes.removeprefix("v1.")

    def release(self, wanted: str) -> str:
        """The supported KServe release ``wanted`` names: ``0.16``, ``v0.16`` or ``v0.16.0``."""
        key = wanted.removeprefix("v")
        for release in self.kserve:
            if release.removeprefix("v") == key or release.removeprefix("v").rsplit(".", 1)[0] == key:
                return release
        raise BuildError(f"KServe {wanted} is not supported here: choose one of {', '.join(self.kserve)}")


@cache
def versions(path: Path = VERSIONS_FILE) -> Versions:
    data = tomllib.loads(path.read_text())
    return Versions(
        kubernetes=data["kubernetes"]["version"],
        etcd=data["etcd"]["version"],
        kserve=tuple(data["kserve"]["releases"]),
        argocd=data["argocd"]["version"],
        prometheus_operator=data["prometheus-operator"]["version"],
    )


def short(release: str) -> str:
    """``v0.16.0`` -> ``0.16``: how the docs and the tests name a KServe release."""
    return release.removeprefix("v").rsplit(".", 1)[0]


def go() -> str:
    found = shutil.which("go")
    if not found:
        raise BuildError("go not found: install the Go toolchain (1.24 or newer) to build the local control plane")
    return found


def _go_env() -> dict[str, str]:
    # GOTOOLCHAIN=local: a module asking for a newer Go fails here with Go's own message, nothing is downloaded
    # behind the user's back; CGO off: static binaries, no C toolchain needed.
    return {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod -buildvcs=false"}


def module_download(module: str, version: str) -> dict:
    """``go mod download -json MODULE@VERSION``: where the module's files are (``Dir``) and its go.mod."""
    result = subprocess.run(
        [go(), "mod", "download", "-json", f"{module}@{version}"], capture_output=True, text=True, env=_go_env()
    )
    try:
        info = json.loads(result.stdout)
    except json.JSONDecodeError:
        info = {"Error": result.stderr.strip() or "no answer"}
    if info.get("Error"):
        raise BuildError(f"the Go module proxy does not serve {module}@{version}: {info['Error'].splitlines()[-1]}")
    return info


def module_dir(module: str, version: str) -> Path:
    return Path(module_download(module, version)["Dir"])


def cache_root() -> Path:
    from infra.settings import Settings

    configured = Settings().controlplane_cache
    return configured if configured is not None else Path.home() / ".cache" / "mpg-mlops" / "controlplane"


@dataclass(frozen=True)
class Binaries:
    """Where the built programs are (they exist once ``ensure_built`` returned)."""

    root: Path
    versions: Versions

    @property
    def kubernetes(self) -> Path:
        return self.root / f"kubernetes-{self.versions.kubernetes}"

    @property
    def kube_apiserver(self) -> Path:
        return self.kubernetes / "kube-apiserver"

    @property
    def kube_controller_manager(self) -> Path:
        return self.kubernetes / "kube-controller-manager"

    @property
    def etcd(self) -> Path:
        return self.root / f"etcd-{self.versions.etcd}" / "etcd"

    def kserve_manager(self, release: str) -> Path:
        return self.root / f"kserve-{release}" / "manager"

    def kserve_agent(self, release: str) -> Path:
        return self.root / f"kserve-{release}" / "agent"

    def missing(self, releases: tuple[str, ...]) -> list[Path]:
        wanted = [self.etcd, self.kube_apiserver, self.kube_controller_manager]
        for release in releases:
            wanted += [self.kserve_manager(release), self.kserve_agent(release)]
        return [path for path in wanted if not path.is_file()]


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def _ticking(what: str, progress: Progress, every: float = 60.0) -> Iterator[None]:
    """Say every ``every`` seconds that ``what`` is still going, so a long build is never silent."""
    started = time.monotonic()
    done = threading.Event()

    def tick() -> None:
        while not done.wait(every):
            progress(f"  ... still {what} ({(time.monotonic() - started) / 60:.0f} min)")

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        progress(f"  {what}: done in {time.monotonic() - started:.0f} s")


def _run(args: list[str], cwd: Path, log: Path, what: str) -> None:
    with open(log, "a") as out:
        out.write(f"$ {' '.join(args)}\n")
        out.flush()
        result = subprocess.run(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=_go_env())
    if result.returncode != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise BuildError(f"{what} failed: {tail[0]} (the whole log: {log})")


def _build(target: Path, package: str, cwd: Path, log: Path, progress: Progress, ldflags: str = "") -> None:
    """``go build`` into ``target``, atomically (a half-written binary never has the final name)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    args = [go(), "build", "-trimpath", "-o", str(partial)]
    if ldflags:
        args += ["-ldflags", ldflags]
    with _ticking(f"building {target.parent.name}/{target.name}", progress):
        _run([*args, package], cwd, log, f"building {package}")
    partial.replace(target)


def _stamp(version: str) -> str:
    """The ldflags upstream's hack/lib/version.sh passes, so the programs report their real version."""
    minor = version.removeprefix("v1.").split(".")[0]
    flags = []
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X '{package}.gitVersion={version}'",
            f"-X '{package}.gitMajor=1'",
            f"-X '{package}.gitMinor={minor}'",
            f"-X '{package}.gitTreeState=clean'",
        ]
    return " ".join(flags)


def _kubernetes_wrapper(work: Path, v: Versions, log: Path, progress: Progress) -> None:
    """A main module requiring k8s.io/kubernetes with every staging module replaced by its published version."""
    if (work / "go.sum").is_file():
        return
    work.mkdir(parents=True, exist_ok=True)
    upstream = Path(module_download("k8s.io/kubernetes", v.kubernetes)["GoMod"]).read_text()
    staging = [
        line.split("=>")[0].strip()
        for line in upstream.splitlines()
        if "=> ./staging/" in line and line.strip().startswith("k8s.io/")
    ]
    if not staging:
        raise BuildError(f"k8s.io/kubernetes@{v.kubernetes}: no staging modules in its go.mod (a new layout?)")
    lines = ["module local/kubernetes-build", "", "go 1.24.0", "", "godebug default=go1.24", ""]
    for module in staging:
        try:
            module_download(module, v.staging)
            lines.append(f"replace {module} => {module} {v.staging}")
        except BuildError:
            if not module.startswith("k8s.io/sample-"):
                raise
            stub = work / "stub" / module.removeprefix("k8s.io/")
            stub.mkdir(parents=True, exist_ok=True)
            (stub / "go.mod").write_text(f"module {module}\n")
            lines.append(f"replace {module} => ./stub/{module.removeprefix('k8s.io/')}")
            progress(f"  {module}@{v.staging} is not served: an empty stub (neither program imports it)")
    (work / "go.mod").write_text("\n".join(lines) + "\n")
    tools = [f"k8s.io/kubernetes/cmd/{name}@{v.kubernetes}" for name in ("kube-apiserver", "kube-controller-manager")]
    with _ticking(f"resolving k8s.io/kubernetes {v.kubernetes} ({len(staging)} staging modules)", progress):
        _run([go(), "get", "-tool", *tools], work, log, f"resolving k8s.io/kubernetes@{v.kubernetes}")


def _etcd_wrapper(work: Path, v: Versions, log: Path, progress: Progress) -> None:
    if (work / "go.sum").is_file():
        return
    work.mkdir(parents=True, exist_ok=True)
    (work / "go.mod").write_text("module local/etcd-build\n\ngo 1.24.0\n")
    with _ticking(f"resolving etcd {v.etcd}", progress):
        _run([go(), "get", "-tool", f"go.etcd.io/etcd/server/v3@{v.etcd}"], work, log, f"resolving etcd {v.etcd}")


def _kserve_source(work: Path, release: str, progress: Progress) -> Path:
    """A writable copy of the release's module directory (the module cache is read-only)."""
    source = work / "src"
    if (source / "go.mod").is_file():
        return source
    with _ticking(f"downloading github.com/kserve/kserve {release}", progress):
        origin = module_dir("github.com/kserve/kserve", release)
    partial = work / "src.partial"
    if partial.exists():
        shutil.rmtree(partial)  # our own half-made copy from an interrupted build
    shutil.copytree(origin, partial, symlinks=True)
    for path in [partial, *partial.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o200)
    partial.replace(source)
    return source


def missing(releases: tuple[str, ...] | None = None) -> list[Path]:
    """The programs ``ensure_built`` would build now (for ``releases``, default every supported one)."""
    v = versions()
    return Binaries(cache_root() / "bin", v).missing(v.kserve if releases is None else releases)


def ensure_built(releases: tuple[str, ...] | None = None, progress: Progress | None = None) -> Binaries:
    """Every program of the control plane for ``releases`` (default: every supported KServe release), built if
    missing; returns where they are."""
    v = versions()
    releases = v.kserve if releases is None else releases
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    root = cache_root()
    binaries = Binaries(root / "bin", v)
    if not binaries.missing(releases):
        return binaries
    with _locked(root):
        missing = binaries.missing(releases)
        if not missing:
            return binaries
        say(
            f"building the local control plane from Go modules into {root} ({len(missing)} programs; once per version):"
        )
        build = root / "build"
        if not binaries.etcd.is_file():
            work = build / f"etcd-{v.etcd}"
            _etcd_wrapper(work, v, work / "build.log", say)
            _build(binaries.etcd, "go.etcd.io/etcd/server/v3", work, work / "build.log", say)
        k8s_programs = [
            (binaries.kube_apiserver, "kube-apiserver"),
            (binaries.kube_controller_manager, "kube-controller-manager"),
        ]
        if any(not path.is_file() for path, _ in k8s_programs):
            work = build / f"kubernetes-{v.kubernetes}"
            _kubernetes_wrapper(work, v, work / "build.log", say)
            for path, name in k8s_programs:
                if not path.is_file():
                    _build(path, f"k8s.io/kubernetes/cmd/{name}", work, work / "build.log", say, _stamp(v.kubernetes))
        for release in releases:
            work = build / f"kserve-{release}"
            for path, command in (
                (binaries.kserve_manager(release), "manager"),
                (binaries.kserve_agent(release), "agent"),
            ):
                if not path.is_file():
                    source = _kserve_source(work, release, say)
                    _build(path, f"./cmd/{command}", source, work / "build.log", say)
    return binaries
