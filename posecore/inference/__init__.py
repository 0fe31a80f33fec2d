"""Inference without training machinery: run an exported bundle (or a checkpoint) on images and videos.

The runtime path imports no torch: :class:`BundleModel` runs ``model.onnx`` on onnxruntime and
decodes with numpy, through the NumPy twins that live beside the torch code: each codec's
``decode_numpy`` (:mod:`posecore.codecs`), the flip rules (:mod:`posecore.models.flip`) and the
crop warp (:mod:`posecore.transforms.geometry`). :func:`load_model` also accepts a training checkpoint folder and returns a
``TorchModel`` (importing torch only then). :mod:`.pipeline` does inference on images and videos:
top-down with boxes from :mod:`.detection`, one-stage with the people the model finds, and
identities from :mod:`.tracking`; the ``posecore infer`` command (:mod:`.command`) wraps it.
:mod:`.compare` scores a top-down bundle beside a one-stage model on the same images (whole-image
box and ground-truth boxes), for the evaluate stage's side-by-side.

    model = BundleModel("models/bundle")                     # or load_model(path)
    keypoints, scores = model.predict_crops(crops)           # top-down: (N, h, w, 3) uint8 RGB crops
    poses = model.predict_images(images)                     # one-stage: whole images, list[Poses] in image px
"""

from posecore.export.bundle import BundleError, BundleInfo
from posecore.inference.detection import (
    DetectionFile,
    Detections,
    OneStageDetector,
    OnnxDetector,
    load_detector,
    whole_image,
)
from posecore.inference.info import ModelInfo
from posecore.inference.model import OneStageModel, PoseModel
from posecore.inference.pipeline import PosePrediction, infer_images, infer_video, predict_people, predict_poses
from posecore.inference.runtime import BundleModel, load_model
from posecore.inference.tracking import PoseTracker

__all__ = [
    "BundleError",
    "BundleInfo",
    "BundleModel",
    "DetectionFile",
    "Detections",
    "ModelInfo",
    "OneStageDetector",
    "OneStageModel",
    "OnnxDetector",
    "PoseModel",
    "PosePrediction",
    "PoseTracker",
    "infer_images",
    "infer_video",
    "load_detector",
    "load_model",
    "predict_people",
    "predict_poses",
    "whole_image",
]
