"""posecore.experiment.curves: the training-curves PNG."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from posecore.experiment.curves import curve_keys, plot_curves


def test_plot_curves_writes_a_png(tmp_path: Path) -> None:
    history = {
        "train/loss": [(s, 1 / s) for s in range(1, 101)],
        "train/lr": [(s, 0.001) for s in range(1, 101)],
        "val/AP": [(50, 0.3), (100, 0.5)],
        "val/AR": [],
    }
    out = plot_curves(history, tmp_path / "plots" / "curves.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as img:
        img.verify()
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > 400 and img.height > 200
    empty = plot_curves({}, tmp_path / "empty.png")
    assert empty.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_curves_leave_out_the_epoch_counter_and_system_metrics() -> None:
    keys = {"train/loss", "epoch", "system/cpu_utilization_percentage", "val/AP"}
    assert curve_keys(keys) == ["train/loss", "val/AP"]
