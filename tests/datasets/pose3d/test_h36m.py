"""The Human3.6M converter: MMPose's test sample reproduced (camera-space joints from the world ones,
2D projection onto ``part``), and every bad input named by file, record and field with nothing written.

The bad-input cases run on a tiny generated copy of the format (three rows, two cameras), so they
run without ``../shared/data``; the acceptance numbers need the real sample.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from posecore.datasets.pose3d import Camera, convert_h36m, load_sequences, read_h36m
from posecore.datasets.pose3d.h36m import parse_imgname
from posecore.metainfo import load_meta
from posecore.validation import DataValidationError

NPZ, CAMERAS, DETECTIONS = "test_h36m_body3d.npz", "cameras.json", "test_h36m_2d_detection.npy"

# --- a tiny generated dataset in MMPose's layout -------------------------------------------------

ROWS = [  # out of order on purpose: sequences are grouped and sorted by frame
    "S5/S5_Walking.55011271/S5_Walking.55011271_000011.jpg",
    "S1/S1_Directions_1.54138969/S1_Directions_1.54138969_000006.jpg",
    "S1/S1_Directions_1.54138969/S1_Directions_1.54138969_000001.jpg",
]


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rx @ ry @ rz


def _camera_entry(camera_id: str, angles: tuple[float, float, float], t: list[float]) -> dict[str, Any]:
    """One entry as MMPose's cameras.pkl holds it, with (n, 1) vectors and T in metres."""
    return {
        "R": _rotation(*angles).tolist(),
        "T": [[v] for v in t],
        "c": [[512.5], [515.5]],
        "f": [[1145.0], [1143.8]],
        "k": [[-0.2], [0.25], [-0.003]],
        "p": [[-0.0014], [-0.001]],
        "w": 1000,
        "h": 1002,
        "name": "camera",
        "id": camera_id,
    }


def _tiny() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    cams = {
        "S1/54138969": _camera_entry("54138969", (1.7, 0.1, -2.7), [1.84, 4.96, 1.56]),
        "S5/55011271": _camera_entry("55011271", (1.6, -0.2, 0.4), [1.94, -5.12, 1.63]),
    }
    rng = np.random.default_rng(0)
    s = rng.normal(0, 0.4, (3, 17, 3)) + np.array([0.0, 0.0, 5.2])
    part = np.zeros((3, 17, 3))
    for i, name in enumerate(ROWS):
        subject, _, camera, _ = parse_imgname(name)  # type: ignore[misc]
        entry = cams[f"{subject}/{camera}"]
        cam = Camera(
            f=tuple(np.ravel(entry["f"])),
            c=tuple(np.ravel(entry["c"])),
            k=tuple(np.ravel(entry["k"])),
            p=tuple(np.ravel(entry["p"])),
        )  # type: ignore[arg-type]
        part[i, :, :2] = cam.project(s[i])
    part[..., 2] = 1.0
    arrays = {
        "imgname": np.array(ROWS),
        "center": part[..., :2].mean(1),
        "scale": np.ones(3),
        "part": part,
        "S": np.concatenate([s, np.ones((3, 17, 1))], -1),
    }
    return arrays, cams


def _write(root: Path, arrays: dict[str, Any], cams: dict[str, Any]) -> tuple[Path, Path]:
    root.mkdir(parents=True, exist_ok=True)
    np.savez(root / NPZ, **arrays)
    (root / CAMERAS).write_text(json.dumps(cams))
    return root / NPZ, root / CAMERAS


