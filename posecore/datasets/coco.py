"""Read a canonical (COCO keypoint) dataset folder into typed, filtered pose samples.

The folder is what ``posecore convert`` writes: ``annotations/<split>.json``, images under
``images/`` (``file_name`` is relative to it) and ``meta.yaml``. Images are not read here:
records carry ``image_path``; :func:`load_image` reads one.

Which annotations survive follows MMPose 1.x ``BaseCocoStyleDataset`` exactly:

1. ``iscrowd`` annotations are dropped;
2. an annotation without ``bbox``/``keypoints`` or whose keypoint values are all zero
   (``max(keypoints) <= 0``) is dropped;
3. the box ``[x, y, w, h]`` becomes xyxy clipped to the image the MMPose way:
   ``x1 = clip(x, 0, W - 1)``, ``y1 = clip(y, 0, H - 1)``, ``x2 = clip(x + w, 0, W - 1)``,
   ``y2 = clip(y + h, 0, H - 1)``; a box with ``x2 - x1 <= 0`` or ``y2 - y1 <= 0`` after
   clipping is dropped;
4. an annotation with ``num_keypoints`` (the file's value; else the count of ``v > 0``)
   below ``min_keypoints`` is dropped. MMPose's rule is ``num_keypoints == 0``, i.e. the
   default ``min_keypoints=1``.

Top-down mode gives one :class:`PoseInstance` per surviving person. Bottom-up mode gives one
:class:`PoseImage` per image with its people stacked; as in MMPose, an image with no
surviving person is skipped for training and kept (with zero people) when ``test_mode``
is set, because evaluation must see every image. A bottom-up image also carries its crowd
regions (``crowd_boxes``, the dropped ``iscrowd`` annotations' boxes, clipped as in rule 3):
a one-stage model must neither learn them as people nor be punished for finding people there.

With ``det_file`` (COCO detection results, top-down only) the instances are the detected
person boxes (``category_id == 1``) whose ``score >= det_score_thr`` (MMPose's
``filter_cfg.bbox_score_thr``), unclipped, with ``bbox_score`` = the score. They carry no
keypoints: ``keypoints`` is zeros and ``keypoints_visible`` is zeros (MMPose fills ones
there as a dummy; zeros make it impossible to mistake them for labels).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from PIL import Image

from posecore.datasets.detections import read_detection_results
from posecore.datasets.layout import DatasetLayout
from posecore.metainfo import DatasetMeta, load_meta
from posecore.validation import DataValidationError, Problem

Mode = Literal["topdown", "bottomup"]
PERSON_CATEGORY = 1


@dataclass(frozen=True, eq=False)
class PoseInstance:
    """One person: the top-down sample.

    bbox (4,) float32 xyxy in image pixels (clipped to the image for ground truth);
    keypoints (K, 2) float32 x, y in image pixels; keypoints_visible (K,) float32,
    ``min(1, v)``: 1 for a labelled keypoint (v = 1 or 2), 0 for an unlabelled one.
    """

    image_path: Path
    image_id: int
    ann_id: int
    image_width: int
    image_height: int
    bbox: np.ndarray
    bbox_score: float
    keypoints: np.ndarray
    keypoints_visible: np.ndarray
    area: float
    num_keypoints: int
    category_id: int


@dataclass(frozen=True, eq=False)
class PoseImage:
    """All N people of one image: the bottom-up sample.

    bboxes (N, 4) float32 xyxy; bbox_scores (N,) float32; keypoints (N, K, 2) float32;
    keypoints_visible (N, K) float32 in {0, 1}; ann_ids, num_keypoints, category_ids (N,)
    int64; areas (N,) float32. N may be 0 (only in ``test_mode``). crowd_boxes (C, 4) float32
    xyxy: the image's crowd regions (not among the N people), clipped like ``bboxes``.
    """

    image_path: Path
    image_id: int
    image_width: int
    image_height: int
    ann_ids: np.ndarray
    bboxes: np.ndarray
    bbox_scores: np.ndarray
    keypoints: np.ndarray
    keypoints_visible: np.ndarray
    areas: np.ndarray
    num_keypoints: np.ndarray
    category_ids: np.ndarray
    crowd_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))

    @property
    def num_instances(self) -> int:
        return int(self.bboxes.shape[0])


@dataclass
class DatasetStats:
    """What a split holds after filtering, and what was dropped and why."""

    split: str
    mode: str
    images: int
    instances: int
    samples: int
    dropped: dict[str, int] = field(default_factory=dict)
    labelled_per_keypoint: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "mode": self.mode,
            "images": self.images,
            "instances": self.instances,
            "samples": self.samples,
            "dropped": dict(self.dropped),
            "labelled_per_keypoint": dict(self.labelled_per_keypoint),
        }


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB.

    EXIF orientation is ignored so that the pixel grid is the one the annotations and the
    recorded width/height refer to.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
    if image is None:
        raise DataValidationError(
            [Problem(str(path), "image", "file", f"cannot be decoded as an image ({data.size} bytes)")],
            hint="Replace or remove the file, then re-run the conversion.",
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def xywh_to_xyxy_clipped(bbox: list[float], width: float, height: float) -> np.ndarray:
    """MMPose's ground-truth box: xywh -> xyxy clipped to ``[0, W-1] x [0, H-1]``, float32 (4,)."""
    x, y, w, h = (float(v) for v in bbox)
    return np.array(
        [
            np.clip(x, 0, width - 1),
            np.clip(y, 0, height - 1),
            np.clip(x + w, 0, width - 1),
            np.clip(y + h, 0, height - 1),
        ],
        dtype=np.float32,
    )


