"""Inference on images and videos: keypoints in image pixels, from a top-down or a one-stage model.

Top-down (``model.info.task == "topdown"``), for each image (or video frame): boxes come from a
:mod:`~posecore.inference.detection` source; each box is padded by the model's ``bbox_padding``
(1.25), grown to the input's aspect ratio and cropped with the training warp
(:func:`~posecore.transforms.geometry.crop_boxes`); the crops go through the model in batches;
keypoints go back to the image by the inverse warp (:func:`predict_poses`).

One-stage (``"onestage"``): the whole image goes in (letterboxed) and the model finds every
person itself, box and keypoints (:func:`predict_people`); there are no boxes to give, so a box
source with a one-stage model is an error. Its ``score`` is the model's person score.

Outputs (in ``out_dir``):

- images: ``results.json``, COCO keypoint results for every image, one record per box::

      {"image_id", "category_id": 1, "keypoints": [x, y, score] * K, "score", "bbox": [x, y, w, h]}

  with ``score`` = box score x the mean of the keypoint scores above 0.2 (MMPose's
  ``bbox_keypoint`` rescoring); ``images.json``, the COCO ``images`` list (id, file_name,
  width, height) the ids refer to; rendered copies under the input file names.
- video: ``<stem>.json`` with the video's size, fps, keypoint names and per-frame instances
  ``{"frame_index", "instances": [{"track_id", "bbox": [x, y, w, h], "bbox_score",
  "keypoints": [[x, y]] * K, "keypoint_scores": [K], "score"}]}``, and the rendered
  ``<stem>.mp4`` (mp4v, the input's fps and size).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from posecore.datasets.coco import load_image
from posecore.inference.detection import Detections, whole_image
from posecore.inference.model import OneStageModel, PoseModel
from posecore.inference.tracking import PoseTracker
from posecore.io import atomic_write_json
from posecore.progress import Progress
from posecore.transforms.geometry import crop_boxes
from posecore.transforms.geometry import invert_affine_numpy as invert_affine
from posecore.transforms.geometry import transform_points_numpy as transform_points

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "PosePrediction",
    "coco_results",
    "find_inputs",
    "infer_images",
    "infer_video",
    "instance_scores",
    "predict_people",
    "predict_poses",
    "render_poses",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg")
KEYPOINT_SCORE_THR = 0.2  # MMPose CocoMetric's keypoint_score_thr for the instance score


@dataclass(frozen=True, eq=False)
class PosePrediction:
    """M instances of one image: bboxes (M, 4) xyxy, bbox_scores (M,), keypoints (M, K, 2) image px,
    keypoint_scores (M, K), scores (M,) instance scores, track_ids (M,) or None."""

    bboxes: np.ndarray
    bbox_scores: np.ndarray
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    scores: np.ndarray
    track_ids: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.bboxes)


def instance_scores(
    bbox_scores: np.ndarray, keypoint_scores: np.ndarray, thr: float = KEYPOINT_SCORE_THR
) -> np.ndarray:
    """(M,) box score x mean keypoint score over those > thr (0 when none is): MMPose's ``bbox_keypoint``."""
    valid = keypoint_scores > thr
    count = valid.sum(axis=1)
    mean = np.where(count > 0, (keypoint_scores * valid).sum(axis=1) / np.maximum(count, 1), 0.0)
    return np.asarray(bbox_scores, dtype=np.float64) * mean


def predict_poses(model: PoseModel, image: np.ndarray, detections: Detections, batch_size: int = 32) -> PosePrediction:
    """image (H, W, 3) uint8 RGB and its boxes -> poses in image pixels."""
    info = model.info
    k = info.num_keypoints
    if len(detections) == 0:
        return PosePrediction(np.zeros((0, 4)), np.zeros(0), np.zeros((0, k, 2)), np.zeros((0, k)), np.zeros(0))
    crops, mats = crop_boxes(image, detections.boxes, info.input_size, info.bbox_padding, info.use_udp)
    kp, sc = model.predict_crops(crops, batch_size=batch_size)
    kp_img = transform_points(kp, invert_affine(mats))
    sc = np.asarray(sc, dtype=np.float64)
    return PosePrediction(detections.boxes, detections.scores, kp_img, sc, instance_scores(detections.scores, sc))


def predict_people(model: OneStageModel, image: np.ndarray, batch_size: int = 8) -> PosePrediction:
    """image (H, W, 3) uint8 RGB -> every person a one-stage model finds, in image pixels (best first);
    box and instance scores are the person score."""
    poses = model.predict_images([image], batch_size)[0]
    n, k = len(poses), model.info.num_keypoints
    scores = np.asarray(poses.scores, dtype=np.float64).reshape(n)
    return PosePrediction(
        np.asarray(poses.boxes, dtype=np.float64).reshape(n, 4),
        scores,
        np.asarray(poses.keypoints, dtype=np.float64).reshape(n, k, 2),
        np.asarray(poses.keypoint_scores, dtype=np.float64).reshape(n, k),
        scores.copy(),
    )


