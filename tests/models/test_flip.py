"""Flip test-time augmentation: every head's outputs map back with the right structure, flipping the
codec targets of mirrored keypoints gives back the original targets (exactly where the
conventions allow it), the documented biases of MSRA heatmaps and SimCC are what they are, and
the NumPy twins equal the torch rules key by key (shift, UDP combined maps, coords shift).

Convention: a horizontal flip maps input pixel x to W - 1 - x and keypoint k's label to
flip_indices[k] (MMPose's ``flip_keypoints``).
"""

from __future__ import annotations

import head_recipes as R  # tests/_helpers (on sys.path by tests/conftest.py)
import numpy as np
import pytest
import torch

from posecore.codecs import build_codec
from posecore.metainfo import load_meta
from posecore.models.builders import HEADS
from posecore.models.flip import average_flip, average_flip_numpy, flip_outputs, flip_outputs_numpy

VARIANTS = {r.id: r for r in R.VARIANTS}
FLIP = R.FLIP_INDICES


def _mirror(keypoints: torch.Tensor, visible: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same instances in the horizontally flipped input: x -> W - 1 - x, labels swapped."""
    kp = keypoints.clone()
    kp[..., 0] = width - 1 - kp[..., 0]
    return kp[:, FLIP], visible[:, FLIP]


# ----------------------------------------------------------------------------- every head


def test_every_head_is_covered():
    # one-stage (multi-level) heads flip-test only their keypoint heatmaps (flip_cell_heatmaps, below)
    assert set(R.SINGLE_LEVEL) <= {r.head for r in VARIANTS.values()}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_flip_back_of_head_outputs_has_the_right_structure(variant):
    recipe = VARIANTS[variant]
    torch.manual_seed(0)
    head, codec = recipe.build()
    head.eval()
    feats = R.features()
    with torch.no_grad():
        outputs = head(feats)
        flipped = head(tuple(f.flip(-1) for f in feats))
    back = flip_outputs(flipped, FLIP, shift_heatmap=recipe.shift_heatmap, input_size=codec.input_size)
    assert set(back) == set(outputs)
    for key, value in back.items():
        assert value.shape == outputs[key].shape and value.dtype == outputs[key].dtype, key
        assert torch.isfinite(value).all(), key
    averaged = average_flip(outputs, back)
    keypoints, scores = head.decode(averaged)
    assert keypoints.shape == (R.BATCH, R.NUM_KEYPOINTS, 2) and scores.shape == (R.BATCH, R.NUM_KEYPOINTS)
    # Without the one-pixel shift, mapping back is its own inverse.
    twice = flip_outputs(flip_outputs(flipped, FLIP, input_size=codec.input_size), FLIP, input_size=codec.input_size)
    for key, value in twice.items():
        torch.testing.assert_close(value, flipped[key], atol=1e-6, rtol=0)


def test_heatmap_head_of_1x1_convs_is_flip_equivariant():
    # No deconvolutions: a 1x1 conv commutes with the flip, so the mapped-back output equals the original.
    codec = build_codec("msra_heatmap", input_size=R.INPUT_SIZE, heatmap_size=R.HEATMAP_SIZE)
    head = HEADS.build("heatmap", in_channels=8, in_stride=4, num_keypoints=5, codec=codec, deconv_out_channels=())
    head.eval()
    x = torch.randn(2, 8, 16, 12)
    with torch.no_grad():
        back = flip_outputs(head((x.flip(-1),)), list(range(5)))
        torch.testing.assert_close(back["heatmaps"], head((x,))["heatmaps"])


def test_integral_regression_head_is_flip_equivariant_at_stride_1():
    # Soft-argmax of a flipped map is (W - 1) / W - x; flip_outputs with input_size W undoes it exactly.
    size = R.HEATMAP_SIZE
    codec = build_codec("integral_regression", input_size=size, heatmap_size=size)
    head = HEADS.build(
        "integral_regression", in_channels=8, in_stride=1, num_keypoints=5, codec=codec, deconv_out_channels=()
    )
    head.eval()
    x = torch.randn(2, 8, size[1], size[0])
    with torch.no_grad():
        back = flip_outputs(head((x.flip(-1),)), list(range(5)), input_size=size)
        original = head((x,))
    for key in ("heatmaps", "coords"):
        torch.testing.assert_close(back[key], original[key], atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------------------- codec targets

#: Codecs whose targets flip exactly under x -> W - 1 - x (see posecore/models/flip.py).
EXACT = {
    "udp_heatmap": ("udp_heatmap", {"input_size": R.INPUT_SIZE, "heatmap_size": R.HEATMAP_SIZE}),
    "udp_heatmap_combined": (
        "udp_heatmap",
        {"input_size": R.INPUT_SIZE, "heatmap_size": R.HEATMAP_SIZE, "heatmap_type": "combined", "blur_kernel_size": 3},
    ),
    "msra_heatmap_stride_1": ("msra_heatmap", {"input_size": R.HEATMAP_SIZE, "heatmap_size": R.HEATMAP_SIZE}),
    "simcc_split_1": ("simcc", {"input_size": R.INPUT_SIZE, "split_ratio": 1.0}),
    "simcc_standard_split_1": ("simcc", {"input_size": R.INPUT_SIZE, "split_ratio": 1.0, "smoothing_type": "standard"}),
    "regression": ("regression", {"input_size": R.INPUT_SIZE}),
    "integral_regression_stride_1": (
        "integral_regression",
        {"input_size": R.HEATMAP_SIZE, "heatmap_size": R.HEATMAP_SIZE},
    ),
}


@pytest.mark.parametrize("case", sorted(EXACT))
def test_flipping_targets_of_mirrored_keypoints_gives_the_targets(case):
    name, options = EXACT[case]
    codec = build_codec(name, **options)
    width, height = codec.input_size
    g = torch.Generator().manual_seed(7)
    keypoints = torch.rand(4, 5, 2, generator=g) * torch.tensor([width - 1.0, height - 1.0])
    visible = (torch.rand(4, 5, generator=g) > 0.2).float()
    targets = codec.encode(keypoints, visible)
    mirrored = codec.encode(*_mirror(keypoints, visible, width))
    back = flip_outputs(mirrored, FLIP, input_size=codec.input_size)
    assert set(back) == set(targets)
    for key, value in targets.items():
        torch.testing.assert_close(back[key], value, atol=1e-5, rtol=0, msg=lambda m, key=key: f"{key}: {m}")


def _grid_keypoints(stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints at heatmap pixels x = stride * i, i in 5..8 of a 12-wide map (3-pixel patches clear of the edges)."""
    g = torch.Generator().manual_seed(3)
    i = torch.randint(5, 9, (3, 5), generator=g).float()
    y = torch.rand(3, 5, generator=g) * (R.INPUT_SIZE[1] - 1)
    return torch.stack((stride * i, y), dim=-1), torch.ones(3, 5)


def test_msra_heatmaps_come_back_one_pixel_left_and_the_shift_puts_them_back():
    # Stride 4: the flipped keypoint sits at W_hm - i - 1/4, rounded to W_hm - i, which maps back to i - 1.
    codec = build_codec("msra_heatmap", input_size=R.INPUT_SIZE, heatmap_size=R.HEATMAP_SIZE, sigma=1.0)
    keypoints, visible = _grid_keypoints(stride=4)
    targets = codec.encode(keypoints, visible)["heatmaps"]
    mirrored = codec.encode(*_mirror(keypoints, visible, R.INPUT_SIZE[0]))
    plain = flip_outputs(mirrored, FLIP)["heatmaps"]
    torch.testing.assert_close(plain[..., :-1], targets[..., 1:])
    shifted = flip_outputs(mirrored, FLIP, shift_heatmap=True)["heatmaps"]
    torch.testing.assert_close(shifted, targets)


def test_simcc_vectors_come_back_split_ratio_minus_one_bins_right():
    codec = build_codec("simcc", input_size=R.INPUT_SIZE, split_ratio=2.0, sigma=2.0)
    g = torch.Generator().manual_seed(5)
    keypoints = 8 + torch.rand(3, 5, 2, generator=g) * torch.tensor([R.INPUT_SIZE[0] - 17.0, R.INPUT_SIZE[1] - 17.0])
    visible = torch.ones(3, 5)
    targets = codec.encode(keypoints, visible)
    back = flip_outputs(codec.encode(*_mirror(keypoints, visible, R.INPUT_SIZE[0])), FLIP)
    torch.testing.assert_close(back["simcc_x"][..., 1:], targets["simcc_x"][..., :-1])
    torch.testing.assert_close(back["simcc_y"], targets["simcc_y"])
    decoded, _ = codec.decode(back)
    torch.testing.assert_close(decoded[..., 0], codec.decode(targets)[0][..., 0] + 0.5)


# ----------------------------------------------------------------------------- hand-checked rules


def test_rules_by_hand():
    heatmaps = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 1, 4)
    assert flip_outputs({"heatmaps": heatmaps}, [0])["heatmaps"].flatten().tolist() == [4, 3, 2, 1]
    # MMPose's shift: heatmaps[..., 1:] = heatmaps[..., :-1]
    assert flip_outputs({"heatmaps": heatmaps}, [0], shift_heatmap=True)["heatmaps"].flatten().tolist() == [4, 4, 3, 2]
    coords = torch.tensor([[[0.25, 0.75], [0.5, 0.1]]])
    out = flip_outputs({"coords": coords, "sigmas": coords + 1}, [1, 0], input_size=(4, 8))
    # x -> 1 - x - 1 / W, then keypoints swapped; y and sigmas only swapped
    torch.testing.assert_close(out["coords"], torch.tensor([[[0.25, 0.1], [0.5, 0.75]]]))
    torch.testing.assert_close(out["sigmas"], torch.tensor([[[1.5, 1.1], [1.25, 1.75]]]))
    torch.testing.assert_close(
        flip_outputs({"coords": coords}, [0, 1])["coords"], torch.tensor([[[0.75, 0.75], [0.5, 0.1]]])
    )
    simcc = {"simcc_x": torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]), "simcc_y": torch.tensor([[[1.0], [2.0]]])}
    out = flip_outputs(simcc, [1, 0])
    assert out["simcc_x"].tolist() == [[[6.0, 5.0, 4.0], [3.0, 2.0, 1.0]]]
    assert out["simcc_y"].tolist() == [[[2.0], [1.0]]]
    # UDP combined: per keypoint (disc, x offset, y offset); x offsets change sign
    combined = torch.tensor([1.0, 0.5, 0.25, 2.0, -0.5, 0.75]).reshape(1, 6, 1, 1)
    assert flip_outputs({"heatmaps": combined}, [1, 0])["heatmaps"].flatten().tolist() == [2, 0.5, 0.75, 1, -0.5, 0.25]


