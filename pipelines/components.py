"""KFP v2 components: typed wrappers that call ``pipelines.steps`` inside the project image.

Bodies only import and call (KFP copies each body into the compiled YAML), and
nothing is pip-installed at run time: the image already holds this repo and kfp.
"""

# No `from __future__ import annotations`: KFP reads the annotations as types.
from typing import NamedTuple  # noqa: UP035 - KFP wants typing.List for artifact lists

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from infra.image import IMAGE

component = dsl.component(base_image=IMAGE, install_kfp_package=False)


@component
def fetch_data(
    repo: str,
    revision: str,
    dvc_remote: str,
    params_overrides: list,
    champion: str,
    data: Output[Dataset],
    trusted: Output[Dataset],
    seed: Output[Dataset],
) -> NamedTuple("FetchOutputs", [("params_json", str), ("candidates", list), ("champion_uri", str)]):
    """Training data, the trusted holdout, the seed data, validated params and the champion's URI at a revision
    (empty: the working copy)."""
    from pipelines.steps import fetch_data as step

    overrides = list(params_overrides)
    params, champion_uri = step(repo, revision, dvc_remote, overrides, champion, data.path, trusted.path, seed.path)
    return (params.model_dump_json(), list(params.train.candidates), champion_uri)


@component
def validate_data(data: Input[Dataset], report: Output[Artifact]) -> int:
    """Schema checks; fails the run on invalid data."""
    from pipelines.steps import validate_data as step

    return step(data.path, report.path)


@component
def train_candidate(name: str, data: Input[Dataset], params_json: str, model: Output[Model]):
    """Cross-validate one candidate and fit it (one parallel branch)."""
    from pipelines.steps import train_candidate as step

    step(name, data.path, params_json, model.path)


@component
def select_model(candidates: Input[list[Model]], params_json: str, model: Output[Model]) -> str:
    """Pick the candidate with the best CV RMSE."""
    from pipelines.steps import select_model as step

    return step([c.path for c in candidates], params_json, model.path)


@component
def gate(
    model: Input[Model],
    data: Input[Dataset],
    trusted: Input[Dataset],
    seed: Input[Dataset],
    params_json: str,
    champion_uri: str,
    report: Output[Artifact],
) -> bool:
    """Quality gate on the trusted holdout: the absolute rules, the champion, the influence of added rows."""
    from pipelines.steps import gate as step

    return step(model.path, data.path, trusted.path, seed.path, params_json, champion_uri, report.path)


@component
def publish(model: Input[Model], repository: str) -> str:
    """Publish to the immutable, content-addressed model URI."""
    from pipelines.steps import publish as step

    return step(model.path, repository)


@component
def propose(
    model_uri: str,
    model: Input[Model],
    gate_report: Input[Artifact],
    repo: str,
    open_merge_request: bool,
    merge_request_target: str,
    proposal: Output[Artifact],
):
    """Bump the staging overlay to the published model; with open_merge_request, push it as a merge request."""
    from pipelines.steps import propose as step

    step(model_uri, model.path, gate_report.path, repo, open_merge_request, merge_request_target, proposal.path)