class _Tripwire:
    """Unpickling this creates ``path``: a test that finds the file knows something unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.path), "w"))


# --- the generated dataset --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("S1/S1_Directions_1.54138969/S1_Directions_1.54138969_000001.jpg", ("S1", "Directions_1", "54138969", 1)),
        ("S11_WalkTogether.60457274_002061.jpg", ("S11", "WalkTogether", "60457274", 2061)),
        ("S9\\S9_Sitting_1.58860488\\S9_Sitting_1.58860488_000100.png", ("S9", "Sitting_1", "58860488", 100)),
        ("S1/S1_Directions_1/frame_000001.jpg", None),
        ("S1_Directions_1.54138969.jpg", None),
        ("P1_Walk.1_000001.jpg", None),
    ],
)
def test_parse_imgname(name: str, expected: tuple[str, str, str, int] | None) -> None:
    assert parse_imgname(name) == expected


def test_groups_rows_into_sorted_sequences_in_camera_mm(tmp_path: Path) -> None:
    arrays, cams = _tiny()
    npz, cam_file = _write(tmp_path / "src", arrays, cams)
    report = convert_h36m(npz, cam_file, tmp_path / "out")
    assert report == {
        "out_dir": str(tmp_path / "out"),
        "sequences": 2,
        "frames": 3,
        "subjects": ["S1", "S5"],
        "cameras": 2,
        "keypoints_2d": "part",
    }
    s1, s5 = load_sequences(tmp_path / "out")
    assert (s1.name, s1.subject, s1.action, s1.camera.id) == (
        "S1_Directions_1.54138969",
        "S1",
        "Directions_1",
        "54138969",
    )
    assert (s5.name, s5.action, s5.camera.id) == ("S5_Walking.55011271", "Walking", "55011271")
    assert s1.frames.tolist() == [1, 6] and s5.frames.tolist() == [11]
    np.testing.assert_allclose(s1.joints_3d, arrays["S"][[2, 1], :, :3] * 1000, rtol=1e-6)
    np.testing.assert_allclose(s1.keypoints_2d, arrays["part"][[2, 1], :, :2], rtol=1e-6)
    assert (s1.scores_2d == 1).all()
    assert s1.camera.T == pytest.approx((1840.0, 4960.0, 1560.0))
    assert s1.camera.k == pytest.approx((-0.2, 0.25, -0.003)) and (s1.camera.width, s1.camera.height) == (1000, 1002)


def test_detections_replace_part(tmp_path: Path) -> None:
    arrays, cams = _tiny()
    npz, cam_file = _write(tmp_path / "src", arrays, cams)
    det = arrays["part"].copy()
    det[..., :2] += 3.0
    det[..., 2] = np.linspace(0.1, 0.9, 17)
    np.save(tmp_path / DETECTIONS, det)
    report = convert_h36m(npz, cam_file, tmp_path / "out", detections=tmp_path / DETECTIONS)
    assert report["keypoints_2d"] == str(tmp_path / DETECTIONS)
    s1 = load_sequences(tmp_path / "out")[0]
    np.testing.assert_allclose(s1.keypoints_2d, det[[2, 1], :, :2], rtol=1e-6)
    np.testing.assert_allclose(s1.scores_2d, det[[2, 1], :, 2], rtol=1e-6)


Mutation = Callable[[dict[str, Any], dict[str, Any]], None]


def _set(key: str, index: Any, value: Any) -> Mutation:
    def mutate(arrays: dict[str, Any], cams: dict[str, Any]) -> None:
        arrays[key] = arrays[key].copy()
        arrays[key][index] = value

    return mutate


def _replace(key: str, fn: Callable[[Any], Any]) -> Mutation:
    def mutate(arrays: dict[str, Any], cams: dict[str, Any]) -> None:
        arrays[key] = fn(arrays[key])

    return mutate


def _camera_field(key: str, field: str, value: Any) -> Mutation:
    def mutate(arrays: dict[str, Any], cams: dict[str, Any]) -> None:
        if value is None:
            del cams[key][field]
        else:
            cams[key][field] = value

    return mutate


def _drop(key: str) -> Mutation:
    def mutate(arrays: dict[str, Any], cams: dict[str, Any]) -> None:
        del arrays[key]

    return mutate


def _drop_camera(key: str) -> Mutation:
    def mutate(arrays: dict[str, Any], cams: dict[str, Any]) -> None:
        del cams[key]

    return mutate


def _renamed(arrays: dict[str, Any], cams: dict[str, Any]) -> None:
    names = arrays["imgname"].astype("<U80")
    names[1] = "frame_0001.jpg"
    arrays["imgname"] = names


def _repeated(arrays: dict[str, Any], cams: dict[str, Any]) -> None:
    arrays["imgname"] = arrays["imgname"].copy()
    arrays["imgname"][1] = arrays["imgname"][2]


# case -> (mutation, file, record contains, field, message contains)
BAD: dict[str, tuple[Mutation, str, str, str, str]] = {
    "missing S": (_drop("S"), NPZ, "file", "S", "missing"),
    "missing imgname": (_drop("imgname"), NPZ, "file", "imgname", "missing"),
    "part not (N,17,3)": (_replace("part", lambda a: a[..., :2]), NPZ, "file", "part", "(N, 17, 3)"),
    "S with 16 joints": (_replace("S", lambda a: a[:, :16]), NPZ, "file", "S", "(N, 17, 4)"),
    "S one row short": (_replace("S", lambda a: a[:2]), NPZ, "file", "S", "N = 3"),
    "NaN in part": (_set("part", (1, 3, 0), np.nan), NPZ, f"row 1 ({ROWS[1]})", "part", "right_foot"),
    "NaN in S": (_set("S", (2, 0, 2), np.nan), NPZ, f"row 2 ({ROWS[2]})", "S", "NaN"),
    "3D flag 0": (_set("S", (0, 5, 3), 0.0), NPZ, "row 0", "S", "left_knee"),
    "S behind the camera": (_set("S", (0, 10, 2), -1.0), NPZ, "row 0", "S", "camera coordinates"),
    "part flag 2": (_set("part", (0, 0, 2), 2.0), NPZ, "row 0", "part", "flag"),
    "unknown camera": (_drop_camera("S5/55011271"), NPZ, f"row 0 ({ROWS[0]})", "imgname", "'S5/55011271' is not in"),
    "unparseable imgname": (_renamed, NPZ, "row 1 (frame_0001.jpg)", "imgname", "cannot be parsed"),
    "repeated frame": (_repeated, NPZ, "row 2", "imgname", "repeats the frame of row 1"),
    "camera T in mm": (_camera_field("S1/54138969", "T", [[1840.0], [4960.0], [1560.0]]), CAMERAS, "S1/54138969", "T", "millimetres"),
    "camera R not a rotation": (_camera_field("S1/54138969", "R", np.eye(3).tolist()[::-1]), CAMERAS, "S1/54138969", "R", "rotation"),
    "camera without f": (_camera_field("S5/55011271", "f", None), CAMERAS, "S5/55011271", "f", "missing"),
    "camera k of 2": (_camera_field("S5/55011271", "k", [0.1, 0.2]), CAMERAS, "S5/55011271", "k", "shape (3,)"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_named_and_nothing_written(tmp_path: Path, case: str) -> None:
    mutate, file, record, field, message = BAD[case]
    arrays, cams = _tiny()
    mutate(arrays, cams)
    npz, cam_file = _write(tmp_path / "src", arrays, cams)
    with pytest.raises(DataValidationError) as exc:
        convert_h36m(npz, cam_file, tmp_path / "out")
    hits = [
        p
        for p in exc.value.problems
        if p.file == str(tmp_path / "src" / file) and record in p.record and p.field == field and message in p.message
    ]
    assert hits, f"no problem naming {file}: {record}: {field}: {message} in\n{exc.value}"
    assert "Nothing was written" in str(exc.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    arrays, cams = _tiny()
    for mutate in (BAD["NaN in S"][0], BAD["unparseable imgname"][0], BAD["camera T in mm"][0]):
        mutate(arrays, cams)
    npz, cam_file = _write(tmp_path / "src", arrays, cams)
    with pytest.raises(DataValidationError) as exc:
        convert_h36m(npz, cam_file, tmp_path / "out")
    assert {p.field for p in exc.value.problems} == {"S", "imgname", "T"}


def test_a_failed_conversion_keeps_the_previous_output(tmp_path: Path) -> None:
    arrays, cams = _tiny()
    npz, cam_file = _write(tmp_path / "src", arrays, cams)
    convert_h36m(npz, cam_file, tmp_path / "out")
    BAD["NaN in S"][0](arrays, cams)
    npz, cam_file = _write(tmp_path / "src", arrays, cams)
    with pytest.raises(DataValidationError):
        convert_h36m(npz, cam_file, tmp_path / "out")
    assert len(load_sequences(tmp_path / "out")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


@pytest.mark.parametrize(
    ("det", "record", "field"),
    [
        (lambda d: d[:2], "file", "keypoints"),
        (lambda d: d[..., :2], "file", "keypoints"),
        (lambda d: np.where(np.arange(3)[:, None, None] == 1, np.nan, d), f"row 1 ({ROWS[1]})", "keypoints"),
        (lambda d: np.concatenate([d[..., :2], np.full(d.shape[:2] + (1,), 1.5)], -1), "row 0", "score"),
    ],
    ids=["rows", "no score", "NaN", "score > 1"],
)
def test_bad_detections_are_named(
    tmp_path: Path, det: Callable[[np.ndarray], np.ndarray], record: str, field: str
) -> None:
    arrays, cams = _tiny()
    npz, cam_file = _write(tmp_path / "src", arrays, cams)
    np.save(tmp_path / "src" / DETECTIONS, det(arrays["part"]))
    with pytest.raises(DataValidationError) as exc:
        convert_h36m(npz, cam_file, tmp_path / "out", detections=tmp_path / "src" / DETECTIONS)
    assert any(
        p.file == str(tmp_path / "src" / DETECTIONS) and record in p.record and p.field == field
        for p in exc.value.problems
    ), str(exc.value)
    assert not (tmp_path / "out").exists()


def test_a_pickled_npz_array_is_refused_unread(tmp_path: Path) -> None:
    arrays, cams = _tiny()
    tripwire = tmp_path / "unpickled"
    arrays["imgname"] = np.array([*ROWS[:2], _Tripwire(tripwire)], dtype=object)
    npz, cam_file = _write(tmp_path / "src", arrays, cams)
    with pytest.raises(DataValidationError) as exc:
        convert_h36m(npz, cam_file, tmp_path / "out")
    [problem] = exc.value.problems
    assert (problem.file, problem.field) == (str(npz), "imgname") and "pickle" in problem.message
    assert not tripwire.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("which", ["npz", "detections"])
def test_a_pickle_file_is_refused_unread(tmp_path: Path, which: str) -> None:
    arrays, cams = _tiny()
    npz, cam_file = _write(tmp_path / "src", arrays, cams)
    tripwire = tmp_path / "unpickled"
    target = npz if which == "npz" else tmp_path / "src" / DETECTIONS
    target.write_bytes(pickle.dumps({"imgname": _Tripwire(tripwire)}))
    with pytest.raises(DataValidationError) as exc:
        convert_h36m(npz, cam_file, tmp_path / "out", detections=None if which == "npz" else target)
    assert exc.value.problems[0].file == str(target) and "unpickling" in str(exc.value)
    assert not tripwire.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("missing", ["npz", "cameras"])
def test_missing_files_are_named(tmp_path: Path, missing: str) -> None:
    arrays, cams = _tiny()
    npz, cam_file = _write(tmp_path / "src", arrays, cams)
    (npz if missing == "npz" else cam_file).unlink()
    with pytest.raises(DataValidationError, match="does not exist"):
        read_h36m(npz, cam_file)


# --- MMPose's real sample ---------------------------------------------------------------------


@pytest.fixture
def sample(shared_data: Path) -> Path:
    root = shared_data / "mmpose_samples" / "h36m"
    if not (root / NPZ).is_file():
        pytest.skip(f"{root / NPZ} is absent")
    return root


def _world_joints_mm(sample: Path) -> dict[str, np.ndarray]:
    """``h36m_coco.json``'s ``keypoints_3d`` (world, metres) by image file name, in mm: (17, 3)."""
    doc = json.loads((sample / "h36m_coco.json").read_text())
    files = {im["id"]: im["file_name"] for im in doc["images"]}
    return {
        files[a["image_id"]]: np.asarray(a["keypoints_3d"], np.float64).reshape(17, 4)[:, :3] * 1000
        for a in doc["annotations"]
    }


