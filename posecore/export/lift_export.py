"""A trained lifter -> its bundle (:mod:`posecore.export.lift_bundle`), with ONNX Runtime checked against PyTorch.

:func:`export_lifter` exports the lifter's inference form (a temporal lifter dilated, not strided:
any number of frames >= its receptive field; batch and frames are dynamic axes), writes
``bundle.json``, ``weights.pt`` and ``model.json``, and then lifts real held-out sequences twice:
with :class:`~posecore.export.lift_bundle.LiftRuntime` on the new bundle (NumPy + ONNX Runtime,
what users run) and with PyTorch as the evaluation does
(:func:`posecore.evaluation.lifting.predict_sequences`). The bundle is only kept (the folder is
replaced atomically) when the two agree within ``atol_mm`` millimetres on every joint of every
frame; otherwise nothing is written and the error says by how much they differ.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from posecore.data.lifting import encode_sequences
from posecore.datasets.pose3d.format import PoseSequence
from posecore.engine.lifting import LIFT_MODEL_JSON, load_trained_lifter
from posecore.evaluation.lifting import predict_sequences
from posecore.export.bundle import MODEL_FILE, SPEC_FILE, WEIGHTS_FILE
from posecore.export.lift_bundle import LiftBundleInfo, LiftRuntime
from posecore.io import atomic_output_dir, atomic_write_bytes
from posecore.models.lifting import Lifter

__all__ = ["ParityError", "export_lifter", "export_lifter_onnx"]


class ParityError(ValueError):
    """ONNX Runtime's lifted joints differ from PyTorch's by more than the tolerance."""


def _example(lifter: Lifter, batch: int = 2) -> torch.Tensor:
    c = lifter.codec
    shape = (
        (batch, lifter.receptive_field + 4, c.num_keypoints, c.in_channels)
        if lifter.temporal
        else (batch, c.num_keypoints, c.in_channels)
    )
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def export_lifter_onnx(lifter: Lifter, path: Path, *, opset: int = 20, dynamo: bool = True) -> str:
    """Write the lifter (eval mode, inference form) to ``path``; returns the exporter used ("dynamo" / "torchscript")."""
    lifter = lifter.eval()
    if getattr(lifter, "use_stride_conv", False):
        lifter.use_stride_conv = False  # type: ignore[assignment]
    example = _example(lifter)
    if dynamo:
        dims = {0: torch.export.Dim("batch")}
        if lifter.temporal:
            dims[1] = torch.export.Dim("frames", min=lifter.receptive_field, max=100_000)
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    lifter, (example,), str(path), input_names=["inputs"], output_names=["joints_3d"],
                    opset_version=opset, dynamo=True, dynamic_shapes={"inputs": dims}, external_data=False,
                )  # fmt: skip
            onnx.checker.check_model(str(path))
            return "dynamo"
        except Exception as exc:  # any exporter failure: the TorchScript exporter, saying why
            warnings.warn(
                f"dynamo ONNX export of the lifter failed ({type(exc).__name__}); using TorchScript", stacklevel=2
            )
            path.unlink(missing_ok=True)
    axes = {0: "batch", 1: "frames"} if lifter.temporal else {0: "batch"}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            lifter, (example,), str(path), input_names=["inputs"], output_names=["joints_3d"],
            opset_version=min(opset, 20), dynamo=False, dynamic_axes={"inputs": axes, "joints_3d": axes},
        )  # fmt: skip
    onnx.checker.check_model(str(path))
    return "torchscript"


def export_lifter(
    train_dir: str | Path,
    out_dir: str | Path,
    sequences: Sequence[PoseSequence],
    *,
    flip_test: bool = True,
    opset: int = 20,
    dynamo: bool = True,
    atol_mm: float = 0.1,
    parity_sequences: int = 8,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Export the lifter trained in ``train_dir`` into ``out_dir`` (module docstring); returns the export report."""
    lifter, described = load_trained_lifter(train_dir)
    if not sequences:
        raise ValueError("no held-out sequences to check the exported lifter on")
    checked = list(sequences[:parity_sequences])
    with atomic_output_dir(out_dir) as tmp:
        start = time.perf_counter()
        exporter = export_lifter_onnx(lifter, tmp / MODEL_FILE, opset=opset, dynamo=dynamo)
        seconds = time.perf_counter() - start
        codec = lifter.codec
        codec_fields = {k: v for k, v in vars(codec).items() if not k.startswith("_")}
        info = LiftBundleInfo(
            lifter=described["lifter"],
            codec=codec_fields,
            receptive_field=lifter.receptive_field,
            causal=lifter.causal,
            temporal=lifter.temporal,
            keypoint_names=tuple(described["keypoints"]),
            flip_indices=tuple(described["flip_indices"]),
            skeleton=tuple(tuple(link) for link in described.get("skeleton", ())),
            meta_name=described["meta"],
            flip_test=flip_test,
            provenance=dict(provenance or {}),
        )
        info.write(tmp)
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu().contiguous() for k, v in lifter.state_dict().items()}, buf)
        atomic_write_bytes(tmp / WEIGHTS_FILE, buf.getvalue())
        (tmp / SPEC_FILE).write_text((Path(train_dir) / LIFT_MODEL_JSON).read_text())

        runtime = LiftRuntime(tmp)
        flips = list(info.flip_indices) if flip_test else None
        torch_mm = predict_sequences(lifter, encode_sequences(codec, checked), flips).numpy()
        onnx_mm = np.concatenate(
            [runtime.lift(s.keypoints_2d, s.scores_2d, (s.camera.width, s.camera.height)) for s in checked]
        )
        diff = float(np.abs(onnx_mm - torch_mm).max())
        if not diff <= atol_mm:
            raise ParityError(
                f"ONNX Runtime's 3D joints differ from PyTorch's by up to {diff:.4g} mm on {len(checked)} held-out "
                f"sequences (allowed: {atol_mm} mm); nothing was written to {out_dir}"
            )
    return {
        "exporter": exporter,
        "export_s": round(seconds, 3),
        "opset": opset,
        "parity_max_abs_mm": diff,
        "parity_frames": int(onnx_mm.shape[0]),
        "parity_sequences": len(checked),
        "model_mb": round((Path(out_dir) / MODEL_FILE).stat().st_size / 2**20, 3),
    }
