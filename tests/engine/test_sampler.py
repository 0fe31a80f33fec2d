"""GlobalBatchSampler: the samples of an optimizer step do not depend on the number of processes."""

from __future__ import annotations

import numpy as np
import pytest

from posecore.engine.sampler import GlobalBatchSampler


def _steps(sampler: GlobalBatchSampler) -> dict[int, list[list[int]]]:
    out: dict[int, list[list[int]]] = {}
    for mb in sampler:
        out.setdefault(mb.step, []).append(mb.indices)
    return out


@pytest.mark.parametrize(("world", "micro"), [(2, 4), (4, 2), (2, 1), (8, 2)])
def test_ranks_together_cover_the_one_process_step(world: int, micro: int) -> None:
    single = _steps(GlobalBatchSampler(100, 16, 16, seed=3, epoch=2))
    ranks = [_steps(GlobalBatchSampler(100, 16, micro, world, r, seed=3, epoch=2)) for r in range(world)]
    assert len(single) == 6  # 100 // 16, drop_last
    for step, (batch,) in single.items():
        union = [i for r in ranks for mb in r[step] for i in mb]
        assert sorted(union) == sorted(batch)
        assert all(len(mb) == micro for r in ranks for mb in r[step])
        assert all(len(r[step]) == 16 // (micro * world) for r in ranks)


def test_last_flag_and_length() -> None:
    s = GlobalBatchSampler(40, 8, 2, world_size=2, rank=1)
    mbs = list(s)
    assert s.accum_steps == 2 and s.steps_per_epoch == 5 and len(s) == len(mbs) == 10
    assert [mb.is_last for mb in mbs[:4]] == [False, True, False, True]
    assert [mb.step for mb in mbs[:4]] == [0, 0, 1, 1]


def test_deterministic_and_epoch_dependent() -> None:
    a = [mb.indices for mb in GlobalBatchSampler(64, 8, 4, seed=1, epoch=0)]
    b = [mb.indices for mb in GlobalBatchSampler(64, 8, 4, seed=1, epoch=0)]
    s = GlobalBatchSampler(64, 8, 4, seed=1, epoch=0)
    s.set_epoch(1)
    c = [mb.indices for mb in s]
    d = [mb.indices for mb in GlobalBatchSampler(64, 8, 4, seed=2, epoch=0)]
    assert a == b
    assert a != c and a != d
    assert sorted(i for mb in a for i in mb) == list(range(64))  # a permutation: every sample once


def test_no_shuffle_and_padding_without_drop_last() -> None:
    s = GlobalBatchSampler(10, 4, 2, world_size=2, rank=0, shuffle=False, drop_last=False)
    assert s.steps_per_epoch == 3
    np.testing.assert_array_equal(s.step_samples(2), [8, 9, 0, 1])  # topped up from the start
    assert s.micro_batches(2) == [[8, 9]]


def test_indivisible_global_batch_says_how_to_fix() -> None:
    with pytest.raises(ValueError, match=r"multiple of 12 .*e\.g\. 12 or 24"):
        GlobalBatchSampler(100, 20, 6, world_size=2, rank=0)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        GlobalBatchSampler(10, 16, 8)
