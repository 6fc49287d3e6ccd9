"""Run the committed, compiled pipeline on this machine with ``kfp.local``.

kfp.local logs "Executing task 'x'" and "Task 'x' finished with status S" for every
task and streams each task's own output; ``StepProgress`` reads those lines as they
pass, prints one line per finished step with its duration, and keeps the full log
for the file and for naming the cause of a failure.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sys
import threading
import time
import warnings
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.errors import MlopsError

ANSI = re.compile(r"\x1b\[[0-9;]*m")
STARTED = re.compile(r"Executing task '(?P<task>[^']+)'")
FINISHED = re.compile(r"Task '(?P<task>[^']+)' finished with status (?P<status>\w+)")
SKIPPED = re.compile(r"Skipping conditional task (?P<task>\S+)")
ERROR = re.compile(r"^\s*(?:[\w.]+\.)?(?P<type>\w+(?:Error|Exception)): (?P<message>.+)$")

#: kfp.local's folder layout under pipeline_root (one folder per run, one per task, one per output) is read
#: back for the gate report and the proposal: checked against this version (tests/unit/test_library_internals.py).
CHECKED = {"kfp": "2.17.3"}


class PipelineRunError(MlopsError):
    """The pipeline could not start (bad parameters, missing compiled file)."""


@dataclass
class Step:
    name: str
    status: str
    seconds: float


@dataclass
class Outcome:
    """What a run ended with; ``to_dict`` is the ``--summary-json`` document."""

    status: str  # published | rejected | failed
    wall_seconds: float
    steps: list[Step] = field(default_factory=list)
    model_uri: str | None = None
    model_id: str | None = None
    algorithm: str | None = None  # the candidate the selection chose
    metrics: dict | None = None
    gate: dict | None = None
    error: str | None = None
    run_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StepProgress(io.TextIOBase):
    """A stdout stand-in: keeps the log, reports each step as it finishes.

    kfp.local runs loop iterations in threads that print concurrently, and ``print``
    writes a line in several calls, so partial lines are kept per thread.
    """

    def __init__(self, echo: Callable[[str], None]):
        self.echo = echo
        self.lines: list[str] = []
        self.steps: list[Step] = []
        self._started: dict[str, deque[float]] = defaultdict(deque)
        self._partial: dict[int, str] = defaultdict(str)
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            thread = threading.get_ident()
            *complete, self._partial[thread] = (self._partial[thread] + text).split("\n")
            for line in complete:
                self._line(ANSI.sub("", line))
        return len(text)

    def _line(self, line: str) -> None:
        self.lines.append(line)
        if match := STARTED.search(line):
            self._started[match["task"]].append(time.perf_counter())
        elif match := FINISHED.search(line):
            began = self._started[match["task"]]
            seconds = time.perf_counter() - began.popleft() if began else 0.0
            self._report(Step(match["task"], match["status"], round(seconds, 2)))
        elif match := SKIPPED.search(line):
            self._report(Step(match["task"], "SKIPPED", 0.0))

    def _ignored(self, index: int) -> bool:
        """Is the error at ``index`` the end of an "Exception ignored in ..." traceback?"""
        for above in range(index - 1, max(-1, index - 40), -1):
            if self.lines[above].strip().startswith("Traceback (most recent call last)"):
                return above > 0 and self.lines[above - 1].strip().startswith("Exception ignored")
        return False

    def _report(self, step: Step) -> None:
        self.steps.append(step)
        self.echo(f"  {step.name:<20} {step.status:<8} {step.seconds:6.1f} s")

    def cause(self) -> str | None:
        """The last exception a task printed, with the indented lines that continue its message (not what
        Python reports while shutting down, "Exception ignored in ...", after the real error)."""
        for index in range(len(self.lines) - 1, -1, -1):
            if (match := ERROR.match(self.lines[index])) and not self._ignored(index):
                rest = []
                for line in self.lines[index + 1 : index + 6]:
                    stop = ("[KFP Executor", "finished with status", "Exception ignored", "Traceback")
                    if not line.strip() or any(marker in line for marker in stop):
                        break
                    rest.append(line.strip())
                return "\n".join([f"{match['type']}: {match['message']}", *rest])
        return None


#: KFP's parameter types, as the compiled pipeline declares its inputs, and the Python values each takes.
_KFP_TYPES = {
    "STRING": (str, "a string"),
    "BOOLEAN": (bool, "true or false"),
    "NUMBER_INTEGER": (int, "an integer"),
    "NUMBER_DOUBLE": ((int, float), "a number"),
    "LIST": (list, "a list, e.g. '[train.cv_folds=3]'"),
    "STRUCT": (dict, "a mapping"),
}


def declared_parameters(ir_path: Path) -> dict[str, dict[str, Any]]:
    """The compiled pipeline's input declarations (``parameterType``, ``defaultValue``) by name."""
    return next(yaml.safe_load_all(ir_path.read_text()))["root"]["inputDefinitions"]["parameters"]


