"""The numpy flip rules equal posecore.models.flip key by key (shift, UDP combined maps, coords shift)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posecore.inference.flip import average_flip, flip_outputs
from posecore.metainfo import load_meta
from posecore.models import flip as torch_flip

FLIP = load_meta("coco").flip_indices
K = len(FLIP)


def _outputs(gen: torch.Generator) -> list[dict[str, torch.Tensor]]:
    return [
        {"heatmaps": torch.rand(3, K, 6, 5, generator=gen)},
        {"heatmaps": torch.rand(3, 3 * K, 6, 5, generator=gen) - 0.5},  # UDP combined
        {"simcc_x": torch.rand(3, K, 10, generator=gen), "simcc_y": torch.rand(3, K, 12, generator=gen)},
        {"coords": torch.rand(3, K, 2, generator=gen), "sigmas": torch.rand(3, K, 2, generator=gen)},
    ]


@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize("input_size", [None, (64, 96)])
def test_flip_back_equals_torch(shift: bool, input_size: tuple[int, int] | None) -> None:
    for outputs in _outputs(torch.Generator().manual_seed(0)):
        want = torch_flip.flip_outputs(outputs, FLIP, shift_heatmap=shift, input_size=input_size)
        got = flip_outputs({k: v.numpy() for k, v in outputs.items()}, FLIP, shift, input_size)
        assert set(got) == set(want)
        for key in want:
            assert got[key].dtype == np.float32, key
            np.testing.assert_allclose(got[key], want[key].numpy(), atol=1e-7, rtol=0, err_msg=key)
        avg_t = torch_flip.average_flip(outputs, want)
        avg_n = average_flip({k: v.numpy() for k, v in outputs.items()}, got)
        for key in avg_t:
            np.testing.assert_allclose(avg_n[key], avg_t[key].numpy(), atol=1e-7, rtol=0)


def test_bad_flip_indices_and_unknown_outputs_are_errors() -> None:
    with pytest.raises(ValueError, match="its own inverse"):
        flip_outputs({"coords": np.zeros((1, 3, 2))}, [1, 2, 0])
    with pytest.raises(ValueError, match="does not know how to flip output 'embeddings'"):
        flip_outputs({"embeddings": np.zeros((1, K, 4))}, FLIP)
    with pytest.raises(ValueError, match=r"expected \(B, K = 17"):
        flip_outputs({"heatmaps": np.zeros((1, 5, 4, 4))}, FLIP)
