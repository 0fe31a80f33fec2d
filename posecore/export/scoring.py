"""Accuracy of an exported model: an ONNX Runtime session scored on the cached val split.

The export stage's ``onnx_AP``/``int8_AP`` and the champion re-evaluation flow's numbers both come
from :func:`score_onnx`, which runs the loop that scores the torch model too with
:class:`OnnxPredictor` and the evaluate stage's scoring: for a top-down bundle
:func:`posecore.evaluation.topdown.predict_split` on the cached person crops, for a one-stage one
(``info.task``) :func:`posecore.evaluation.bottomup.predict_images` on the cached whole images.
So right after a pipeline run, re-evaluating the registered bundle reproduces ``onnx_AP``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from posecore.codecs import Codec
from posecore.codecs.base import Poses
from posecore.codecs.yoloxpose import HEATMAP_OUTPUT_KEY as HEATMAPS
from posecore.data.cache import CacheSpec, CacheSplit, cache_key, codec_from_config, open_cache
from posecore.data.images import ImageSplit
from posecore.datasets.layout import DatasetLayout
from posecore.evaluation.bottomup import predict_images, score_bottomup
from posecore.evaluation.topdown import EvalConfig, EvalResult, metric_names, predict_split, score_predictions
from posecore.export.bundle import BundleInfo
from posecore.export.onnx import ort_session, run_onnx
from posecore.metainfo import DatasetMeta, load_meta
from posecore.models.flip import average_flip, average_flip_heatmaps, flip_outputs


@dataclass(frozen=True)
class OnnxPredictor:
    """An ONNX Runtime session with its bundle's decoding, as :func:`predict_split` (top-down) or
    :func:`~posecore.evaluation.bottomup.predict_images` (one-stage) runs it.

    ``predict``: normalised inputs (B, 3, h, w) float32 -> keypoints (B, K, 2) in model-input
    pixels, scores (B, K). Flip test runs the mirrored batch, flips its outputs back and averages
    them, as :meth:`PoseEstimator.flip_averaged` does; ``codec`` decodes (the torch decode, so the
    numbers match the evaluate stage's). With a one-stage codec (``codec.task``), as
    :meth:`PoseEstimator.predict`: one :class:`~posecore.codecs.base.Poses` per image (input
    pixels); its flip test averages the keypoint heatmaps only (:meth:`PoseEstimator.heatmaps_flip_averaged`).
    """

    session: Any  # onnxruntime.InferenceSession
    codec: Codec
    flip_indices: tuple[int, ...]
    shift_heatmap: bool
    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def for_bundle(cls, session: Any, codec: Codec, info: BundleInfo) -> OnnxPredictor:
        """The predictor of a bundle's network (flip pairs, normalisation and input size from ``info``)."""
        return cls(session, codec, info.flip_indices, info.shift_heatmap, info.input_size, info.mean, info.std)

    def predict(self, inputs: Tensor, flip_test: bool = False) -> tuple[Tensor, Tensor] | list[Poses]:
        outputs = {k: torch.from_numpy(v) for k, v in run_onnx(self.session, inputs.cpu().numpy()).items()}
        if flip_test and (self.codec.task == "topdown" or HEATMAPS in outputs):
            mirrored = {k: torch.from_numpy(v) for k, v in run_onnx(self.session, inputs.flip(-1).numpy()).items()}
            if self.codec.task == "onestage":
                stride = int(self.codec.heatmap_stride)  # type: ignore[attr-defined]
                outputs = average_flip_heatmaps(outputs, mirrored[HEATMAPS], self.flip_indices, stride)
            else:
                outputs = average_flip(
                    outputs, flip_outputs(mirrored, self.flip_indices, self.shift_heatmap, self.input_size)
                )
        return self.codec.decode(outputs)


def score_onnx(
    session: Any,
    split: CacheSplit | ImageSplit,
    codec: Codec,
    info: BundleInfo,
    gt_file: Path,
    meta: DatasetMeta,
    cfg: EvalConfig,
) -> EvalResult:
    """COCO AP/AR, PCK, AUC, EPE of the bundle's network in ``session`` on ``split`` (flip test as
    ``info.flip_test`` recommends, batches of ``cfg.batch_size``), scored against ``gt_file``.

    One-stage bundles (``info.task``) take the one-stage cache's :class:`ImageSplit` and are scored
    as the evaluate stage scores one-stage models (:func:`~posecore.evaluation.bottomup.score_bottomup`).
    """
    predictor = OnnxPredictor.for_bundle(session, codec, info)
    if info.task == "onestage":
        if not isinstance(split, ImageSplit):
            raise ValueError("a one-stage bundle is scored on whole images: give the one-stage cache's val split")
        people = predict_images(predictor, split, cfg.batch_size, flip_test=info.flip_test)
        return score_bottomup(people, split, gt_file, meta, cfg)
    preds = predict_split(predictor, split, info.flip_test, cfg.batch_size)  # type: ignore[arg-type]
    return score_predictions(preds, split, gt_file, meta, cfg)  # type: ignore[arg-type]


def score_bundle(
    bundle_dir: Path,
    dataset_dir: Path,
    cache_dir: Path,
    encode: CacheSpec,
    cfg: EvalConfig,
    threads: int = 0,
) -> dict[str, float]:
    """Metrics (metrics.json names: ``AP``, ``AP_.5``, ``PCK``, ...) of the bundle in ``bundle_dir`` on
    the val split of the cache in ``cache_dir`` (built from ``dataset_dir`` with ``encode``).

    The codec comes from bundle.json, not from params: the cache must have been encoded for it
    (its key is checked), and the dataset must have the bundle's keypoints; both fail with how to fix it.
    """
    info = BundleInfo.read(bundle_dir)
    codec = codec_from_config(info.codec)
    layout = DatasetLayout(dataset_dir)
    meta = load_meta(layout.meta)
    if tuple(meta.keypoint_names) != tuple(info.keypoint_names):
        raise ValueError(
            f"the bundle predicts the keypoints of meta {info.meta_name!r}, but {dataset_dir} uses {meta.name!r} "
            "with other keypoints; score it on the dataset its model was trained for"
        )
    try:
        split = open_cache(cache_dir, cache_key(dataset_dir, encode, codec))["val"]
    except ValueError as exc:
        raise ValueError(
            f"the bundle needs val inputs encoded for its own codec and input size {list(info.input_size)}: "
            f"{exc}. Set model.* in params.yaml to the bundle's and run `dvc repro encode`."
        ) from None
    session = ort_session(info.model_path(bundle_dir), threads)
    result = score_onnx(session, split, codec, info, layout.annotations("val"), meta, cfg)
    return metric_names(result.metrics)
