"""Made-up people and the dense one-stage outputs that find exactly them, for one-stage codec and head tests.

:func:`separated_people` draws people that never overlap (one per grid cell); :func:`dense_outputs`
writes each person at a few anchors, the exact ground truth with the highest logit and jittered
duplicates (IoU and OKS > 0.9 with it) with lower ones, among background anchors well under any
score threshold. A correct decode (threshold, NMS, top-k) returns exactly the people, best first.
"""

from __future__ import annotations

import math

import torch

STRIDES = (8, 16, 32)
BACKGROUND_LOGIT = -7.0  # sigmoid ~ 9e-4: under every score_thr the tests use


def num_anchors(input_size: tuple[int, int], strides: tuple[int, ...] = STRIDES) -> int:
    """A of a head with one anchor per cell of each level."""
    w, h = input_size
    return sum(math.ceil(w / s) * math.ceil(h / s) for s in strides)


def person_logit(rank: int) -> float:
    """The logit of the rank-th person of an image (0 the best): strictly decreasing, all > 0."""
    return 8.0 - 0.25 * rank


def separated_people(
    n: int, num_keypoints: int, input_size: tuple[int, int], gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """n people, each in its own cell of a grid over the input -> keypoints (n, K, 2), visible (n, K).

    Keypoints are uniform in the middle 80% of the cell, about 80% visible, at least two visible
    (so the keypoints' extent is a box of non-zero area).
    """
    w, h = input_size
    cols = max(1, math.ceil(math.sqrt(n * w / h)))
    rows = max(1, math.ceil(n / cols))
    cell = torch.tensor([w / cols, h / rows])
    slots = torch.randperm(cols * rows, generator=gen)[:n]
    origin = torch.stack([slots % cols, slots // cols], dim=-1).float() * cell
    keypoints = origin[:, None] + cell * (0.1 + 0.8 * torch.rand(n, num_keypoints, 2, generator=gen))
    visible = (torch.rand(n, num_keypoints, generator=gen) < 0.8).float()
    visible[:, :2] = 1.0
    return keypoints, visible


def dense_outputs(
    people: list[dict[str, torch.Tensor]],
    input_size: tuple[int, int],
    gen: torch.Generator,
    copies: int = 3,
) -> dict[str, torch.Tensor]:
    """Per image the ground truth of ``encode`` ("boxes", "keypoints", "visible") -> dense outputs (B, A, ...).

    Person i of an image sits at ``copies`` random anchors: one exact with logit ``person_logit(i)``,
    the others jittered by 1% of the box size with logits 1.5-2.5 lower; visible keypoints get
    vis logit +6, the others -6. Every other anchor is random background at ``BACKGROUND_LOGIT``.
    """
    num_keypoints = next(p["keypoints"].shape[1] for p in people) if people else 17
    a = num_anchors(input_size)
    b = len(people)
    size = torch.tensor(input_size, dtype=torch.float32)
    corner = torch.rand(b, a, 2, generator=gen) * size
    out = {
        "obj_logits": torch.full((b, a), BACKGROUND_LOGIT),
        "boxes": torch.cat([corner, corner + 4 + 20 * torch.rand(b, a, 2, generator=gen)], dim=-1),
        "keypoints": torch.rand(b, a, num_keypoints, 2, generator=gen) * size,
        "vis_logits": torch.randn(b, a, num_keypoints, generator=gen),
    }
    for img, gt in enumerate(people):
        n = gt["boxes"].shape[0]
        assert n * copies <= a, "more people than anchors"
        anchors = torch.randperm(a, generator=gen)[: n * copies].view(n, copies)
        for i in range(n):
            box, kp = gt["boxes"][i], gt["keypoints"][i]
            wh = (box[2:] - box[:2]).clamp_min(0)
            for c, anchor in enumerate(anchors[i].tolist()):
                jitter = 0.0 if c == 0 else 0.01
                u = 2 * torch.rand(4, generator=gen) - 1
                out["boxes"][img, anchor] = box + jitter * u * wh.repeat(2)
                v = 2 * torch.rand(num_keypoints, 2, generator=gen) - 1
                out["keypoints"][img, anchor] = kp + 2 * jitter * v * float(wh.prod().sqrt())
                drop = 0.0 if c == 0 else 1.5 + float(torch.rand((), generator=gen))
                out["obj_logits"][img, anchor] = person_logit(i) - drop
                out["vis_logits"][img, anchor] = torch.where(gt["visible"][i] > 0, 6.0, -6.0)
    return out
