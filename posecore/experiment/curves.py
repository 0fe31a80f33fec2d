"""Training curves drawn from a run's metric history: the ``plots/curves.png`` artifact of a run."""

from __future__ import annotations

import io
import math
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from posecore.io import atomic_write_bytes

if TYPE_CHECKING:
    from mlflow import MlflowClient

_CURVE_SKIP = ("epoch",)
_CURVE_SKIP_PREFIXES = ("system/",)


def curve_keys(metric_keys: Iterable[str]) -> list[str]:
    """The metrics worth a panel, sorted: every one but the ``epoch`` counter and ``system/*``."""
    return [k for k in sorted(metric_keys) if k not in _CURVE_SKIP and not k.startswith(_CURVE_SKIP_PREFIXES)]


def plot_curves(history: Mapping[str, Sequence[tuple[int, float]]], path: str | Path) -> Path:
    """Draw one panel per metric (``{name: [(step, value), ...]}``) into a PNG at ``path`` (atomic write).

    Uses the Agg canvas directly (no pyplot, no display needed).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [k for k in sorted(history) if history[k]]
    ncols = max(1, min(3, len(names)))
    nrows = max(1, math.ceil(len(names) / ncols))
    fig = Figure(figsize=(4.2 * ncols, 3.0 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    if not names:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no metrics logged", ha="center", va="center")
        ax.set_axis_off()
    for i, name in enumerate(names, start=1):
        ax = fig.add_subplot(nrows, ncols, i)
        points = sorted(history[name])
        steps = [s for s, _ in points]
        values = [v for _, v in points]
        ax.plot(steps, values, marker="o" if len(points) <= 30 else None, markersize=3, linewidth=1.2)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return atomic_write_bytes(path, buf.getvalue())


def log_curves(client: MlflowClient, run_id: str, metric_keys: Iterable[str], artifact_file: str) -> None:
    """Draw the run's whole history of ``metric_keys`` (from the store, so a resumed run is drawn
    whole) and log it as ``artifact_file``; a failure only warns (curves never fail a run)."""
    keys = curve_keys(metric_keys)
    if not keys:
        return
    try:
        history = {k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)] for k in keys}
        with tempfile.TemporaryDirectory(prefix="posecore-curves-") as tmp:
            local = plot_curves(history, Path(tmp) / Path(artifact_file).name)
            parent = str(Path(artifact_file).parent)
            client.log_artifact(run_id, str(local), None if parent == "." else parent)
    except Exception as exc:
        warnings.warn(f"could not log training curves to MLflow: {exc}", RuntimeWarning, stacklevel=3)
