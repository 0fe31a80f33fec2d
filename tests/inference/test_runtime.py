"""BundleModel (onnxruntime + numpy) predicts what the PyTorch model predicts, and never needs torch."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from posecore.inference import BundleError, BundleModel, load_model
from posecore.inference.model import normalize_crops
from posecore.inference.torch_model import TorchModel

REPO = Path(__file__).resolve().parents[2]
VARIANTS = ("msra", "rle", "simcc", "udp")  # the bundles of conftest.SPECS
TinyBundle = Any  # conftest.TinyBundle


def _crops(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 96, 64, 3), dtype=np.uint8)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("flip", [False, True])
def test_bundle_predictions_equal_the_torch_model(bundles: dict[str, TinyBundle], variant: str, flip: bool) -> None:
    assert set(bundles) == set(VARIANTS)
    b = bundles[variant]
    model = BundleModel(b.path, providers=["CPUExecutionProvider"])
    assert model.flip_test is True and model.info.shift_heatmap == b.spec.shift_heatmap
    crops = _crops(5)
    kp, sc = model.predict_crops(crops, batch_size=2, flip_test=flip)  # batches of 2, 2, 1
    inputs = torch.from_numpy(normalize_crops(crops, model.info))
    kp_t, sc_t = b.model.predict(inputs, flip_test=flip)
    assert kp.shape == (5, 17, 2) and sc.shape == (5, 17)
    np.testing.assert_allclose(kp, kp_t.numpy(), atol=1e-3, rtol=0)
    np.testing.assert_allclose(sc, sc_t.numpy(), atol=1e-4, rtol=1e-4)


def test_flip_test_setting_and_empty_batch(coco_bundle: TinyBundle) -> None:
    on = BundleModel(coco_bundle.path)
    off = BundleModel(coco_bundle.path, flip_test=False)
    crops = _crops(3, seed=1)
    np.testing.assert_array_equal(off.predict_crops(crops)[0], on.predict_crops(crops, flip_test=False)[0])
    kp, sc = on.predict_crops(crops[:0])
    assert kp.shape == (0, 17, 2) and sc.shape == (0, 17)
    with pytest.raises(ValueError, match=r"crops must be \(N, 96, 64, 3\)"):
        on.predict_crops(np.zeros((1, 64, 64, 3), np.uint8))


def test_checkpoint_folder_runs_with_the_same_interface(coco_bundle: TinyBundle, checkpoint_dir: Path) -> None:
    torch_model = load_model(checkpoint_dir, device="cpu")
    assert isinstance(torch_model, TorchModel)
    bundle_model = load_model(coco_bundle.path)
    assert isinstance(bundle_model, BundleModel)
    assert torch_model.info.keypoint_names == bundle_model.info.keypoint_names
    assert torch_model.info.flip_indices == bundle_model.info.flip_indices
    assert torch_model.info.skeleton == bundle_model.info.skeleton
    crops = _crops(4, seed=2)
    for a, b in zip(torch_model.predict_crops(crops), bundle_model.predict_crops(crops), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-3, rtol=1e-4)


def test_model_embedded_in_onnx_metadata(coco_bundle: TinyBundle, tmp_path: Path) -> None:
    import onnx

    proto = onnx.load(str(coco_bundle.path / "model.onnx"))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "posecore.bundle", (coco_bundle.path / "bundle.json").read_text()
    onnx.save(proto, str(tmp_path / "alone.onnx"))
    model = load_model(tmp_path / "alone.onnx")
    assert model.info.keypoint_names == tuple(coco_bundle.meta.keypoint_names)


def test_bad_bundles_name_the_file_and_key(coco_bundle: TinyBundle, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="neither a bundle"):
        load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nope")
    bad = tmp_path / "bad"
    shutil.copytree(coco_bundle.path, bad)
    raw = json.loads((bad / "bundle.json").read_text())
    broken = dict(raw, flip_indices=raw["flip_indices"][:-1])
    (bad / "bundle.json").write_text(json.dumps(broken))
    with pytest.raises(BundleError, match=rf"(?s){re.escape(str(bad / 'bundle.json'))}: .*flip_indices"):
        BundleModel(bad)
    (bad / "bundle.json").write_text(json.dumps(dict(raw, codec={"name": "mystery"})))
    with pytest.raises(ValueError, match="no numpy decoder for codec 'mystery'"):
        BundleModel(bad)
    (bad / "bundle.json").write_text(json.dumps(dict(raw, outputs=["simcc_x", "simcc_z"])))
    with pytest.raises(BundleError, match=r"lacks the outputs \['simcc_z'\]"):
        BundleModel(bad)
    (bad / "bundle.json").unlink()
    with pytest.raises(FileNotFoundError, match="bundle.json does not exist"):
        BundleModel(bad)


def test_runtime_imports_and_runs_without_torch(coco_bundle: TinyBundle, tmp_path: Path) -> None:
    image = tmp_path / "img.png"
    import cv2

    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 256, (80, 120, 3), dtype=np.uint8))
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any import of torch now fails
        from pathlib import Path
        import numpy as np
        from posecore.inference import BundleModel, infer_images, load_model
        model = load_model({str(coco_bundle.path)!r})
        assert isinstance(model, BundleModel)
        kp, sc = model.predict_crops(np.zeros((2, 96, 64, 3), np.uint8))
        assert kp.shape == (2, 17, 2)
        report = infer_images(model, [Path({str(image)!r})], Path({str(tmp_path / "out")!r}))
        assert report.instances == 1 and report.rendered == 1
        from posecore.cli import main
        assert main(["infer", "--model", {str(coco_bundle.path)!r}, "--input", {str(image)!r},
                     "--out", {str(tmp_path / "cli")!r}]) == 0
        assert Path({str(tmp_path / "cli")!r}).is_dir()
        assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules if sys.modules[m] is not None)
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")


# --------------------------------------------------------------------------- one-stage bundles


def _images() -> list[np.ndarray]:
    """Whole images of several sizes: landscape, a single pixel, a grey panorama, the input size."""
    rng = np.random.default_rng(3)
    return [
        rng.integers(0, 256, (120, 160, 3), dtype=np.uint8),
        rng.integers(0, 256, (1, 1, 3), dtype=np.uint8),
        rng.integers(0, 256, (50, 200), dtype=np.uint8),
        rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
    ]


def _torch_people(model: Any, image: np.ndarray) -> Any:
    """The PyTorch model on the cache's letterbox of ``image``, people mapped back to image pixels by hand."""
    from posecore.inference.info import ModelInfo
    from posecore.transforms.letterbox import letterbox

    rgb = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image
    boxed, warp = letterbox(rgb, tuple(model.spec.input_size))
    info = ModelInfo(tuple(model.spec.input_size), {"name": "yoloxpose"}, ("a",), (0,), mean=model.mean, std=model.std)
    (poses,) = model.predict(torch.from_numpy(normalize_crops(boxed[None], info)))
    s, t = warp[:, 0:2].diagonal(), warp[:, 2]  # a scale and a shift per axis
    return (
        ((poses.boxes.numpy().reshape(-1, 2, 2) - t) / s).reshape(-1, 4),
        poses.scores.numpy(),
        (poses.keypoints.numpy() - t) / s,
    )


