"""Registry-driven tests: every registered codec (and the variants below) gets the same checks.

Top-down codecs (``task == "topdown"``, ``VARIANTS``) encode crops' keypoints into targets that
``decode`` reads back; one-stage codecs (``"onestage"``, ``ONESTAGE_VARIANTS``) encode one image's
people into ground truth, and ``decode`` reads the head's dense outputs (here made by
``tests/_helpers/onestage_outputs.py`` from that ground truth) into one ``Poses`` per image.
Over 400 lines: both tasks stay in one module so that one test checks that every registered
codec has its variants, whichever its task.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import onestage_outputs as oso  # tests/_helpers (put on sys.path by tests/conftest.py)
import pytest
import torch

from posecore.codecs import (
    TASKS,
    Codec,
    OneStageCodec,
    Poses,
    available_codecs,
    build_codec,
    codec_class,
    register_codec,
)

INPUT_SIZE = (192, 256)
HEATMAP_SIZE = (48, 64)

# Default kwargs per registered codec: a new codec must add itself here.
DEFAULTS: dict[str, dict[str, object]] = {
    "msra_heatmap": {"input_size": INPUT_SIZE, "heatmap_size": HEATMAP_SIZE, "sigma": 2.0},
    "udp_heatmap": {"input_size": INPUT_SIZE, "heatmap_size": HEATMAP_SIZE, "sigma": 2.0},
    "simcc": {"input_size": INPUT_SIZE, "split_ratio": 2.0},
    "regression": {"input_size": INPUT_SIZE},
    "integral_regression": {"input_size": INPUT_SIZE, "heatmap_size": HEATMAP_SIZE, "sigma": 2.0},
    "yoloxpose": {"input_size": INPUT_SIZE},
}

# Top-down codecs: (id, registered name, overrides, max mean round-trip error in input pixels over
# visible keypoints).
# The bounds are what MMPose 1.x's codecs reach on this kind of data (see the golden tests and the
# report): MSRA rounds to the heatmap grid (E|err| = 4 px * 0.383 for uniform positions), SimCC to
# half a pixel (0.5 px * 0.383). UDP's bound is tighter than MMPose's ~0.7 px because our decode is
# the exact inverse of the encode (see UDPHeatmap). The combined UDP maps are lossy by design.
VARIANTS: list[tuple[str, str, dict[str, object], float]] = [
    ("msra", "msra_heatmap", {}, 1.6),
    ("msra_dark", "msra_heatmap", {"use_dark": True}, 0.05),
    ("udp", "udp_heatmap", {}, 0.05),
    ("udp_combined", "udp_heatmap", {"heatmap_type": "combined"}, 1.0),
    ("simcc", "simcc", {}, 0.2),
    ("simcc_rtmpose", "simcc", {"sigma": (4.9, 5.66)}, 0.2),
    ("simcc_dark", "simcc", {"use_dark": True}, 0.2),
    ("simcc_standard", "simcc", {"smoothing_type": "standard", "label_smooth_weight": 0.1}, 0.2),
    ("regression", "regression", {}, 1e-4),
    ("integral_regression", "integral_regression", {}, 1e-4),
]

# One-stage codecs: (id, registered name, overrides), every decode option. Their round trip is exact.
ONESTAGE_VARIANTS: list[tuple[str, str, dict[str, object]]] = [
    ("yoloxpose_oks", "yoloxpose", {}),
    ("yoloxpose_box", "yoloxpose", {"nms_mode": "box"}),
    ("yoloxpose_sigmas", "yoloxpose", {"sigmas": (0.05,) * 17, "score_thr": 0.01, "max_detections": 100}),
]


def make(name: str, **overrides: object) -> Codec:
    return build_codec(name, **{**DEFAULTS[name], **overrides})


variant_params = pytest.mark.parametrize(
    ("name", "overrides", "bound"), [pytest.param(n, o, b, id=i) for i, n, o, b in VARIANTS]
)
onestage_params = pytest.mark.parametrize(
    ("name", "overrides"), [pytest.param(n, o, id=i) for i, n, o in ONESTAGE_VARIANTS]
)
codec_params = pytest.mark.parametrize("name", available_codecs())


def _of_task(task: str) -> set[str]:
    return {n for n in available_codecs() if codec_class(n).task == task}


def test_every_registered_codec_has_defaults_and_a_variant() -> None:
    assert set(DEFAULTS) == set(available_codecs()), "add the new codec to DEFAULTS and VARIANTS"
    assert {codec_class(n).task for n in available_codecs()} <= set(TASKS)
    assert {n for _, n, _, _ in VARIANTS} == _of_task("topdown"), "a top-down codec goes in VARIANTS"
    assert {n for _, n, _ in ONESTAGE_VARIANTS} == _of_task("onestage"), "a one-stage codec goes in ONESTAGE_VARIANTS"
    assert all(issubclass(codec_class(n), OneStageCodec) for n in _of_task("onestage"))


# --------------------------------------------------------------------------- round trip


def _mean_error(codec: Codec, keypoints: torch.Tensor, visible: torch.Tensor) -> float:
    targets = codec.encode(keypoints, visible)
    mask = visible > 0
    # Every visible keypoint lies inside the input, so it must be trained on.
    assert bool((targets["keypoint_weights"][mask] == 1).all())
    decoded, scores = codec.decode(targets)
    assert decoded.shape == keypoints.shape and scores.shape == visible.shape
    return (decoded - keypoints).norm(dim=-1)[mask].mean().item()


@pytest.mark.real_data
@variant_params
def test_round_trip_on_real_coco_instances(coco_instances, name: str, overrides: dict, bound: float) -> None:
    keypoints, visible = coco_instances
    assert int(visible.sum()) > 100
    assert _mean_error(make(name, **overrides), keypoints, visible) <= bound


@variant_params
def test_round_trip_on_random_instances(random_instances, name: str, overrides: dict, bound: float) -> None:
    keypoints, visible = random_instances
    assert _mean_error(make(name, **overrides), keypoints, visible) <= bound


# --------------------------------------------------------------------------- weights and targets


@variant_params
def test_invisible_and_outside_keypoints_get_weight_zero(name: str, overrides: dict, bound: float) -> None:
    codec = make(name, **overrides)
    w, h = INPUT_SIZE
    keypoints = torch.tensor([[[96.0, 128.0], [50.0, 60.0], [-100.0, 128.0], [96.0, 10 * h], [5 * w, -5.0 * h]]])
    visible = torch.tensor([[1.0, 0.0, 1.0, 1.0, 1.0]])
    targets = codec.encode(keypoints, visible)
    assert targets["keypoint_weights"].tolist() == [[1.0, 0.0, 0.0, 0.0, 0.0]]
    # Nothing is drawn for an invisible keypoint.
    # (Channels are keypoint-major, also for UDP's 3K combined maps.)
    for key in codec.target_keys:
        if key != "coords":
            assert float(targets[key].reshape(1, 5, -1)[0, 1].abs().sum()) == 0.0


@variant_params
def test_non_finite_keypoints_count_as_missing(name: str, overrides: dict, bound: float) -> None:
    codec = make(name, **overrides)
    keypoints = torch.tensor([[[96.0, 128.0], [float("nan"), 10.0], [float("inf"), 5.0]]])
    targets = codec.encode(keypoints, torch.ones(1, 3))
    assert targets["keypoint_weights"].tolist() == [[1.0, 0.0, 0.0]]
    assert all(bool(t.isfinite().all()) for t in targets.values())


@variant_params
def test_targets_match_target_keys_and_shapes(name: str, overrides: dict, bound: float) -> None:
    codec = make(name, **overrides)
    keypoints = torch.rand(3, 17, 2, dtype=torch.float64) * torch.tensor(INPUT_SIZE)
    targets = codec.encode(keypoints, torch.ones(3, 17))
    assert set(targets) == {*codec.target_keys, "keypoint_weights"}
    assert targets["keypoint_weights"].shape == (3, 17)
    shapes = codec.target_shapes(17)
    assert set(shapes) == set(codec.target_keys)
    for key, tensor in targets.items():
        assert tensor.dtype == torch.float32, key
        if key != "keypoint_weights":
            assert tuple(tensor.shape) == (3, *shapes[key]), key


@variant_params
def test_empty_batch(name: str, overrides: dict, bound: float) -> None:
    codec = make(name, **overrides)
    targets = codec.encode(torch.zeros(0, 17, 2), torch.zeros(0, 17))
    keypoints, scores = codec.decode(targets)
    assert keypoints.shape == (0, 17, 2) and scores.shape == (0, 17)


# --------------------------------------------------------------------------- batching


def _noisy(targets: dict[str, torch.Tensor], g: torch.Generator) -> dict[str, torch.Tensor]:
    """Head-like outputs: the targets plus a little positive noise."""
    return {k: v + 0.01 * torch.rand(v.shape, generator=g) for k, v in targets.items() if k != "keypoint_weights"}


@variant_params
def test_batch_equals_per_instance(random_instances, name: str, overrides: dict, bound: float) -> None:
    codec = make(name, **overrides)
    keypoints, visible = random_instances[0][:64], random_instances[1][:64]
    batched = codec.encode(keypoints, visible)
    singles = [codec.encode(keypoints[i : i + 1], visible[i : i + 1]) for i in range(64)]
    for key, tensor in batched.items():
        torch.testing.assert_close(tensor, torch.cat([s[key] for s in singles]), rtol=0, atol=1e-6)

    outputs = _noisy(batched, torch.Generator().manual_seed(0))
    kp, scores = codec.decode(outputs)
    for i in range(64):
        kp_i, scores_i = codec.decode({k: v[i : i + 1] for k, v in outputs.items()})
        torch.testing.assert_close(kp_i, kp[i : i + 1], rtol=0, atol=1e-4)
        torch.testing.assert_close(scores_i, scores[i : i + 1], rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- device and dtype


def _check_device_roundtrip(codec: Codec, device: torch.device, keypoints: torch.Tensor, visible: torch.Tensor):
    targets = codec.encode(keypoints.to(device), visible.to(device))
    for key, tensor in targets.items():
        assert tensor.device.type == device.type and tensor.dtype == torch.float32, key
    decoded, scores = codec.decode(targets)
    assert decoded.device.type == device.type and decoded.dtype == torch.float32
    assert scores.device.type == device.type and scores.dtype == torch.float32
    return targets, decoded, scores


@variant_params
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_dtypes_cpu(random_instances, name: str, overrides: dict, bound: float, dtype: torch.dtype) -> None:
    codec = make(name, **overrides)
    keypoints, visible = random_instances[0][:8], random_instances[1][:8]
    # Encode takes any float keypoints and returns float32 targets.
    targets = codec.encode(keypoints.to(torch.float64), visible.to(torch.float64))
    reference = codec.encode(keypoints, visible)
    for key in targets:
        assert targets[key].dtype == torch.float32
        torch.testing.assert_close(targets[key], reference[key], rtol=0, atol=1e-5)
    # Decode takes the head's dtype (AMP gives float16 / bfloat16) and returns float32.
    decoded, scores = codec.decode({k: v.to(dtype) for k, v in reference.items()})
    assert decoded.dtype == torch.float32 and scores.dtype == torch.float32
    assert decoded.shape == keypoints.shape


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@variant_params
def test_cuda_matches_cpu(random_instances, name: str, overrides: dict, bound: float) -> None:
    codec = make(name, **overrides)
    keypoints, visible = random_instances[0][:64], random_instances[1][:64]
    cpu_targets, cpu_kp, cpu_scores = _check_device_roundtrip(codec, torch.device("cpu"), keypoints, visible)
    gpu_targets, gpu_kp, gpu_scores = _check_device_roundtrip(codec, torch.device("cuda"), keypoints, visible)
    for key in cpu_targets:
        torch.testing.assert_close(gpu_targets[key].cpu(), cpu_targets[key], rtol=0, atol=1e-5)
    torch.testing.assert_close(gpu_kp.cpu(), cpu_kp, rtol=0, atol=1e-3)
    torch.testing.assert_close(gpu_scores.cpu(), cpu_scores, rtol=0, atol=1e-5)


# --------------------------------------------------------------------------- one-stage codecs

K = 17
POSE_FIELDS = ("boxes", "scores", "keypoints", "keypoint_scores")


def _make_onestage(name: str, overrides: dict) -> OneStageCodec:
    codec = make(name, **overrides)
    assert isinstance(codec, OneStageCodec)
    return codec


def _images(codec: OneStageCodec, counts: list[int], seed: int) -> list[dict[str, torch.Tensor]]:
    """Ground truth of one image per count: that many people who never overlap."""
    gen = torch.Generator().manual_seed(seed)
    return [codec.encode(*oso.separated_people(n, K, INPUT_SIZE, gen)) for n in counts]


def _assert_same_poses(a: Poses, b: Poses, atol: float = 1e-6) -> None:
    for f in POSE_FIELDS:
        torch.testing.assert_close(getattr(a, f), getattr(b, f), rtol=0, atol=atol, msg=f)


@onestage_params
def test_onestage_round_trip_finds_exactly_the_people(name: str, overrides: dict) -> None:
    codec = _make_onestage(name, overrides)
    truth = _images(codec, [5, 0, 9, 1], seed=0)
    found = codec.decode(oso.dense_outputs(truth, INPUT_SIZE, torch.Generator().manual_seed(1)))
    assert len(found) == len(truth)
    for poses, gt in zip(found, truth, strict=True):
        n = gt["boxes"].shape[0]
        assert isinstance(poses, Poses) and len(poses) == n
        assert (gt["areas"] > 0).all()  # people with a box: their duplicates are suppressed
        # Within 1 px asked; the best anchor holds the exact ground truth.
        torch.testing.assert_close(poses.boxes, gt["boxes"], rtol=0, atol=1e-4)
        torch.testing.assert_close(poses.keypoints, gt["keypoints"], rtol=0, atol=1e-4)
        want = torch.sigmoid(torch.tensor([oso.person_logit(i) for i in range(n)]))
        torch.testing.assert_close(poses.scores, want, rtol=0, atol=1e-6)  # best first
        assert bool(((poses.keypoint_scores > 0.5) == (gt["visible"] > 0)).all())


@onestage_params
def test_onestage_targets_match_target_keys_and_shapes(name: str, overrides: dict) -> None:
    codec = _make_onestage(name, overrides)
    keypoints = torch.rand(3, K, 2, dtype=torch.float64) * torch.tensor(INPUT_SIZE)
    for boxes in (None, torch.tensor([[0.0, 0, 10, 10], [5, 5, 50, 60], [1, 2, 3, 4]])):
        targets = codec.encode(keypoints, torch.ones(3, K), boxes)
        assert set(targets) == {*codec.target_keys, "keypoint_weights"}
        assert targets["keypoint_weights"].shape == (3, K)
        shapes = codec.target_shapes(K)
        assert set(shapes) == set(codec.target_keys)
        for key, tensor in targets.items():
            assert tensor.dtype == torch.float32, key
            if key != "keypoint_weights":
                assert tuple(tensor.shape) == (3, *shapes[key]), key


@onestage_params
def test_onestage_invisible_and_outside_keypoints_get_weight_zero(name: str, overrides: dict) -> None:
    codec = _make_onestage(name, overrides)
    w, h = INPUT_SIZE
    keypoints = torch.tensor([[[96.0, 128.0], [50.0, 60.0], [-100.0, 128.0], [96.0, 10 * h], [5 * w, -5.0 * h]]])
    targets = codec.encode(keypoints, torch.tensor([[1.0, 0.0, 1.0, 1.0, 1.0]]))
    assert targets["keypoint_weights"].tolist() == [[1.0, 0.0, 0.0, 0.0, 0.0]]
    assert targets["visible"].tolist() == [[1.0, 0.0, 0.0, 0.0, 0.0]]


@onestage_params
def test_onestage_non_finite_keypoints_count_as_missing(name: str, overrides: dict) -> None:
    codec = _make_onestage(name, overrides)
    keypoints = torch.tensor([[[96.0, 128.0], [float("nan"), 10.0], [float("inf"), 5.0], [10.0, 20.0]]])
    targets = codec.encode(keypoints, torch.ones(1, 4))
    assert targets["keypoint_weights"].tolist() == [[1.0, 0.0, 0.0, 1.0]]
    assert all(bool(t.isfinite().all()) for t in targets.values())


@onestage_params
def test_onestage_nobody(name: str, overrides: dict) -> None:
    codec = _make_onestage(name, overrides)
    targets = codec.encode(torch.zeros(0, K, 2), torch.zeros(0, K))
    assert {k: tuple(v.shape) for k, v in targets.items()} == {
        k: (0, *s) for k, s in {**codec.target_shapes(K), "keypoint_weights": (K,)}.items()
    }
    outputs = oso.dense_outputs([targets, targets], INPUT_SIZE, torch.Generator().manual_seed(2))
    for poses in codec.decode(outputs):
        assert len(poses) == 0
        assert [tuple(getattr(poses, f).shape) for f in POSE_FIELDS] == [(0, 4), (0,), (0, K, 2), (0, K)]


@onestage_params
def test_onestage_batch_equals_per_image(name: str, overrides: dict) -> None:
    codec = _make_onestage(name, overrides)
    outputs = oso.dense_outputs(_images(codec, [3, 6, 0, 2], seed=3), INPUT_SIZE, torch.Generator().manual_seed(4))
    outputs["obj_logits"] += torch.randn(outputs["obj_logits"].shape, generator=torch.Generator().manual_seed(5))
    batched = codec.decode(outputs)
    for b, poses in enumerate(batched):
        (single,) = codec.decode({k: v[b : b + 1] for k, v in outputs.items()})
        _assert_same_poses(single, poses)


@onestage_params
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_onestage_dtypes_cpu(name: str, overrides: dict, dtype: torch.dtype) -> None:
    codec = _make_onestage(name, overrides)
    gen = torch.Generator().manual_seed(6)
    keypoints, visible = oso.separated_people(4, K, INPUT_SIZE, gen)
    # Encode takes any float keypoints and returns float32 targets.
    targets = codec.encode(keypoints.to(torch.float64), visible.to(torch.float64))
    reference = codec.encode(keypoints, visible)
    for key in targets:
        assert targets[key].dtype == torch.float32
        torch.testing.assert_close(targets[key], reference[key], rtol=0, atol=1e-5)
    # Decode takes the head's dtype (AMP gives float16 / bfloat16) and returns float32.
    outputs = oso.dense_outputs([reference], INPUT_SIZE, gen)
    (poses,) = codec.decode({k: v.to(dtype) for k, v in outputs.items()})
    assert len(poses) == 4 and all(getattr(poses, f).dtype == torch.float32 for f in POSE_FIELDS)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@onestage_params
def test_onestage_cuda_matches_cpu(name: str, overrides: dict) -> None:
    codec = _make_onestage(name, overrides)
    gen = torch.Generator().manual_seed(7)
    keypoints, visible = oso.separated_people(6, K, INPUT_SIZE, gen)
    cpu = codec.encode(keypoints, visible)
    gpu = codec.encode(keypoints.cuda(), visible.cuda())
    for key in cpu:
        assert gpu[key].device.type == "cuda" and gpu[key].dtype == torch.float32
        torch.testing.assert_close(gpu[key].cpu(), cpu[key], rtol=0, atol=1e-5)
    outputs = oso.dense_outputs([cpu, cpu], INPUT_SIZE, gen)
    outputs["obj_logits"] += torch.randn(outputs["obj_logits"].shape, generator=gen)
    with torch.no_grad():
        found = codec.decode({k: v.cuda() for k, v in outputs.items()})
    for poses_gpu, poses_cpu in zip(found, codec.decode(outputs), strict=True):
        assert poses_gpu.boxes.device.type == "cuda"
        _assert_same_poses(Poses(*(getattr(poses_gpu, f).cpu() for f in POSE_FIELDS)), poses_cpu, atol=1e-4)


# --------------------------------------------------------------------------- input checks


@codec_params
def test_encode_rejects_bad_shapes(name: str) -> None:
    codec = make(name)
    with pytest.raises(ValueError, match=r"\(N, K, 2\)"):
        codec.encode(torch.zeros(2, 17, 3), torch.ones(2, 17))
    with pytest.raises(ValueError, match="visible"):
        codec.encode(torch.zeros(2, 17, 2), torch.ones(2, 16))


@codec_params
def test_decode_names_the_missing_output(name: str) -> None:
    codec = make(name)
    with pytest.raises(KeyError, match="decode needs output"):
        codec.decode({})


@codec_params
def test_decode_rejects_wrong_sizes(name: str) -> None:
    codec = make(name)
    targets = codec.encode(torch.zeros(1, 3, 2), torch.ones(1, 3))
    if codec.task == "onestage":
        targets = oso.dense_outputs([targets], INPUT_SIZE, torch.Generator().manual_seed(0))
    bad = {k: torch.cat([v, v], dim=-1) for k, v in targets.items() if k != "keypoint_weights"}
    with pytest.raises(ValueError, match="must have shape"):
        codec.decode(bad)


# --------------------------------------------------------------------------- registry


def test_unknown_codec_lists_the_available_ones() -> None:
    with pytest.raises(ValueError, match="unknown codec 'msra'") as err:
        build_codec("msra")
    for name in available_codecs():
        assert name in str(err.value)


@codec_params
def test_bad_kwarg_names_the_field(name: str) -> None:
    with pytest.raises(ValueError, match="no field.*heatmap_sise") as err:
        build_codec(name, **DEFAULTS[name], heatmap_sise=(1, 2))
    assert "input_size" in str(err.value)


def test_missing_required_field_is_named() -> None:
    with pytest.raises(ValueError, match="needs field.*heatmap_size"):
        build_codec("msra_heatmap", input_size=INPUT_SIZE)


@codec_params
def test_codecs_are_frozen_typed_dataclasses(name: str) -> None:
    codec = make(name)
    assert dataclasses.is_dataclass(codec) and isinstance(codec, Codec)
    with pytest.raises(dataclasses.FrozenInstanceError):
        codec.input_size = (1, 1)  # type: ignore[misc]
    assert codec == make(name)  # value semantics: equal configs, equal codecs
    assert isinstance(codec.input_size, tuple)


@pytest.mark.parametrize("bad", [(192,), (192, 0), (192.0, 256), "192x256"])
@codec_params
def test_bad_input_size_says_what_is_expected(name: str, bad: object) -> None:
    with pytest.raises(ValueError, match=r"input_size must be a \(W, H\) pair"):
        build_codec(name, **{**DEFAULTS[name], "input_size": bad})


def test_lists_are_accepted_as_sizes() -> None:
    codec = build_codec("msra_heatmap", input_size=[192, 256], heatmap_size=[48, 64])
    assert codec.input_size == (192, 256) and codec.heatmap_size == (48, 64)


def test_register_codec_rejects_non_dataclasses_and_taken_names() -> None:
    with pytest.raises(TypeError, match="dataclass"):
        register_codec("not_a_dataclass")(type("X", (), {}))  # type: ignore[arg-type]
    taken: Callable = register_codec("msra_heatmap")

    @dataclasses.dataclass(frozen=True)
    class Other(Codec):
        target_keys = ("heatmaps",)

        def encode(self, keypoints, visible):  # pragma: no cover - never called
            raise NotImplementedError

        def decode(self, outputs):  # pragma: no cover
            raise NotImplementedError

        def target_shapes(self, num_keypoints):  # pragma: no cover
            raise NotImplementedError

    with pytest.raises(ValueError, match="already taken"):
        taken(Other)
    assert "Other" not in {type(make(n)).__name__ for n in available_codecs()}
