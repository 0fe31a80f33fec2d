"""SimOTA assignment on hand-made anchors and predictions: which anchors become positive, and why."""

from __future__ import annotations

import pytest
import torch

from posecore.models.heads._simota import SimOTAAssigner

K = 3
SIGMAS = torch.full((K,), 0.1)
TINY = torch.tensor([0.0, 0.0, 0.5, 0.5])  # a predicted box that overlaps no person


def _grid(size: int = 64, stride: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """One level of anchor points (x s, y s), row-major, and their strides."""
    n = size // stride
    ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    return torch.stack((xs, ys), -1).reshape(-1, 2).float() * stride, torch.full((n * n,), float(stride))


PRIORS, STRIDES = _grid()


def _at(x: float, y: float) -> int:
    return int(((PRIORS[:, 0] == x) & (PRIORS[:, 1] == y)).nonzero())


def _person(box: list[float]) -> dict[str, torch.Tensor]:
    """A person with box xyxy and K keypoints spread over it, all visible."""
    b = torch.tensor(box)
    kp = torch.stack([b[:2] + (b[2:] - b[:2]) * f for f in (0.25, 0.5, 0.75)])
    return {"boxes": b, "keypoints": kp, "visible": torch.ones(K), "areas": (b[2] - b[0]) * (b[3] - b[1])}


def _people(*boxes: list[float]) -> dict[str, torch.Tensor]:
    if not boxes:
        return {
            "boxes": torch.zeros(0, 4),
            "keypoints": torch.zeros(0, K, 2),
            "visible": torch.zeros(0, K),
            "areas": torch.zeros(0),
        }
    people = [_person(b) for b in boxes]
    return {key: torch.stack([p[key] for p in people]) for key in people[0]}


def _predictions(good: dict[int, dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """obj logits 0 everywhere; a tiny box and keypoints at the origin except at the anchors of ``good``."""
    a = PRIORS.shape[0]
    boxes = TINY.repeat(a, 1)
    keypoints = torch.zeros(a, K, 2)
    for anchor, person in good.items():
        boxes[anchor], keypoints[anchor] = person["boxes"], person["keypoints"]
    return torch.zeros(a), boxes, keypoints


def _assign(good, people, assigner=None, ignore_boxes=None):
    obj, boxes, keypoints = _predictions(good)
    assigner = assigner or SimOTAAssigner()
    return assigner.assign(
        PRIORS, STRIDES, obj, boxes, keypoints,
        people["boxes"], people["keypoints"], people["visible"], people["areas"], SIGMAS, ignore_boxes,
    )  # fmt: skip


def test_candidates_are_the_anchors_inside_the_box_or_near_its_centre():
    # box (16, 16, 48, 48): strictly inside are x, y in {24, 32, 40} (9 anchors); within 2.5 strides = 20 px
    # of the centre (32, 32) are x, y in {16, ..., 48} (25 anchors)
    assigner = SimOTAAssigner()
    in_box, in_center = assigner._regions(PRIORS, STRIDES, torch.tensor([[16.0, 16.0, 48.0, 48.0]]))
    assert int(in_box.sum()) == 9 and int(in_center.sum()) == 25
    assert bool(in_box[_at(24, 40), 0]) and not bool(in_box[_at(16, 32), 0]) and bool(in_center[_at(16, 32), 0])


def test_one_person_takes_its_well_predicting_anchors():
    people = _people([16.0, 16.0, 48.0, 48.0])
    person = {k: v[0] for k, v in people.items()}
    good = {_at(24, 32): person, _at(32, 32): person, _at(40, 32): person}
    result = _assign(good, people)
    # top-10 IoUs: three 1s and zeros -> k = 3: exactly the three perfect anchors, IoU 1
    assert sorted(result.positive.nonzero().flatten().tolist()) == sorted(good)
    assert (result.gt_index[list(good)] == 0).all() and torch.allclose(result.iou[list(good)], torch.ones(3))
    assert float(result.iou[~result.positive].abs().sum()) == 0.0 and not result.ignore.any()


def test_k_grows_with_the_quality_of_the_predictions():
    people = _people([16.0, 16.0, 48.0, 48.0])
    person = {k: v[0] for k, v in people.items()}
    inside = [_at(x, y) for x in (24, 32, 40) for y in (24, 32, 40)]
    result = _assign(dict.fromkeys(inside, person), people)  # top-10 IoUs sum to 9 -> k = 9
    assert sorted(result.positive.nonzero().flatten().tolist()) == sorted(inside)


def test_k_is_at_least_one_and_far_anchors_are_never_positive():
    people = _people([16.0, 16.0, 48.0, 48.0])
    person = {k: v[0] for k, v in people.items()}
    # a perfect prediction from the far corner (0, 0) is outside the box and its centre region
    result = _assign({_at(0, 0): person}, people)
    assert not bool(result.positive[_at(0, 0)])
    assert int(result.positive.sum()) == 1  # k = max(int(0), 1): the cheapest candidate still learns the person
    assert bool(_inside_centre(result.positive.nonzero().flatten()))


def _inside_centre(anchors: torch.Tensor) -> bool:
    return bool(((PRIORS[anchors] - 32).abs() < 20).all())


def test_oks_cost_breaks_a_tie_between_equal_boxes():
    people = _people([16.0, 16.0, 48.0, 48.0])
    person = {k: v[0] for k, v in people.items()}
    wrong = dict(person, keypoints=person["keypoints"] + 8)  # same box, keypoints 8 px off
    obj, boxes, keypoints = _predictions({_at(32, 32): wrong, _at(24, 24): person})
    # both IoU 1 -> k = 2 would take both; make the second box slightly worse so that k = 1 (IoU sum < 2)
    boxes[_at(24, 24)] = boxes[_at(32, 32)] = torch.tensor([16.0, 16.0, 48.0, 40.0])  # IoU 0.75 each
    result = SimOTAAssigner().assign(
        PRIORS, STRIDES, obj, boxes, keypoints,
        people["boxes"], people["keypoints"], people["visible"], people["areas"], SIGMAS,
    )  # fmt: skip
    assert result.positive.nonzero().flatten().tolist() == [_at(24, 24)]  # the one with the right keypoints
    no_oks = SimOTAAssigner(oks_weight=0.0).assign(
        PRIORS, STRIDES, obj, boxes, keypoints,
        people["boxes"], people["keypoints"], people["visible"], people["areas"], SIGMAS,
    )  # fmt: skip
    assert int(no_oks.positive.sum()) == 1


def test_two_people_each_get_their_own_anchors():
    people = _people([0.0, 0.0, 24.0, 24.0], [32.0, 32.0, 64.0, 64.0])
    first, second = ({k: v[i] for k, v in people.items()} for i in range(2))
    good = {_at(8, 8): first, _at(16, 8): first, _at(40, 48): second, _at(48, 48): second, _at(56, 48): second}
    result = _assign(good, people)
    assert result.gt_index[[_at(8, 8), _at(16, 8)]].tolist() == [0, 0]
    assert result.gt_index[[_at(40, 48), _at(48, 48), _at(56, 48)]].tolist() == [1, 1, 1]
    assert int(result.positive.sum()) == 5


def test_an_anchor_both_people_want_goes_to_the_cheaper():
    # nearly the same box twice; the only good prediction is exactly person 1's: both pick it (k = 1 each)
    people = _people([16.0, 16.0, 48.0, 48.0], [18.0, 16.0, 50.0, 48.0])
    second = {k: v[1] for k, v in people.items()}
    result = _assign({_at(32, 32): second}, people)
    assert int(result.gt_index[_at(32, 32)]) == 1
    assert float(result.iou[_at(32, 32)]) == pytest.approx(1.0)
    # person 0 wanted only that anchor (k = max(int(0.88), 1)); as in YOLOX it is not matched again
    assert int((result.gt_index == 0).sum()) == 0 and int(result.positive.sum()) == 1


def test_no_people_means_all_negative():
    result = _assign({}, _people())
    assert not result.positive.any() and not result.ignore.any()
    assert result.gt_index.shape == (PRIORS.shape[0],) and float(result.iou.abs().sum()) == 0.0


def test_crowd_regions_ignore_their_negatives_only():
    people = _people([16.0, 16.0, 48.0, 48.0])
    person = {k: v[0] for k, v in people.items()}
    good = {_at(32, 32): person}
    crowd = torch.tensor([[20.0, 20.0, 60.0, 60.0]])  # covers the positive and its neighbours
    result = _assign(good, people, ignore_boxes=crowd)
    inside = SimOTAAssigner._inside(PRIORS, crowd)[:, 0]
    assert bool(result.positive[_at(32, 32)]) and not bool(result.ignore[_at(32, 32)])
    assert torch.equal(result.ignore, inside & ~result.positive)
    assert int(result.ignore.sum()) == 25 - int(result.positive.sum())  # x, y in {24, ..., 56}
    empty = _assign({}, _people(), ignore_boxes=crowd)
    assert torch.equal(empty.ignore, inside)


def test_assigner_checks_its_options():
    with pytest.raises(ValueError, match="center_radius"):
        SimOTAAssigner(center_radius=0)
    with pytest.raises(ValueError, match="candidate_topk"):
        SimOTAAssigner(candidate_topk=0)