def test_inputs_are_not_modified_and_average_is_the_mean():
    outputs = {"coords": torch.rand(2, 5, 2), "sigmas": torch.rand(2, 5, 2)}
    copy = {k: v.clone() for k, v in outputs.items()}
    back = flip_outputs(outputs, FLIP, input_size=R.INPUT_SIZE)
    for key in outputs:
        torch.testing.assert_close(outputs[key], copy[key])
    averaged = average_flip(outputs, back)
    torch.testing.assert_close(averaged["sigmas"], (outputs["sigmas"] + back["sigmas"]) / 2)


def test_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="own inverse"):
        flip_outputs({"coords": torch.rand(1, 3, 2)}, [1, 2, 0])
    with pytest.raises(ValueError, match="match flip_indices"):
        flip_outputs({"coords": torch.rand(1, 4, 2)}, [0, 2, 1])
    with pytest.raises(ValueError, match="does not know how to flip output 'depth'"):
        flip_outputs({"depth": torch.rand(1, 3)}, [0, 2, 1])
    with pytest.raises(ValueError, match="keys differ"):
        average_flip({"coords": torch.rand(1, 3, 2)}, {"sigmas": torch.rand(1, 3, 2)})


# ----------------------------------------------------------------------------- NumPy twins

COCO_FLIP = load_meta("coco").flip_indices
COCO_K = len(COCO_FLIP)