_ONESTAGE_BOXES = (
    "the model is one-stage: it finds the people in each image itself and takes no boxes; drop --det/--detector "
    "(a one-stage model can instead be the --detector of a top-down model)"
)


def _image_poses(model: Any, image: np.ndarray, dets: Detections | None, batch_size: int) -> PosePrediction:
    """A one-stage model's people (``dets`` must be None), else the top-down poses of ``dets`` (None: the
    whole image)."""
    if model.info.task == "onestage":
        if dets is not None:
            raise ValueError(_ONESTAGE_BOXES)
        return predict_people(model, image)
    return predict_poses(model, image, dets if dets is not None else whole_image(image), batch_size)


def coco_results(pred: PosePrediction, image_id: Any, category_id: int = 1) -> list[dict[str, Any]]:
    """COCO keypoint results records (see the module docstring) for one image."""
    out = []
    for i in range(len(pred)):
        flat = np.nan_to_num(np.concatenate([pred.keypoints[i], pred.keypoint_scores[i][:, None]], axis=1).reshape(-1))
        x1, y1, x2, y2 = (float(v) for v in pred.bboxes[i])
        out.append(
            {
                "image_id": image_id,
                "category_id": category_id,
                "keypoints": [round(float(v), 3) for v in flat],
                "score": float(pred.scores[i]),
                "bbox": [round(v, 3) for v in (x1, y1, x2 - x1, y2 - y1)],
            }
        )
    return out


def render_poses(
    image: np.ndarray, pred: PosePrediction, model: PoseModel | OneStageModel, kpt_thr: float = 0.3
) -> np.ndarray:
    """Draw skeletons (the model's colours), boxes and track ids on a copy of image (H, W, 3) uint8 RGB."""
    from posecore.visualization.draw import draw_label, draw_pose

    meta = model.info.dataset_meta
    out = draw_pose(image, pred.keypoints, pred.keypoint_scores, meta, pred.bboxes, kpt_thr=kpt_thr)
    if pred.track_ids is not None:
        h, w = out.shape[:2]
        for box, tid in zip(pred.bboxes, pred.track_ids, strict=True):
            x = int(np.clip(box[0], 0, w - 1))
            y = int(np.clip(box[1], 0, h - 1))
            out = draw_label(out, f"id {int(tid)}", (x, y))
    return out


def find_inputs(path: str | Path) -> tuple[str, list[Path]]:
    """("video", [file]) or ("images", sorted image files) for an image, a folder of images, or a video."""
    path = Path(path)
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise FileNotFoundError(f"input folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return "images", images
    if not path.is_file():
        raise FileNotFoundError(f"input {path} does not exist")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return "video", [path]
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return "images", [path]
    raise ValueError(
        f"input {path}: unknown file type {path.suffix!r}; give an image ({', '.join(IMAGE_SUFFIXES)}), a folder "
        f"of images or a video ({', '.join(VIDEO_SUFFIXES)})"
    )


def _check_out(out_dir: Path, inputs: Sequence[Path], names: Sequence[str]) -> None:
    sources = {p.resolve() for p in inputs}
    for name in names:
        if (out_dir / name).resolve() in sources:
            raise ValueError(f"--out {out_dir} would overwrite the input {out_dir / name}; choose another folder")


@dataclass(frozen=True)
class ImagesReport:
    results: Path
    images: int
    instances: int
    rendered: int


def infer_images(
    model: PoseModel | OneStageModel,
    paths: Sequence[Path],
    out_dir: Path,
    boxes: Callable[[Path, np.ndarray], Detections] | None = None,
    image_ids: Callable[[Path], Any] | None = None,
    render: bool = True,
    kpt_thr: float = 0.3,
    batch_size: int = 32,
    category_id: int = 1,
) -> ImagesReport:
    """Pose every image; write ``results.json``, ``images.json`` and rendered images into ``out_dir``.

    ``boxes(path, image)`` gives each image's boxes (default: the whole image; a one-stage model
    takes none: it finds the people); ``image_ids(path)`` its COCO id (default: the numeric stem
    when every stem is numeric and unique, else 1, 2, ...).
    """
    if boxes is not None and model.info.task == "onestage":
        raise ValueError(_ONESTAGE_BOXES)
    out_dir.mkdir(parents=True, exist_ok=True)
    if render:
        _check_out(out_dir, paths, [p.name for p in paths])
    if image_ids is None:
        image_ids = _default_ids(paths)
    results: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    rendered = 0
    with Progress("infer", total=len(paths), unit="img") as bar:
        for path in paths:
            image = load_image(path)
            pred = _image_poses(model, image, boxes(path, image) if boxes is not None else None, batch_size)
            image_id = image_ids(path)
            h, w = image.shape[:2]
            images.append({"id": image_id, "file_name": path.name, "width": w, "height": h})
            results += coco_results(pred, image_id, category_id)
            if render:
                drawn = render_poses(image, pred, model, kpt_thr)
                if not cv2.imwrite(str(out_dir / path.name), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)):
                    raise ValueError(f"cannot write the rendered image {out_dir / path.name}")
                rendered += 1
            bar.update(1, instances=len(results))
    atomic_write_json(out_dir / "images.json", {"images": images}, indent=1)
    target = atomic_write_json(out_dir / "results.json", results)
    return ImagesReport(target, len(paths), len(results), rendered)


