"""Propose an overlay change as a merge request: branch, commit, push with GitLab push options.

The change is made in a temporary worktree based on the remote's branch (or its
target), so the user's own checkout is never touched. A push rejected because the
branch moved meanwhile is fetched, the change re-applied on top and pushed again:
two bumps racing both land, in order, nothing lost. Any other rejection is one clear
error, and the local branch keeps the commit for a later push. The worktree lives in
``<git dir>/mlops-worktrees/`` (``infra.scratch``): the folder and the registration a
killed run leaves are removed by the next, so no dead worktree ever holds the branch.

GitLab opens (or updates) the merge request from the push options
(``merge_request.create``, ``.target``, ``.title``, ``.description``, ``.label``);
git forbids newlines in push options, and GitLab turns a literal ``\\n`` in the
description back into one (gitlab-org/gitlab!87020).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from gitops.git import GitError, git
from infra.scratch import scratch_dir

RETRIES = 5
MAX_DESCRIPTION = 60_000  # characters; GitLab's limit is far above, git's push options have none


@dataclass(frozen=True)
class Proposal:
    """What to commit and how to open the merge request."""

    branch: str
    target: str = "main"
    remote: str = "origin"
    push: bool = False
    title: str = ""
    description: str = ""
    labels: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Proposed:
    branch: str
    commit: str
    pushed: bool
    attempts: int
    merge_request: str | None = None  # its URL, as GitLab answers a push that opened or updated one


#: GitLab answers a push with merge-request options with "View merge request for <branch>:" and the URL.
_MERGE_REQUEST_URL = re.compile(r"https?://\S+/-/merge_requests/\d+")
NO_PUSH_OPTIONS = (
    "{remote} does not take push options, which open the merge request (GitLab's merge_request.* push options): "
    "push the branch without --push and open the merge request by hand, or, on a plain git server, "
    "`git config receive.advertisePushOptions true` in the remote repository"
)


def _fetch(root: Path, remote: str, branch: str) -> str | None:
    """Fetch ``branch`` of ``remote`` into our own ref; its name, or None when the remote has no such branch."""
    ref = f"refs/mlops/{branch}"
    result = git("fetch", "--quiet", "--", remote, f"+refs/heads/{branch}:{ref}", cwd=root, check=False)
    if result.returncode == 0:
        return ref
    if "couldn't find remote ref" in result.stderr or "no such ref" in result.stderr.lower():
        return None
    raise GitError(f"cannot fetch {branch} from {remote}: {result.stderr.strip().splitlines()[-1]}")


def _refuse_a_branch_not_ours(root: Path, branch: str, base: str) -> None:
    """The branch is made afresh from ``base`` (``worktree add -B``): a local branch of that name holding a commit
    that is not one of ours (no ``Mlops-Bot`` trailer) would lose it, so that is refused instead."""
    exists = git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", cwd=root, check=False).returncode == 0
    if not exists:
        return
    listed = git("log", "--format=%h%x00%s%x00%(trailers:key=Mlops-Bot,valueonly)%x1e", f"{base}..refs/heads/{branch}",
                 cwd=root, check=False).stdout  # fmt: skip
    foreign = [entry.split("\0") for entry in listed.split("\x1e") if entry.strip()]
    foreign = [(commit.strip(), subject) for commit, subject, trailer in foreign if not trailer.strip()]
    if foreign:
        commit, subject = foreign[0]
        raise GitError(
            f"the local branch {branch} holds {len(foreign)} commit(s) that are not mlops's "
            f"({commit} {subject[:60]!r}); choose another --branch, or delete that branch if they are not needed"
        )


def _tip(root: Path, ref: str) -> str:
    return git("rev-parse", "--verify", "--end-of-options", ref, cwd=root).stdout.strip()


def _moved(output: str) -> bool:
    """Was the push refused because the branch moved meanwhile (not by a hook or for want of rights)?

    ``[rejected]``: the client saw a newer tip. A ref lock the server could not take means
    another push updated the branch between our look and our update.
    """
    return "[rejected]" in output or any(s in output for s in ("cannot lock ref", "failed to update ref", "stale info"))


def push_options(proposal: Proposal) -> list[str]:
    description = proposal.description[:MAX_DESCRIPTION].replace("\r", "").replace("\n", "\\n")
    options = [
        "merge_request.create",
        f"merge_request.target={proposal.target}",
        f"merge_request.title={proposal.title}",
        f"merge_request.description={description}",
        "merge_request.remove_source_branch",
        *(f"merge_request.label={label}" for label in proposal.labels),
    ]
    return [arg for option in options for arg in ("-o", option)]


Message = str | Callable[[], str]  # a callable is asked after the edit, for a message that says what it did


def _commit(worktree: Path, edit: Callable[[Path], list[Path]], message: Message) -> bool:
    changed = edit(worktree)
    if not changed:
        return False
    git("add", "--", *(p.as_posix() for p in changed), cwd=worktree)
    if not git("diff", "--cached", "--quiet", cwd=worktree, check=False).returncode:
        return False
    git("commit", "--quiet", "--no-verify", "-m", message() if callable(message) else message, cwd=worktree)
    return True


def propose(
    root: Path,
    proposal: Proposal,
    edit: Callable[[Path], list[Path]],
    message: Message,
    describe: Callable[[Path], str] | None = None,
) -> Proposed | None:
    """Commit ``edit`` on ``proposal.branch`` (and push it): None when the edit changes nothing.

    ``edit(worktree)`` writes the change under ``worktree`` and returns the paths it
    changed (relative to it); it must be idempotent, since a retry applies it again.
    ``describe(worktree)``, after the commit, gives the merge request's description; its title is
    ``proposal.title``, else the commit's subject.
    """
    base, lease = proposal.target, ""
    if proposal.push:
        # A bot branch is made afresh from the target every time: what it held before (a merged or
        # abandoned proposal) is not ours to keep, and building on it would make the merge request's
        # diff wrong. The lease (the tip we saw, or none) still lets a bump racing to the same branch
        # land on top of the other instead of overwriting it.
        seen = _fetch(root, proposal.remote, proposal.branch)
        lease = _tip(root, seen) if seen else ""
        base = _fetch(root, proposal.remote, proposal.target)
        if base is None:
            raise GitError(f"{proposal.remote} has no branch {proposal.target!r} to propose against")
    _refuse_a_branch_not_ours(root, proposal.branch, base)
    common = Path(git("rev-parse", "--git-common-dir", cwd=root).stdout.strip())
    with scratch_dir((root / common) / "mlops-worktrees") as worktree:  # a killed run's folder is removed here
        git("worktree", "prune", cwd=root)  # and its registration, which would hold the branch, here
        git("worktree", "add", "--quiet", "--force", "-B", proposal.branch, "--", str(worktree), base, cwd=root)
        try:
            return _commit_and_push(root, proposal, worktree, edit, message, describe, lease)
        finally:
            git("worktree", "remove", "--force", str(worktree), cwd=root, check=False)


def _commit_and_push(
    root: Path,
    proposal: Proposal,
    worktree: Path,
    edit: Callable[[Path], list[Path]],
    message: Message,
    describe: Callable[[Path], str] | None,
    lease: str,
) -> Proposed | None:
    """Commit ``edit`` in ``worktree`` and push it over the branch's tip ``lease`` ("": no branch),
    replaying on top when the branch moved meanwhile."""
    if not _commit(worktree, edit, message):
        return None
    attempts, title = 0, proposal.title
    while proposal.push:
        attempts += 1
        if describe is not None:
            proposal = replace(proposal, description=describe(worktree))
        proposal = replace(proposal, title=title or git("log", "-1", "--format=%s", cwd=worktree).stdout.strip())
        result = git(
            "push", "--porcelain", f"--force-with-lease=refs/heads/{proposal.branch}:{lease}",
            *push_options(proposal), "--", proposal.remote, f"HEAD:refs/heads/{proposal.branch}",
            cwd=worktree, check=False,
        )  # fmt: skip
        if result.returncode == 0:
            break
        if "does not support push options" in result.stderr:
            raise GitError(NO_PUSH_OPTIONS.format(remote=proposal.remote))
        if not (_moved(result.stdout + result.stderr) and attempts < RETRIES):
            reason = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()][-2:]
            raise GitError(
                f"{proposal.remote} refused the push of {proposal.branch} ({' / '.join(reason)}); "
                f"the commit stays on the local branch {proposal.branch}"
            )
        moved_to = _fetch(root, proposal.remote, proposal.branch)  # the branch moved: replay on top
        lease = _tip(root, moved_to) if moved_to else ""
        git("reset", "--quiet", "--hard", moved_to or _fetch(root, proposal.remote, proposal.target), cwd=worktree)
        if not _commit(worktree, edit, message):
            break  # someone else made the same change
    commit = git("rev-parse", "HEAD", cwd=worktree).stdout.strip()
    opened = _MERGE_REQUEST_URL.search(result.stderr) if proposal.push else None
    return Proposed(proposal.branch, commit, proposal.push, attempts, opened[0] if opened else None)