def pipeline_parameters(ir_path: Path) -> dict[str, Any]:
    """Declared parameters of the compiled pipeline with their defaults."""
    return {name: item.get("defaultValue") for name, item in declared_parameters(ir_path).items()}


def check_arguments(ir_path: Path, arguments: dict[str, Any]) -> None:
    """A parameter the pipeline does not take, or a value of the wrong type, is an error before anything runs;
    ``params_overrides`` must also be overrides ``params.yaml`` accepts."""
    declared = declared_parameters(ir_path)
    unknown = sorted(set(arguments) - set(declared))
    if unknown:
        message = f"unknown pipeline parameter(s) {', '.join(unknown)}; known: {', '.join(declared)}"
        dotted = [name for name in unknown if "." in name]  # params.yaml's keys (train.cv_folds) are overrides
        if dotted and "params_overrides" in declared:
            values = ",".join(f"{name}={arguments[name]}" for name in dotted)
            message += f"; params.yaml values go in params_overrides: params_overrides=[{values}]"
        raise PipelineRunError(message)
    for name, value in arguments.items():
        kind = declared[name]["parameterType"]
        expected, described = _KFP_TYPES.get(kind, (object, kind))
        if not isinstance(value, expected) or (isinstance(value, bool) and kind.startswith("NUMBER")):
            raise PipelineRunError(f"{name} must be {described}, not {value!r}")
    for name in ("repo", "data_revision", "merge_request_target", "dvc_remote"):  # given to git and DVC
        value = arguments.get(name)
        if isinstance(value, str) and (value.startswith("-") or not value.isprintable()):
            raise PipelineRunError(f"{name} {value!r}: must not start with '-' (git would read it as an option)")
    overrides = arguments.get("params_overrides", [])
    if not all(isinstance(o, str) for o in overrides):
        raise PipelineRunError("params_overrides must be a list of 'key=value' strings")
    from training.params import load_params

    load_params(ir_path.parents[1] / "params.yaml", overrides, flag="params_overrides")


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _outcome(run_dir: Path | None, progress: StepProgress, wall: float, failed: bool) -> Outcome:
    outcome = Outcome(status="failed" if failed else "rejected", wall_seconds=round(wall, 2), steps=progress.steps)
    outcome.run_dir = str(run_dir) if run_dir else None
    if failed:
        outcome.error = progress.cause() or "a step failed; see the log"
    if run_dir is None:
        return outcome
    outcome.gate = _read_json(run_dir / "gate" / "report")
    card = _read_json(run_dir / "select-model" / "model" / "model.json")
    outcome.algorithm = card.get("algorithm") if card else None
    proposal = _read_json(run_dir / "propose" / "proposal")
    if outcome.gate:
        outcome.model_id = outcome.gate["candidate_id"]
        outcome.metrics = outcome.gate["candidate_metrics"]
    if proposal and not failed:
        outcome.status = "published"
        outcome.model_uri = proposal["model_uri"]
    return outcome


@contextlib.contextmanager
def _root_logging_to(stream: io.TextIOBase):
    """Route the root logger to ``stream`` at INFO for the run.

    kfp.local swaps the root logger's handlers and level per task; with loop
    iterations in threads, one task restores them while another still logs, and that
    line would otherwise be dropped (the default handler only shows warnings).
    """
    root = logging.getLogger()
    handler = logging.StreamHandler(stream)
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def run_compiled(
    ir_path: Path, arguments: dict[str, Any], pipeline_root: Path, log_path: Path, echo: Callable[[str], None]
) -> Outcome:
    """Execute the compiled pipeline with kfp.local (SubprocessRunner, this environment)."""
    from kfp import components, local

    if not ir_path.is_file():
        raise PipelineRunError(f"{ir_path} not found; run `mlops pipeline compile`")
    check_arguments(ir_path, arguments)
    # Steps run `python3 -m kfp.dsl.executor_main`: make that this environment's python.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    pipeline_root.mkdir(parents=True, exist_ok=True)
    before = set(pipeline_root.iterdir())
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root), raise_on_error=True)
    pipeline = components.load_component_from_file(str(ir_path))
    progress = StepProgress(echo)
    started = time.perf_counter()
    failed = False
    with warnings.catch_warnings(), contextlib.redirect_stdout(progress), _root_logging_to(progress):
        # kfp.local warns that the steps' image is not used and display names are ignored:
        # both are expected, the image being this very environment.
        warnings.filterwarnings("ignore", module=r"kfp\.local")
        try:
            pipeline(**arguments)
        except RuntimeError:
            failed = True
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("\n".join(progress.lines) + "\n")
    new_dirs = sorted(set(pipeline_root.iterdir()) - before)  # kfp.local's run folder: <root>/<run>/<task>/<output>
    return _outcome(new_dirs[-1] if new_dirs else None, progress, time.perf_counter() - started, failed)
