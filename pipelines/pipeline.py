"""The ``mpg-production`` pipeline: fetch -> validate -> train candidates in parallel ->
select the best -> gate against the champion -> publish -> propose the staging bump.
"""

# No `from __future__ import annotations`: KFP reads the annotations as types.
from typing import List  # noqa: UP035 - KFP wants typing.List for artifact lists

from kfp import dsl, kubernetes

from infra.settings import DEFAULT_MODEL_REPOSITORY
from pipelines import components as c

PIPELINE_NAME = "mpg-production"
#: Secrets the steps need, mounted as environment variables; never pipeline parameters.
S3_SECRET = "mpg-s3-credentials"  # noqa: S105 - the Secret's name, not its value
S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
GIT_SECRET = "mpg-git-token"  # noqa: S105
STORE_CONFIG = "mpg-model-store"
STORE_KEYS = ("MLOPS_S3_ENDPOINT_URL",)


def _step(task: dsl.PipelineTask, name: str, secrets: tuple[str, ...] = ()) -> dsl.PipelineTask:
    """Name a task, turn off caching (steps read moving inputs and have side effects), mount secrets."""
    task.set_display_name(name).set_caching_options(False)
    if "s3" in secrets:
        kubernetes.use_secret_as_env(task, secret_name=S3_SECRET, secret_key_to_env={k: k for k in S3_KEYS})
        kubernetes.use_config_map_as_env(
            task, config_map_name=STORE_CONFIG, config_map_key_to_env={k: k for k in STORE_KEYS}
        )
    if "git" in secrets:
        kubernetes.use_secret_as_env(task, secret_name=GIT_SECRET, secret_key_to_env={"token": "MLOPS_GIT_TOKEN"})
    return task


@dsl.pipeline(name="train-candidates")
def train_candidates(candidates: list, data: dsl.Input[dsl.Dataset], params_json: str) -> List[dsl.Model]:  # noqa: UP006
    """Cross-validate and fit every candidate in parallel; the saved candidates, collected.

    A pipeline of its own because kfp.local (2.17) reads loop items only from a parent
    input or a task's single ``Output``, not from a named output like ``candidates``.
    """
    with dsl.ParallelFor(items=candidates) as name:
        branch = _step(c.train_candidate(name=name, data=data, params_json=params_json), "train candidate")
    return dsl.Collected(branch.outputs["model"])


@dsl.pipeline(name=PIPELINE_NAME, description="Train, gate and publish the fuel-consumption model.")
def production_pipeline(
    repo: str = "",
    data_revision: str = "",
    dvc_remote: str = "",
    params_overrides: list = [],  # noqa: B006 - KFP needs the literal default
    champion_uri: str = "",
    model_repository: str = DEFAULT_MODEL_REPOSITORY,
    open_merge_request: bool = False,
    merge_request_target: str = "main",
):
    """Args: repo (git URL; empty = working copy), data_revision (git revision; empty = as is),
    dvc_remote (empty = default), params_overrides (["train.cv_folds=3", ...]), champion_uri (model to
    beat: a model URI, or staging / production for the model that overlay serves at data_revision; empty =
    absolute rules only), model_repository (where to publish), open_merge_request (push the staging bump
    to repo as a merge request into merge_request_target; else only record it)."""
    fetch = _step(
        c.fetch_data(
            repo=repo,
            revision=data_revision,
            dvc_remote=dvc_remote,
            params_overrides=params_overrides,
            champion=champion_uri,
        ),
        "fetch data",
        secrets=("s3", "git"),
    )
    data, params_json = fetch.outputs["data"], fetch.outputs["params_json"]
    validate = _step(c.validate_data(data=data), "validate")
    trained = train_candidates(candidates=fetch.outputs["candidates"], data=data, params_json=params_json)
    trained.after(validate).set_display_name("train candidates")
    selected = _step(c.select_model(candidates=trained.output, params_json=params_json), "select")
    model = selected.outputs["model"]
    gate = _step(
        c.gate(
            model=model,
            data=data,
            trusted=fetch.outputs["trusted"],
            seed=fetch.outputs["seed"],
            params_json=params_json,
            champion_uri=fetch.outputs["champion_uri"],
        ),
        "gate",
        secrets=("s3",),
    )
    # Compare a boolean output with True: kfp.local cannot evaluate float-vs-int conditions.
    with dsl.If(gate.outputs["Output"] == True):  # noqa: E712
        published = _step(c.publish(model=model, repository=model_repository), "publish", secrets=("s3",))
        proposal = c.propose(
            model_uri=published.output,
            model=model,
            gate_report=gate.outputs["report"],
            repo=repo,
            open_merge_request=open_merge_request,
            merge_request_target=merge_request_target,
        )
        _step(proposal, "propose", secrets=("git",))
