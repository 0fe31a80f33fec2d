"""Every codec's ``decode_numpy`` equals its ``decode``, variant by variant, on random and encoded outputs;
:func:`posecore.codecs.numpy_decoder` rebuilds it from a bundle's codec config.

Top-down codecs decode to (keypoints, scores); one-stage codecs (``ONESTAGE_VARIANTS``) decode dense
outputs to one ``Poses`` per image, compared field by field."""

from __future__ import annotations

import dataclasses

import numpy as np
import onestage_outputs as oso  # tests/_helpers (put on sys.path by tests/conftest.py)
import pytest
import torch

from posecore.codecs import Codec, OneStageCodec, Poses, available_codecs, build_codec, codec_class, numpy_decoder

INPUT_SIZE = (64, 96)
HEATMAP_SIZE = (16, 24)
K = 17
N = 6

# (id, codec name, codec kwargs) - every registered top-down codec, and every decode option it has.
VARIANTS: list[tuple[str, str, dict[str, object]]] = [
    ("msra", "msra_heatmap", {"heatmap_size": HEATMAP_SIZE}),
    ("msra_dark", "msra_heatmap", {"heatmap_size": HEATMAP_SIZE, "use_dark": True}),
    ("msra_dark_ks7", "msra_heatmap", {"heatmap_size": HEATMAP_SIZE, "use_dark": True, "blur_kernel_size": 7}),
    ("udp", "udp_heatmap", {"heatmap_size": HEATMAP_SIZE}),
    ("udp_combined", "udp_heatmap", {"heatmap_size": HEATMAP_SIZE, "heatmap_type": "combined", "blur_kernel_size": 5}),
    ("simcc", "simcc", {"sigma": (2.45, 2.83), "normalize": False}),
    ("simcc_dark", "simcc", {"sigma": (4.9, 5.66), "use_dark": True}),
    ("simcc_r3", "simcc", {"split_ratio": 3.0}),
    ("regression", "regression", {}),
    ("integral_regression", "integral_regression", {"heatmap_size": HEATMAP_SIZE}),
]
# The same for one-stage codecs.
ONESTAGE_VARIANTS: list[tuple[str, str, dict[str, object]]] = [
    ("yoloxpose_oks", "yoloxpose", {"nms_thr": 0.05, "max_detections": 100}),  # random people: low OKS
    ("yoloxpose_box", "yoloxpose", {"nms_mode": "box", "nms_thr": 0.3}),
    ("yoloxpose_sigmas", "yoloxpose", {"sigmas": tuple(0.02 + 0.005 * k for k in range(K)), "max_detections": 5}),
]
params = pytest.mark.parametrize(("name", "kwargs"), [pytest.param(n, k, id=i) for i, n, k in VARIANTS])
onestage_params = pytest.mark.parametrize(
    ("name", "kwargs"), [pytest.param(n, k, id=i) for i, n, k in ONESTAGE_VARIANTS]
)
POSE_FIELDS = ("boxes", "scores", "keypoints", "keypoint_scores")


def _bundle_config(codec: Codec, name: str) -> dict[str, object]:
    """What an exporter writes: {"name": ..., every field} as JSON-able values."""
    cfg = {"name": name}
    for f in dataclasses.fields(codec):
        value = getattr(codec, f.name)
        cfg[f.name] = list(value) if isinstance(value, tuple) else value
    return cfg


def _decode_both(codec: Codec, name: str, outputs: dict[str, torch.Tensor]) -> tuple[np.ndarray, ...]:
    # decode_numpy computes in float64 (see posecore/codecs/base.py: Codec), so the torch codec
    # gets the same float32 values as float64 (it then computes in float64 too).
    kp_t, sc_t = codec.decode({k: v.double() for k, v in outputs.items()})
    decoder = numpy_decoder(_bundle_config(codec, name))
    kp_n, sc_n = decoder({k: v.numpy() for k, v in outputs.items()})
    assert kp_n.dtype == np.float32 and sc_n.dtype == np.float32
    assert kp_n.shape == tuple(kp_t.shape) and sc_n.shape == tuple(sc_t.shape)
    return kp_t.numpy(), sc_t.numpy(), kp_n, sc_n


def test_every_codec_has_a_decoder_and_a_variant() -> None:
    assert all(codec_class(n).decode_numpy is not Codec.decode_numpy for n in available_codecs())
    assert all(codec_class(n).decode_numpy is not OneStageCodec.decode_numpy for n in available_codecs())
    onestage = {n for n in available_codecs() if codec_class(n).task == "onestage"}
    assert {n for _, n, _ in VARIANTS} == set(available_codecs()) - onestage
    assert {n for _, n, _ in ONESTAGE_VARIANTS} == onestage


@params
def test_random_outputs_decode_like_torch(name: str, kwargs: dict[str, object]) -> None:
    codec = build_codec(name, input_size=INPUT_SIZE, **kwargs)
    gen = torch.Generator().manual_seed(0)
    outputs = {}
    for key, shape in codec.target_shapes(K).items():
        t = torch.rand((N, *shape), generator=gen)
        if key == "coords":
            t = t * 1.2 - 0.1
        elif key in ("heatmaps", "simcc_x", "simcc_y"):
            t = t - 0.2  # some all-below-zero spots exercise the "-1 where <= 0" rule
        outputs[key] = t
    if name == "regression":
        outputs["sigmas"] = torch.rand((N, K, 2), generator=gen)  # RLE
    kp_t, sc_t, kp_n, sc_n = _decode_both(codec, name, outputs)
    np.testing.assert_allclose(kp_n, kp_t, atol=1e-4, rtol=0)
    np.testing.assert_allclose(sc_n, sc_t, atol=1e-6, rtol=0)


