"""Randomness keyed by sample: the same (seed, epoch, sample key) always draws the same numbers.

A sample's augmentation must not depend on the process, the rank or the batch it lands in:
two-process training has to equal one-process training, and a batch of 8 has to equal eight
batches of 1. :class:`KeyedRNG` therefore holds no state. Every number is a hash of
(seed, epoch, key, stream, j), computed on int64 tensors with 32-bit words so that no product
ever overflows; it runs unchanged on the CPU and on a GPU and needs no Python loop over samples.

Each random transform owns a ``stream`` number (its draws never collide with another
transform's) and asks for ``n`` numbers per sample: ``rng.uniform(keys, stream, n)`` -> (B, n).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor

__all__ = ["KeyedRNG", "truncated_normal", "uniform_int"]

_MASK32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9
_SALT = 0x85EBCA6B  # keeps an all-zero input from hashing to zero

T = TypeVar("T", Tensor, int)


def _mul32(x: Tensor, c: int) -> Tensor:
    """(x * c) mod 2**32 for 0 <= x < 2**32 without int64 overflow (16-bit limbs)."""
    lo = (x & 0xFFFF) * c
    hi = ((x >> 16) * c) & 0xFFFF
    return (lo + (hi << 16)) & _MASK32


def _mul32_int(x: int, c: int) -> int:
    return (x * c) & _MASK32


def _mix32(x: T, mul: Callable[[T, int], T] = _mul32) -> T:
    """A 32-bit avalanche hash (the "lowbias32" constants of C. Wellons' hash-prospector).

    On int64 tensors, or on Python ints with ``mul=_mul32_int``: the same numbers either way.
    """
    x = x ^ (x >> 16)
    x = mul(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = mul(x, 0x846CA68B)
    return x ^ (x >> 16)


def _absorb(state: Tensor, word: Tensor | int) -> Tensor:
    return _mix32((state ^ word ^ _SALT) & _MASK32)


def _absorb_int(state: int, word: int) -> int:
    """:func:`_absorb` on Python ints, for the scalar prefix: no tensor op per step."""
    return _mix32((state ^ word ^ _SALT) & _MASK32, _mul32_int)


def _words(value: int) -> tuple[int, int]:
    value &= (1 << 64) - 1
    return value & _MASK32, value >> 32


class KeyedRNG:
    """Stateless, counter-based uniforms for one (seed, epoch).

    ``uniform(keys (B,) int64, stream, n)`` -> (B, n) float32 in [0, 1), 24 random bits each,
    on ``keys.device``. Row b depends only on (seed, epoch, keys[b], stream), never on the
    other keys in the batch or their order.
    """

    def __init__(self, seed: int, epoch: int = 0) -> None:
        self.seed = int(seed)
        self.epoch = int(epoch)

    def __repr__(self) -> str:
        return f"KeyedRNG(seed={self.seed}, epoch={self.epoch})"

    def uniform(self, keys: Tensor, stream: int, n: int) -> Tensor:
        if keys.ndim != 1:
            raise ValueError(f"keys must be a 1-D int64 tensor of sample ids, got shape {tuple(keys.shape)}")
        if keys.dtype != torch.int64:
            raise ValueError(
                f"keys must be int64 sample ids, got {keys.dtype}; use torch.as_tensor(ids, dtype=torch.int64)"
            )
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        # The scalar prefix (seed, epoch, stream) is hashed in Python, the per-key part on tensors.
        prefix = _GOLDEN
        for word in (*_words(self.seed), *_words(self.epoch), *_words(stream)):
            prefix = _absorb_int(prefix, word)
        state = _absorb(torch.full_like(keys, prefix), keys & _MASK32)
        state = _absorb(state, (keys >> 32) & _MASK32)
        j = torch.arange(n, dtype=torch.int64, device=keys.device)
        bits = _mix32(_absorb(state[:, None], (j * _GOLDEN) & _MASK32))
        return (bits >> 8).to(torch.float32) * (1.0 / (1 << 24))


_PHI_LOW = 0.5 * math.erfc(1.0 / math.sqrt(2.0))  # standard normal CDF at -1


def truncated_normal(u: Tensor) -> Tensor:
    """Map uniforms in [0, 1) to a standard normal truncated to [-1, 1] (inverse CDF).

    The distribution of ``scipy.stats.truncnorm(-1, 1)``, which MMPose samples for its box
    shift, scale and rotation.
    """
    p = _PHI_LOW + u * (1.0 - 2.0 * _PHI_LOW)
    return torch.special.ndtri(p).clamp(-1.0, 1.0)


def uniform_int(u: Tensor, low: int, high: int) -> Tensor:
    """Map uniforms in [0, 1) to integers in [low, high) (int64), like ``np.random.randint``."""
    if high <= low:
        raise ValueError(f"uniform_int needs high > low, got [{low}, {high})")
    return (low + torch.floor(u * (high - low))).to(torch.int64).clamp(low, high - 1)
