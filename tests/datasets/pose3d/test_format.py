"""The canonical 3D sequence format: the camera's conventions (hand-computed golden numbers), the
save/load round trip, shape checks and the atomic write."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from posecore.datasets.pose3d import Camera, PoseSequence, load_sequences, save_sequences

# A camera 5 m behind the world origin on -y, looking along world +y, world z up: its x (right) is
# world +x, its y (down) world -z, its z (forward) world +y. R's columns are those axes in world coordinates.
LOOK_ALONG_Y = Camera(
    f=(1000.0, 1000.0),
    c=(500.0, 500.0),
    R=((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, -1.0, 0.0)),
    T=(0.0, -5000.0, 0.0),
    width=1000,
    height=1000,
    id="cam0",
)


def _sequence(name: str, t: int, j: int = 17, seed: int = 0, camera: Camera = LOOK_ALONG_Y) -> PoseSequence:
    rng = np.random.default_rng(seed)
    return PoseSequence(
        name=name,
        subject="S1",
        action="Walking",
        camera=camera,
        frames=np.arange(1, 5 * t + 1, 5, dtype=np.int64),
        keypoints_2d=rng.uniform(0, 1000, (t, j, 2)).astype(np.float32),
        scores_2d=rng.uniform(0, 1, (t, j)).astype(np.float32),
        joints_3d=rng.normal(0, 500, (t, j, 3)).astype(np.float32) + np.float32([0, 0, 5000]),
        extra={"note": name},
    )


# --- camera ------------------------------------------------------------------------------------


def test_world_to_camera_golden_point() -> None:
    # world (100, 0, 200): 100 mm right of, 200 mm above, 5 m in front of the camera
    assert LOOK_ALONG_Y.world_to_camera(np.array([100.0, 0.0, 200.0])) == pytest.approx([100.0, -200.0, 5000.0])


def test_camera_to_world_inverts_world_to_camera() -> None:
    rng = np.random.default_rng(1)
    angles = rng.uniform(-np.pi, np.pi, 3)
    rx = np.array([[1, 0, 0], [0, np.cos(angles[0]), -np.sin(angles[0])], [0, np.sin(angles[0]), np.cos(angles[0])]])
    rz = np.array([[np.cos(angles[2]), -np.sin(angles[2]), 0], [np.sin(angles[2]), np.cos(angles[2]), 0], [0, 0, 1]])
    cam = Camera(f=(1.0, 1.0), c=(0.0, 0.0), R=tuple(map(tuple, rx @ rz)), T=(1800.0, 4900.0, 1500.0))
    x = rng.normal(0, 1000, (4, 17, 3))
    assert np.allclose(cam.camera_to_world(cam.world_to_camera(x)), x)
    # the camera centre is the camera-space origin
    assert np.allclose(cam.world_to_camera(np.array(cam.T)), 0.0)


def test_project_golden_point() -> None:
    # (100, -200, 5000) mm: u = 1000 * 100 / 5000 + 500 = 520, v = 1000 * -200 / 5000 + 500 = 460
    assert LOOK_ALONG_Y.project(np.array([[100.0, -200.0, 5000.0]])) == pytest.approx(np.array([[520.0, 460.0]]))


def test_project_distortion_is_h36ms_model() -> None:
    # u, v = 0.1, -0.2: r2 = 0.05; radial = 1 + 0.1 r2 = 1.005; tan = p2 u + p1 v = 0.01*0.1 + 0.02*-0.2 = -0.003
    # d = (u, v) * 1.002 + (p2, p1) * r2 = (0.1002 + 0.0005, -0.2004 + 0.001)
    cam = Camera(f=(1000.0, 1000.0), c=(0.0, 0.0), k=(0.1, 0.0, 0.0), p=(0.02, 0.01))
    assert cam.project(np.array([0.1, -0.2, 1.0])) == pytest.approx([100.7, -199.4])
    assert cam.project(np.array([0.1, -0.2, 1.0]), distort=False) == pytest.approx([100.0, -200.0])


# --- round trip --------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path) -> None:
    sequences = [_sequence("a", 3, seed=0), _sequence("b", 5, seed=1)]
    save_sequences(tmp_path / "split", sequences)
    loaded = load_sequences(tmp_path / "split")
    assert [s.name for s in loaded] == ["a", "b"]
    for before, after in zip(sequences, loaded, strict=True):
        assert (after.subject, after.action, after.camera, after.extra) == (
            before.subject,
            before.action,
            before.camera,
            before.extra,
        )
        for key, dtype in (
            ("frames", np.int64),
            ("keypoints_2d", np.float32),
            ("scores_2d", np.float32),
            ("joints_3d", np.float32),
        ):
            assert getattr(after, key).dtype == dtype
            np.testing.assert_array_equal(getattr(after, key), getattr(before, key))


def test_save_replaces_an_existing_split(tmp_path: Path) -> None:
    save_sequences(tmp_path / "split", [_sequence("old", 2)])
    (tmp_path / "split" / "stale.txt").write_text("from before")
    save_sequences(tmp_path / "split", [_sequence("new", 4)])
    assert [s.name for s in load_sequences(tmp_path / "split")] == ["new"]
    assert not (tmp_path / "split" / "stale.txt").exists()


def test_empty_split_round_trips(tmp_path: Path) -> None:
    save_sequences(tmp_path / "split", [])
    assert load_sequences(tmp_path / "split") == []


# --- shape checks and the atomic write ---------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "shape"),
    [("keypoints_2d", (3, 17, 3)), ("scores_2d", (3, 16)), ("keypoints_2d", (2, 17, 2)), ("joints_3d", (3, 17, 2))],
)
def test_shape_mismatch_names_the_array(key: str, shape: tuple[int, ...]) -> None:
    good = _sequence("bad", 3)
    fields = {k: getattr(good, k) for k in ("frames", "keypoints_2d", "scores_2d", "joints_3d")}
    fields[key] = np.zeros(shape, np.float32)
    with pytest.raises(ValueError, match=re.escape(f"sequence 'bad': {key} has shape {shape}")):
        PoseSequence(name="bad", subject="S1", action="a", camera=LOOK_ALONG_Y, **fields)


def test_a_failed_save_leaves_nothing_and_keeps_the_old_split(tmp_path: Path) -> None:
    bad = _sequence("bad", 2)
    bad.extra["not_json"] = object()
    with pytest.raises(TypeError):
        save_sequences(tmp_path / "fresh", [_sequence("ok", 2), bad])
    assert list(tmp_path.iterdir()) == []

    save_sequences(tmp_path / "split", [_sequence("old", 2)])
    with pytest.raises(TypeError):
        save_sequences(tmp_path / "split", [bad])
    assert [s.name for s in load_sequences(tmp_path / "split")] == ["old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["split"]


def test_arrays_are_read_without_pickle(tmp_path: Path) -> None:
    save_sequences(tmp_path / "split", [_sequence("a", 2)])
    with np.load(tmp_path / "split" / "arrays.npz", allow_pickle=False) as data:
        assert sorted(data.files) == ["frames", "joints_3d", "keypoints_2d", "scores_2d"]
        assert all(data[k].dtype != object for k in data.files)
