"""Human3.6M as MMPose prepares it (``tools/dataset_converters/preprocess_h36m.py``) -> pose sequences.

Inputs, one row per frame (``N`` rows, ``J`` = 17 joints in the order of ``metainfo/h36m.yaml``):

* an ``.npz`` with ``imgname`` (N,) str, ``part`` (N, J, 3) float: 2D joints in image pixels +
  flag (1 = labelled), and ``S`` (N, J, 4) float: 3D joints + flag. ``center``/``scale`` (the
  person box) may be present and are ignored: lifting reads joints only.
* a camera JSON keyed ``"SUBJECT/CAMERA_ID"`` (``"S1/54138969"``), each with ``f`` (2), ``c`` (2)
  in pixels, ``k`` (3), ``p`` (2), ``R`` (3, 3), ``T`` (3) in metres, image size ``w``, ``h``
  (MMPose's ``cameras.pkl`` re-saved as JSON; nested ``[[x], [y]]`` vectors are accepted).
* optionally a detections ``.npy`` (N, J, 3): a 2D detector's ``x, y`` pixels and score per joint,
  row for row with the ``.npz``; it replaces ``part`` as the 2D input.

Conventions, checked on MMPose's test sample (``tests/datasets/pose3d/test_h36m.py``):

* ``S`` is in the camera's coordinates (x right, y down, z forward), in metres: MMPose divides
  H36M's ``D3_Positions_mono`` by 1000. The world joints of the sample's ``h36m_coco.json``
  (``keypoints_3d``, metres) taken through :meth:`Camera.world_to_camera` with ``T`` in mm give
  ``S`` x 1000 to 2.4e-7 m, and projecting ``S`` with :meth:`Camera.project` gives ``part`` to
  well under 1 px: ``R`` is camera-to-world and ``T`` the camera centre, in metres (see
  :class:`~posecore.datasets.pose3d.format.Camera`).
* Output units are the canonical format's: ``joints_3d`` = ``S`` x 1000 (camera mm), camera ``T``
  x 1000 (mm); ``keypoints_2d`` pixels; ``scores_2d`` = ``part``'s flag, or the detection score.
* Joint order: rows 1-3 are the right leg and 4-6 the left (MMPose 1.x ``h36m.py``). The sample's
  ``h36m_coco.json`` lists ``left_hip, left_knee, left_foot`` first in its category, but its
  arrays follow the same rows as ``S`` and ``part`` (they project onto ``part`` index for index),
  and on every sample frame joint 1 lies on the same side of the body as joint 14
  (``right_shoulder``) and to the person's right of their facing direction: the category names
  are wrong, the order is MMPose 1.x's.
* ``imgname`` ``S1/S1_Directions_1.54138969/S1_Directions_1.54138969_000001.jpg`` gives subject
  ``S1``, action ``Directions_1``, camera ``54138969`` and frame 1 (the file's 1-based video frame
  number, kept as is). Rows are grouped by subject, action and camera into one sequence each,
  ordered by frame; the sequence is named like the clip folder, ``S1_Directions_1.54138969``.

Files are read with ``np.load(..., allow_pickle=False)`` and ``json`` only: a file that needs
unpickling is refused. Every problem names the file, the record (``row i (imgname)`` or the
camera key) and the field, all problems are reported together, and nothing is written unless the
whole input is valid.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from posecore.datasets.pose3d.format import Camera, PoseSequence, save_sequences
from posecore.metainfo import load_meta
from posecore.validation import DataValidationError, Problem

__all__ = ["convert_h36m", "parse_imgname", "read_h36m"]

META = "h36m"
NPZ_KEYS = ("imgname", "part", "S")
CAMERA_KEYS = {"f": (2,), "c": (2,), "k": (3,), "p": (2,), "R": (3, 3), "T": (3,)}
#: A Human3.6M camera stands about 5-6 m from the world origin; a |T| above this is in millimetres.
MAX_T_METRES = 100.0
_HINT = "Nothing was written."
_IMGNAME = re.compile(r"(?P<subject>S\d+)_(?P<action>[^./]+)\.(?P<camera>\w+)_(?P<frame>\d+)\.(?:jpe?g|png)")


def parse_imgname(imgname: str) -> tuple[str, str, str, int] | None:
    """``(subject, action, camera, frame)`` of an MMPose H36M image path (module docstring); None if it is not one."""
    match = _IMGNAME.fullmatch(imgname.replace("\\", "/").rsplit("/", 1)[-1])
    if match is None:
        return None
    return match["subject"], match["action"], match["camera"], int(match["frame"])


def _fail(file: Path, field: str, message: str, record: str = "file") -> DataValidationError:
    return DataValidationError([Problem(str(file), record, field, message)], hint=_HINT)


def _load_array_file(path: Path, what: str) -> Any:
    """``np.load(path, allow_pickle=False)``, turning every way it can fail into a named problem."""
    if not path.is_file():
        raise _fail(path, "-", f"{what} does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:  # numpy says "pickled data" / "allow_pickle" for pickle files
        raise _fail(
            path, "-", f"needs unpickling, which posecore refuses ({exc}); re-save it with plain arrays"
        ) from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise _fail(path, "-", f"cannot be read as a NumPy {what} ({type(exc).__name__}: {exc})") from exc


def _read_npz(path: Path, j: int) -> dict[str, np.ndarray]:
    """``imgname`` (N,) str, ``part`` (N, J, 3) and ``S`` (N, J, 4) float64, shapes checked."""
    data = _load_array_file(path, ".npz annotation file")
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise _fail(path, "-", f"is a single array, not an .npz archive with keys {', '.join(NPZ_KEYS)}")
    with data:
        missing = [k for k in NPZ_KEYS if k not in data.files]
        if missing:
            found = ", ".join(data.files) or "none"
            raise DataValidationError(
                [Problem(str(path), "file", k, f"key is missing (keys in the file: {found})") for k in missing],
                hint=_HINT,
            )
        arrays: dict[str, np.ndarray] = {}
        for key in NPZ_KEYS:
            try:
                arrays[key] = data[key]
            except ValueError as exc:
                raise _fail(
                    path,
                    key,
                    f"is a pickled object array, which posecore refuses to load ({exc}); "
                    "re-save it as a plain array (imgname as a str array)",
                ) from exc
    names = arrays["imgname"]
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise _fail(
            path, "imgname", f"must be a 1-D str array (one image path per row), got {names.dtype} {names.shape}"
        )
    n = len(names)
    problems = []
    for key, width in (("part", 3), ("S", 4)):
        arr = arrays[key]
        if arr.dtype.kind not in "iuf" or arr.shape != (n, j, width):
            what = "x, y pixels + flag" if key == "part" else "x, y, z metres + flag"
            problems.append(
                Problem(
                    str(path),
                    "file",
                    key,
                    f"must be a numeric array of shape (N, {j}, {width}) ({what}) with N = {n} imgname rows; "
                    f"got {arr.dtype} {arr.shape}",
                )
            )
    if problems:
        raise DataValidationError(problems, hint=_HINT)
    if names.dtype.kind == "S":
        names = np.char.decode(names, "utf-8")
    return {
        "imgname": names.astype(str),
        "part": arrays["part"].astype(np.float64),
        "S": arrays["S"].astype(np.float64),
    }


def _read_detections(path: Path, n: int, j: int) -> np.ndarray:
    """The detections ``.npy`` as (N, J, 3) float64: ``x, y`` pixels and score."""
    arr = _load_array_file(path, ".npy detections file")
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise _fail(path, "-", f"must be a single .npy array of shape ({n}, {j}, 3), not an .npz archive")
    if arr.dtype.kind not in "iuf" or arr.shape != (n, j, 3):
        raise _fail(
            path,
            "keypoints",
            f"must be a numeric array of shape (N, {j}, 3) (x, y pixels + score) with N = {n}, one row per row "
            f"of the .npz; got {arr.dtype} {arr.shape}",
        )
    return arr.astype(np.float64)


def _read_cameras(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise _fail(path, "-", "camera file does not exist")
    try:
        cams = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail(path, "-", f"is not valid JSON ({exc})") from exc
    if not isinstance(cams, dict):
        raise _fail(path, "-", f"must be a JSON object keyed 'SUBJECT/CAMERA_ID', got {type(cams).__name__}")
    return cams


def _camera(cams: dict[str, Any], key: str, camera_id: str, file: Path, problems: list[Problem]) -> Camera | None:
    """The :class:`Camera` of ``cams[key]`` with ``T`` in mm; None after appending its problems."""
    raw, before = cams[key], len(problems)
    if not isinstance(raw, dict):
        problems.append(Problem(str(file), key, "-", f"must be an object with {', '.join(CAMERA_KEYS)}, w, h"))
        return None
    values: dict[str, np.ndarray] = {}
    for name, shape in CAMERA_KEYS.items():
        try:
            value = np.asarray(raw[name], np.float64)
        except KeyError:
            problems.append(Problem(str(file), key, name, "is missing"))
            continue
        except (TypeError, ValueError):
            problems.append(Problem(str(file), key, name, f"must be numbers of shape {shape}, got {raw[name]!r}"))
            continue
        value = value.reshape(-1) if len(shape) == 1 and value.size == shape[0] else value
        if value.shape != shape or not np.isfinite(value).all():
            problems.append(
                Problem(str(file), key, name, f"must be finite numbers of shape {shape}, got {raw[name]!r}")
            )
        else:
            values[name] = value
    for name in ("w", "h"):
        size = raw.get(name)
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            problems.append(
                Problem(str(file), key, name, f"must be the image size as a positive integer, got {size!r}")
            )
    if "R" in values:
        r = values["R"]
        if not np.allclose(r @ r.T, np.eye(3), atol=1e-6) or np.linalg.det(r) < 0:
            problems.append(Problem(str(file), key, "R", "must be a rotation matrix (orthonormal, determinant +1)"))
    if "T" in values and np.linalg.norm(values["T"]) > MAX_T_METRES:
        problems.append(
            Problem(
                str(file),
                key,
                "T",
                f"is {np.linalg.norm(values['T']):.0f} from the origin: it looks like millimetres, but MMPose's "
                "H36M camera files are in metres",
            )
        )
    if len(problems) > before:
        return None
    return Camera(
        f=tuple(values["f"].tolist()),
        c=tuple(values["c"].tolist()),
        R=tuple(tuple(row) for row in values["R"].tolist()),
        T=tuple((values["T"] * 1000.0).tolist()),
        k=tuple(values["k"].tolist()),
        p=tuple(values["p"].tolist()),
        width=int(raw["w"]),
        height=int(raw["h"]),
        id=camera_id,
    )  # type: ignore[arg-type]


def _value_problems(
    names: np.ndarray, part: np.ndarray, s: np.ndarray, det: np.ndarray | None, npz: Path, det_file: Path | None
) -> list[Problem]:
    """Value checks, vectorised over rows: ``part`` (N, J, 3), ``S`` (N, J, 4), ``det`` (N, J, 3) or None."""
    joint_names = load_meta(META).keypoint_names
    out: list[Problem] = []

    def report(file: Path, field: str, bad: np.ndarray, message: str) -> None:
        """One problem per row with a bad joint; ``bad`` (N, J) bool."""
        for i in np.flatnonzero(bad.any(1)):
            joints = ", ".join(joint_names[j] for j in np.flatnonzero(bad[i]))
            out.append(Problem(str(file), f"row {i} ({names[i]})", field, f"{message} at joint(s) {joints}"))

    finite = np.isfinite(part).all(-1) & np.isfinite(s).all(-1)
    report(npz, "part", ~np.isfinite(part).all(-1), "has NaN or infinite values")
    report(npz, "S", ~np.isfinite(s).all(-1), "has NaN or infinite values")
    if det is not None and det_file is not None:
        finite &= np.isfinite(det).all(-1)
        report(det_file, "keypoints", ~np.isfinite(det).all(-1), "has NaN or infinite values")
        report(det_file, "score", finite & ~((det[..., 2] >= 0) & (det[..., 2] <= 1)), "score outside [0, 1]")
    report(npz, "part", finite & ~np.isin(part[..., 2], (0.0, 1.0)), "flag is not 0 or 1 (1 = labelled)")
    report(
        npz,
        "S",
        finite & (s[..., 3] != 1.0),
        "3D flag is not 1 (the canonical format has no 3D visibility, so every joint must be labelled)",
    )
    report(npz, "S", finite & (s[..., 2] <= 0), "z <= 0, behind the camera (S must be camera coordinates, metres)")
    return out


def read_h36m(
    npz_path: str | Path, camera_path: str | Path, detections: str | Path | None = None
) -> list[PoseSequence]:
    """The sequences of MMPose H36M annotation files (module docstring), validated, nothing written.

    Returns one :class:`PoseSequence` per subject/action/camera, sorted by subject number, action and
    camera: ``keypoints_2d`` (T, 17, 2) pixels, ``scores_2d`` (T, 17), ``joints_3d`` (T, 17, 3) camera
    mm, ``frames`` (T,) from the image names. Raises :class:`DataValidationError` listing every problem.
    """
    npz_path, camera_path = Path(npz_path), Path(camera_path)
    det_path = Path(detections) if detections is not None else None
    j = load_meta(META).num_keypoints
    arrays = _read_npz(npz_path, j)
    names, part, s = arrays["imgname"], arrays["part"], arrays["S"]
    det = _read_detections(det_path, len(names), j) if det_path is not None else None
    cams = _read_cameras(camera_path)

    problems: list[Problem] = []
    groups: dict[tuple[str, str, str], list[tuple[int, int]]] = defaultdict(list)
    seen: dict[tuple[str, str, str, int], int] = {}
    unknown: dict[str, list[int]] = defaultdict(list)
    for i, name in enumerate(names):
        rec = f"row {i} ({name})"
        parsed = parse_imgname(name)
        if parsed is None:
            problems.append(
                Problem(
                    str(npz_path),
                    rec,
                    "imgname",
                    "cannot be parsed as SUBJECT/SUBJECT_ACTION.CAMERA/SUBJECT_ACTION.CAMERA_FRAME.jpg "
                    "(e.g. S1/S1_Directions_1.54138969/S1_Directions_1.54138969_000001.jpg)",
                )
            )
        else:
            subject, action, camera, frame = parsed
            if f"{subject}/{camera}" not in cams:
                unknown[f"{subject}/{camera}"].append(i)
            if (subject, action, camera, frame) in seen:
                first = seen[(subject, action, camera, frame)]
                problems.append(Problem(str(npz_path), rec, "imgname", f"repeats the frame of row {first}"))
            else:
                seen[(subject, action, camera, frame)] = i
                groups[(subject, action, camera)].append((frame, i))
    problems += _value_problems(names, part, s, det, npz_path, det_path)
    for key, rows in unknown.items():
        more = f" and {len(rows) - 1} more row(s)" if len(rows) > 1 else ""
        problems.append(
            Problem(
                str(npz_path),
                f"row {rows[0]} ({names[rows[0]]}){more}",
                "imgname",
                f"camera {key!r} is not in the camera file {camera_path} ({len(cams)} cameras there, e.g. "
                f"{', '.join(sorted(cams)[:4]) or 'none'})",
            )
        )
    cameras: dict[str, Camera | None] = {}
    for subject, _, camera in groups:
        key = f"{subject}/{camera}"
        if key in cams and key not in cameras:
            cameras[key] = _camera(cams, key, camera, camera_path, problems)
    if problems:
        raise DataValidationError(problems, hint=f"{_HINT} Fix the records above in {npz_path} / {camera_path}.")

    sequences = []
    for subject, action, camera in sorted(groups, key=lambda g: (int(g[0][1:]), g[1], g[2])):
        rows = sorted(groups[(subject, action, camera)])
        idx = np.array([i for _, i in rows])
        cam = cameras[f"{subject}/{camera}"]
        assert cam is not None  # a camera with problems raised above
        source = part if det is None else det
        sequences.append(
            PoseSequence(
                name=f"{subject}_{action}.{camera}",
                subject=subject,
                action=action,
                camera=cam,
                frames=np.array([f for f, _ in rows], np.int64),
                keypoints_2d=source[idx, :, :2].astype(np.float32),
                scores_2d=source[idx, :, 2].astype(np.float32),
                joints_3d=(s[idx, :, :3] * 1000.0).astype(np.float32),
            )
        )
    return sequences


def convert_h36m(
    npz_path: str | Path, camera_path: str | Path, out_dir: str | Path, detections: str | Path | None = None
) -> dict[str, Any]:
    """Convert MMPose H36M files (:func:`read_h36m`) into one split folder ``out_dir``, written atomically.

    Returns a report: ``out_dir``, ``sequences``, ``frames``, ``subjects``, ``cameras`` (distinct
    subject/camera pairs) and ``keypoints_2d`` (``"part"`` or the detections file).
    """
    sequences = read_h36m(npz_path, camera_path, detections)
    save_sequences(out_dir, sequences)
    return {
        "out_dir": str(out_dir),
        "sequences": len(sequences),
        "frames": sum(len(seq) for seq in sequences),
        "subjects": sorted({seq.subject for seq in sequences}, key=lambda s: int(s[1:])),
        "cameras": len({(seq.subject, seq.camera.id) for seq in sequences}),
        "keypoints_2d": "part" if detections is None else str(detections),
    }
