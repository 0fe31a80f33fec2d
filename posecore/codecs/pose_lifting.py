"""Lifting codecs: 2D keypoints in pixels -> lifting-model inputs, 3D joints in camera mm <-> root-relative targets.

A 2D -> 3D lifter (SimpleBaseline3D, VideoPose3D: ``posecore.models.lifting``) reads 2D
keypoints and predicts 3D joints relative to a root joint. Its codec follows MMPose 1.x
``ImagePoseLifting`` (one frame per sample) and ``VideoPoseLifting`` (a window of frames):

    encode(keypoints_2d (N, [T,] J, 2) pixels, scores_2d (N, [T,] J) in [0, 1] or None,
           image_size=(W, H) or (N, 2), joints_3d=(N, [T3,] J, 3) camera mm or None)
        -> "inputs" (N, [T,] J, C), and with joints_3d: "joints_3d" (N, [T3,] J', 3),
           "keypoint_weights" (N, [T3,] J'), "root" (N, [T3,] 3)
    decode({"joints_3d": (..., J', 3)[, "root": (..., 3) mm]})
        -> joints (..., J, 3) camera mm, root-relative (absolute when "root" is given); scores (..., J) ones

Conventions, fixed here so that data, model and evaluation agree:

- 2D inputs are screen-normalised as MMPose's ``VideoPoseLifting`` does (and VideoPose3D's
  ``normalize_screen_coordinates``): ``x_n = x / W * 2 - 1``, ``y_n = y / H * H / W * 2 - H / W``,
  i.e. ``(p - (W / 2, H / 2)) / (W / 2)``: the image centre goes to 0, x spans [-1, 1] and y
  [-H/W, H/W], one scale for both axes so that the aspect ratio is kept. Independent of the
  camera intrinsics (not ``(u - c) / f``). ``ImagePoseLifting`` may then standardise them with
  per-joint statistics (MMPose's ``keypoints_mean``/``keypoints_std``, which MMPose applies to
  raw pixels; here to the screen-normalised values, so one set of statistics serves every camera).
- With ``use_scores`` the 2D scores are appended as a third input channel (C = 3, else C = 2).
  A keypoint with a non-finite coordinate becomes (0, 0) with score 0.
- 3D targets are root-relative (``root_index``, Human3.6M's pelvis is 0) and in **metres**
  (VideoPose3D trains in metres; errors of O(0.1) keep the loss well scaled). Everything
  else, the joints given to ``encode``, ``"root"`` and what ``decode`` returns, is in camera
  **millimetres**, the unit of :class:`posecore.datasets.pose3d.format.PoseSequence`.
  ``remove_root`` drops the root joint (always 0) from the targets (J' = J - 1); ``decode``
  puts it back at ``root_index`` (MMPose's ``remove_root``).
- Joints with a non-finite coordinate get weight 0 and target 0 (all of a frame's joints when
  its root is missing).

Tensors are computed in float32, or float64 from float64 inputs (the inputs from the 2D
keypoints, the targets and root from the 3D joints); encode and decode run on their inputs' device.

These codecs do not fit :class:`posecore.codecs.base.Codec` (2D in, 2D out, one tensor per
argument), so they have their own registry here rather than special cases in every caller of
that one. To add a lifting codec: subclass :class:`LiftingCodec` as a ``@dataclass(frozen=True)``,
set ``temporal``, decorate it with ``@register_lifting_codec("name")``, and add a variant for it
in ``tests/codecs/test_pose_lifting.py`` (its registry-driven round trip asks for one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, TypeVar

from posecore._lazy import lazy_import
from posecore._registry import Registry

from ._screen import denormalize_screen, normalize_intrinsics, normalize_screen
from ._utils import compute_dtype

if TYPE_CHECKING:
    import torch
    from torch import Tensor
else:
    torch = lazy_import("torch")

__all__ = [
    "MM_PER_TARGET_UNIT",
    "ImagePoseLifting",
    "LiftingCodec",
    "VideoPoseLifting",
    "available_lifting_codecs",
    "build_lifting_codec",
    "denormalize_screen",
    "normalize_intrinsics",
    "normalize_screen",
    "register_lifting_codec",
]

#: Millimetres per target unit: targets are in metres.
MM_PER_TARGET_UNIT = 1000.0

# --------------------------------------------------------------------------- codecs


@dataclass(frozen=True)
class LiftingCodec:
    """What both lifting codecs share (module docstring for shapes and units)."""

    num_keypoints: int = 17
    """J, the 2D keypoints in and 3D joints out (Human3.6M: 17)."""
    root_index: int = 0
    """The joint the 3D targets are relative to (Human3.6M: 0, the pelvis)."""
    remove_root: bool = False
    """Drop the root (always 0) from the targets: the model predicts J - 1 joints."""
    use_scores: bool = False
    """Append the 2D scores as a third input channel."""

    #: Keys of what the lifter predicts and ``encode`` targets.
    target_keys: ClassVar[tuple[str, ...]] = ("joints_3d",)
    #: Whether samples carry a time axis (N, T, J, ...) or are one frame (N, J, ...).
    temporal: ClassVar[bool] = False

    def __post_init__(self) -> None:
        name = type(self).__name__
        if isinstance(self.num_keypoints, bool) or not isinstance(self.num_keypoints, int) or self.num_keypoints < 2:
            raise ValueError(f"{name}.num_keypoints must be an int >= 2 (Human3.6M: 17); got {self.num_keypoints!r}")
        if not isinstance(self.root_index, int) or not 0 <= self.root_index < self.num_keypoints:
            raise ValueError(
                f"{name}.root_index must index one of the {self.num_keypoints} joints (Human3.6M's pelvis: 0); "
                f"got {self.root_index!r}"
            )

    @property
    def in_channels(self) -> int:
        """C, the values per input keypoint: x, y (and the score with ``use_scores``)."""
        return 3 if self.use_scores else 2

    @property
    def num_targets(self) -> int:
        """J', the joints the lifter predicts: J, or J - 1 with ``remove_root``."""
        return self.num_keypoints - 1 if self.remove_root else self.num_keypoints

    # ------------------------------------------------------------------ encode / decode

    def encode(
        self,
        keypoints_2d: Tensor,
        scores_2d: Tensor | None,
        *,
        image_size: tuple[int, int] | Tensor,
        joints_3d: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """keypoints_2d (N, [T,] J, 2) px, scores_2d (N, [T,] J) or None (all 1), joints_3d (N, [T3,] J, 3) mm
        -> "inputs" (N, [T,] J, C) and, with joints_3d, "joints_3d" (N, [T3,] J', 3) metres root-relative,
        "keypoint_weights" (N, [T3,] J'), "root" (N, [T3,] 3) mm. ``image_size``: (W, H) or (N, 2)."""
        kp = self._check(keypoints_2d, "keypoints_2d", 2)
        dtype = compute_dtype(kp)
        kp = kp.to(dtype)
        found = torch.isfinite(kp).all(dim=-1)
        scores = torch.ones_like(found, dtype=dtype) if scores_2d is None else scores_2d.to(kp.device, dtype)
        if scores.shape != found.shape:
            raise ValueError(
                f"{type(self).__name__}.encode: scores_2d must be {tuple(found.shape)}; got {tuple(scores.shape)}"
            )
        xy = self._standardize_inputs(normalize_screen(torch.where(found[..., None], kp, 0.0), image_size))
        scores = torch.where(found, scores, 0.0)
        encoded = {"inputs": torch.cat([xy, scores[..., None]], dim=-1) if self.use_scores else xy}
        if joints_3d is not None:
            joints = self._check(joints_3d, "joints_3d", 3, kp.shape[0])
            encoded.update(self._encode_3d(joints.to(kp.device, compute_dtype(joints))))
        return encoded

    def _encode_3d(self, joints: Tensor) -> dict[str, Tensor]:
        valid = torch.isfinite(joints).all(dim=-1)
        valid = valid & valid[..., self.root_index : self.root_index + 1]
        joints = torch.where(valid[..., None], joints, 0.0)
        root = joints[..., self.root_index, :]
        target = (joints - root[..., None, :]) / MM_PER_TARGET_UNIT
        if self.remove_root:
            keep = [j for j in range(self.num_keypoints) if j != self.root_index]
            target, valid = target[..., keep, :], valid[..., keep]
        return {
            "joints_3d": self._standardize_targets(target),
            "keypoint_weights": valid.to(joints.dtype),
            "root": root,
        }

    def decode(self, outputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """{"joints_3d": (..., J', 3)[, "root": (..., 3) mm]} -> joints (..., J, 3) camera mm, scores (..., J) ones.

        Without "root" the joints are root-relative (the root at 0); with it, absolute.
        """
        name = type(self).__name__
        if "joints_3d" not in outputs:
            raise KeyError(f"{name}.decode needs output 'joints_3d'; got keys {sorted(outputs)}")
        pred = outputs["joints_3d"]
        if pred.ndim < 2 or tuple(pred.shape[-2:]) != (self.num_targets, 3):
            raise ValueError(
                f"{name}.decode: 'joints_3d' must be (..., {self.num_targets}, 3); got {tuple(pred.shape)}"
            )
        joints = self._unstandardize_targets(pred.to(compute_dtype(pred))) * MM_PER_TARGET_UNIT
        if self.remove_root:
            zero = joints.new_zeros(joints.shape[:-2] + (1, 3))
            joints = torch.cat([joints[..., : self.root_index, :], zero, joints[..., self.root_index :, :]], dim=-2)
        if outputs.get("root") is not None:
            root = outputs["root"].to(joints)
            if tuple(root.shape) != tuple(joints.shape[:-2]) + (3,):
                raise ValueError(
                    f"{name}.decode: 'root' must be {tuple(joints.shape[:-2]) + (3,)}; got {tuple(root.shape)}"
                )
            joints = joints + root[..., None, :]
        return joints, joints.new_ones(joints.shape[:-1])

    # ------------------------------------------------------------------ flips (test-time augmentation)

    def _flip_indices(self, flip_indices: Sequence[int]) -> list[int]:
        indices = [int(i) for i in flip_indices]
        ok = len(indices) == self.num_keypoints and sorted(indices) == list(range(self.num_keypoints))
        if not ok or any(indices[j] != i for i, j in enumerate(indices)):
            raise ValueError(
                f"flip_indices must pair the {self.num_keypoints} joints symmetrically (a permutation that is its "
                f"own inverse, the dataset meta's flip_indices); got {indices}"
            )
        return indices

    def target_flip_indices(self, flip_indices: Sequence[int]) -> list[int]:
        """``flip_indices`` over the J keypoints -> the same over the J' targets (the root left out)."""
        indices = self._flip_indices(flip_indices)
        if not self.remove_root:
            return indices
        if indices[self.root_index] != self.root_index:
            raise ValueError(f"the root joint {self.root_index} must flip onto itself to be removed; got {indices}")
        keep = [j for j in range(self.num_keypoints) if j != self.root_index]
        position = {j: i for i, j in enumerate(keep)}
        return [position[indices[j]] for j in keep]

    def flip_inputs(self, inputs: Tensor, flip_indices: Sequence[int]) -> Tensor:
        """Encoded inputs (N, [T,] J, C) -> those of the horizontally mirrored image (x -> -x, left <-> right).

        Mirroring pixels about the image's centre line (x -> W - x) negates the normalised x.
        """
        index = torch.tensor(self._flip_indices(flip_indices), device=inputs.device)
        xy = self._unstandardize_inputs(inputs[..., :2])
        xy = self._standardize_inputs(torch.stack([-xy[..., 0], xy[..., 1]], dim=-1).index_select(-2, index))
        return torch.cat([xy, inputs[..., 2:].index_select(-2, index)], dim=-1)

    def flip_outputs(self, joints: Tensor, flip_indices: Sequence[int]) -> Tensor:
        """Predicted targets (..., J', 3) of a mirrored input -> the original orientation (x -> -x, left <-> right)."""
        index = torch.tensor(self.target_flip_indices(flip_indices), device=joints.device)
        xyz = self._unstandardize_targets(joints)
        return self._standardize_targets((xyz * xyz.new_tensor([-1.0, 1.0, 1.0])).index_select(-2, index))

    # ------------------------------------------------------------------ hooks and checks

    def _standardize_inputs(self, xy: Tensor) -> Tensor:
        return xy

    def _unstandardize_inputs(self, xy: Tensor) -> Tensor:
        return xy

    def _standardize_targets(self, target: Tensor) -> Tensor:
        return target

    def _unstandardize_targets(self, target: Tensor) -> Tensor:
        return target

    def _check(self, t: Tensor, what: str, dim: int, batch: int | None = None) -> Tensor:
        ndim = 4 if self.temporal else 3
        layout = "(N, T, J, {})" if self.temporal else "(N, J, {})"
        ok = isinstance(t, torch.Tensor) and t.ndim == ndim and tuple(t.shape[-2:]) == (self.num_keypoints, dim)
        if not ok or (batch is not None and t.shape[0] != batch):
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            hint = "" if self.temporal else "; a window of frames needs VideoPoseLifting"
            raise ValueError(
                f"{type(self).__name__}.encode: {what} must be a tensor {layout.format(dim)} with J = "
                f"{self.num_keypoints}{'' if batch is None else f' and N = {batch}'}; got {shape}{hint}"
            )
        return t


# --------------------------------------------------------------------------- registry

L = TypeVar("L", bound=type[LiftingCodec])


def _check_lifting_codec(name: str, cls: object) -> None:
    if not (isinstance(cls, type) and issubclass(cls, LiftingCodec) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"@register_lifting_codec({name!r}) needs a dataclass subclassing LiftingCodec, got {cls!r}")


_LIFTING_CODECS: Registry[LiftingCodec] = Registry("lifting codec", check=_check_lifting_codec)


def register_lifting_codec(name: str) -> Callable[[L], L]:
    """Class decorator: make a frozen-dataclass :class:`LiftingCodec` buildable as ``build_lifting_codec(name)``."""
    return _LIFTING_CODECS.register(name)


def available_lifting_codecs() -> tuple[str, ...]:
    """Registered lifting codec names, sorted."""
    return tuple(_LIFTING_CODECS.names())


def build_lifting_codec(name: str, **kwargs: object) -> LiftingCodec:
    """Build the lifting codec registered as ``name``; unknown or missing fields are reported by name."""
    return _LIFTING_CODECS.build(name, **kwargs)


# --------------------------------------------------------------------------- the two codecs


Stats = tuple[tuple[float, ...], ...]


@register_lifting_codec("image_pose_lifting")
@dataclass(frozen=True)
class ImagePoseLifting(LiftingCodec):
    """One frame per sample (SimpleBaseline3D; MMPose ``ImagePoseLifting``).

    keypoints_2d (N, J, 2) px, scores_2d (N, J), joints_3d (N, J, 3) mm -> "inputs" (N, J, C),
    "joints_3d" (N, J', 3) metres, "keypoint_weights" (N, J'), "root" (N, 3) mm.
    Optional standardisation with training-set statistics (:meth:`with_statistics`):
    inputs ``(x_n - keypoints_mean) / keypoints_std`` per joint and axis (J, 2), targets
    ``(t - target_mean) / target_std`` (J', 3, metres); ``decode`` undoes the latter.
    """

    keypoints_mean: Stats | None = None
    keypoints_std: Stats | None = None
    target_mean: Stats | None = None
    target_std: Stats | None = None

    temporal: ClassVar[bool] = False

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        for a, b, shape in (
            ("keypoints_mean", "keypoints_std", (self.num_keypoints, 2)),
            ("target_mean", "target_std", (self.num_targets, 3)),
        ):
            mean, std = getattr(self, a), getattr(self, b)
            if (mean is None) != (std is None):
                raise ValueError(f"{name}: give both {a} and {b}, or neither")
            if mean is None:
                continue
            for key, value in ((a, mean), (b, std)):
                rows = tuple(tuple(float(v) for v in row) for row in value)
                if len(rows) != shape[0] or any(len(r) != shape[1] for r in rows):
                    raise ValueError(f"{name}.{key} must be {shape[0]} rows of {shape[1]} numbers; got {value!r}")
                if key == b and any(v <= 0 for r in rows for v in r):
                    raise ValueError(f"{name}.{key} must be positive; got {value!r}")
                object.__setattr__(self, key, rows)

    def with_statistics(
        self, keypoints_2d: Tensor, image_size: tuple[int, int] | Tensor, joints_3d: Tensor
    ) -> ImagePoseLifting:
        """This codec with the per-joint means and stds of a training set's encoded inputs and targets.

        keypoints_2d (N, J, 2) px, joints_3d (N, J, 3) mm; a std below 1e-6 (e.g. a kept root) becomes 1.
        """
        plain = dataclasses.replace(self, keypoints_mean=None, keypoints_std=None, target_mean=None, target_std=None)
        enc = plain.encode(keypoints_2d.double(), None, image_size=image_size, joints_3d=joints_3d.double())

        def stats(t: Tensor) -> tuple[Stats, Stats]:
            std = t.std(dim=0, unbiased=False)
            std = torch.where(std < 1e-6, 1.0, std)
            return tuple(map(tuple, t.mean(dim=0).tolist())), tuple(map(tuple, std.tolist()))

        (km, ks), (tm, ts) = stats(enc["inputs"][..., :2]), stats(enc["joints_3d"])
        return dataclasses.replace(self, keypoints_mean=km, keypoints_std=ks, target_mean=tm, target_std=ts)

    def _stat(self, values: Stats | None, like: Tensor) -> Tensor | None:
        return None if values is None else torch.tensor(values, dtype=like.dtype, device=like.device)

    def _standardize_inputs(self, xy: Tensor) -> Tensor:
        mean, std = self._stat(self.keypoints_mean, xy), self._stat(self.keypoints_std, xy)
        return xy if mean is None or std is None else (xy - mean) / std

    def _unstandardize_inputs(self, xy: Tensor) -> Tensor:
        mean, std = self._stat(self.keypoints_mean, xy), self._stat(self.keypoints_std, xy)
        return xy if mean is None or std is None else xy * std + mean

    def _standardize_targets(self, target: Tensor) -> Tensor:
        mean, std = self._stat(self.target_mean, target), self._stat(self.target_std, target)
        return target if mean is None or std is None else (target - mean) / std

    def _unstandardize_targets(self, target: Tensor) -> Tensor:
        mean, std = self._stat(self.target_mean, target), self._stat(self.target_std, target)
        return target if mean is None or std is None else target * std + mean


@register_lifting_codec("video_pose_lifting")
@dataclass(frozen=True)
class VideoPoseLifting(LiftingCodec):
    """A window of T frames per sample (VideoPose3D; MMPose ``VideoPoseLifting``).

    keypoints_2d (N, T, J, 2) px, scores_2d (N, T, J), joints_3d (N, T3, J, 3) mm -> "inputs"
    (N, T, J, C), "joints_3d" (N, T3, J', 3) metres, "keypoint_weights" (N, T3, J'), "root"
    (N, T3, 3) mm. T3 is whatever frames are supervised: the window's centre (or, causal, last)
    frame, T3 = 1, or every output frame of the temporal network, T3 = T - receptive_field + 1
    (``TemporalConvNet.output_frames`` says which).
    """

    temporal: ClassVar[bool] = True
