"""The ``register:`` section of params.yaml, the registered model's name per task, and the error every
registry operation raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from posecore.codecs.base import TASKS
from posecore.errors import UserError

LOWER_IS_BETTER = frozenset({"EPE", "NME", "MPJPE", "loss"})
"""Metrics for which smaller values are better (the default of ``higher_is_better``)."""


class RegistryError(UserError, RuntimeError):
    """A registry operation cannot go on (bad bundle, unknown model, lock not obtained, ...)."""


def registered_model_name(base: str, task: str) -> str:
    """The registered model that versions of ``task`` go to: ``base`` for ``topdown``,
    ``<base>-onestage`` for ``onestage``.

    One name per task because a champion is only ever compared with versions of its own kind: a
    one-stage model's AP (whole images, its own boxes) and a top-down model's (crops from given
    boxes) are not the same experiment, and they take different requests. ``base`` is
    ``register.model_name``; top-down keeps it unchanged, so existing registries stay as they are.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    return base if task == "topdown" else f"{base}-{task}"


@dataclass(frozen=True)
class RegisterConfig:
    """How a trained model is registered and promoted (``register:`` in params.yaml).

    ``model_name``: the base name; a version registers under :func:`registered_model_name` of it
    and the bundle's task (``<model_name>-onestage`` for one-stage models).
    ``metric``: the metric compared between versions; empty means ``evaluate.metric`` (the one that
    also selects ``best.pt``), ``"AP"`` outside the pipeline. ``higher_is_better``: None means from
    the metric (EPE, NME, MPJPE, loss: lower is better). ``min_improvement``: the margin by which a
    challenger must beat the champion (in the metric's units; equal is never enough).
    ``eval_data``: a fingerprint of the evaluation data; empty means the ``eval_data`` key of the
    metrics file or bundle.json, else ``md5:<md5 of the val annotations>`` (what DVC records; see
    :mod:`posecore.registry.fingerprint`). ``bundle``: the exported bundle folder; empty means
    ``export.out``. ``metrics``: the evaluate stage's metrics JSON; empty means
    ``<evaluate.out>/metrics.json``. ``out``: the register stage's result (a DVC metric).
    ``register``: false logs the models into the training run without registering or promoting.
    """

    model_name: str = "posecore-pose"
    metric: str = ""
    higher_is_better: bool | None = None
    min_improvement: float = field(default=0.0, metadata={"range": (0.0, 1e12)})
    eval_data: str = ""
    register: bool = True
    bundle: str = ""
    metrics: str = ""
    out: str = "reports/register.json"

    def metrics_file(self, evaluate_metrics: Path) -> Path:
        """The metrics JSON to register with: ``metrics``, else ``evaluate_metrics`` (the evaluate stage's,
        ``EvalConfig.metrics_file``)."""
        return Path(self.metrics) if self.metrics else evaluate_metrics

    def metric_name(self, default: str = "AP") -> str:
        return self.metric or default

    def is_higher_better(self, metric: str) -> bool:
        if self.higher_is_better is not None:
            return self.higher_is_better
        return metric not in LOWER_IS_BETTER
