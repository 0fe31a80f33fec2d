"""The letterbox of one-stage models: a whole image scaled into the model input, aspect ratio kept.

One function for the cache (:mod:`posecore.data.build_images`) and the bundle runtime
(:mod:`posecore.inference.model`), so training and serving see the same pixels. NumPy and
OpenCV only: the torch-free runtime imports it.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Shrinking below this scale uses ``INTER_AREA`` (averages the pixels a bilinear sample would skip).
AREA_BELOW = 0.5


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """image (H, W, 3) uint8 -> (h, w, 3) uint8 letterboxed into ``size`` (w, h), and the (2, 3)
    float64 warp from image pixels to letterboxed pixels.

    Scaled by ``s = min(w / W, h / H)`` with one ``cv2.resize`` (``INTER_AREA`` when shrinking by
    more than 2x, else ``INTER_LINEAR``), centred at a whole-pixel offset so the warp is exact,
    black padding; the warp follows OpenCV's pixel-centre convention, x' = sx (x + 0.5) - 0.5 + tx.
    """
    h, w = image.shape[:2]
    ws, hs = size
    s = min(ws / w, hs / h)
    rw, rh = min(ws, max(1, round(w * s))), min(hs, max(1, round(h * s)))
    sx, sy = rw / w, rh / h
    tx, ty = (ws - rw) // 2, (hs - rh) // 2
    interpolation = cv2.INTER_AREA if s < AREA_BELOW else cv2.INTER_LINEAR
    out = np.zeros((hs, ws, 3), np.uint8)
    out[ty : ty + rh, tx : tx + rw] = cv2.resize(image, (rw, rh), interpolation=interpolation).reshape(rh, rw, 3)
    warp = np.array([[sx, 0.0, 0.5 * sx - 0.5 + tx], [0.0, sy, 0.5 * sy - 0.5 + ty]])
    return out, warp
