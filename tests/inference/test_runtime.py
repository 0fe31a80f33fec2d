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
