"""Screen normalisation of 2D keypoints for the lifting codecs (:mod:`posecore.codecs.pose_lifting`):
MMPose's ``VideoPoseLifting`` convention, ``(p - (W/2, H/2)) / (W/2)``, and the matching intrinsics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from posecore._lazy import lazy_import

if TYPE_CHECKING:
    import torch
    from torch import Tensor
else:
    torch = lazy_import("torch")

__all__ = ["denormalize_screen", "normalize_intrinsics", "normalize_screen"]


def _size_tensor(image_size: tuple[int, int] | Tensor, like: Tensor) -> Tensor:
    """(W, H) or (N, 2) -> a tensor (2,) or (N, 1, ..., 2) that broadcasts against ``like`` (N, ..., 2)."""
    size = torch.as_tensor(image_size, dtype=like.dtype, device=like.device)
    if size.shape[-1:] != (2,) or size.ndim > 2 or (size.ndim == 2 and size.shape[0] != like.shape[0]):
        raise ValueError(
            f"image_size must be (W, H) or one (W, H) per instance, shape ({like.shape[0]}, 2); got {tuple(size.shape)}"
        )
    if not bool((size > 0).all()):
        raise ValueError(f"image_size must be positive; got {size.tolist()}")
    return size.reshape(size.shape[:1] + (1,) * (like.ndim - 2) + (2,)) if size.ndim == 2 else size


def normalize_screen(keypoints: Tensor, image_size: tuple[int, int] | Tensor) -> Tensor:
    """keypoints (N, ..., J, 2) pixels -> ``(p - (W/2, H/2)) / (W/2)``, same shape (module docstring).

    ``image_size`` is (W, H) for all, or (N, 2) per instance.
    """
    size = _size_tensor(image_size, keypoints)
    return (keypoints - size / 2) / (size[..., :1] / 2)


def denormalize_screen(normalized: Tensor, image_size: tuple[int, int] | Tensor) -> Tensor:
    """The inverse of :func:`normalize_screen`: (N, ..., J, 2) normalised -> pixels."""
    size = _size_tensor(image_size, normalized)
    return normalized * (size[..., :1] / 2) + size / 2


def normalize_intrinsics(f: Tensor, c: Tensor, image_size: tuple[int, int] | Tensor) -> tuple[Tensor, Tensor]:
    """Focal lengths f (N, 2) and principal points c (N, 2) in pixels -> the same in screen-normalised units.

    MMPose's ``normalize_camera``: ``f / (W/2)`` and ``(c - (W/2, H/2)) / (W/2)``, so that the
    pinhole model ``p_n = f_n * X / Z + c_n`` holds for screen-normalised points.
    """
    size = _size_tensor(image_size, f)
    return f / (size[..., :1] / 2), (c - size / 2) / (size[..., :1] / 2)