@params
def test_encoded_outputs_decode_like_torch(name: str, kwargs: dict[str, object]) -> None:
    codec = build_codec(name, input_size=INPUT_SIZE, **kwargs)
    gen = torch.Generator().manual_seed(1)
    keypoints = torch.rand((N, K, 2), generator=gen) * (torch.tensor(INPUT_SIZE) - 1)
    visible = (torch.rand((N, K), generator=gen) > 0.2).float()
    targets = codec.encode(keypoints, visible)
    outputs = {}
    for key, value in targets.items():
        if key != "keypoint_weights":
            noise = torch.rand(value.shape, generator=gen)
            outputs[key] = value + 0.01 * noise
    kp_t, sc_t, kp_n, sc_n = _decode_both(codec, name, outputs)
    np.testing.assert_allclose(kp_n, kp_t, atol=1e-4, rtol=0)
    np.testing.assert_allclose(sc_n, sc_t, atol=1e-6, rtol=0)


def _decode_both_onestage(codec: Codec, name: str, outputs: dict[str, torch.Tensor]) -> None:
    """decode (fed float64, as above) and the bundle config's decode_numpy give the same people."""
    found_t = codec.decode({k: v.double() for k, v in outputs.items()})
    found_n = numpy_decoder(_bundle_config(codec, name))({k: v.numpy() for k, v in outputs.items()})
    assert len(found_n) == len(found_t) == outputs["obj_logits"].shape[0]
    for pt, pn in zip(found_t, found_n, strict=True):
        assert isinstance(pn, Poses) and len(pn) == len(pt)
        for f in POSE_FIELDS:
            got, want = getattr(pn, f), getattr(pt, f).numpy()
            assert got.dtype == np.float32 and got.shape == want.shape, f
            np.testing.assert_allclose(got, want, atol=1e-6, rtol=0, err_msg=f)


@onestage_params
def test_onestage_random_outputs_decode_like_torch(name: str, kwargs: dict[str, object]) -> None:
    codec = build_codec(name, input_size=INPUT_SIZE, **kwargs)
    gen = torch.Generator().manual_seed(0)
    a = oso.num_anchors(INPUT_SIZE)
    outputs = {
        "obj_logits": torch.randn(N, a, generator=gen) * 3,  # about half the anchors above 0.1
        "boxes": torch.rand(N, a, 4, generator=gen).sort(dim=-1).values * 60,  # x1 <= y1 <= x2 <= y2
        "keypoints": torch.rand(N, a, K, 2, generator=gen) * torch.tensor(INPUT_SIZE),
        "vis_logits": torch.randn(N, a, K, generator=gen) * 3,
    }
    outputs["obj_logits"][-1] = -10.0  # an image with nobody
    _decode_both_onestage(codec, name, outputs)


@onestage_params
def test_onestage_encoded_outputs_decode_like_torch(name: str, kwargs: dict[str, object]) -> None:
    codec = build_codec(name, input_size=INPUT_SIZE, **kwargs)
    gen = torch.Generator().manual_seed(1)
    truth = [codec.encode(*oso.separated_people(n, K, INPUT_SIZE, gen)) for n in (3, 0, 8)]
    outputs = oso.dense_outputs(truth, INPUT_SIZE, gen)
    outputs = {k: v + 0.01 * torch.rand(v.shape, generator=gen) for k, v in outputs.items()}
    _decode_both_onestage(codec, name, outputs)


def test_unknown_codec_and_missing_size_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="no numpy decoder for codec 'nope'.*simcc"):
        numpy_decoder({"name": "nope"}, INPUT_SIZE)
    with pytest.raises(ValueError, match="heatmap_size"):
        numpy_decoder({"name": "msra_heatmap"}, INPUT_SIZE)
    with pytest.raises(ValueError, match="input_size"):
        numpy_decoder({"name": "simcc"})


def test_wrong_output_shape_names_the_output() -> None:
    decoder = numpy_decoder({"name": "simcc", "split_ratio": 2.0}, INPUT_SIZE)
    with pytest.raises(ValueError, match="'simcc_x' must have shape"):
        decoder({"simcc_x": np.zeros((1, K, 5), np.float32), "simcc_y": np.zeros((1, K, 192), np.float32)})
    with pytest.raises(ValueError, match="needs model output 'simcc_y'"):
        decoder({"simcc_x": np.zeros((1, K, 128), np.float32)})


def test_bundle_config_keys_the_codec_does_not_have_are_ignored() -> None:
    decoder = numpy_decoder({"name": "regression", "input_size": [64, 96], "from_a_later_version": 1})
    kp, sc = decoder({"coords": np.full((1, K, 2), 0.5, np.float32)})
    np.testing.assert_array_equal(kp[0, 0], [32.0, 48.0])
    np.testing.assert_array_equal(sc, 1.0)
