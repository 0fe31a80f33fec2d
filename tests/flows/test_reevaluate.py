"""flows.reevaluate without servers: which failures its tasks retry. The comparison itself is
tested in ``tests/registry/test_reevaluation.py``; the flow (pull, ONNX scoring, MLflow records)
runs against real servers in ``test_deployments.py``."""

from __future__ import annotations

import pytest
from prefect.states import Failed

from flows.reevaluate import _not_user_error
from posecore.registry import RegistryError


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (ConnectionError("server went away"), True),
        (OSError("timed out"), True),
        (RegistryError("posecore-pose has no version with alias 'champion'"), False),
        (FileNotFoundError("no MLflow store"), False),
        (ValueError("bad bundle"), False),
    ],
)
def test_only_transient_failures_are_retried(error: Exception, retry: bool) -> None:
    # the task engine hands the condition a Failed state whose data is the exception
    assert _not_user_error(None, None, Failed(data=error)) is retry  # type: ignore[arg-type]
