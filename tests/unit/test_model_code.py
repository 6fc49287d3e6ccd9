"""Only the code that can change a model is hashed into its card, reruns the experiment and starts CI's
model gate: ``MODEL_CODE`` (core/model_card.py), dvc.yaml and .gitlab-ci.yml agree, the model code imports
nothing outside itself, and changing a benchmark, the CLI or the plumbing changes neither ``code_version``
nor ``dvc status`` (a real DVC run on a copy of the repository)."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from bench.worktree import copy_worktree
from core.model_card import MODEL_CODE, code_version
from tests.conftest import ROOT, run_mlops
from tests.integration.conftest import command_env, sh

#: Every module of training/ outside MODEL_CODE, and why it cannot change a model.
NOT_MODEL = {
    "training/cli.py": "the click commands: wiring",
    "training/gate.py": "judges a model, never changes one",
    "training/predict.py": "batch prediction with a saved model",
    "training/versioning.py": "DVC plumbing: fetches and stores data versions",
}
FIRST_PARTY = ("core", "infra", "training", "serving", "gitops", "monitoring", "pipelines", "mlops", "bench")


def model_files() -> list[Path]:
    paths = [ROOT / entry for entry in MODEL_CODE]
    return [f for p in paths for f in (sorted(p.rglob("*.py")) if p.is_dir() else [p])]


def test_every_training_module_is_model_code_or_says_why_not():
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "training").glob("*.py")}
    assert modules == {m for m in MODEL_CODE if m.startswith("training/")} | set(NOT_MODEL)


def test_the_model_code_imports_nothing_outside_it():
    allowed = {Path(e).with_suffix("").as_posix().replace("/", ".") for e in MODEL_CODE}
    for path in model_files():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.split(".")[0] in FIRST_PARTY:
                    assert any(name == a or name.startswith(a + ".") for a in allowed), f"{path}: imports {name}"


def test_dvc_stages_and_ci_model_inputs_name_exactly_the_model_code():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        code = [d for d in stage["deps"] if d.split("/")[0] in FIRST_PARTY]
        assert code == list(MODEL_CODE), f"dvc.yaml stage {name}"
    ci = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())
    watched = [p for p in ci[".model-inputs"] if p.split("/")[0] in FIRST_PARTY and not p.startswith("pipelines/")]
    assert watched == [e if e.endswith(".py") else f"{e}/**/*" for e in MODEL_CODE]


def test_a_benchmark_the_cli_or_the_plumbing_changes_neither_code_version_nor_dvc_status(tmp_path):
    repo_copy = copy_worktree(ROOT, tmp_path / "repo")
    assert run_mlops("data", "pull", cwd=repo_copy, env=command_env()).returncode == 0
    assert "up to date" in sh("dvc", "status", cwd=repo_copy).stdout.lower()
    before = code_version(repo_copy)
    for path in ("bench/figures.py", "training/cli.py", "infra/store.py", "mlops/cli.py", "training/gate.py"):
        with open(repo_copy / path, "a") as handle:
            handle.write("\n# an edit that cannot change a model\n")
    assert code_version(repo_copy) == before
    assert "up to date" in sh("dvc", "status", cwd=repo_copy).stdout.lower()
    with open(repo_copy / "training" / "train.py", "a") as handle:  # the control: model code
        handle.write("\n# an edit of the model code\n")
    assert code_version(repo_copy) != before
    status = sh("dvc", "status", cwd=repo_copy).stdout
    assert "changed deps" in status and "training/train.py" in status, status