def _stack_instances(
    image: dict[str, Any], path: Path, instances: list[PoseInstance], k: int, crowd: list[np.ndarray]
) -> PoseImage:
    n = len(instances)
    return PoseImage(
        image_path=path,
        image_id=int(image["id"]),
        image_width=int(image["width"]),
        image_height=int(image["height"]),
        ann_ids=np.array([i.ann_id for i in instances], dtype=np.int64),
        bboxes=np.stack([i.bbox for i in instances]) if n else np.zeros((0, 4), np.float32),
        bbox_scores=np.array([i.bbox_score for i in instances], dtype=np.float32),
        keypoints=np.stack([i.keypoints for i in instances]) if n else np.zeros((0, k, 2), np.float32),
        keypoints_visible=np.stack([i.keypoints_visible for i in instances]) if n else np.zeros((0, k), np.float32),
        areas=np.array([i.area for i in instances], dtype=np.float32),
        num_keypoints=np.array([i.num_keypoints for i in instances], dtype=np.int64),
        category_ids=np.array([i.category_id for i in instances], dtype=np.int64),
        crowd_boxes=np.stack(crowd) if crowd else np.zeros((0, 4), np.float32),
    )


class CocoPoseDataset:
    """The samples of one split of a canonical dataset folder.

    ``len(ds)`` and ``ds[i]`` follow ``mode``: :class:`PoseInstance` per person in
    ``"topdown"``, :class:`PoseImage` per image in ``"bottomup"``. Both views are always
    available, typed, as ``ds.instances`` and ``ds.images``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        meta: DatasetMeta | None = None,
        mode: Mode = "topdown",
        det_file: str | Path | None = None,
        det_score_thr: float = 0.0,
        min_keypoints: int = 1,
        test_mode: bool = False,
    ) -> None:
        if mode not in ("topdown", "bottomup"):
            raise ValueError(f"mode must be 'topdown' or 'bottomup', got {mode!r}")
        if det_file is not None and mode != "topdown":
            raise ValueError("det_file (detected person boxes) is only supported in 'topdown' mode")
        self.root = Path(root)
        self.split = split
        self.mode: Mode = mode
        self.test_mode = test_mode or det_file is not None
        layout = DatasetLayout(self.root)
        self.ann_file = layout.annotations(split)
        if not self.ann_file.is_file():
            known = layout.splits()
            raise FileNotFoundError(
                f"{self.ann_file} does not exist; splits found in {self.root}: {', '.join(known) or 'none'} "
                "(is this a folder written by `posecore convert`?)"
            )
        if meta is None:
            meta_path = layout.meta
            if not meta_path.is_file():
                raise FileNotFoundError(f"{meta_path} does not exist; pass meta= or re-run `posecore convert`")
            meta = load_meta(meta_path)
        self.meta = meta
        self.image_root = layout.images_dir
        self.dropped: Counter[str] = Counter()
        self._crowd_boxes: dict[int, list[np.ndarray]] = {}  # image id -> clipped crowd boxes

        doc = json.loads(self.ann_file.read_text())
        self._images: list[dict[str, Any]] = list(doc.get("images", []))
        for img in self._images:
            if img.get("width") is None or img.get("height") is None:
                with Image.open(self.image_root / img["file_name"]) as im:
                    img["width"], img["height"] = im.size
        self._image_by_id = {int(img["id"]): img for img in self._images}

        if det_file is not None:
            self.instances = self._load_detections(Path(det_file), det_score_thr)
        else:
            self.instances = self._load_annotations(doc.get("annotations", []), min_keypoints)
        self.images = self._group(self.instances)

    def _path(self, image: dict[str, Any]) -> Path:
        return self.image_root / image["file_name"]

    def _load_annotations(self, annotations: list[dict[str, Any]], min_keypoints: int) -> list[PoseInstance]:
        k = self.meta.num_keypoints
        by_image: dict[int, list[dict[str, Any]]] = {}
        problems: list[Problem] = []
        for ann in annotations:
            kps = ann.get("keypoints")
            if isinstance(kps, list) and kps and len(kps) != 3 * k:
                problems.append(
                    Problem(
                        str(self.ann_file),
                        f"annotation id={ann.get('id')}",
                        "keypoints",
                        f"has {len(kps) // 3} keypoints but the meta {self.meta.name!r} has {k}",
                    )
                )
            iid = ann.get("image_id")
            if iid not in self._image_by_id:
                problems.append(
                    Problem(
                        str(self.ann_file),
                        f"annotation id={ann.get('id')}",
                        "image_id",
                        f"image {iid!r} is not in 'images'",
                    )
                )
                continue
            by_image.setdefault(int(iid), []).append(ann)
        if problems:
            raise DataValidationError(
                problems, hint="The canonical dataset is inconsistent; re-run `posecore convert`."
            )

        instances: list[PoseInstance] = []
        for image in self._images:
            for ann in by_image.get(int(image["id"]), []):
                inst = self._parse(ann, image, min_keypoints)
                if inst is not None:
                    instances.append(inst)
        return instances

    def _parse(self, ann: dict[str, Any], image: dict[str, Any], min_keypoints: int) -> PoseInstance | None:
        if ann.get("iscrowd", 0):
            self.dropped["crowd"] += 1
            if "bbox" in ann:
                box = xywh_to_xyxy_clipped(ann["bbox"], image["width"], image["height"])
                if box[2] > box[0] and box[3] > box[1]:
                    self._crowd_boxes.setdefault(int(image["id"]), []).append(box)
            return None
        if "bbox" not in ann or not ann.get("keypoints") or max(ann["keypoints"]) <= 0:
            self.dropped["no_keypoints"] += 1
            return None
        raw = np.asarray(ann["keypoints"], dtype=np.float32).reshape(-1, 3)
        visible = np.minimum(1.0, raw[:, 2]).astype(np.float32)
        num = int(ann["num_keypoints"]) if "num_keypoints" in ann else int(np.count_nonzero(raw[:, 2] > 0))
        if num < min_keypoints:
            self.dropped["no_keypoints" if num == 0 else "few_keypoints"] += 1
            return None
        bbox = xywh_to_xyxy_clipped(ann["bbox"], image["width"], image["height"])
        if bbox[2] - bbox[0] <= 0 or bbox[3] - bbox[1] <= 0:
            self.dropped["degenerate_bbox"] += 1
            return None
        _, _, w, h = ann["bbox"]
        return PoseInstance(
            image_path=self._path(image),
            image_id=int(image["id"]),
            ann_id=int(ann["id"]),
            image_width=int(image["width"]),
            image_height=int(image["height"]),
            bbox=bbox,
            bbox_score=1.0,
            keypoints=raw[:, :2].copy(),
            keypoints_visible=visible,
            area=float(ann.get("area", w * h)),
            num_keypoints=num,
            category_id=int(ann.get("category_id", PERSON_CATEGORY)),
        )

    def _load_detections(self, det_file: Path, score_thr: float) -> list[PoseInstance]:
        dets = read_detection_results(
            det_file,
            self._image_by_id,
            unknown_image=lambda i: f"image {i!r} is not in split {self.split!r} ({self.ann_file})",
            hint="Fix the detection file; it must be COCO detection results for this split.",
        )
        k = self.meta.num_keypoints
        instances: list[PoseInstance] = []
        det_id = 0
        for det in dets:
            if det.category_id != PERSON_CATEGORY:
                self.dropped["not_person"] += 1
                continue
            det_id += 1
            if det.score < score_thr:
                self.dropped["below_score_thr"] += 1
                continue
            image = self._image_by_id[det.image_id]
            x, y, w, h = det.bbox
            instances.append(
                PoseInstance(
                    image_path=self._path(image),
                    image_id=int(image["id"]),
                    ann_id=det_id - 1,
                    image_width=int(image["width"]),
                    image_height=int(image["height"]),
                    bbox=np.array([x, y, x + w, y + h], dtype=np.float32),
                    bbox_score=det.score,
                    keypoints=np.zeros((k, 2), np.float32),
                    keypoints_visible=np.zeros(k, np.float32),
                    area=w * h,
                    num_keypoints=0,
                    category_id=PERSON_CATEGORY,
                )
            )
        return instances

    def _group(self, instances: list[PoseInstance]) -> list[PoseImage]:
        by_image: dict[int, list[PoseInstance]] = {}
        for inst in instances:
            by_image.setdefault(inst.image_id, []).append(inst)
        out = []
        for image in self._images:
            people = by_image.get(int(image["id"]), [])
            if people or self.test_mode:
                crowd = self._crowd_boxes.get(int(image["id"]), [])
                out.append(_stack_instances(image, self._path(image), people, self.meta.num_keypoints, crowd))
            elif self.mode == "bottomup":
                self.dropped["empty_images"] += 1
        return out

    def __len__(self) -> int:
        return len(self.instances) if self.mode == "topdown" else len(self.images)

    def __getitem__(self, index: int) -> PoseInstance | PoseImage:
        return self.instances[index] if self.mode == "topdown" else self.images[index]

    def stats(self) -> DatasetStats:
        labelled = np.zeros(self.meta.num_keypoints, dtype=np.int64)
        for inst in self.instances:
            labelled += inst.keypoints_visible > 0
        return DatasetStats(
            split=self.split,
            mode=self.mode,
            images=len(self._images),
            instances=len(self.instances),
            samples=len(self),
            dropped=dict(sorted(self.dropped.items())),
            labelled_per_keypoint={name: int(n) for name, n in zip(self.meta.keypoint_names, labelled, strict=True)},
        )

    def __repr__(self) -> str:
        return f"CocoPoseDataset({str(self.root)!r}, split={self.split!r}, mode={self.mode!r}, {len(self)} samples)"
