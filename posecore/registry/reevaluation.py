"""Re-evaluation of a registered champion: today's score beside the one recorded at registration.

The reevaluate flow (``flows/reevaluate.py``) pulls the champion, scores it on the current val
split and hands the numbers here: :func:`compare` says how far it moved (on the same data or
not), :func:`check_drop` fails when it got worse than ``max_drop`` on the data it was
registered on, and :meth:`Reevaluation.tags` are the ``posecore.reeval.*`` version tags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from posecore.registry.pull import Champion
from posecore.registry.tags import find_metric

TAG_PREFIX = "posecore.reeval."


class ChampionDegraded(RuntimeError):
    """The champion scores worse than at registration by more than ``max_drop`` on the same data."""


@dataclass(frozen=True)
class Reevaluation:
    """``value`` of ``metric`` now; ``change`` = now - recorded (signed); ``worse_by`` > 0 when it got worse."""

    champion: Champion
    metric: str
    value: float
    metrics: dict[str, float]
    eval_data: str
    same_data: bool
    change: float | None
    worse_by: float | None
    evaluated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def tags(self, mlflow_run_id: str | None = None) -> dict[str, str]:
        """The model version tags this re-evaluation sets."""
        out = {
            "metric": self.metric,
            "value": repr(self.value),
            "change": "none" if self.change is None else repr(self.change),
            "eval_data": self.eval_data,
            "same_data": str(self.same_data).lower(),
            "at": self.evaluated_at,
        }
        if mlflow_run_id:
            out["run_id"] = mlflow_run_id
        return {TAG_PREFIX + k: v for k, v in out.items()}

    def table(self) -> list[dict[str, Any]]:
        """Rows for the Prefect table artifact."""
        c = self.champion
        rows: list[dict[str, Any]] = [
            {"name": "model", "value": f"{c.model_name}@{c.alias} (version {c.version})"},
            {"name": f"{self.metric} now", "value": self.value},
            {"name": f"{self.metric} at registration", "value": c.recorded_value},
            {"name": "change", "value": self.change},
            {"name": "same data as at registration", "value": self.same_data},
            {"name": "eval data", "value": self.eval_data},
        ]
        rows += [{"name": k, "value": v} for k, v in self.metrics.items() if k != self.metric]
        return rows


def compare(champion: Champion, metrics: dict[str, float], eval_data: str) -> Reevaluation:
    """The re-evaluation of ``champion`` given today's ``metrics`` on data ``eval_data``."""
    metric = champion.metric or "AP"
    value = find_metric(metrics, metric, "the re-evaluation")
    same = bool(champion.eval_data) and champion.eval_data == eval_data
    change = worse = None
    if champion.recorded_value is not None and math.isfinite(value):
        change = value - champion.recorded_value
        worse = -change if champion.higher_is_better else change
    return Reevaluation(champion, metric, value, metrics, eval_data, same, change, worse)


def check_drop(result: Reevaluation, max_drop: float | None) -> None:
    """Raise :class:`ChampionDegraded` when, on the data it was registered on, the champion now scores
    worse than at registration by more than ``max_drop`` (None: never)."""
    if max_drop is None or not result.same_data or result.worse_by is None or result.worse_by <= max_drop:
        return
    c = result.champion
    raise ChampionDegraded(
        f"{c.model_name} v{c.version} scores {result.metric} {result.value:.6g} on the same val data, worse than "
        f"at registration ({c.recorded_value:.6g}) by {result.worse_by:.6g} > max_drop {max_drop:g}; retrain "
        f"(the retrain deployment) or promote another version (`posecore registry promote {c.model_name} VERSION`)"
    )
