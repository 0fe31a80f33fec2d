"""Leeds Sports Pose (LSP) and LSP-Extended: ``joints.mat`` plus ``images/imNNNNN.jpg``.

Native record: column ``n`` (MATLAB ``joints(:, :, n)``, 1-based) of the ``joints`` array
in ``joints.mat`` is the one person in image ``n``. The two releases store it differently,
and the layout is told apart by the array's shape (``K`` = the meta's keypoint count, 14):

* LSP-Extended (10,000 images): ``(K, 3, N)``, rows ``x, y, flag``; flag 1 = labelled,
  flag 0 = not labelled (its coordinates are meaningless, typically <= 0). Images
  ``im00001.jpg`` (5 digits).
* LSP (2,000 images): ``(3, K, N)``; the flag means the opposite — 0 = visible,
  1 = occluded — and every joint is labelled (occluded ones are estimated). Images
  ``im0001.jpg`` (4 digits). If the layout's name does not exist but the other width
  does, the other is used.

Joint order (dataset README): right ankle, right knee, right hip, left hip, left knee,
left ankle, right wrist, right elbow, right shoulder, left shoulder, left elbow, left
wrist, neck, head top — the order of ``lsp.yaml``. The order is positional: a meta with
14 keypoints in another order would silently mislabel joints.

Conventions:

* Coordinates are MATLAB 1-based, like MPII's (the annotations come from MATLAB
  tools); 1 is subtracted so the canonical dataset is in 0-based pixel centres, the same
  as the ``mpii`` converter. The data cannot settle this by itself (the images were
  rescaled and labels are sub-pixel); the choice moves every joint by at most 1 px.
* Visibility: LSP-Extended flag 1 -> v=2, flag 0 -> v=0 with x=y=0; LSP flag 0 -> v=2,
  flag 1 (occluded but labelled) -> v=1, COCO's "labelled, not visible".
* Box: the labelled keypoints' extent widened by ``bbox_margin`` times its width
  (height) on each side, clipped to the image ``[0, W] x [0, H]``; width and height come
  from the image header.

Default layout: ``data.annotations.all = joints.mat``; images in ``images/`` beside the
annotation file (``data.images`` overrides). ``--val-fraction`` makes train/val.

Also home to the helpers the keypoint-only formats share (:func:`image_size`,
:func:`keypoint_box`, :func:`clip_box`, :func:`split_layout`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.io import loadmat

from posecore.datasets.converters._base import (
    RawSplit,
    SourceSpec,
    image_size,
    keypoint_box,
    register_converter,
    split_layout,
)
from posecore.metainfo import DatasetMeta
from posecore.validation import DataValidationError, Problem


def _read_joints(path: Path, k: int, meta_name: str) -> tuple[np.ndarray, bool]:
    """``(joints (K, 3, N) float64, extended)``; raises :class:`DataValidationError` naming the file."""
    file = str(path)

    def fail(field: str, message: str) -> DataValidationError:
        return DataValidationError([Problem(file, "file", field, message)], hint="Nothing was written.")

    if not path.is_file():
        raise fail("-", "annotation file does not exist")
    try:
        mat = loadmat(str(path))
    except NotImplementedError as exc:  # MATLAB v7.3 (HDF5) files
        raise fail("-", f"cannot be read ({exc}); re-save it in MATLAB with save(..., '-v7')") from exc
    except Exception as exc:  # scipy raises ValueError, TypeError, OSError ... for non-MAT data
        raise fail("-", f"cannot be read as a MATLAB .mat file ({type(exc).__name__}: {exc})") from exc
    if "joints" not in mat:
        found = ", ".join(sorted(n for n in mat if not n.startswith("__"))) or "none"
        raise fail("joints", f"has no variable 'joints' (variables: {found})")
    joints = mat["joints"]
    shape = tuple(getattr(joints, "shape", ()))
    numeric = isinstance(joints, np.ndarray) and joints.dtype.kind in "biuf"
    if not numeric or len(shape) != 3 or shape[:2] not in ((k, 3), (3, k)):
        got = f"shape {shape}" + ("" if numeric else f", dtype {getattr(joints, 'dtype', type(joints).__name__)}")
        raise fail(
            "joints",
            f"must be a numeric array of shape ({k}, 3, N) (LSP-Extended) or (3, {k}, N) (LSP) for the "
            f"{meta_name!r} meta's {k} keypoints; got {got}",
        )
    extended = shape[:2] == (k, 3)
    joints = joints.astype(np.float64)
    return (joints if extended else joints.transpose(1, 0, 2)), extended


def _image_name(image_dir: Path, n: int, extended: bool) -> str:
    first, other = (f"im{n:05d}.jpg", f"im{n:04d}.jpg") if extended else (f"im{n:04d}.jpg", f"im{n:05d}.jpg")
    if not (image_dir / first).is_file() and (image_dir / other).is_file():
        return other
    return first


def parse_joints_mat(ann_file: Path, image_dir: Path, split: str, meta: DatasetMeta, margin: float) -> RawSplit:
    """One ``joints.mat`` as a :class:`RawSplit`: image and annotation id ``n`` = column ``n``."""
    k = meta.num_keypoints
    joints, extended = _read_joints(ann_file, k, meta.name)
    raw = RawSplit(split, [], [], image_dir, ann_file)
    names = meta.keypoint_names
    for col in range(joints.shape[2]):
        n = col + 1
        file_name = _image_name(image_dir, n, extended)
        rec = f"joints(:,:,{n}) ({file_name})"
        keypoints: list[float | int] = []
        labelled: list[tuple[float, float]] = []
        bad_flags = []
        for j in range(k):
            x, y, flag = joints[j, :, col]
            if flag not in (0, 1):
                bad_flags.append(f"{names[j]}={float(flag):g}")
                continue
            v = (2 if flag == 1 else 0) if extended else (2 if flag == 0 else 1)
            if v == 0:
                keypoints += [0.0, 0.0, 0]
            else:
                # MATLAB 1-based -> 0-based pixel centres
                keypoints += [float(x) - 1.0, float(y) - 1.0, v]
                labelled.append((float(x) - 1.0, float(y) - 1.0))
        if bad_flags:
            meaning = "1 = labelled, 0 = not labelled" if extended else "0 = visible, 1 = occluded"
            raw.problems.append(
                Problem(str(ann_file), rec, "flag", f"must be 0 or 1 ({meaning}); got {', '.join(bad_flags)}")
            )
            raw.omitted += 1
            continue
        size = image_size(image_dir / file_name)
        image: dict[str, object] = {"id": n, "file_name": file_name}
        if size is not None:
            image["width"], image["height"] = size
        raw.images.append(image)
        raw.annotations.append(
            {
                "id": n,
                "image_id": n,
                "category_id": 1,
                "bbox": keypoint_box(labelled, margin, size),
                "keypoints": keypoints,
                "iscrowd": 0,
            }
        )
        raw.records[n] = rec
    return raw


@register_converter("lsp", default_meta="lsp")
def convert_lsp(spec: SourceSpec, meta: DatasetMeta) -> list[RawSplit]:
    splits = []
    for name, ann_file in split_layout(spec, "joints.mat").items():
        rel = spec.images.get(name, spec.images.get("all"))
        image_dir = Path(spec.root) / rel if rel is not None else ann_file.parent / "images"
        splits.append(parse_joints_mat(ann_file, image_dir, name, meta, spec.bbox_margin))
    return splits
