"""The exported model bundle: everything needed to run a trained model without PyTorch.

A bundle is a folder::

    model.onnx        the network: input "inputs" (N, 3, h, w) float32, normalised; outputs named
                      like the codec's target keys ("simcc_x", "simcc_y" / "heatmaps" / "coords"),
                      or for a one-stage model (bundle.json "task": "onestage", whole letterboxed
                      images in) its codec's output keys ("obj_logits", "boxes", "keypoints",
                      "vis_logits", over every anchor, input pixels); dynamic batch axis
    bundle.json       see :class:`BundleInfo`: keypoint names, skeleton, flip indices, colours,
                      input size (w, h), normalisation mean/std (RGB, 0..255), the codec config
                      ({"name": ..., fields...}, enough to decode with numpy), bbox padding,
                      the dataset meta name, and provenance (MLflow run id, git commit, metrics)
    model.int8.onnx   optional dynamically/statically quantised copy
    weights.pt        the PyTorch state dict (plain tensors) and model.json, its model description:
    model.json        not needed to run the bundle; a warm start (``model.init``) starts from them

``bundle.json`` is also embedded in the ONNX file as metadata (key ``posecore.bundle``).
"""

# Only torch-free modules here: a runtime reads bundles with numpy + onnxruntime alone.
# The PyTorch side: export and quantisation in ``posecore.export.onnx``, the ONNX-vs-PyTorch check in
# ``posecore.export.parity``; exporting a trained model with every check, ``posecore.export.verify``.
from posecore.export.bundle import (
    BUNDLE_FORMAT,
    INFO_FILE,
    INPUT_NAME,
    INT8_MODEL_FILE,
    METADATA_KEY,
    MODEL_FILE,
    SPEC_FILE,
    WEIGHTS_FILE,
    BundleError,
    BundleInfo,
)
from posecore.export.config import ExportConfig

__all__ = [
    "BUNDLE_FORMAT",
    "INFO_FILE",
    "INPUT_NAME",
    "INT8_MODEL_FILE",
    "METADATA_KEY",
    "MODEL_FILE",
    "SPEC_FILE",
    "WEIGHTS_FILE",
    "BundleError",
    "BundleInfo",
    "ExportConfig",
]