def _numpy_cases(gen: torch.Generator) -> list[dict[str, torch.Tensor]]:
    k = COCO_K
    return [
        {"heatmaps": torch.rand(3, k, 6, 5, generator=gen)},
        {"heatmaps": torch.rand(3, 3 * k, 6, 5, generator=gen) - 0.5},  # UDP combined
        {"simcc_x": torch.rand(3, k, 10, generator=gen), "simcc_y": torch.rand(3, k, 12, generator=gen)},
        {"coords": torch.rand(3, k, 2, generator=gen), "sigmas": torch.rand(3, k, 2, generator=gen)},
    ]


@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize("input_size", [None, (64, 96)])
def test_numpy_flip_back_equals_torch(shift: bool, input_size: tuple[int, int] | None) -> None:
    for outputs in _numpy_cases(torch.Generator().manual_seed(0)):
        want = flip_outputs(outputs, COCO_FLIP, shift_heatmap=shift, input_size=input_size)
        got = flip_outputs_numpy({k: v.numpy() for k, v in outputs.items()}, COCO_FLIP, shift, input_size)
        assert set(got) == set(want)
        for key in want:
            assert got[key].dtype == np.float32, key
            np.testing.assert_allclose(got[key], want[key].numpy(), atol=1e-7, rtol=0, err_msg=key)
        avg_t = average_flip(outputs, want)
        avg_n = average_flip_numpy({k: v.numpy() for k, v in outputs.items()}, got)
        for key in avg_t:
            np.testing.assert_allclose(avg_n[key], avg_t[key].numpy(), atol=1e-7, rtol=0)


