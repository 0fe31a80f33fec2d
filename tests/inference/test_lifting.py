"""``posecore infer --lift``: tracks of a video lifted to 3D, skeleton checks before any work, COCO -> H36M."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from posecore.cli import main
from posecore.data.lifting import encode_sequences
from posecore.datasets.synthetic.motion3d import Motion3DParams, generate_splits
from posecore.engine.lifting import LiftTrainConfig, train_lifter, write_lifter_description
from posecore.evaluation.lifting import make_lifting_validator
from posecore.export.lift_bundle import LiftRuntime
from posecore.export.lift_export import export_lifter
from posecore.inference.lifting import CONVERSIONS
from posecore.metainfo import load_meta
from posecore.models.lifting.config import LifterParams

H36M = load_meta("h36m")


@pytest.fixture(scope="module")
def lift_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lifter")
    splits = generate_splits(Motion3DParams(n_subjects_train=1, n_subjects_val=1, sequences_per_subject=2,
                                            frames_min=20, frames_max=30, cameras_per_sequence=1,
                                            n_cameras_train=1, n_cameras_val=1))  # fmt: skip
    lifter = LifterParams(channels=16, receptive_field=9)
    codec = lifter.build_codec(H36M.num_keypoints)
    train, val = (encode_sequences(codec, splits[s]) for s in ("train", "val"))
    cfg = LiftTrainConfig(
        epochs=1, global_batch_size=16, batch_size_per_device=16, checkpoint_dir=str(root / "train"), progress=False
    )
    train_lifter(lifter, cfg, H36M, train, make_lifting_validator(val, H36M.keypoint_names, None), flip_prob=0.5)
    write_lifter_description(root / "train", lifter, H36M)
    export_lifter(root / "train", root / "bundle", splits["val"])
    return root / "bundle"


def _video(path: Path, frames: int = 12) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (96, 80))
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8))
    writer.release()
    return path


def test_coco_keypoints_convert_to_human36m_joints() -> None:
    kp = np.arange(17 * 2, dtype=np.float32).reshape(1, 17, 2)
    sc = np.linspace(0.1, 0.9, 17, dtype=np.float32)[None]
    out, s = CONVERSIONS[("coco", "h36m")](kp, sc)
    np.testing.assert_allclose(out[0, 0], (kp[0, 11] + kp[0, 12]) / 2)  # pelvis: mid-hips
    np.testing.assert_allclose(out[0, 8], (kp[0, 5] + kp[0, 6]) / 2)  # thorax: mid-shoulders
    np.testing.assert_allclose(out[0, 7], (out[0, 0] + out[0, 8]) / 2)  # spine
    np.testing.assert_allclose(out[0, 10], (kp[0, 1] + kp[0, 2]) / 2)  # head: mid-eyes
    names = H36M.keypoint_names
    coco = load_meta("coco").keypoint_names
    for limb in ("hip", "knee", "shoulder", "elbow", "wrist"):
        for side in ("left", "right"):
            np.testing.assert_allclose(out[0, names.index(f"{side}_{limb}")], kp[0, coco.index(f"{side}_{limb}")])
    np.testing.assert_allclose(out[0, names.index("left_foot")], kp[0, coco.index("left_ankle")])
    assert s[0, 0] == min(sc[0, 11], sc[0, 12])


def test_infer_lift_writes_3d_joints_per_tracked_instance_and_a_3d_view(
    coco_bundle, lift_bundle, tmp_path: Path
) -> None:  # noqa: ANN001
    video, out = _video(tmp_path / "walk.mp4"), tmp_path / "out"
    code = main(["infer", "--model", str(coco_bundle.path), "--input", str(video), "--out", str(out),
                 "--lift", str(lift_bundle)])  # fmt: skip
    assert code == 0
    doc = json.loads((out / "walk.json").read_text())
    assert doc["keypoint_names_3d"] == list(H36M.keypoint_names) and doc["lifter"]["name"] == "videopose3d"
    track = []
    for frame in doc["frames"]:
        (inst,) = frame["instances"]  # the whole frame is one box, one track
        assert np.asarray(inst["keypoints_3d"]).shape == (17, 3)
        track.append(inst)
    # the same as lifting the track directly (COCO -> H36M, then the runtime on the whole run)
    kp = np.asarray([i["keypoints"] for i in track], np.float32)
    sc = np.asarray([i["keypoint_scores"] for i in track], np.float32)
    expected = LiftRuntime(lift_bundle).lift(*CONVERSIONS[("coco", "h36m")](kp, sc), (96, 80))
    np.testing.assert_allclose([i["keypoints_3d"] for i in track], expected, atol=0.01)
    cap = cv2.VideoCapture(str(out / "walk_3d.mp4"))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    assert count == len(doc["frames"]) == 12


def test_a_skeleton_the_lifter_cannot_take_fails_before_any_work(
    mouse_bundle, lift_bundle, shared_data: Path, tmp_path: Path, capsys
) -> None:  # noqa: ANN001
    video = shared_data / "mirror_mouse" / "videos" / "test_vid.mp4"  # the real mouse video when it is here
    video = video if video.is_file() else _video(tmp_path / "mouse.mp4")
    out = tmp_path / "out"
    code = main(
        [
            "infer",
            "--model",
            str(mouse_bundle.path),
            "--input",
            str(video),
            "--out",
            str(out),
            "--lift",
            str(lift_bundle),
        ]
    )
    assert code != 0
    err = capsys.readouterr().err
    assert "skeletons do not match" in err and "'h36m'" in err
    assert not out.exists()


def test_lift_needs_a_video_and_a_lifter_bundle(coco_bundle, lift_bundle, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.zeros((80, 96, 3), np.uint8))
    assert (
        main(
            [
                "infer",
                "--model",
                str(coco_bundle.path),
                "--input",
                str(image),
                "--out",
                str(tmp_path / "o"),
                "--lift",
                str(lift_bundle),
            ]
        )
        != 0
    )
    assert "lifts the tracks of a video" in capsys.readouterr().err
    video = _video(tmp_path / "v.mp4", 3)
    assert (
        main(
            [
                "infer",
                "--model",
                str(coco_bundle.path),
                "--input",
                str(video),
                "--out",
                str(tmp_path / "o2"),
                "--lift",
                str(coco_bundle.path),
            ]
        )
        != 0
    )
    assert "not 'lifting'" in capsys.readouterr().err
