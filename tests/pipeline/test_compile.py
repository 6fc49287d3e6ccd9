"""Compiled pipeline: committed, deterministic, checked; its Kubernetes objects valid."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys

import yaml

from infra.image import IMAGE
from infra.manifests import render, validate_object
from pipelines.compile import CLUSTER_IR_FILE, IR_FILE, check_compiled
from pipelines.compile import render as render_compiled


def test_committed_compiled_files_are_up_to_date(root):
    assert check_compiled(root) == [], "run `mlops pipeline compile` and commit the result"


def test_compiling_in_two_processes_with_different_hash_seeds_gives_identical_bytes(tmp_path):
    """Set and dict orders vary with PYTHONHASHSEED between processes, never within one."""
    digests = []
    for seed in ("1", "2"):
        code = "import hashlib; from pipelines.compile import render; "
        code += "print(hashlib.sha256(''.join(render().values()).encode()).hexdigest())"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        digests.append(result.stdout.strip())
    assert digests[0] == digests[1] == hashlib.sha256("".join(render_compiled().values()).encode()).hexdigest()


def test_check_reports_a_stale_file_and_exits_1(root, tmp_path):
    for path in (IR_FILE, CLUSTER_IR_FILE):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / path, tmp_path / path)
    (tmp_path / "params.yaml").write_text("{}\n")
    assert check_compiled(tmp_path) == []
    with open(tmp_path / CLUSTER_IR_FILE, "a") as handle:  # the cluster's copy, edited by hand, is stale too
        handle.write("# hand edit\n")
    assert check_compiled(tmp_path) == [CLUSTER_IR_FILE]
    shutil.copy(root / CLUSTER_IR_FILE, tmp_path / CLUSTER_IR_FILE)
    with open(tmp_path / IR_FILE, "a") as handle:
        handle.write("# hand edit\n")
    assert check_compiled(tmp_path) == [IR_FILE]
    result = subprocess.run(
        [sys.executable, "-m", "mlops.cli", "pipeline", "compile", "--check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "MLOPS_PROJECT_ROOT": str(tmp_path)},
    )
    assert result.returncode == 1 and f"stale: {IR_FILE}" in result.stderr


def test_every_step_runs_the_one_project_image_without_runtime_installs(root):
    spec = next(yaml.safe_load_all((root / IR_FILE).read_text()))
    executors = spec["deploymentSpec"]["executors"].values()
    assert {e["container"]["image"] for e in executors} == {IMAGE}
    assert not any("pip install" in " ".join(e["container"]["command"]) for e in executors)


def test_credentials_reach_steps_only_through_secret_references(root):
    ir_text = (root / IR_FILE).read_text()
    spec, platform = yaml.safe_load_all(ir_text)
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert not [p for p in parameters if any(w in p.lower() for w in ("token", "secret", "password", "key"))]
    secrets = {
        s["secretName"]
        for executor in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values()
        for s in executor.get("secretAsEnv", [])
    }
    assert secrets == {"mpg-s3-credentials", "mpg-git-token"}


def test_kfp_tree_renders_and_validates_strictly(root):
    tree = root / "k8s" / "base" / "kfp"
    assert [p for obj in render(tree) for p in validate_object(obj, root / "k8s" / "schemas")] == []
    objects = {doc["kind"]: doc for doc in render(tree)}
    assert set(objects) == {"CronJob", "ServiceAccount", "ConfigMap", "NetworkPolicy"}, (
        "no Pipeline/PipelineVersion: they need KFP's Kubernetes-native API mode and runs never refer to them"
    )
    cron = objects["CronJob"]["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    container = cron["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == IMAGE, "k8s/base/kfp/kustomization.yaml images: must match infra/image.py"
    assert container["args"][:2] == ["pipeline", "submit"]


def test_schema_check_rejects_an_unknown_field(root):
    cron = next(d for d in render(root / "k8s" / "base" / "kfp") if d["kind"] == "CronJob")
    cron["spec"]["colour"] = "blue"
    assert any("colour" in problem for problem in validate_object(cron, root / "k8s" / "schemas"))
