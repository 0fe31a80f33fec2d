"""The MLflow tracking server on ``mlflow_port``, with proxied artifacts in the stack's S3.

Artifacts go to ``s3://bucket/artifacts_prefix`` through the server, so clients need
no S3 credentials; the server itself gets the key pair from :mod:`posecore.stack.seaweedfs`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from posecore.stack._process import HOST, ProcessRecord
from posecore.stack.seaweedfs import SeaweedFS, credentials
from posecore.stack.service import Launch, Service, StackConfig, StackError, base_env, http_ok, register


@register
class MlflowServer(Service):
    """Tracking server and model registry; its database defaults to SQLite in the state folder."""

    name = "mlflow"
    component = "mlflow"
    port_setting = "mlflow_port"
    stop_wave = 1
    requires = {"seaweedfs": "keeps its artifacts in SeaweedFS"}

    def url(self, config: StackConfig) -> str:
        return f"http://{HOST}:{config.mlflow_port}"

    def launch(self, state: Path, config: StackConfig, client_env: Mapping[str, str]) -> Launch:
        creds = credentials(config)
        if creds is None:
            raise StackError(f"no S3 credentials in {state}: start seaweedfs first")
        backend = config.backend_store_uri or f"sqlite:///{state / 'mlflow.db'}"
        prefix = config.artifacts_prefix.strip("/")
        destination = f"s3://{config.bucket}/{prefix}" if prefix else f"s3://{config.bucket}"
        environ = base_env()
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            environ.pop(var, None)
        environ.update(
            MLFLOW_S3_ENDPOINT_URL=SeaweedFS().running_url(state, config),
            AWS_ACCESS_KEY_ID=creds.access_key_id,
            AWS_SECRET_ACCESS_KEY=creds.secret_access_key,
            AWS_DEFAULT_REGION=environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            # the job runner (GenAI scorers, trace roll-ups) adds 8 processes that double start-up
            # time on a small machine and outlive SIGTERM for 15 s; model tracking needs none of it
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
            # in the environment, not argv: a postgresql:// URI may hold a password that ps would show
            MLFLOW_BACKEND_STORE_URI=backend,
        )
        argv = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            HOST,
            "--port",
            str(config.mlflow_port),
            "--artifacts-destination",
            destination,
            "--workers",
            "1",
        ]
        return Launch(argv, environ, cwd=state, url=self.url(config), ports={"http": config.mlflow_port})

    def healthy(self, record: ProcessRecord, config: StackConfig) -> bool:
        return http_ok(f"{record.url}/health")