def test_numpy_bad_flip_indices_and_unknown_outputs_are_errors() -> None:
    with pytest.raises(ValueError, match="its own inverse"):
        flip_outputs_numpy({"coords": np.zeros((1, 3, 2))}, [1, 2, 0])
    with pytest.raises(ValueError, match="does not know how to flip output 'embeddings'"):
        flip_outputs_numpy({"embeddings": np.zeros((1, COCO_K, 4))}, COCO_FLIP)
    with pytest.raises(ValueError, match=r"expected \(B, K = 17"):
        flip_outputs_numpy({"heatmaps": np.zeros((1, 5, 4, 4))}, COCO_FLIP)


# ----------------------------------------------------------------------------- one-stage heatmaps


def _cell_maps(x: torch.Tensor, y: torch.Tensor, size: tuple[int, int], stride: int, sigma: float = 1.5):
    """(B, K, h, w) Gaussians whose cell i stands for input pixel stride * i (the one-stage convention)."""
    w, h = size[0] // stride, size[1] // stride
    gx = torch.exp(-((stride * torch.arange(w) - x[..., None]) ** 2) / (2 * (stride * sigma) ** 2))
    gy = torch.exp(-((stride * torch.arange(h) - y[..., None]) ** 2) / (2 * (stride * sigma) ** 2))
    return gy[..., :, None] * gx[..., None, :]


@pytest.mark.parametrize("stride", [2, 4])
def test_cell_heatmaps_of_a_mirrored_image_come_back_on_the_keypoints(stride: int) -> None:
    from posecore.codecs._refine import heatmap_peaks
    from posecore.models.flip import flip_cell_heatmaps

    size = (96, 64)
    g = torch.Generator().manual_seed(7)
    x = 12 + torch.rand(1, 5, generator=g) * (size[0] - 24)
    y = 12 + torch.rand(1, 5, generator=g) * (size[1] - 24)
    plain = _cell_maps(x, y, size, stride)
    mirrored = _cell_maps((size[0] - 1 - x)[:, FLIP], y[:, FLIP], size, stride)
    back = flip_cell_heatmaps(mirrored, FLIP, stride)
    unshifted = mirrored.flip(-1)[:, FLIP]
    for maps, want_err in ((plain, 0.05), (back, 0.1 * stride)):
        peaks, _ = heatmap_peaks(maps[0], stride, 0.1, 1)
        assert (peaks[:, 0, 0] - x[0]).abs().max() < want_err
        assert (peaks[:, 0, 1] - y[0]).abs().max() < 0.05
    # without the resampling the maps would come back (stride - 1) / stride of a cell left
    peaks, _ = heatmap_peaks(unshifted[0], stride, 0.1, 1)
    torch.testing.assert_close(peaks[:, 0, 0] - x[0], torch.full((5,), 1.0 - stride), atol=0.1 * stride, rtol=0)


