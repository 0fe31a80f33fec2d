from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from posecore.transforms.rng import KeyedRNG, truncated_normal, uniform_int

M32 = 0xFFFFFFFF


def _mix_py(x: int) -> int:
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    return x ^ (x >> 16)


def _absorb_py(state: int, word: int) -> int:
    return _mix_py((state ^ word ^ 0x85EBCA6B) & M32)


def _uniform_py(seed: int, epoch: int, key: int, stream: int, j: int) -> float:
    """The documented hash in plain Python integers (no overflow possible)."""
    state = 0x9E3779B9
    for value in (seed, epoch, stream):
        value &= (1 << 64) - 1
        state = _absorb_py(state, value & M32)
        state = _absorb_py(state, value >> 32)
    key &= (1 << 64) - 1
    state = _absorb_py(state, key & M32)
    state = _absorb_py(state, key >> 32)
    bits = _mix_py(_absorb_py(state, (j * 0x9E3779B9) & M32))
    return (bits >> 8) / (1 << 24)


@pytest.mark.parametrize("key", [0, 1, 7, 2**31 + 5, 2**40 + 3, 2**63 - 1, -1, -(2**50)])
def test_matches_plain_python_hash(key: int) -> None:
    rng = KeyedRNG(seed=12345678901, epoch=3)
    got = rng.uniform(torch.tensor([key]), stream=9, n=5)[0].tolist()
    want = [_uniform_py(12345678901, 3, key, 9, j) for j in range(5)]
    assert got == pytest.approx(want, abs=0)


def test_same_sample_same_numbers_whatever_the_batch() -> None:
    rng = KeyedRNG(seed=0, epoch=2)
    keys = torch.arange(100, 164)
    full = rng.uniform(keys, stream=3, n=6)
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    shuffled = rng.uniform(keys[perm], stream=3, n=6)
    assert torch.equal(shuffled, full[perm])
    for i in (0, 17, 63):
        assert torch.equal(rng.uniform(keys[i : i + 1], stream=3, n=6), full[i : i + 1])
    # a fresh object with the same seed and epoch is the same generator: nothing is stateful
    assert torch.equal(KeyedRNG(0, 2).uniform(keys, 3, 6), full)
    # a prefix of n draws is the same whatever n is
    assert torch.equal(rng.uniform(keys, stream=3, n=2), full[:, :2])


def test_different_keys_epochs_seeds_streams_differ() -> None:
    keys = torch.arange(1000)
    base = KeyedRNG(0, 0).uniform(keys, 1, 4)
    assert torch.unique(base).numel() > 3990
    for other in (
        KeyedRNG(0, 1).uniform(keys, 1, 4),
        KeyedRNG(1, 0).uniform(keys, 1, 4),
        KeyedRNG(0, 0).uniform(keys, 2, 4),
        KeyedRNG(0, 0).uniform(keys + 1000, 1, 4),
    ):
        assert (other != base).float().mean() > 0.99
        assert abs(np.corrcoef(other.flatten().numpy(), base.flatten().numpy())[0, 1]) < 0.05


def test_distribution() -> None:
    u = KeyedRNG(42, 0).uniform(torch.arange(50_000), stream=5, n=4)
    assert u.dtype == torch.float32 and u.shape == (50_000, 4)
    assert 0.0 <= u.min() and u.max() < 1.0
    assert u.mean().item() == pytest.approx(0.5, abs=0.005)
    assert u.var().item() == pytest.approx(1 / 12, abs=0.002)
    counts = torch.histc(u, bins=20, min=0.0, max=1.0).numpy()
    assert stats.chisquare(counts).pvalue > 1e-4
    # neighbouring keys and neighbouring draws are uncorrelated
    flat = u.numpy()
    assert abs(np.corrcoef(flat[:-1, 0], flat[1:, 0])[0, 1]) < 0.02
    assert abs(np.corrcoef(flat[:, 0], flat[:, 1])[0, 1]) < 0.02


def test_truncated_normal_matches_scipy_truncnorm() -> None:
    t = truncated_normal(KeyedRNG(1, 0).uniform(torch.arange(40_000), stream=1, n=1)[:, 0])
    assert t.abs().max() <= 1.0
    assert stats.kstest(t.numpy(), stats.truncnorm(-1, 1).cdf).pvalue > 1e-3
    assert t.std().item() == pytest.approx(stats.truncnorm(-1, 1).std(), abs=0.01)


def test_uniform_int_range() -> None:
    ints = uniform_int(KeyedRNG(1, 0).uniform(torch.arange(6000), stream=1, n=1)[:, 0], -18, 18)
    assert ints.min() == -18 and ints.max() == 17
    assert torch.bincount(ints + 18).min() > 100


def test_bad_keys_are_refused() -> None:
    rng = KeyedRNG(0)
    with pytest.raises(ValueError, match="int64"):
        rng.uniform(torch.arange(3, dtype=torch.int32), 0, 1)
    with pytest.raises(ValueError, match="1-D"):
        rng.uniform(torch.zeros(2, 2, dtype=torch.int64), 0, 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_same_numbers_on_cuda() -> None:
    keys = torch.tensor([0, 5, 2**40 + 1, -3])
    rng = KeyedRNG(7, 1)
    assert torch.equal(rng.uniform(keys.cuda(), 4, 8).cpu(), rng.uniform(keys, 4, 8))
