"""bump, promote, rollback, status and diff on a real git repository pushing to a bare remote."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from core.uri import parse_store_uri
from infra.shipped import shipped_path
from tests.conftest import MLOPS, one_line_error, run_mlops

STAGING, PRODUCTION = "k8s/overlays/staging/model.yaml", "k8s/overlays/production/model.yaml"
MR = ("--commit", "--push")


def numstat(world, base: str, ref: str) -> list[str]:
    return world.git("diff", "--numstat", base, ref, cwd=world.remote).stdout.split("\n")[:-1]


def shipped_files(uri: str) -> set[str]:
    folder = shipped_path(parse_store_uri(uri)).as_posix()
    return {f"{folder}/model.joblib", f"{folder}/model.json"}


def name_status(world, base: str, ref: str) -> set[tuple[str, str]]:
    lines = world.git("diff", "--no-renames", "--name-status", base, ref, cwd=world.remote).stdout.splitlines()
    return {tuple(line.split("\t")) for line in lines}


def option(push: dict, name: str) -> str:
    return next(o.split("=", 1)[1] for o in push["options"] if o.startswith(f"merge_request.{name}="))


def test_bump_pushes_a_one_line_change_and_ships_the_model_with_merge_request_options(world):
    uri = world.models["b"]
    result = world.mlops(
        "gitops", "bump", "--env", "staging", "--model-uri", uri, "--branch", "mlops/bump-staging", *MR
    )
    assert result.returncode == 0, result.stderr
    assert f"1\t1\t{STAGING}" in numstat(world, "main", "mlops/bump-staging"), "one line of the model file"
    added = {("A", path) for path in shipped_files(uri)}
    assert name_status(world, "main", "mlops/bump-staging") == {("M", STAGING), *added}, (
        "the model travels with the overlay that names it; production still names the original: it stays"
    )
    assert uri in world.remote_file("mlops/bump-staging", STAGING)
    [push] = world.pushes()
    assert "merge_request.create" in push["options"] and option(push, "target") == "main"
    model_id = uri.rstrip("/").rsplit("/", 1)[1]
    assert option(push, "title").startswith(f"staging: serve model {model_id[:12]} (kernel_ridge, holdout RMSE 2.")
    description = option(push, "description")
    assert "\\n" in description and "\n" not in description, "newlines travel as a literal \\n (git forbids LF)"
    assert "Rendered diff" in description and "InferenceService/mpg-staging/mpg" in description
    assert {o for o in push["options"] if o.startswith("merge_request.label=")} == {
        "merge_request.label=mlops",
        "merge_request.label=env::staging",
    }
    message = world.git("log", "-1", "--format=%B", "mlops/bump-staging", cwd=world.remote).stdout
    assert model_id in message and "Mlops-Bot: bump" in message
    assert world.git("status", "--porcelain").stdout == "", "the user's checkout is not touched"


def test_bump_to_the_model_already_served_changes_nothing(world):
    result = world.mlops("gitops", "bump", "--env", "staging", "--model-uri", world.models["original"])
    assert result.returncode == 0 and "nothing to do" in result.stdout
    pushed = world.mlops(
        "gitops", "bump", "--env", "staging", "--model-uri", world.models["original"], "--branch", "x", *MR
    )
    assert pushed.returncode == 0 and "nothing to commit" in pushed.stdout and world.pushes() == []


def test_bump_in_the_working_tree_edits_one_line_and_ships_the_model(world):
    before = (world.clone / STAGING).read_text()
    assert world.mlops("gitops", "bump", "--env", "staging", "--model-uri", world.models["c"]).returncode == 0
    diff = world.git("diff", "--numstat").stdout.split("\n")[:-1]
    assert diff == [f"1\t1\t{STAGING}"]
    assert (world.clone / STAGING).read_text() == before.replace(world.models["original"], world.models["c"])
    untracked = world.git("ls-files", "--others", "--exclude-standard").stdout.split()
    assert set(untracked) == shipped_files(world.models["c"])


@pytest.mark.parametrize(
    ("uri", "code", "named"),
    [
        ("s3://mpg-mlops/models/mpg/latest/", 2, "not a store URI"),
        ("/mnt/models", 2, "not a store URI"),
        ("s3://mpg-mlops/models/mpg/" + "0" * 64 + "/", 1, "nothing was published there"),
    ],
)
def test_bump_refuses_a_uri_that_is_not_immutable_or_not_in_the_store(world, uri, code, named):
    line = one_line_error(world.mlops("gitops", "bump", "--env", "staging", "--model-uri", uri), code)
    assert named in line
    if code == 1:
        assert line.endswith("to bump to it anyway: --force"), "a refusal names the way past it"
    assert world.git("status", "--porcelain").stdout == ""


def test_force_bumps_to_a_model_the_store_does_not_hold_and_says_it_is_not_shipped(world):
    uri = "s3://mpg-mlops/models/mpg/" + "1" * 64 + "/"
    result = world.mlops("gitops", "bump", "--env", "staging", "--model-uri", uri, "--force")
    assert result.returncode == 0 and uri in (world.clone / STAGING).read_text()
    assert "model 111111111111 is not shipped in data/models" in result.stderr


def test_rollback_to_a_revision_that_does_not_exist_says_so(world):
    line = one_line_error(world.mlops("gitops", "rollback", "--env", "staging", "--to", "nosuchref"))
    assert "no such revision 'nosuchref'" in line


def test_rollback_on_a_fresh_store_restores_the_model_from_the_shipped_history(world, tmp_path):
    """The model to go back to was pruned from data/models by a later bump and no store holds it: the
    rollback takes it from the git history of data/models, verified, and ships it again."""
    for env, name in (("staging", "b"), ("production", "b"), ("staging", "c")):
        command = "promote" if env == "production" else "bump"
        args = ("--env", env, "--model-uri", world.models[name]) if command == "bump" else ()
        assert world.mlops("gitops", command, *args, "--branch", f"{command}-{name}", *MR).returncode == 0
        merge(world, f"{command}-{name}")
    assert not (world.clone / shipped_path(parse_store_uri(world.models["original"]))).exists(), "pruned"
    fresh = {"MLOPS_STORE_ROOT": str(tmp_path / "fresh-store"), "MLOPS_CACHE_DIR": str(tmp_path / "fresh-cache")}
    result = run_mlops("gitops", "rollback", "--env", "production", env={**world.env, **fresh}, cwd=world.clone)
    assert result.returncode == 0, result.stderr
    assert world.models["original"] in (world.clone / PRODUCTION).read_text()
    untracked = world.git("ls-files", "--others", "--exclude-standard").stdout.split()
    assert set(untracked) == shipped_files(world.models["original"]), "shipped again with the rollback"
    status = json.loads(run_mlops("gitops", "status", "--json", env={**world.env, **fresh}, cwd=world.clone).stdout)
    assert status["production"]["algorithm"] == "kernel_ridge", "the fresh store holds it now"


def merge(world, branch: str) -> None:
    """What merging the merge request does: main becomes the branch (a fast-forward here)."""
    world.git("merge-base", "--is-ancestor", "main", branch, cwd=world.remote)
    world.git("update-ref", "refs/heads/main", f"refs/heads/{branch}", cwd=world.remote)
    world.git("pull", "-q", "--ff-only", "origin", "main")


def test_promote_then_rollback_round_trip(world):
    new = world.models["b"]
    assert (
        world.mlops("gitops", "bump", "--env", "staging", "--model-uri", new, "--branch", "bump", *MR).returncode == 0
    )
    merge(world, "bump")
    result = world.mlops("gitops", "promote", "--from", "staging", "--to", "production", "--branch", "promote", *MR)
    assert result.returncode == 0, result.stderr
    assert numstat(world, "main", "promote") == [f"1\t1\t{PRODUCTION}"], "a promotion is a one-file, one-line diff"
    assert world.remote_file("promote", PRODUCTION) == world.remote_file("promote", STAGING)
    assert option(world.pushes()[-1], "title").startswith("production: serve model")
    merge(world, "promote")
    again = world.mlops("gitops", "promote", "--branch", "promote-again", *MR)
    assert again.returncode == 0 and "nothing to commit" in again.stdout

    rollback = world.mlops("gitops", "rollback", "--env", "production", "--branch", "rollback", *MR)
    assert rollback.returncode == 0, rollback.stderr
    assert numstat(world, "main", "rollback") == [f"1\t1\t{PRODUCTION}"]
    assert world.models["original"] in world.remote_file("rollback", PRODUCTION)

    first = world.git("rev-list", "--max-parents=0", "main").stdout.strip()
    to_ref = world.mlops("gitops", "rollback", "--env", "staging", "--to", first)
    assert to_ref.returncode == 0 and world.models["original"] in (world.clone / STAGING).read_text()


def test_rollback_without_history_is_one_line(world):
    line = one_line_error(world.mlops("gitops", "rollback", "--env", "production"))
    assert "never served another model" in line


def test_two_bumps_racing_to_one_branch_both_land(world):
    """Two clones push different bumps to the same branch at once; the remote's hook holds each push a
    second, so both see the branch absent and one is refused: it is replayed on top and pushed again."""
    hook = world.remote / "hooks" / "pre-receive"
    hook.write_text(hook.read_text() + "import time; time.sleep(1)\n")
    second = world.clone.parent / "clone-2"
    world.git("clone", "-q", str(world.remote), str(second), cwd=world.clone.parent)
    results = {}

    def bump(name, clone):
        command = [str(MLOPS), "gitops", "bump", "--env", "staging", "--model-uri", world.models[name]]
        command += ["--branch", "mlops/bump-staging", *MR]
        results[name] = subprocess.run(command, cwd=clone, env=world.env, capture_output=True, text=True)

    threads = [threading.Thread(target=bump, args=a) for a in (("b", world.clone), ("c", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(r.returncode == 0 for r in results.values()), {k: r.stderr for k, r in results.items()}
    log = world.git("log", "--format=%B", "main..mlops/bump-staging", cwd=world.remote).stdout
    assert world.models["b"] in log and world.models["c"] in log, "both bumps are in the branch history"
    assert len(world.pushes()) >= 3, "one push was refused and retried"
    final = world.remote_file("mlops/bump-staging", STAGING)
    assert (world.models["b"] in final) != (world.models["c"] in final)


def test_a_remote_that_refuses_the_push_gives_one_line_and_keeps_the_local_branch(world):
    (world.remote / "hooks" / "pre-receive").write_text("#!/bin/sh\necho 'protected: no bot pushes' >&2\nexit 1\n")
    result = world.mlops("gitops", "bump", "--env", "staging", "--model-uri", world.models["b"], "--branch", "b", *MR)
    line = one_line_error(result)
    assert "refused the push" in line and "protected: no bot pushes" in line and "stays on the local branch b" in line
    assert world.models["b"] in world.git("show", f"b:{STAGING}").stdout


def test_status_shows_every_environment_with_its_card_and_commit(world):
    result = world.mlops("gitops", "status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert set(status) == {"staging", "production"}
    for row in status.values():
        assert row["model_uri"] == world.models["original"] and row["algorithm"] == "kernel_ridge"
        assert 1.5 < row["holdout"]["rmse"] < 2.8 and row["set_by_commit"]
    text = world.mlops("gitops", "status").stdout
    served = parse_store_uri(world.models["original"]).model_id
    assert f"staging: model {served[:12]}" in text and "holdout RMSE" in text
    world.mlops("gitops", "bump", "--env", "staging", "--model-uri", world.models["b"])
    world.git("commit", "-qam", "staging: " + "a very long subject " * 20)
    long = [line for line in world.mlops("gitops", "status").stdout.splitlines() if "set by" in line]
    assert long and all(len(line) <= 4 + len("set by ") + 13 + 72 for line in long) and long[0].endswith("…")


def test_diff_shows_the_rendered_object_change(world):
    world.mlops("gitops", "bump", "--env", "staging", "--model-uri", world.models["c"])
    text = world.mlops("gitops", "diff", "--base", "HEAD").stdout
    assert "overlays/staging: changed InferenceService/mpg-staging/mpg" in text
    assert "overlays/staging: changed CronJob/mpg-staging/mpg-monitor-report" in text, "the report judges it too"
    diff = [line.removeprefix("    ") for line in text.splitlines() if line.startswith(("    +", "    -"))]
    changed = [" ".join(line.split()) for line in diff]  # the unified diff's own lines, indented 4 in the report
    assert sorted(changed) == sorted([
        f"- storageUri: {world.models['original']}", f"+ storageUri: {world.models['c']}",
        f"- - --model={world.models['original']}", f"+ - --model={world.models['c']}",
    ])  # fmt: skip
    assert "overlays/production" not in text
    markdown = world.mlops("gitops", "diff", "--base", "HEAD", "--format", "markdown").stdout
    assert "#### `overlays/staging`" in markdown and "```diff" in markdown


def test_a_bump_killed_during_its_push_leaves_everything_as_it_was_and_a_retry_lands(world):
    """SIGKILL of the bump and its git children while the remote holds the push in its hook."""
    hook = world.remote / "hooks" / "pre-receive"
    recording = hook.read_text()
    hook.write_text(recording + "import time; time.sleep(30)\n")
    main_before = world.git("rev-parse", "main").stdout
    command = [str(MLOPS), "gitops", "bump", "--env", "staging", "--model-uri", world.models["b"]]
    command += ["--branch", "mlops/bump-staging", *MR]
    process = subprocess.Popen(command, cwd=world.clone, env=world.env, start_new_session=True)
    deadline = time.monotonic() + 60
    while not world.pushes() and time.monotonic() < deadline:  # the push has reached the remote's hook
        time.sleep(0.1)
    assert world.pushes(), "the push started"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    branch = world.git("rev-parse", "--verify", "-q", "refs/heads/mlops/bump-staging", cwd=world.remote, check=False)
    assert branch.returncode != 0, "the remote kept its refs: no branch half-made"
    assert world.git("rev-parse", "main").stdout == main_before and world.git("status", "--porcelain").stdout == ""
    hook.write_text(recording)
    retry = world.mlops("gitops", "bump", "--env", "staging", "--model-uri", world.models["b"],
                        "--branch", "mlops/bump-staging", *MR)  # fmt: skip
    assert retry.returncode == 0, retry.stderr
    assert world.models["b"] in world.remote_file("mlops/bump-staging", STAGING)


def test_a_bot_branch_is_made_afresh_from_the_target_every_time(world):
    """The remote still has the bump branch of a merged merge request (GitLab keeps it when asked to);
    main has moved on since. A new bump to that branch starts from main, so the merge request's diff
    is this bump alone."""
    bump = ("gitops", "bump", "--env", "staging", "--branch", "mlops/bump-staging", *MR)
    assert world.mlops(*bump[:4], "--model-uri", world.models["b"], *bump[4:]).returncode == 0
    merge(world, "mlops/bump-staging")
    (world.clone / "NOTES.md").write_text("main moves on\n")
    world.git("add", "NOTES.md")
    world.git("commit", "-qm", "an unrelated change")
    world.git("push", "-q", "origin", "main")
    result = world.mlops(*bump[:4], "--model-uri", world.models["c"], *bump[4:])
    assert result.returncode == 0, result.stderr
    main = world.git("rev-parse", "main", cwd=world.remote).stdout
    assert world.git("rev-parse", "mlops/bump-staging~1", cwd=world.remote).stdout == main
    assert name_status(world, "main", "mlops/bump-staging") == {
        ("M", STAGING),
        *{("A", path) for path in shipped_files(world.models["c"])},
        *{("D", path) for path in shipped_files(world.models["b"])},  # no overlay names b any more
    }


def test_the_merge_request_gitlab_opened_is_named_and_a_remote_that_opened_none_is_said(world):
    bump = ("gitops", "bump", "--env", "staging", "--model-uri", world.models["b"])
    plain = world.mlops(*bump, "--branch", "plain", *MR)
    assert plain.returncode == 0 and "answered with no merge request: open one into main by hand" in plain.stdout
    hook = world.remote / "hooks" / "pre-receive"
    hook.write_text(  # what GitLab answers a push with merge-request options
        hook.read_text() + 'print("View merge request for gl:\\n  https://gitlab.example/mpg/-/merge_requests/7",'
        " file=sys.stderr)\n"
    )
    gitlab = world.mlops(*bump, "--branch", "gl", *MR)
    assert gitlab.returncode == 0, gitlab.stderr
    assert "merge request into main at https://gitlab.example/mpg/-/merge_requests/7" in gitlab.stdout


def test_a_remote_without_push_options_names_the_cause_and_both_fixes(world):
    world.git("config", "receive.advertisePushOptions", "false", cwd=world.remote)
    bump = ("gitops", "bump", "--env", "staging", "--model-uri", world.models["b"], "--branch", "b", *MR)
    line = one_line_error(world.mlops(*bump))
    assert "does not take push options" in line and "merge_request" in line
    assert "without --push" in line and "receive.advertisePushOptions true" in line


DIGEST = "sha256:" + "ab" * 32


def test_image_pins_a_digest_everywhere_in_one_merge_request_that_equals_a_fresh_compile(world):
    image = f"registry.example.com/team/mpg@{DIGEST}"
    result = world.mlops("gitops", "image", "--image", image, "--branch", "mlops/image", *MR)
    assert result.returncode == 0, result.stderr
    changed = {path for _, path in name_status(world, "main", "mlops/image")}
    assert changed == {"infra/image.py", "pipelines/production-pipeline.yaml", "k8s/base/kustomization.yaml",
                       "k8s/base/kfp/kustomization.yaml", "k8s/base/kfp/production-pipeline.yaml"}  # fmt: skip
    compiled = world.remote_file("mlops/image", "pipelines/production-pipeline.yaml")
    assert world.remote_file("mlops/image", "k8s/base/kfp/production-pipeline.yaml") == compiled  # the cluster's copy
    fresh = subprocess.run(  # a compile whose infra.image names the new image, as the merge's CI will run it
        [sys.executable, "-c", "import sys, infra.image as i; i.IMAGE = sys.argv[1]; "
         "from pipelines.compile import render, IR_FILE; sys.stdout.write(render()[IR_FILE])", image],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert compiled == fresh
    for path in ("k8s/base/kustomization.yaml", "k8s/base/kfp/kustomization.yaml"):
        assert f"newName: registry.example.com/team/mpg\n    digest: {DIGEST}" in world.remote_file("mlops/image", path)
    again = world.mlops("gitops", "image", "--image", image)
    assert again.returncode == 0 and "updated" in again.stdout
    assert world.mlops("gitops", "image", "--image", image).stdout.strip().endswith("is pinned already")


def test_the_serving_image_is_pinned_beside_the_platform_image_and_named_by_the_predictor_only(world):
    image, serving = f"registry.example.com/team/mpg@{DIGEST}", f"registry.example.com/team/mpg/serving@{DIGEST}"
    result = world.mlops("gitops", "image", "--image", image, "--serving-image", serving)
    assert result.returncode == 0, result.stderr
    source = (world.clone / "infra/image.py").read_text()
    assert f'SERVING_NAME = "registry.example.com/team/mpg/serving"\nSERVING_DIGEST = "{DIGEST}"' in source
    base = (world.clone / "k8s/base/kustomization.yaml").read_text()
    assert "- name: mpg-mlops-serving\n" in base and "newName: registry.example.com/team/mpg/serving\n" in base
    assert "serving" not in (world.clone / "k8s/base/kfp/kustomization.yaml").read_text()
    line = one_line_error(world.mlops("gitops", "image", "--image", image, "--serving-image", "x/y:1"), 2)
    assert "--serving-image" in line and "pinned by digest" in line
    world.git("checkout", "--", ".")  # the edit without --commit is the worktree's


def test_image_refuses_a_tag(world):
    line = one_line_error(world.mlops("gitops", "image", "--image", "registry.example.com/team/mpg:1.0"), 2)
    assert "pinned by digest" in line


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("gitops", "bump", "--env", "staging", "--model-uri", "{b}", "--branch", "b", "--commit", "--push",
          "--remote", "--upload-pack=touch {proof};"), "--remote"),
        (("gitops", "diff", "--base", "--output={proof}"), "--base"),
        (("gitops", "rollback", "--env", "staging", "--to", "--output={proof}"), "--to"),
        (("gitops", "promote", "--branch", "--orphan", "--commit"), "--branch"),
    ],
    ids=["remote-upload-pack", "diff-base-output", "rollback-to-output", "branch-option"],
)  # fmt: skip
def test_an_option_like_git_value_is_refused_and_runs_nothing(world, tmp_path, args, option):
    proof = tmp_path / "proof"
    line = one_line_error(world.mlops(*(a.format(b=world.models["b"], proof=proof) for a in args)), 2)
    assert option in line and "starting with '-'" in line
    assert not proof.exists(), "git ran what the value said"


def test_a_local_branch_with_commits_of_yours_is_never_reset(world):
    world.git("checkout", "-q", "-b", "mlops/bump-staging")
    (world.clone / "MINE.md").write_text("my unpushed work\n")
    world.git("add", "MINE.md")
    world.git("commit", "-qm", "my unpushed work")
    mine = world.git("rev-parse", "HEAD").stdout
    world.git("checkout", "-q", "main")
    args = ("gitops", "bump", "--env", "staging", "--model-uri", world.models["b"], "--branch", "mlops/bump-staging")
    line = one_line_error(world.mlops(*args, "--commit"))
    assert "holds 1 commit(s) that are not mlops's" in line and "my unpushed work" in line
    assert world.git("rev-parse", "mlops/bump-staging").stdout == mine, "the commit is where it was"
    world.git("branch", "-qD", "mlops/bump-staging")
    assert world.mlops(*args, "--commit").returncode == 0
    assert world.mlops(*args, "--commit").returncode == 0, "a branch of mlops's own commits is made afresh"


def test_a_symlinked_overlay_folder_is_not_written_through(world, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.copytree(world.clone / "k8s" / "overlays" / "staging", outside)
    shutil.rmtree(world.clone / "k8s" / "overlays" / "staging")
    (world.clone / "k8s" / "overlays" / "staging").symlink_to(outside)
    before = (outside / "model.yaml").read_text()
    line = one_line_error(world.mlops("gitops", "bump", "--env", "staging", "--model-uri", world.models["b"]))
    assert "leads outside" in line
    assert (outside / "model.yaml").read_text() == before
