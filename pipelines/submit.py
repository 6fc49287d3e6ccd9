"""Submit the compiled pipeline to a Kubeflow Pipelines API server (``kfp.Client``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import MlopsError
from infra.settings import Settings
from pipelines.local import check_arguments

#: Where a ServiceAccount token projected for the KFP audience is usually mounted.
DEFAULT_TOKEN_FILE = Path("/var/run/secrets/kubeflow/pipelines/token")


class SubmitError(MlopsError):
    """The KFP API server refused the run or could not be reached."""


def read_token(token_file: Path | None) -> str | None:
    """Bearer token: the file if given (a ServiceAccount token), else ``MLOPS_KFP_TOKEN``, else the default mount."""
    if token_file is not None:
        try:
            return Path(token_file).read_text().strip()
        except OSError as e:
            raise SubmitError(f"cannot read token file {token_file}: {e}") from e
    if token := Settings().kfp_token:
        return token.get_secret_value()
    return DEFAULT_TOKEN_FILE.read_text().strip() if DEFAULT_TOKEN_FILE.is_file() else None


#: The oldest KFP backend the compiled pipeline runs on: drivers before 2.5 reject the fields newer SDKs' compiler
#: adds to the IR (optional inputs, *NameParameter), where 2.5 and later ignore unknown fields
#: (kubeflow/pipelines#11662; the symptom: kubeflow/pipelines#12495).
KFP_BACKEND_FLOOR = (2, 5)


def _version(text: str) -> tuple[int, ...] | None:
    import re

    match = re.match(r"v?(\d+)\.(\d+)", text or "")
    return (int(match[1]), int(match[2])) if match else None


def check_server(host: str, token: str | None, timeout: float = 5, namespace: str | None = None) -> dict:
    """One look at ``/apis/v2beta1/healthz`` before kfp.Client, which retries five times, 5 s apart,
    logging a traceback each time, before saying the host is wrong. Then the backend's version against the
    floor, and multi-user mode against ``namespace``; returns the healthz answer."""
    import httpx

    url = f"{host.rstrip('/')}/apis/v2beta1/healthz"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(url, headers=headers, timeout=timeout)
    except httpx.HTTPError as e:
        raise SubmitError(f"{host} cannot be reached ({type(e).__name__}: {e}); check --host") from e
    if response.status_code in (401, 403):
        raise SubmitError(f"{host} refused the token ({response.status_code}); check --token-file or MLOPS_KFP_TOKEN")
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict):
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        raise SubmitError(
            f"{host} is not a Kubeflow Pipelines API server (GET /apis/v2beta1/healthz answered "
            f"{response.status_code} {kind}); check --host"
        )
    version = _version(str(body.get("tag_name", "")))
    if version is not None and version < KFP_BACKEND_FLOOR:
        floor = ".".join(map(str, KFP_BACKEND_FLOOR))
        raise SubmitError(
            f"{host} runs Kubeflow Pipelines {body['tag_name']}, older than {floor}, the oldest whose drivers run "
            f"this compiled pipeline (kubeflow/pipelines#11662): upgrade Kubeflow Pipelines to {floor} or newer"
        )
    if body.get("multi_user") and not namespace:
        raise SubmitError(
            f"{host} is multi-user Kubeflow Pipelines: name the profile namespace runs go to with --namespace "
            "(or MLOPS_KFP_NAMESPACE)"
        )
    return body


#: Istio's pilot-agent stops the sidecar on this call; a sidecar left running keeps a Job's pod alive after
#: its container exits (istio/istio#11659).
SIDECAR_QUIT = "http://127.0.0.1:15020/quitquitquit"


def stop_sidecar(url: str | None = None) -> str:
    """Ask the Istio sidecar beside this process to exit; what happened, in a few words (never raises)."""
    import httpx

    url = url or SIDECAR_QUIT
    try:
        return f"sidecar stopped ({httpx.post(url, timeout=5).status_code})"
    except httpx.HTTPError as e:
        return f"no sidecar answered at {url} ({type(e).__name__})"


def submit(
    host: str,
    ir_path: Path,
    arguments: dict[str, Any],
    experiment: str,
    token: str | None,
    namespace: str | None = None,
) -> tuple[str, str]:
    """Create a run of the compiled pipeline; returns (run id, experiment id).

    ``namespace``: multi-user KFP creates experiments and runs in a profile namespace and needs it named on
    every call (kubeflow/pipelines#12088); standalone KFP takes none.
    """
    import warnings

    check_arguments(ir_path, arguments)
    check_server(host, token, namespace=namespace)
    with warnings.catch_warnings():
        # kfp warns on every Client() that it needs a v2 backend: checked above, and noise to the user
        warnings.simplefilter("ignore", FutureWarning)
        import kfp

    run_name = f"mpg-production {datetime.now(UTC):%Y-%m-%d %H:%M:%S}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            client = kfp.Client(host=host, existing_token=token)
        result = client.create_run_from_pipeline_package(
            str(ir_path), arguments=arguments, run_name=run_name, experiment_name=experiment, namespace=namespace
        )
    except Exception as e:  # kfp raises ApiException, urllib3 and requests errors alike
        raise SubmitError(f"submitting to {host} failed: {e}") from e
    run = result.run_info
    return result.run_id, getattr(run, "experiment_id", "") or ""
