"""Training data of the 2D -> 3D lifters: 3D pose sequences encoded once, cut into windows batch-wise.

:func:`encode_sequences` runs a lifting codec (:mod:`posecore.codecs.pose_lifting`) over every
frame of every :class:`~posecore.datasets.pose3d.format.PoseSequence` of a split, once, and keeps
the result as flat arrays (F frames over all sequences):

    inputs (F, J, C) float32, joints_3d (F, J', 3) float32 root-relative metres,
    keypoint_weights (F, J') float32, starts (S,) / lengths (S,) int64 per sequence.

:class:`LiftingWindows` is a :class:`posecore.engine.step.TrainData` over them: sample ``i`` is
frame ``i`` (every frame is one training target, as VideoPose3D's generator with ``stride=1``),
and its input window is the ``receptive_field`` frames the lifter reads for it, the frame at the
centre (or, causal, at the end), with frames beyond the sequence's ends repeated from its first
or last frame (VideoPose3D pads its training sequences with ``edge`` mode). A batch is

    {"inputs": (B, R, J, C), "joints_3d": (B, 1, J', 3), "keypoint_weights": (B, 1, J')}

for a temporal codec (``R`` = receptive field), or ``(B, J, C)``, ``(B, J', 3)``, ``(B, J')``
for a per-frame codec (``ImagePoseLifting``). With ``flip_prob`` > 0 a sample is mirrored
(inputs and targets, left <-> right, :meth:`LiftingCodec.flip_inputs` / ``flip_outputs``) with
that probability, decided by :class:`~posecore.transforms.rng.KeyedRNG` from (seed, epoch,
sample): the same sample gets the same flip whatever batch it is in, so a resumed run repeats
an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from posecore.codecs.pose_lifting import LiftingCodec
from posecore.datasets.pose3d.format import PoseSequence
from posecore.transforms.rng import KeyedRNG

__all__ = ["EncodedSequences", "LiftingWindows", "encode_sequences", "window_frames"]

_FLIP_STREAM = 31


@dataclass(frozen=True)
class EncodedSequences:
    """A split's sequences encoded by one codec, frames concatenated (module docstring for shapes)."""

    inputs: Tensor
    joints_3d: Tensor
    keypoint_weights: Tensor
    starts: np.ndarray
    lengths: np.ndarray
    names: tuple[str, ...]
    actions: tuple[str, ...]

    @property
    def num_frames(self) -> int:
        return int(self.inputs.shape[0])

    def sequence_of_frame(self) -> np.ndarray:
        """(F,) int64: the sequence each frame belongs to."""
        return np.repeat(np.arange(len(self.lengths)), self.lengths)


def encode_sequences(codec: LiftingCodec, sequences: Sequence[PoseSequence]) -> EncodedSequences:
    """Encode every frame of ``sequences`` with ``codec`` (per frame: the temporal codec's windows are cut later)."""
    if not sequences:
        raise ValueError("no sequences to encode: the split is empty")
    inputs, joints, weights = [], [], []
    for seq in sequences:
        if seq.keypoints_2d.shape[1] != codec.num_keypoints:
            raise ValueError(
                f"sequence {seq.name!r} has {seq.keypoints_2d.shape[1]} joints but the lifting codec expects "
                f"{codec.num_keypoints}: convert the data with the lifter's dataset meta"
            )
        size = (seq.camera.width, seq.camera.height)
        kp = torch.from_numpy(np.ascontiguousarray(seq.keypoints_2d, dtype=np.float32))
        sc = torch.from_numpy(np.ascontiguousarray(seq.scores_2d, dtype=np.float32))
        j3 = torch.from_numpy(np.ascontiguousarray(seq.joints_3d, dtype=np.float32))
        if codec.temporal:  # one window of T frames, targets for every frame
            enc = codec.encode(kp[None], sc[None], image_size=size, joints_3d=j3[None])
            enc = {k: v[0] for k, v in enc.items()}
        else:
            enc = codec.encode(kp, sc, image_size=size, joints_3d=j3)
        inputs.append(enc["inputs"].float())
        joints.append(enc["joints_3d"].float())
        weights.append(enc["keypoint_weights"].float())
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    return EncodedSequences(
        inputs=torch.cat(inputs),
        joints_3d=torch.cat(joints),
        keypoint_weights=torch.cat(weights),
        starts=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
        lengths=lengths,
        names=tuple(s.name for s in sequences),
        actions=tuple(s.action for s in sequences),
    )


def window_frames(
    frames: Tensor, starts: Tensor, lengths: Tensor, receptive_field: int, causal: bool
) -> Tensor:
    """Global frame indices (B,) -> the (B, receptive_field) frames of their input windows, edge-padded.

    ``starts``/``lengths`` (B,) are each frame's sequence's first global frame and length.
    Centred windows put the frame at ``receptive_field // 2``; causal ones at the end.
    """
    before = receptive_field - 1 if causal else receptive_field // 2
    offsets = torch.arange(receptive_field, dtype=torch.int64) - before
    local = (frames - starts)[:, None] + offsets[None]
    local = torch.minimum(local.clamp_min(0), (lengths - 1)[:, None])
    return starts[:, None] + local


class LiftingWindows:
    """Training windows over encoded sequences (module docstring); a :class:`TrainData`."""

    def __init__(
        self,
        data: EncodedSequences,
        codec: LiftingCodec,
        *,
        receptive_field: int = 1,
        causal: bool = False,
        flip_indices: Sequence[int] | None = None,
        flip_prob: float = 0.0,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1]; got {flip_prob}")
        if flip_prob > 0 and flip_indices is None:
            raise ValueError("flip_prob > 0 needs flip_indices (the dataset meta's)")
        if not codec.temporal and receptive_field != 1:
            raise ValueError(f"a per-frame codec reads one frame; got receptive_field {receptive_field}")
        self.data, self.codec = data, codec
        self.receptive_field, self.causal = int(receptive_field), bool(causal)
        self.flip_prob, self.seed = float(flip_prob), int(seed)
        self.flip_indices = None if flip_indices is None else [int(i) for i in flip_indices]
        seq = data.sequence_of_frame()
        self._starts = torch.from_numpy(data.starts[seq])
        self._lengths = torch.from_numpy(data.lengths[seq])

    @property
    def num_samples(self) -> int:
        return self.data.num_frames

    def batch(self, indices: Sequence[int], epoch: int) -> dict[str, Tensor]:
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        d = self.data
        if self.codec.temporal:
            frames = window_frames(idx, self._starts[idx], self._lengths[idx], self.receptive_field, self.causal)
            inputs = d.inputs[frames]  # (B, R, J, C)
            target, weights = d.joints_3d[idx][:, None], d.keypoint_weights[idx][:, None]
        else:
            inputs, target, weights = d.inputs[idx], d.joints_3d[idx], d.keypoint_weights[idx]
        if self.flip_prob > 0 and self.flip_indices is not None:
            flip = KeyedRNG(self.seed, epoch).uniform(idx, _FLIP_STREAM, 1)[:, 0] < self.flip_prob
            if flip.any():
                inputs, target, weights = inputs.clone(), target.clone(), weights.clone()
                inputs[flip] = self.codec.flip_inputs(inputs[flip], self.flip_indices)
                target[flip] = self.codec.flip_outputs(target[flip], self.flip_indices)
                order = torch.tensor(self.codec.target_flip_indices(self.flip_indices))
                weights[flip] = weights[flip].index_select(-1, order)
        return {"inputs": inputs, "joints_3d": target, "keypoint_weights": weights}
