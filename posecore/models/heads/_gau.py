"""RTMPose's gated attention unit over keypoint tokens (MMPose ``RTMCCBlock``, Hua et al. 2022 "FLASH")."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ScaleNorm(nn.Module):
    """x (..., D) -> g * x / max(||x|| / sqrt(D), eps), one learnt scalar g (MMPose ``ScaleNorm``)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.scale = dim**-0.5
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1))

    def forward(self, x: Tensor) -> Tensor:
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True) * self.scale
        return x / norm.clamp(min=self.eps) * self.g


def rope(x: Tensor, dim: int) -> Tensor:
    """Rotary position embedding of x (..., D) along axis ``dim`` (MMPose ``rope``, its frequencies included)."""
    length = x.shape[dim]
    position = torch.arange(length, device=x.device, dtype=x.dtype)
    position = position.reshape(length, *([1] * (x.ndim - dim - 2)))
    half = x.shape[-1] // 2
    inv_freq = 10000 ** (torch.arange(half, device=x.device, dtype=x.dtype) / half)
    angle = position[..., None] * inv_freq
    sin, cos = torch.sin(angle), torch.cos(angle)
    x1, x2 = torch.chunk(x, 2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class DropPath(nn.Module):
    """Stochastic depth: zero a whole sample's residual branch with probability p while training."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1 - self.p)


class GAUBlock(nn.Module):
    """Self-attention gated attention unit: tokens (B, T, D_in) -> (B, T, D_out).

    ScaleNorm -> linear to u (e), v (e), base (s) -> activation; q, k = base * gamma + beta
    (optionally RoPE); attention = relu(q k^T / sqrt(s) [+ relative position bias])^2;
    out = linear(u * attention v) [+ learnt-scale shortcut when D_in == D_out].
    """

    def __init__(
        self,
        num_tokens: int,
        in_dims: int,
        out_dims: int,
        expansion_factor: float = 2,
        s: int = 128,
        eps: float = 1e-5,
        dropout_rate: float = 0.0,
        drop_path: float = 0.0,
        act_fn: str = "SiLU",
        bias: bool = False,
        use_rel_bias: bool = True,
        pos_enc: bool = False,
    ):
        super().__init__()
        if act_fn not in ("SiLU", "ReLU"):
            raise ValueError(f"GAUBlock.act_fn must be 'SiLU' or 'ReLU'; got {act_fn!r}")
        if pos_enc and s % 2:
            raise ValueError(f"GAUBlock: rotary position encoding needs an even s; got s={s}")
        self.s = s
        self.e = int(in_dims * expansion_factor)
        self.use_rel_bias = use_rel_bias
        self.pos_enc = pos_enc
        if use_rel_bias:
            self.w = nn.Parameter(torch.rand(2 * num_tokens - 1))
        self.o = nn.Linear(self.e, out_dims, bias=bias)
        self.uv = nn.Linear(in_dims, 2 * self.e + s, bias=bias)
        self.gamma = nn.Parameter(torch.rand(2, s))
        self.beta = nn.Parameter(torch.rand(2, s))
        self.ln = ScaleNorm(in_dims, eps=eps)
        nn.init.xavier_uniform_(self.uv.weight)
        self.act = nn.SiLU() if act_fn == "SiLU" else nn.ReLU()
        self.shortcut = in_dims == out_dims
        if self.shortcut:
            self.res_scale = nn.Parameter(torch.ones(in_dims))
        self.dropout = nn.Dropout(dropout_rate) if dropout_rate > 0 else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.sqrt_s = math.sqrt(s)

    def rel_pos_bias(self, length: int) -> Tensor:
        """(1, T, T) with bias[i, j] = w[j - i + T - 1]."""
        i = torch.arange(length, device=self.w.device)
        return self.w[i[None, :] - i[:, None] + length - 1][None]

    def _attend(self, x: Tensor) -> Tensor:
        uv = self.act(self.uv(self.ln(x)))
        u, v, base = torch.split(uv, [self.e, self.e, self.s], dim=-1)
        base = base.unsqueeze(2) * self.gamma + self.beta  # (B, T, 2, s)
        if self.pos_enc:
            base = rope(base, dim=1)
        q, k = torch.unbind(base, dim=2)
        qk = torch.bmm(q, k.transpose(1, 2))
        if self.use_rel_bias:
            qk = qk + self.rel_pos_bias(q.shape[1])
        kernel = self.dropout(torch.square(F.relu(qk / self.sqrt_s)))
        return self.o(u * torch.bmm(kernel, v))

    def forward(self, x: Tensor) -> Tensor:
        out = self.drop_path(self._attend(x))
        return x * self.res_scale + out if self.shortcut else out
