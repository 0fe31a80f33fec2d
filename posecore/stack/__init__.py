"""A local MLOps stack on loopback: SeaweedFS (S3), MLflow server, Prefect server and worker.

Each service is a detached process with a pid file and a log in the state folder
(default ``.stack/`` at the repository root, git-ignored)::

    from posecore.stack import StackConfig, up, down, status, env

    up(StackConfig(), components=["seaweedfs", "mlflow"])   # waits until ready
    os.environ.update(env())                                 # MLFLOW_TRACKING_URI, PREFECT_API_URL, ...
    down()

Components: ``seaweedfs`` (S3 on ``s3_port``, the bucket created at start), ``mlflow``
(tracking server with proxied artifacts in ``s3://bucket/artifacts_prefix``; clients
need no S3 credentials), ``prefect`` (server on ``prefect_port``, a process work pool
and one worker whose flow runs see :func:`env` including the S3 key pair).

Each service is one module (``seaweedfs``, ``mlflow_server``, ``prefect_server``,
``prefect_worker``) with a :class:`posecore.stack.service.Service`; ``_stack.py`` starts,
checks and stops them in ``SERVICES`` order. To add a service, see :mod:`posecore.stack.service`.
"""

from posecore.stack._stack import (
    COMPONENTS,
    SERVICES,
    ServiceStatus,
    StackStatus,
    down,
    env,
    format_exports,
    status,
    up,
)
from posecore.stack.seaweedfs import credentials
from posecore.stack.service import StackConfig, StackError, state_dir

__all__ = [
    "COMPONENTS",
    "SERVICES",
    "ServiceStatus",
    "StackConfig",
    "StackError",
    "StackStatus",
    "credentials",
    "down",
    "env",
    "format_exports",
    "state_dir",
    "status",
    "up",
]
