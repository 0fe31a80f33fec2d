"""``posecore infer --lift``: each tracked person's 2D keypoints in a video lifted to 3D by a lifter bundle.

:func:`check_lift_pair` runs before the video is read: the 2D model's keypoints must be the
lifter's joints, by name and order, or have a conversion into them (:data:`CONVERSIONS`; MMPose's
``convert_keypoint_definition`` for COCO-17 -> Human3.6M-17: pelvis = mid-hips, thorax =
mid-shoulders, spine = their midpoint, head = mid-eyes, neck base = nose, limbs by name). Else
the error names both skeletons, so a mouse model and a human lifter fail at once.

:func:`lift_video_tracks` works on the video JSON that :func:`posecore.inference.pipeline.infer_video`
wrote: per track, each run of consecutive frames is lifted as one sequence
(:meth:`posecore.export.lift_bundle.LiftRuntime.lift`: sliding window, edge padding at both ends,
flip test), and each instance gets ``keypoints_3d`` (J x [x, y, z], root-relative camera mm, in the
lifter's joint order, ``keypoint_names_3d`` at the top of the JSON). :func:`render_3d_video`
draws them as ``<stem>_3d.mp4``: a front view (x, y) and a side view (z, y) per frame, next to the
2D video.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from posecore.export.lift_bundle import LiftRuntime

__all__ = ["CONVERSIONS", "check_lift_pair", "lift_video_tracks", "render_3d_video"]

Conversion = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _coco_to_h36m(kp: np.ndarray, sc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCO-17 (T, 17, 2) keypoints and (T, 17) scores -> Human3.6M-17 (MMPose's demo conversion)."""
    out = np.zeros_like(kp)
    s = np.zeros_like(sc)

    def mid(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        return (kp[:, a] + kp[:, b]) / 2, np.minimum(sc[:, a], sc[:, b])

    out[:, 0], s[:, 0] = mid(11, 12)
    out[:, 8], s[:, 8] = mid(5, 6)
    out[:, 7], s[:, 7] = (out[:, 0] + out[:, 8]) / 2, np.minimum(s[:, 0], s[:, 8])
    out[:, 10], s[:, 10] = mid(1, 2)
    out[:, 9], s[:, 9] = kp[:, 0], sc[:, 0]
    for dst, src in zip(
        (1, 2, 3, 4, 5, 6, 11, 12, 13, 14, 15, 16), (12, 14, 16, 11, 13, 15, 5, 7, 9, 6, 8, 10), strict=True
    ):
        out[:, dst], s[:, dst] = kp[:, src], sc[:, src]
    return out, s


#: (2D model's meta, lifter's meta) -> conversion of (T, K, 2) keypoints and (T, K) scores.
CONVERSIONS: dict[tuple[str, str], Conversion] = {("coco", "h36m"): _coco_to_h36m}


def check_lift_pair(
    model_meta: str, model_keypoints: Sequence[str], lifter: LiftRuntime, model_path: str | Path, lift_path: str | Path
) -> Conversion | None:
    """None when the 2D keypoints are the lifter's joints, the conversion when one is known, else a ValueError."""
    names = list(model_keypoints)
    if names == list(lifter.keypoint_names):
        return None
    conversion = CONVERSIONS.get((model_meta, lifter.info.meta_name))
    if conversion is not None and len(names) == 17:
        return conversion
    known = ", ".join(f"{a} -> {b}" for a, b in CONVERSIONS)
    raise ValueError(
        f"the 2D model {model_path} gives {len(names)} '{model_meta}' keypoints ({', '.join(names[:5])}, ...) but the "
        f"lifter {lift_path} lifts {lifter.info.num_keypoints} '{lifter.info.meta_name}' joints "
        f"({', '.join(lifter.keypoint_names[:5])}, ...): the skeletons do not match and posecore knows no conversion "
        f"between them (known: {known}). Use a lifter trained on the 2D model's keypoints (lift.meta)"
    )


def _runs(frames: list[int]) -> list[list[int]]:
    """Sorted frame indices -> runs of consecutive frames."""
    runs: list[list[int]] = []
    for f in frames:
        if runs and f == runs[-1][-1] + 1:
            runs[-1].append(f)
        else:
            runs.append([f])
    return runs


def lift_video_tracks(doc: dict[str, Any], lifter: LiftRuntime, conversion: Conversion | None) -> dict[str, Any]:
    """Add ``keypoints_3d`` to every tracked instance of the video JSON ``doc`` (in place; returns it)."""
    size = (float(doc["width"]), float(doc["height"]))
    tracks: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    for frame in doc["frames"]:
        for inst in frame["instances"]:
            if inst.get("track_id") is not None:
                tracks.setdefault(int(inst["track_id"]), []).append((int(frame["frame_index"]), inst))
    for items in tracks.values():
        by_frame = dict(items)
        for run in _runs(sorted(by_frame)):
            insts = [by_frame[f] for f in run]
            kp = np.asarray([i["keypoints"] for i in insts], np.float32)
            sc = np.asarray([i["keypoint_scores"] for i in insts], np.float32)
            if conversion is not None:
                kp, sc = conversion(kp, sc)
            joints = lifter.lift(kp, sc, size)
            for inst, j3 in zip(insts, joints, strict=True):
                inst["keypoints_3d"] = [[round(float(v), 2) for v in xyz] for xyz in j3]
    doc["keypoint_names_3d"] = list(lifter.keypoint_names)
    doc["lifter"] = {"meta": lifter.info.meta_name, **lifter.info.lifter}
    return doc


def render_3d_video(
    doc: dict[str, Any], skeleton: Sequence[Sequence[int]], path: Path, fps: float, size: int = 320
) -> Path:
    """Draw each frame's lifted people, front (x, y) and side (z, y) views side by side, into ``path`` (mp4)."""
    scale = size / 2400.0  # +-1.2 m around each root fills a panel
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (2 * size, size))
    if not writer.isOpened():
        raise ValueError(f"cannot write the video {path} (OpenCV has no mp4v encoder?)")
    colors = [(80, 180, 255), (255, 160, 60), (120, 255, 120), (255, 90, 200)]
    try:
        for frame in doc["frames"]:
            canvas = np.full((size, 2 * size, 3), 30, np.uint8)
            cv2.line(canvas, (size, 0), (size, size), (90, 90, 90), 1)
            for n, inst in enumerate(i for i in frame["instances"] if "keypoints_3d" in i):
                j3 = np.asarray(inst["keypoints_3d"], np.float64)
                color = colors[(inst.get("track_id") or n) % len(colors)]
                for panel, axis in ((0, 0), (1, 2)):
                    pts = np.stack([j3[:, axis] * scale + size / 2 + panel * size, j3[:, 1] * scale + size / 2], -1)
                    for a, b in skeleton:
                        pa, pb = (tuple(int(round(v)) for v in pts[i]) for i in (a, b))
                        cv2.line(canvas, pa, pb, color, 2, cv2.LINE_AA)
            cv2.putText(canvas, "front", (8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (200, 200, 200), 1)
            cv2.putText(canvas, "side", (size + 8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (200, 200, 200), 1)
            writer.write(canvas)
    finally:
        writer.release()
    return path