@pytest.mark.real_data
def test_sample_converts(sample: Path, tmp_path: Path) -> None:
    report = convert_h36m(sample / NPZ, sample / CAMERAS, tmp_path / "out")
    assert (report["sequences"], report["frames"], report["subjects"]) == (4, 4, ["S1", "S5", "S7", "S8"])
    sequences = load_sequences(tmp_path / "out")
    assert [(s.name, s.frames.tolist()) for s in sequences] == [
        ("S1_Directions_1.54138969", [1]),
        ("S5_SittingDown.54138969", [2061]),
        ("S7_Greeting.55011271", [396]),
        ("S8_WalkDog_1.55011271", [26]),
    ]


@pytest.mark.real_data
def test_sample_camera_joints_are_the_world_joints_through_the_camera(sample: Path, tmp_path: Path) -> None:
    convert_h36m(sample / NPZ, sample / CAMERAS, tmp_path / "out")
    world = _world_joints_mm(sample)
    with np.load(sample / NPZ, allow_pickle=False) as data:
        s_mm = {Path(n).name: s[:, :3] * 1000 for n, s in zip(data["imgname"], data["S"], strict=True)}
    for seq in load_sequences(tmp_path / "out"):
        for t, frame in enumerate(seq.frames):
            image = f"{seq.name}_{frame:06d}.jpg"
            camera = seq.camera.world_to_camera(world[image])
            scale = np.abs(s_mm[image]).max()
            assert np.abs(camera - s_mm[image]).max() / scale < 1e-6, image
            assert np.abs(camera - seq.joints_3d[t]).max() / scale < 1e-6, image
            np.testing.assert_allclose(seq.camera.camera_to_world(camera), world[image], atol=1e-6)


