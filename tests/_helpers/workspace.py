"""A throw-away copy of the repository's pipeline (code, dvc.yaml, params) with tiny params."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

# The 3D stage group, tiny: 2 + 2 short sequences, 16-channel lifters, one epoch (updates `lift:`)
TINY_LIFT: dict[str, Any] = {
    "synth": {"n_subjects_train": 1, "n_subjects_val": 1, "sequences_per_subject": 2, "frames_min": 30,
              "frames_max": 40, "cameras_per_sequence": 1, "n_cameras_train": 1, "n_cameras_val": 1},
    "model": {"channels": 16, "receptive_field": 9},
    "baseline": {"channels": 16},
    "baseline_epochs": 1,
    "train": {"epochs": 1, "global_batch_size": 16, "batch_size_per_device": 16, "warmup_iters": 1, "progress": False},
}  # fmt: skip


def tiny_lift_flags() -> list[str]:
    """TINY_LIFT as the ``--set lift.KEY=VALUE`` flags that posecore's commands take."""
    flags = []
    for key, value in TINY_LIFT.items():
        leaves = {f"{key}.{leaf}": v for leaf, v in value.items()} if isinstance(value, dict) else {key: value}
        for name, v in leaves.items():
            flags += ["--set", f"lift.{name}={json.dumps(v)}"]
    return flags


PIPELINE_FILES = (
    "dvc.yaml",
    "params.yaml",
    "pyproject.toml",
    "prefect.yaml",
    "posecore",
    "stages",
    "flows",
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvcignore",
)


def copy_pipeline(src: Path, dst: Path) -> Path:
    """Copy what ``dvc repro`` needs from the checkout ``src`` into a new folder ``dst``."""
    dst.mkdir(parents=True)
    for name in PIPELINE_FILES:
        path = src / name
        if path.is_dir():
            shutil.copytree(path, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif path.exists():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dst / name)
    return dst


def tiny_params(repo: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """Shrink ``repo/params.yaml`` to a seconds-long run (8/4 images, 64x64 MobileNetV3 + SimCC, one epoch).

    ``sections`` update whole sections afterwards (``tracking={...}``). Returns the params written.
    The pipeline's wiring is under test with these, not accuracy.
    """
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["synth"].update(n_train=8, n_val=4, width=128, height=128, workers=1)
    # SimCC fits any backbone stride (the default preset's heatmap head is tied to Lite0's)
    params["model"].update(preset="synthetic-lite0", input_size=[64, 64], backbone={"name": "mobilenetv3_small"})
    params["train"].update(epochs=1, global_batch_size=4, batch_size_per_device=4, num_workers=0, warmup_iters=1)
    params["train"].update(val_interval=1, progress=False, log_interval=1)
    for key, value in TINY_LIFT.items():
        if isinstance(value, dict):
            params["lift"][key].update(value)
        else:
            params["lift"][key] = value
    for section, values in sections.items():
        params.setdefault(section, {}).update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params
