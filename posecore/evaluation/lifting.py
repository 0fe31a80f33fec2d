"""Scoring a 2D -> 3D lifter on encoded sequences: whole-sequence prediction, MPJPE & co., the trainer's validator.

:func:`predict_sequences` lifts every frame of every sequence as VideoPose3D evaluates: a
temporal lifter reads the whole sequence at once, edge-padded by
:meth:`~posecore.models.lifting.temporal_conv.TemporalConvNet.pad_inputs` so that each frame gets
an output (the strided training form is switched off for it); a per-frame lifter reads frames
in batches. With ``flip_indices`` the prediction is averaged with that of the mirrored input
(:func:`posecore.models.lifting.flip.flip_test`). Predictions and ground truth are decoded by
the lifter's codec to root-relative camera millimetres, (F, J, 3), and
:func:`evaluate_sequences` scores them with :class:`~posecore.evaluation.pose3d.Pose3DEvaluator`
(per joint, and per action from each sequence's action).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from posecore.codecs.pose_lifting import LiftingCodec
from posecore.data.lifting import EncodedSequences
from posecore.evaluation.pose3d import Pose3DEvaluator, Pose3DReport
from posecore.models.lifting import Lifter
from posecore.models.lifting.flip import flip_test

__all__ = ["evaluate_sequences", "ground_truth", "make_lifting_validator", "predict_sequences"]


@contextlib.contextmanager
def _inference_form(lifter: Lifter) -> Iterator[None]:
    """Eval mode and, for a temporal lifter trained in its strided form, the dilated form (same weights)."""
    was_training, strided = lifter.training, getattr(lifter, "use_stride_conv", False)
    lifter.eval()
    if strided:
        lifter.use_stride_conv = False  # type: ignore[assignment]
    try:
        yield
    finally:
        lifter.train(was_training)
        if strided:
            lifter.use_stride_conv = True  # type: ignore[assignment]


def _run(lifter: Lifter, inputs: Tensor, flip_indices: Sequence[int] | None) -> Tensor:
    return lifter(inputs) if flip_indices is None else flip_test(lifter, inputs, flip_indices)


@torch.no_grad()
def predict_sequences(
    lifter: Lifter,
    data: EncodedSequences,
    flip_indices: Sequence[int] | None = None,
    batch_frames: int = 4096,
) -> Tensor:
    """Lift every frame of ``data``: (F, J, 3) float32 root-relative camera mm, on the CPU (module docstring)."""
    device = next(lifter.parameters()).device
    out: list[Tensor] = []
    with _inference_form(lifter):
        if getattr(lifter, "temporal", False):
            for start, length in zip(data.starts.tolist(), data.lengths.tolist(), strict=True):
                seq = data.inputs[start : start + length][None].to(device)
                out.append(_run(lifter, lifter.pad_inputs(seq), flip_indices)[0].cpu())  # type: ignore[operator]
        else:
            for start in range(0, data.num_frames, batch_frames):
                chunk = data.inputs[start : start + batch_frames].to(device)
                out.append(_run(lifter, chunk, flip_indices).cpu())
    joints, _ = lifter.codec.decode({"joints_3d": torch.cat(out)})
    return joints.float()


def ground_truth(codec: LiftingCodec, data: EncodedSequences) -> tuple[Tensor, Tensor]:
    """The encoded targets back in root-relative camera mm (F, J, 3), and the (F, J) mask of labelled joints
    (with ``remove_root`` the root is labelled wherever any joint of the frame is)."""
    joints, _ = codec.decode({"joints_3d": data.joints_3d})
    weights = data.keypoint_weights
    if codec.remove_root:
        r = codec.root_index
        root = (weights > 0).any(dim=-1, keepdim=True).to(weights.dtype)
        weights = torch.cat([weights[:, :r], root, weights[:, r:]], dim=-1)
    return joints.float(), weights


def evaluate_sequences(
    lifter: Lifter,
    data: EncodedSequences,
    joint_names: Sequence[str],
    flip_indices: Sequence[int] | None = None,
) -> tuple[Pose3DReport, Tensor]:
    """Lift ``data`` and score it: the report (MPJPE, P-MPJPE, N-MPJPE, PCK3D, AUC3D; per joint and
    action) and the (F, J, 3) mm predictions."""
    pred = predict_sequences(lifter, data, flip_indices)
    gt, mask = ground_truth(lifter.codec, data)
    actions = [a for a, n in zip(data.actions, data.lengths.tolist(), strict=True) for _ in range(n)]
    report = Pose3DEvaluator(joint_names).evaluate(pred.numpy(), gt.numpy(), mask.numpy(), actions)
    return report, pred


def make_lifting_validator(
    data: EncodedSequences, joint_names: Sequence[str], flip_indices: Sequence[int] | None
) -> Callable[[nn.Module, int], dict[str, float]]:
    """``validate(lifter, epoch) -> {"MPJPE": mm, "P-MPJPE": ..., ...}`` for :func:`posecore.engine.fit`."""

    def validate(model: nn.Module, epoch: int) -> dict[str, float]:
        if not isinstance(model, Lifter):
            raise TypeError(f"the lifting validator scores a Lifter; got {type(model).__name__}")
        report, _ = evaluate_sequences(model, data, joint_names, flip_indices)
        return dict(report.metrics)

    return validate
