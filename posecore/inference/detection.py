"""Where the person boxes come from: a COCO detection-results file, a detector, or the whole image.

Each source returns :class:`Detections` (boxes (M, 4) xyxy float64 in image pixels, scores (M,)).

**Detection file** (:class:`DetectionFile`): COCO detection results, a JSON list of
``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` (what MMPose's
``bbox_file`` and a detector's ``loadRes`` output look like). Records are matched to the
input images through a COCO-style image list (``{"images": [{"id", "file_name"}]}``, e.g. the
annotation file) when one is given, else by file-name stem (``000000000785.jpg`` is image
785, ``frame_7.png`` is image ``"frame_7"``). A record whose image is not among the inputs is
an error naming the file, the record and the field (unless told to skip such records).

**ONNX detector** (:class:`OnnxDetector`), a documented interface any exporter can meet:

- one input, (1, 3, H, W) float32 RGB in 0..1. A static H, W: the image is resized (no
  letterbox) to it and the boxes are scaled back; dynamic H, W: the image goes in at its size;
- outputs, by name when named ``boxes``/``scores``/``labels``, else by position: boxes (M, 4)
  xyxy in the pixels of the detector's input, scores (M,), and optionally labels (M,) integer
  classes; a leading batch axis of 1 is allowed on each.

Boxes scoring below the threshold, and with labels, boxes of another class, are dropped.

**One-stage pose model as the detector** (:class:`OneStageDetector`): a one-stage bundle (or
training checkpoint) folder finds every person itself; its people's boxes (image pixels) and
person scores become the boxes of a top-down model, which then poses each crop.
:func:`load_detector` picks by the path: a folder is a posecore model, a file an ONNX detector.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from posecore.datasets.detections import read_detection_results
from posecore.validation import DataValidationError, Problem

__all__ = [
    "DetectionFile",
    "Detections",
    "OneStageDetector",
    "OnnxDetector",
    "image_key",
    "load_detector",
    "match_image_ids",
    "whole_image",
]


@dataclass(frozen=True, eq=False)
class Detections:
    """boxes (M, 4) xyxy float64 in image pixels; scores (M,) float64."""

    boxes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4)), np.zeros(0))


def whole_image(image: np.ndarray) -> Detections:
    """One box covering the image, [0, 0, W, H], score 1 (MMPose's inferencer without a detector)."""
    h, w = image.shape[:2]
    return Detections(np.array([[0.0, 0.0, float(w), float(h)]]), np.ones(1))


def image_key(path: str | Path) -> int | str:
    """An image's id from its file name: the stem as an int when it is all digits, else the stem."""
    stem = Path(path).stem
    return int(stem) if stem.isdigit() else stem


class DetectionFile:
    """Boxes per image from a COCO detection-results file (see the module docstring).

    ``images`` are the input image paths; ``image_list`` an optional COCO-style JSON whose
    ``images`` entries give ``id`` and ``file_name``. ``category_id`` picks the class (1 =
    person); ``score_thr`` drops weaker boxes. A record of an image that is not an input is an
    error unless ``allow_extra`` (then it is skipped: a det file for a whole dataset, run on a
    few of its images). :meth:`image_id` gives each image's id.
    """

    def __init__(
        self,
        det_file: str | Path,
        images: Sequence[str | Path],
        image_list: str | Path | None = None,
        category_id: int = 1,
        score_thr: float = 0.0,
        allow_extra: bool = False,
    ) -> None:
        self.path = Path(det_file)
        self._ids = match_image_ids(images, image_list)
        by_id = {v: k for k, v in self._ids.items()}
        records = read_detection_results(
            self.path,
            by_id,
            unknown_image=None if allow_extra else lambda i: f"image {i!r} is not among the input images{self._how()}",
            required=("image_id", "bbox", "score"),
            hint="Fix the detection file or pass the images it was made for.",
        )
        boxes: dict[Any, list[tuple[list[float], float]]] = {}
        for rec in records:
            if (rec.category_id if rec.category_id is not None else category_id) != category_id:
                continue
            if rec.score < score_thr:
                continue
            boxes.setdefault(by_id[rec.image_id], []).append((list(rec.bbox), rec.score))
        self._boxes = boxes

    def _how(self) -> str:
        known = sorted(map(str, self._ids.values()))
        shown = ", ".join(known[:5]) + (", ..." if len(known) > 5 else "")
        return f" (input image ids: {shown}; matched by file-name stem or --images-json)"

    def image_id(self, path: str | Path) -> int | str:
        return self._ids[str(Path(path))]

    def __call__(self, path: str | Path) -> Detections:
        entries = self._boxes.get(str(Path(path)), [])
        if not entries:
            return Detections.empty()
        xywh = np.array([b for b, _ in entries], dtype=np.float64)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        return Detections(boxes, np.array([s for _, s in entries], dtype=np.float64))


def match_image_ids(images: Sequence[str | Path], image_list: str | Path | None) -> dict[str, Any]:
    """{image path: id}, from a COCO image list (by file name) or else the file-name stems."""
    paths = [Path(p) for p in images]
    if image_list is None:
        ids = {str(p): image_key(p) for p in paths}
        if len(set(ids.values())) != len(ids):
            raise ValueError("input images share file-name stems; pass --images-json to give each its id")
        return ids
    file = str(image_list)
    if not Path(image_list).is_file():
        raise FileNotFoundError(f"image list {image_list} does not exist")
    try:
        raw = json.loads(Path(image_list).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataValidationError([Problem(file, "file", "-", f"not valid JSON: {exc}")]) from exc
    entries = raw.get("images") if isinstance(raw, Mapping) else raw
    if not isinstance(entries, list):
        raise DataValidationError([Problem(file, "file", "images", "must be a list of {id, file_name}")])
    by_name: dict[str, Any] = {}
    for i, e in enumerate(entries):
        if not (isinstance(e, Mapping) and "id" in e and isinstance(e.get("file_name"), str)):
            raise DataValidationError(
                [Problem(file, f"images[{i}]", "id/file_name", f"must be {{id, file_name}}, got {e!r}")]
            )
        by_name[Path(e["file_name"]).name] = e["id"]
    problems = [
        Problem(file, "images", "file_name", f"has no entry for input image {p.name}")
        for p in paths
        if p.name not in by_name
    ]
    if problems:
        raise DataValidationError(problems, hint="Every input image needs an entry in the image list.")
    return {str(p): by_name[p.name] for p in paths}


class OnnxDetector:
    """A detector behind the interface of the module docstring, on onnxruntime.

    ``score_thr`` drops weaker boxes; ``category`` keeps one label when the model outputs labels.
    """

    def __init__(
        self,
        path: str | Path,
        score_thr: float = 0.3,
        category: int | None = None,
        providers: Sequence[str] | None = None,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"detector model {self.path} does not exist")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        avail = ort.get_available_providers()
        default = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in avail]
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=list(providers or default)
            )
        except Exception as exc:  # onnxruntime's own exception types
            raise ValueError(f"cannot load the detector {self.path}: {exc}") from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ValueError(f"detector {self.path}: needs one (1, 3, H, W) input, got {[i.shape for i in inputs]}")
        self.input_name = inputs[0].name
        h, w = inputs[0].shape[2:]
        self.input_size = (w, h) if isinstance(w, int) and isinstance(h, int) else None
        outputs = [o.name for o in self.session.get_outputs()]
        if len(outputs) < 2:
            raise ValueError(f"detector {self.path}: needs outputs boxes (M, 4) and scores (M,), got {outputs}")
        named = {"boxes", "scores"} <= set(outputs)
        self.output_names = ["boxes", "scores"] + (["labels"] if "labels" in outputs else []) if named else outputs[:3]
        self.score_thr = float(score_thr)
        self.category = category

    def __call__(self, image: np.ndarray) -> Detections:
        """image (H, W, 3) uint8 RGB -> detections in image pixels."""
        h, w = image.shape[:2]
        x = image
        if self.input_size is not None and self.input_size != (w, h):
            x = cv2.resize(image, self.input_size, interpolation=cv2.INTER_LINEAR)
        blob = np.ascontiguousarray((x.astype(np.float32) / 255.0).transpose(2, 0, 1)[None])
        values = self.session.run(self.output_names, {self.input_name: blob})
        boxes = np.asarray(values[0], dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(values[1], dtype=np.float64).reshape(-1)
        if len(scores) != len(boxes):
            raise ValueError(f"detector {self.path}: {len(boxes)} boxes but {len(scores)} scores")
        keep = scores >= self.score_thr
        if len(values) > 2 and self.category is not None:
            keep &= np.asarray(values[2]).reshape(-1) == self.category
        if self.input_size is not None:
            boxes = boxes * np.array([w / self.input_size[0], h / self.input_size[1]] * 2)
        return Detections(boxes[keep], scores[keep])


class OneStageDetector:
    """A one-stage pose model (``info.task == "onestage"``, e.g. a
    :class:`~posecore.inference.runtime.BundleModel`) as a person detector: the boxes (image
    pixels) and person scores of the people it finds, those scoring below ``score_thr`` dropped.
    Its keypoints are not used: a top-down model poses the boxes again.
    """

    def __init__(self, model: Any, score_thr: float = 0.3, source: object = "the detector") -> None:
        task = getattr(getattr(model, "info", None), "task", "topdown")
        if task != "onestage":
            raise ValueError(
                f"{source} is a {'top-down' if task == 'topdown' else repr(task)} pose model: it needs person boxes "
                "itself, so it cannot find them; give a one-stage model (or an ONNX detector file) as the detector"
            )
        self.model = model
        self.score_thr = float(score_thr)

    def __call__(self, image: np.ndarray) -> Detections:
        """image (H, W, 3) uint8 RGB -> detections in image pixels, best first."""
        poses = self.model.predict_images([image])[0]
        boxes = np.asarray(poses.boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(poses.scores, dtype=np.float64).reshape(-1)
        keep = scores >= self.score_thr
        return Detections(boxes[keep], scores[keep])


def load_detector(
    path: str | Path, score_thr: float = 0.3, category: int | None = None, device: str | None = None
) -> Callable[[np.ndarray], Detections]:
    """``--detector``: a folder -> :class:`OneStageDetector` of the one-stage bundle or checkpoint in it
    (``category`` does not apply: it finds people; loaded without flip test, which refines only the
    keypoints a detector drops); a file -> :class:`OnnxDetector`."""
    path = Path(path)
    if path.is_dir():
        from posecore.inference.runtime import load_model

        return OneStageDetector(load_model(path, flip_test=False, device=device), score_thr, source=f"detector {path}")
    return OnnxDetector(path, score_thr, category=category)