@pytest.mark.real_data
def test_sample_projection_lands_on_part(sample: Path, tmp_path: Path) -> None:
    convert_h36m(sample / NPZ, sample / CAMERAS, tmp_path / "out")
    for seq in load_sequences(tmp_path / "out"):
        error = np.linalg.norm(seq.camera.project(seq.joints_3d) - seq.keypoints_2d, axis=-1)
        assert error.max() < 1.0, seq.name
        assert error.max() < 1e-3, f"{seq.name}: H36M's distortion model reproduces part to float32 precision"


@pytest.mark.real_data
def test_sample_with_detections(sample: Path, tmp_path: Path) -> None:
    convert_h36m(sample / NPZ, sample / CAMERAS, tmp_path / "out", detections=sample / DETECTIONS)
    det = np.load(sample / DETECTIONS, allow_pickle=False)
    sequences = load_sequences(tmp_path / "out")
    np.testing.assert_allclose(np.concatenate([s.keypoints_2d for s in sequences]), det[..., :2], rtol=1e-6)
    np.testing.assert_allclose(np.concatenate([s.scores_2d for s in sequences]), det[..., 2], rtol=1e-6)


@pytest.mark.real_data
def test_sample_joint_order_is_mmpose_1x_not_the_coco_file_names(sample: Path) -> None:
    meta = load_meta("h36m")
    category = json.loads((sample / "h36m_coco.json").read_text())["categories"][0]["keypoints"]
    # the COCO-style file names the legs the other way round ...
    assert category[1:7] == meta.keypoint_names[4:7] + meta.keypoint_names[1:4]
    assert category[7:] == meta.keypoint_names[7:]
    # ... but in its arrays joint 1 is on the person's right, the side of right_shoulder (14):
    # facing = the nose (neck_base) ahead of the thorax, world z up, right = facing x up.
    up = np.array([0.0, 0.0, 1.0])
    for image, w in _world_joints_mm(sample).items():
        facing = w[meta.index("neck_base")] - w[meta.index("thorax")]
        right = np.cross(facing * [1, 1, 0], up)
        assert (w[meta.index("right_hip")] - w[meta.index("left_hip")]) @ right > 0, image
        assert (w[meta.index("right_shoulder")] - w[meta.index("left_shoulder")]) @ right > 0, image
