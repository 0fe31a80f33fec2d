"""Every registered transform, run on small batches of each layout it accepts: the same contract for all."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch

from posecore.metainfo import DatasetMeta
from posecore.transforms import (
    KeyedRNG,
    available_transforms,
    build_transform,
    register_transform,
    transform_batch_kinds,
    transform_fields,
)

K, N, B = 17, 3, 2
SRC = (80, 60)  # (W, H) of the source images
INPUT = (64, 64)


def _context(meta: DatasetMeta, codec: Any) -> dict[str, Any]:
    """Everything a transform may need from the dataset and the model; each takes what its fields name."""
    return {
        "flip_indices": tuple(meta.flip_indices),
        "upper_body_ids": tuple(meta.upper_body_ids),
        "lower_body_ids": tuple(meta.lower_body_ids),
        "input_size": INPUT,
        "codec": codec,
    }


def _build(name: str, meta: DatasetMeta, codec: Any) -> Any:
    fields = transform_fields(name)
    return build_transform(name, **{k: v for k, v in _context(meta, codec).items() if k in fields})


def _batch(kind: str, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w, h = SRC
    images = torch.randint(0, 256, (B, 3, h, w), dtype=torch.uint8, generator=g)
    people = (B, K) if kind == "topdown" else (B, N, K)
    kp = torch.stack([torch.rand(*people, generator=g) * (w - 1), torch.rand(*people, generator=g) * (h - 1)], -1)
    batch = {
        "images": images,
        "keypoints": kp,
        "visible": (torch.rand(*people, generator=g) > 0.1).float(),
        "bbox": torch.cat([kp.amin(-2), kp.amax(-2)], -1),
        "flip": torch.zeros(B, dtype=torch.bool),
        "keys": torch.tensor([11, 2**40 + 7]),
    }
    if kind == "topdown":
        batch["center"] = (batch["bbox"][:, :2] + batch["bbox"][:, 2:]) / 2
        batch["scale"] = (batch["bbox"][:, 2:] - batch["bbox"][:, :2]) * 1.25
        batch["rotation"] = torch.zeros(B)
    return batch


CASES = [(name, kind) for name in available_transforms() for kind in transform_batch_kinds(name)]


def test_every_transform_is_covered() -> None:
    assert {"random_flip", "topdown_affine", "bottomup_random_affine", "generate_target"} <= set(available_transforms())
    assert len(CASES) >= len(available_transforms())


def _index(value: Any, i: int) -> Any:
    if isinstance(value, dict):
        return {k: _index(v, i) for k, v in value.items()}
    return value[i : i + 1]


def _assert_same(a: Any, b: Any, what: str, atol: float = 1e-3) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for k in a:
            _assert_same(a[k], b[k], f"{what}.{k}", atol)
        return
    assert a.shape == b.shape and a.dtype == b.dtype, what
    assert torch.allclose(a.float(), b.float(), atol=atol), what


DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")),
]


def _to(value: Any, device: str) -> Any:
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value.to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("name", "kind"), CASES)
def test_registered_transform_contract(
    name: str, kind: str, device: str, coco_meta: DatasetMeta, echo_codec: Any
) -> None:
    transform = _build(name, coco_meta, echo_codec)
    batch = _to(_batch(kind), device)
    before = {k: v.clone() for k, v in batch.items()}
    rng = KeyedRNG(seed=0, epoch=0)
    out = transform(batch, rng)

    # the input is left alone and every key survives
    for k, v in before.items():
        assert torch.equal(batch[k], v), f"{name} modified its input batch[{k!r}]"
    assert set(batch) <= set(out)
    assert torch.equal(out["keys"], batch["keys"])

    # shapes, dtypes, devices
    images = out["images"]
    assert images.ndim == 4 and images.shape[:2] == (B, 3) and images.dtype in (torch.uint8, torch.float32)
    assert out["keypoints"].shape == batch["keypoints"].shape and out["keypoints"].dtype == torch.float32
    assert out["visible"].shape == batch["visible"].shape and out["visible"].dtype == torch.float32
    assert out["flip"].dtype == torch.bool and out["flip"].shape == (B,)
    for k, v in out.items():
        tensors = v.values() if isinstance(v, dict) else [v]
        for t in tensors:
            assert t.device == batch["images"].device, k
            assert t.shape[0] == B, k
            if t.is_floating_point():
                assert torch.isfinite(t).all(), f"{name} produced non-finite {k}"
    if "warp" in out:
        assert out["warp"].shape == (B, 2, 3)

    # keyed randomness: deterministic, and each row equals the same sample run alone
    _assert_same(transform(batch, rng), out, name)
    for i in range(B):
        _assert_same(transform(_index(batch, i), rng), _index(out, i), f"{name} row {i}")
    if device != "cpu":  # the same numbers on every device: a sample's augmentation is its own
        # (uint8 images may round the other way by one level)
        _assert_same(_to(out, "cpu"), transform(_to(batch, "cpu"), rng), f"{name} {device} vs cpu", atol=1.01)


def test_build_transform_errors() -> None:
    with pytest.raises(ValueError, match="unknown transform 'nope'; available transforms: .*random_flip"):
        build_transform("nope")
    with pytest.raises(ValueError, match="has no field\\(s\\) prop; its fields are: flip_indices, prob, stream"):
        build_transform("random_flip", flip_indices=(0,), prop=0.5)
    with pytest.raises(ValueError, match="needs field\\(s\\) input_size"):
        build_transform("topdown_affine")
    with pytest.raises(ValueError, match="already taken"):

        @register_transform("random_flip")
        @dataclass(frozen=True)
        class Other:
            def __call__(self, batch: Any, rng: KeyedRNG | None = None) -> Any:
                return batch

    with pytest.raises(ValueError, match="probability"):
        build_transform("random_flip", flip_indices=(0,), prob=1.5)
