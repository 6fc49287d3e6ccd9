"""Submit the compiled pipeline to a Kubeflow Pipelines API server (``kfp.Client``)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import MlopsError
from pipelines.local import check_arguments

#: Where a ServiceAccount token projected for the KFP audience is usually mounted.
DEFAULT_TOKEN_FILE = Path("/var/run/secrets/kubeflow/pipelines/token")


class SubmitError(MlopsError):
    """The KFP API server refused the run or could not be reached."""


def read_token(token_file: Path | None) -> str | None:
    """Bearer token: the file if given (a ServiceAccount token), else ``KFP_TOKEN``, else the default mount."""
    if token_file is not None:
        try:
            return Path(token_file).read_text().strip()
        except OSError as e:
            raise SubmitError(f"cannot read token file {token_file}: {e}") from e
    if token := os.environ.get("KFP_TOKEN"):
        return token
    return DEFAULT_TOKEN_FILE.read_text().strip() if DEFAULT_TOKEN_FILE.is_file() else None


def submit(host: str, ir_path: Path, arguments: dict[str, Any], experiment: str, token: str | None) -> tuple[str, str]:
    """Create a run of the compiled pipeline; returns (run id, experiment id)."""
    import kfp

    check_arguments(ir_path, arguments)
    run_name = f"mpg-production {datetime.now(UTC):%Y-%m-%d %H:%M:%S}"
    try:
        client = kfp.Client(host=host, existing_token=token)
        result = client.create_run_from_pipeline_package(
            str(ir_path), arguments=arguments, run_name=run_name, experiment_name=experiment
        )
    except Exception as e:  # kfp raises ApiException, urllib3 and requests errors alike
        raise SubmitError(f"submitting to {host} failed: {e}") from e
    run = result.run_info
    return result.run_id, getattr(run, "experiment_id", "") or ""
