"""lazy_import defers the import to the first attribute read; the modules with NumPy twins import without torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from posecore._lazy import lazy_import

REPO = Path(__file__).resolve().parents[1]


def test_the_module_is_imported_on_first_use_and_attributes_are_stored() -> None:
    sys.modules.pop("colorsys", None)
    stand_in = lazy_import("colorsys")
    assert "colorsys" not in sys.modules
    assert stand_in.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)
    assert "colorsys" in sys.modules
    assert stand_in.__dict__["rgb_to_hsv"] is sys.modules["colorsys"].rgb_to_hsv  # later reads skip the hook


def test_numpy_twins_run_without_torch() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # any import of torch now fails
        import numpy as np
        from posecore.codecs import available_codecs, codec_class, numpy_decoder
        from posecore.models.flip import average_flip_numpy, flip_outputs_numpy
        from posecore.transforms.geometry import crop_boxes, invert_affine_numpy, transform_points_numpy

        decode = numpy_decoder({"name": "msra_heatmap", "heatmap_size": [16, 24]}, (64, 96))
        heatmaps = np.random.default_rng(0).random((2, 3, 24, 16), dtype=np.float32)
        back = flip_outputs_numpy({"heatmaps": heatmaps}, [0, 2, 1], shift_heatmap=True)
        kp, scores = decode(average_flip_numpy({"heatmaps": heatmaps}, back))
        assert kp.shape == (2, 3, 2) and scores.shape == (2, 3)
        crops, mats = crop_boxes(np.zeros((50, 60, 3), np.uint8), np.array([[5.0, 5, 40, 45]]), (64, 96))
        assert crops.shape == (1, 96, 64, 3)
        assert transform_points_numpy(kp[:1], invert_affine_numpy(mats)).shape == (1, 3, 2)
        assert all(codec_class(n).decode_numpy for n in available_codecs())
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
