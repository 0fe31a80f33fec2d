"""What the training-pipeline flow reports: its stages' results and outputs, as Prefect artifacts show them.

:class:`StageResult` (one ``dvc repro --single-item`` call), :class:`PipelineReport` (the evaluate,
export and register outputs, 2D and 3D, and the training run, read from the files params.yaml
names), the ``training-metrics`` rows and the ``training-summary`` markdown. No Prefect here:
:mod:`flows.pipeline` publishes them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

StageStatus = Literal["ran", "restored", "skipped"]


@dataclass(frozen=True)
class StageResult:
    """One ``dvc repro --single-item`` call: ``ran`` (executed), ``restored`` (outputs checked out
    from DVC's run cache) or ``skipped`` (up to date), and the wall seconds it took."""

    stage: str
    status: StageStatus
    seconds: float

    @property
    def ran(self) -> bool:
        return self.status == "ran"


@dataclass(frozen=True)
class PipelineReport:
    """What the pipeline produced, read from its output files (paths from params.yaml)."""

    evaluate: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    register: dict[str, Any] = field(default_factory=dict)
    evaluate3d: dict[str, Any] = field(default_factory=dict)
    export3d: dict[str, Any] = field(default_factory=dict)
    register3d: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    tracking_uri: str | None = None
    experiment_id: str | None = None

    @property
    def run_url(self) -> str | None:
        """The MLflow UI page of the training run (only for an HTTP tracking server)."""
        base = _ui_base(self.tracking_uri)
        if base is None or not self.run_id or not self.experiment_id:
            return None
        return f"{base}/#/experiments/{self.experiment_id}/runs/{self.run_id}"

    @property
    def model_version_url(self) -> str | None:
        base = _ui_base(self.tracking_uri)
        name, version = self.register.get("model_name"), self.register.get("version")
        if base is None or not name or not version:
            return None
        return f"{base}/#/models/{name}/versions/{version}"


def _ui_base(tracking_uri: str | None) -> str | None:
    if not tracking_uri or not tracking_uri.startswith(("http://", "https://")):
        return None
    return tracking_uri.rstrip("/")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data


def read_report(repo: Path) -> PipelineReport:
    """The evaluate/export/register outputs and the training run of the pipeline in ``repo``
    (files that do not exist yet are empty)."""
    from posecore.config import load_params
    from posecore.export.trained import RUN_ID_FILE

    params = load_params(repo / "params.yaml")
    eval_metrics = params.register.metrics_file(params.evaluate.metrics_file)
    run = _read_json(repo / params.train.checkpoint_dir / RUN_ID_FILE)
    return PipelineReport(
        evaluate=_read_json(repo / eval_metrics),
        export=_read_json(repo / params.export.metrics),
        register=_read_json(repo / params.register.out),
        evaluate3d=_read_json(repo / params.lift.out / "metrics.json"),
        export3d=_read_json(repo / params.lift.export_metrics),
        register3d=_read_json(repo / params.lift.register_out),
        run_id=run.get("run_id"),
        tracking_uri=run.get("tracking_uri"),
        experiment_id=None if run.get("experiment_id") is None else str(run["experiment_id"]),
    )


def metrics_table(report: PipelineReport) -> list[dict[str, Any]]:
    """Rows ``{"stage", "name", "value"}``: every scalar of the evaluate, export and register outputs
    (and of the 3D lifting group's evaluate3d, export3d and register3d)."""
    rows: list[dict[str, Any]] = []
    outputs = (
        ("evaluate", report.evaluate),
        ("export", report.export),
        ("register", report.register),
        ("evaluate3d", report.evaluate3d),
        ("export3d", report.export3d),
        ("register3d", report.register3d),
    )
    for stage, values in outputs:
        for name, value in values.items():
            if value is None or isinstance(value, bool | int | float | str):
                rows.append({"stage": stage, "name": name, "value": value})
    return rows


def summary_markdown(report: PipelineReport, stages: Sequence[StageResult]) -> str:
    """The run in a few lines: stage table, promotion decision, where the run and model are."""
    lines = ["## Training pipeline", "", "| stage | status | seconds |", "| --- | --- | --- |"]
    lines += [f"| {s.stage} | {s.status} | {s.seconds:.1f} |" for s in stages]
    reg = report.register
    lines.append("")
    if reg.get("registered"):
        version_ref = f"`{reg.get('model_name')}` version {reg.get('version')}"
        if report.model_version_url:
            version_ref = f"[{version_ref}]({report.model_version_url})"
        lines.append(
            f"**Promotion:** {reg.get('decision', 'unknown')}: {version_ref}, {reg.get('metric')} "
            f"{reg.get('challenger_metric')} vs champion {reg.get('champion_metric')} "
            f"(v{reg.get('champion_version')}); {reg.get('reason', '')}"
        )
    elif reg:
        lines.append("**Promotion:** not registered (`register.register` is false)")
    else:
        lines.append("**Promotion:** no register output")
    lift = report.register3d
    if lift.get("registered"):
        lines.append(
            f"**Lifter:** {lift.get('decision', 'unknown')}: `{lift.get('model_name')}` version {lift.get('version')}, "
            f"MPJPE {lift.get('challenger_metric')} mm vs champion {lift.get('champion_metric')}; {lift.get('reason', '')}"
        )
    if report.run_id:
        run = f"[{report.run_id}]({report.run_url})" if report.run_url else f"`{report.run_id}`"
        lines.append(f"**MLflow run:** {run} in `{report.tracking_uri}`")
    return "\n".join(lines) + "\n"