def test_cell_heatmaps_rule_by_hand_numpy_twin_and_errors() -> None:
    from posecore.models.flip import (
        average_flip_heatmaps,
        average_flip_heatmaps_numpy,
        flip_cell_heatmaps,
        flip_cell_heatmaps_numpy,
    )

    maps = torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]]).reshape(1, 2, 1, 4)
    # mirrored: [4, 3, 2, 1]; channels swapped; then 3/4 of each value comes from its left neighbour
    want = torch.tensor([[40.0, 37.5, 27.5, 17.5], [4.0, 3.75, 2.75, 1.75]]).reshape(1, 2, 1, 4)
    torch.testing.assert_close(flip_cell_heatmaps(maps, [1, 0], 4), want)
    got = flip_cell_heatmaps_numpy(maps.numpy(), [1, 0], 4)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want.numpy())
    torch.testing.assert_close(flip_cell_heatmaps(maps, [0, 1], 1), maps.flip(-1))
    outputs = {"heatmaps": maps, "boxes": torch.ones(1, 3, 4)}
    averaged = average_flip_heatmaps(outputs, maps, [1, 0], 4)
    torch.testing.assert_close(averaged["heatmaps"], (maps + want) / 2)
    assert averaged["boxes"] is outputs["boxes"] and outputs["heatmaps"] is maps, "only the heatmaps change"
    twin = average_flip_heatmaps_numpy({k: v.numpy() for k, v in outputs.items()}, maps.numpy(), [1, 0], 4)
    assert twin["heatmaps"].dtype == np.float32
    np.testing.assert_allclose(twin["heatmaps"], averaged["heatmaps"].numpy())
    with pytest.raises(ValueError, match=r"\(B, K = 3, h, w\)"):
        flip_cell_heatmaps(maps, [0, 1, 2], 4)
    with pytest.raises(ValueError, match="its own inverse"):
        flip_cell_heatmaps_numpy(maps.numpy(), [1, 1], 4)


def test_onestage_flip_test_averages_the_heatmaps_and_finds_people_on_the_plain_image() -> None:
    from posecore.codecs.yoloxpose import HEATMAP_OUTPUT_KEY
    from posecore.metainfo import load_meta
    from posecore.models.estimator import ModelSpec, build_estimator
    from posecore.models.flip import flip_cell_heatmaps

    torch.manual_seed(0)
    meta = load_meta("coco")
    model = build_estimator(ModelSpec.resolve("yoloxpose-lite0", input_size=(64, 64)), meta, pretrained=False).eval()
    with torch.no_grad():
        model.head.heatmap_convs[-1].bias.fill_(0.0)  # peaks above peak_thr, so snapping happens
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        plain, mirrored = model(x), model(x.flip(-1))
        averaged = model.heatmaps_flip_averaged(x)
    assert model.has_flip_test and set(averaged) == set(plain)
    for key in plain.keys() - {HEATMAP_OUTPUT_KEY}:
        torch.testing.assert_close(averaged[key], plain[key], atol=1e-5, rtol=1e-5)
    back = flip_cell_heatmaps(mirrored[HEATMAP_OUTPUT_KEY], meta.flip_indices, model.codec.heatmap_stride)
    want = (plain[HEATMAP_OUTPUT_KEY] + back) / 2
    torch.testing.assert_close(averaged[HEATMAP_OUTPUT_KEY], want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(want, plain[HEATMAP_OUTPUT_KEY], atol=1e-3), "the mirrored maps must count"
    flipped, unflipped = model.predict(x, flip_test=True), model.predict(x, flip_test=False)
    for a, b in zip(flipped, unflipped, strict=True):
        torch.testing.assert_close(a.scores, b.scores)
        torch.testing.assert_close(a.boxes, b.boxes)

    spec = ModelSpec.resolve("yoloxpose-lite0", input_size=(64, 64), codec={"refine": "none"})
    bare = build_estimator(spec, meta, pretrained=False).eval()
    assert not bare.has_flip_test, "a one-stage model without heatmaps has nothing to flip-test"
    for a, b in zip(bare.predict(x, flip_test=True), bare.predict(x, flip_test=False), strict=True):
        torch.testing.assert_close(a.keypoints, b.keypoints)