def _paired(a_kpts: np.ndarray, b_kpts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sides' people (P, K, 2) paired by an optimal assignment on their largest keypoint distance:
    a random-weight model finds near-duplicate people whose order float noise may swap."""
    from scipy.optimize import linear_sum_assignment

    assert len(a_kpts) == len(b_kpts)
    cost = np.linalg.norm(a_kpts[:, None] - b_kpts[None], axis=-1).max(-1, initial=0.0)
    rows, cols = linear_sum_assignment(cost)
    return a_kpts[rows], b_kpts[cols]


def test_onestage_bundle_finds_people_in_image_pixels(onestage_bundle: TinyBundle) -> None:
    model = BundleModel(onestage_bundle.path, flip_test=True)
    assert model.info.task == "onestage" and model.flip_test, "a one-stage network with heatmaps flip-tests them"
    images = _images()
    found = model.predict_images(images, batch_size=3)
    assert len(found) == len(images)
    for image, poses in zip(images, found, strict=True):
        n = len(poses)
        assert 0 < n <= 30
        assert poses.boxes.shape == (n, 4) and poses.scores.shape == (n,)
        assert poses.keypoints.shape == (n, 17, 2) and poses.keypoint_scores.shape == (n, 17)
        assert all(a.dtype == np.float32 for a in (poses.boxes, poses.scores, poses.keypoints, poses.keypoint_scores))
        assert (np.diff(poses.scores) <= 0).all(), "best first"
        boxes, scores, keypoints = _torch_people(onestage_bundle.model, image)
        scale = max(image.shape[:2]) / 64  # image px per input px
        np.testing.assert_allclose(poses.scores, scores, atol=1e-4)
        np.testing.assert_allclose(poses.boxes, boxes, atol=0.02 * scale + 1e-3)
        np.testing.assert_allclose(*_paired(poses.keypoints, keypoints), atol=0.02 * scale + 1e-3)
    assert model.predict_images([]) == []


def test_onestage_checkpoint_predicts_what_its_bundle_does(
    onestage_bundle: TinyBundle, onestage_checkpoint: Path
) -> None:
    torch_model = load_model(onestage_checkpoint, device="cpu")
    assert isinstance(torch_model, TorchModel) and torch_model.info.task == "onestage" and torch_model.flip_test
    ours = torch_model.predict_images(_images())
    theirs = load_model(onestage_bundle.path).predict_images(_images())
    for a, b in zip(ours, theirs, strict=True):
        assert len(a) == len(b) and a.keypoints.dtype == np.float32
        np.testing.assert_allclose(*_paired(a.keypoints, b.keypoints), atol=0.1)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)


def test_each_kind_refuses_the_other_kinds_call(
    onestage_bundle: TinyBundle, coco_bundle: TinyBundle, onestage_checkpoint: Path
) -> None:
    for one in (BundleModel(onestage_bundle.path), load_model(onestage_checkpoint, device="cpu")):
        with pytest.raises(ValueError, match="one-stage model.*predict_images"):
            one.predict_crops(np.zeros((1, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="top-down model.*predict_crops"):
        BundleModel(coco_bundle.path).predict_images([np.zeros((8, 8, 3), np.uint8)])
    with pytest.raises(ValueError, match="uint8"):
        BundleModel(onestage_bundle.path).predict_images([np.zeros((8, 8, 3), np.float32)])


def test_onestage_runtime_runs_without_torch(onestage_bundle: TinyBundle, tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any import of torch now fails
        import numpy as np
        from posecore.inference import load_model
        model = load_model({str(onestage_bundle.path)!r})
        (poses,) = model.predict_images([np.zeros((30, 40), np.uint8)])
        assert poses.keypoints.shape[1:] == (17, 2)
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")