def _default_ids(paths: Sequence[Path]) -> Callable[[Path], Any]:
    stems = [p.stem for p in paths]
    if all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems):
        return lambda p: int(p.stem)
    index = {str(p): i + 1 for i, p in enumerate(paths)}
    return lambda p: index[str(p)]


@dataclass(frozen=True)
class VideoReport:
    json: Path
    video: Path | None
    frames: int
    instances: int
    tracks: int
    video_3d: Path | None = None


def infer_video(
    model: PoseModel | OneStageModel,
    path: Path,
    out_dir: Path,
    detector: Callable[[np.ndarray], Detections] | None = None,
    render: bool = True,
    kpt_thr: float = 0.3,
    batch_size: int = 32,
    max_frames: int | None = None,
    tracker: PoseTracker | None = None,
) -> VideoReport:
    """Pose a video frame by frame with tracking; write ``<stem>.json`` and ``<stem>.mp4`` into ``out_dir``.

    ``detector(frame)`` gives each frame's boxes (default: the whole frame; a one-stage model takes
    none: it finds the people); ``tracker`` defaults to OKS matching with the model's sigmas (box
    IoU without them).
    """
    if detector is not None and model.info.task == "onestage":
        raise ValueError(_ONESTAGE_BOXES)
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"cannot open the video {path} (unreadable or an unsupported codec)")
    out_dir.mkdir(parents=True, exist_ok=True)
    tracker = tracker or PoseTracker(sigmas=model.info.sigmas)
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and fps > 0 else 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    if max_frames is not None and total is not None:
        total = min(total, max_frames)
    video_out = out_dir / f"{path.stem}.mp4"
    json_out = out_dir / f"{path.stem}.json"
    if render:
        _check_out(out_dir, [path], [video_out.name])
    writer = None
    frames: list[dict[str, Any]] = []
    size: tuple[int, int] | None = None
    n_inst = 0
    try:
        with Progress("infer", total=total, unit="frame") as bar:
            while max_frames is None or len(frames) < max_frames:
                ok, bgr = cap.read()
                if not ok:
                    break
                frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                size = (frame.shape[1], frame.shape[0])
                pred = _image_poses(model, frame, detector(frame) if detector is not None else None, batch_size)
                ids = tracker.update(pred.bboxes, pred.keypoints)
                pred = PosePrediction(
                    pred.bboxes, pred.bbox_scores, pred.keypoints, pred.keypoint_scores, pred.scores, ids
                )
                frames.append({"frame_index": len(frames), "instances": _frame_instances(pred)})
                n_inst += len(pred)
                if render:
                    if writer is None:
                        writer = cv2.VideoWriter(str(video_out), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
                        if not writer.isOpened():
                            raise ValueError(f"cannot write the video {video_out} (OpenCV has no mp4v encoder?)")
                    writer.write(cv2.cvtColor(render_poses(frame, pred, model, kpt_thr), cv2.COLOR_RGB2BGR))
                bar.update(1, instances=n_inst)
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if not frames:
        raise ValueError(f"cannot read any frame from the video {path}")
    info = model.info
    doc = {
        "video": str(path),
        "fps": fps,
        "width": size[0] if size else None,
        "height": size[1] if size else None,
        "num_frames": len(frames),
        "keypoint_names": list(info.keypoint_names),
        "frames": frames,
    }
    atomic_write_json(json_out, doc)
    tracks = len({inst["track_id"] for f in frames for inst in f["instances"]})
    return VideoReport(json_out, video_out if render else None, len(frames), n_inst, tracks)


def _frame_instances(pred: PosePrediction) -> list[dict[str, Any]]:
    out = []
    for i in range(len(pred)):
        x1, y1, x2, y2 = (float(v) for v in pred.bboxes[i])
        out.append(
            {
                "track_id": int(pred.track_ids[i]) if pred.track_ids is not None else None,
                "bbox": [round(v, 3) for v in (x1, y1, x2 - x1, y2 - y1)],
                "bbox_score": float(pred.bbox_scores[i]),
                "keypoints": [[round(float(x), 3), round(float(y), 3)] for x, y in pred.keypoints[i]],
                "keypoint_scores": [round(float(s), 5) for s in pred.keypoint_scores[i]],
                "score": float(pred.scores[i]),
            }
        )
    return out
