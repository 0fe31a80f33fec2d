"""The registered model's Python side: person crops in, keypoints out, on onnxruntime (no torch).

:func:`posecore.registry.bundle.log_bundle` logs :class:`BundlePoseModel` with the bundle folder as its
artifact ``bundle`` and posecore's sources as code, so ``mlflow models serve`` and
``mlflow.pyfunc.load_model`` need only numpy, onnxruntime, opencv and pandas.

Input, one row per person crop (a crop of any size; it is resized to the model input (w, h),
so crops with the model's aspect ratio, cut with its ``bbox_padding``, give the best results):

- a DataFrame or dict with the column ``image``: base64 of the JPEG or PNG bytes of the crop
  (a ``data:image/...;base64,`` prefix is allowed); raw encoded bytes work in process too.
- in process also a uint8 RGB array (N, h, w, 3) or (h, w, 3): call
  ``loaded.unwrap_python_model().predict(None, crops)`` (MLflow checks ``predict`` input against
  the ``image`` column signature, which an array does not fit).

Output: a DataFrame, one row per crop, ``keypoints`` (K lists [x, y], crop pixels) and ``scores``
(K floats). Over HTTP::

    POST /invocations  {"dataframe_records": [{"image": "<base64 PNG>"}]}
    -> {"predictions": [{"keypoints": [[x, y], ...], "scores": [s, ...]}]}
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

__all__ = ["BundlePoseModel", "decode_image", "encode_image"]


class BundlePoseModel(mlflow.pyfunc.PythonModel):
    """A posecore bundle as an MLflow pyfunc model (see the module docstring for the I/O)."""

    def load_context(self, context: Any) -> None:
        from posecore.inference.runtime import BundleModel

        self.model = BundleModel(context.artifacts["bundle"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        # The hint is what MLflow passes after checking the signature; in process (unwrapped) arrays work too.
        crops = _crops(model_input)
        keypoints, scores = self.predict_crops(crops)
        return pd.DataFrame(
            {
                "keypoints": [k.astype(np.float64).tolist() for k in keypoints],
                "scores": [s.astype(np.float64).tolist() for s in scores],
            }
        )

    def predict_crops(self, crops: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """RGB uint8 crops (h_i, w_i, 3) of any sizes -> keypoints (K, 2) in each crop's pixels, scores (K,)."""
        import cv2

        if not crops:
            return [], []
        w, h = self.model.info.input_size
        resized = np.stack(
            [c if c.shape[:2] == (h, w) else cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in crops]
        )
        kps, scores = self.model.predict_crops(resized)
        out = []
        for crop, kp in zip(crops, kps, strict=True):
            sx, sy = crop.shape[1] / w, crop.shape[0] / h
            # cv2.resize maps pixel centres: src = (dst + 0.5) * scale - 0.5
            out.append(np.stack([(kp[:, 0] + 0.5) * sx - 0.5, (kp[:, 1] + 0.5) * sy - 0.5], axis=-1))
        return out, list(scores)


def encode_image(rgb: np.ndarray, ext: str = ".png") -> str:
    """An RGB uint8 image -> base64 of its PNG (or ``ext``) bytes: the request's ``image`` value."""
    import cv2

    ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise ValueError(f"could not encode a {rgb.shape} image as {ext}")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def decode_image(value: Any) -> np.ndarray:
    """One ``image`` value (base64 str, encoded bytes or an RGB uint8 array) -> RGB uint8 (h, w, 3)."""
    import cv2

    if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 3 and value.shape[2] == 3:
        return value
    if isinstance(value, str):
        text = value.split(",", 1)[1] if value.startswith("data:") else value
        try:
            value = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _bad_input(f"an 'image' value is not valid base64: {exc}") from None
    if not isinstance(value, bytes | bytearray):
        raise _bad_input(f"an 'image' value must be base64 text of a JPEG/PNG; got {type(value).__name__}")
    bgr = cv2.imdecode(np.frombuffer(value, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise _bad_input("an 'image' value is not a JPEG or PNG image OpenCV can decode")
    return np.ascontiguousarray(bgr[..., ::-1])


def _crops(model_input: Any) -> list[np.ndarray]:
    if isinstance(model_input, np.ndarray) and model_input.dtype == np.uint8:
        if model_input.ndim == 3:
            return [decode_image(model_input)]
        if model_input.ndim == 4:
            return [decode_image(c) for c in model_input]
    if isinstance(model_input, pd.DataFrame):
        if "image" not in model_input.columns:
            raise _bad_input(f"the input needs a column 'image'; it has {list(model_input.columns)}")
        return [crop for v in model_input["image"] for crop in _cell(v)]
    if isinstance(model_input, Mapping) and "image" in model_input:
        images = model_input["image"]
        if isinstance(images, str | bytes) or (isinstance(images, np.ndarray) and images.dtype == np.uint8):
            return _crops(images) if isinstance(images, np.ndarray) else [decode_image(images)]
        return [decode_image(v) for v in images]
    if isinstance(model_input, str | bytes):
        return [decode_image(model_input)]
    if isinstance(model_input, Iterable):
        return [decode_image(v) for v in model_input]
    raise _bad_input(
        "input must be a DataFrame or dict with a column 'image' (base64 JPEG/PNG crops) or a uint8 array "
        f"(N, h, w, 3); got {type(model_input).__name__}"
    )


def _cell(value: Any) -> list[np.ndarray]:
    """One DataFrame cell: an image, or a list of them (MLflow turns ``{"image": [a, b]}`` into one row)."""
    if isinstance(value, list | tuple) or (isinstance(value, np.ndarray) and value.dtype == object):
        return [decode_image(v) for v in value]
    return [decode_image(value)]


def _bad_input(message: str) -> Exception:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)
