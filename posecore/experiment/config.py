"""The ``tracking:`` section of params.yaml: where MLflow runs go and what they record."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TrackingConfig:
    """Where and how runs are tracked (a ``tracking:`` section of params.yaml).

    ``tracking_uri``: empty means ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<repo>/mlflow.db``.
    ``artifact_location``: where a *new* experiment keeps artifacts; empty means
    ``<folder of the SQLite file>/mlartifacts`` for a SQLite store and the server's choice otherwise.
    ``system_metrics``: CPU, memory, disk, network (and GPU with ``nvidia-ml-py``) as ``system/*``.
    """

    tracking_uri: str = ""
    experiment: str = "posecore"
    run_name: str = ""
    system_metrics: bool = True
    connect_timeout_s: float = field(default=10.0, metadata={"range": (0.1, 600.0)})
    artifact_location: str = ""
