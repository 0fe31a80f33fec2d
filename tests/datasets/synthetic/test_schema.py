"""posecore.datasets.synthetic.schema: templates learned from real labels, and figures of any skeleton drawn from them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from posecore.datasets.converters import SourceSpec, convert
from posecore.datasets.synthetic import SynthParams, generate
from posecore.datasets.synthetic.schema import (
    TEMPLATE_DIR,
    Template,
    available_templates,
    learn_template,
    load_template,
    render_figure,
)
from posecore.metainfo import load_meta

HAND = load_meta("onehand10k")


def _similar(shape: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    a = rng.uniform(-math.pi, math.pi)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return shape @ rot.T * rng.uniform(20, 200) + rng.uniform(-500, 500, 2)


def _centred(points: np.ndarray) -> np.ndarray:
    c = points - points.mean(0)
    return c / np.ptp(c, axis=0).max()


def test_the_mean_shape_is_recovered_whatever_each_copy_s_rotation_scale_and_place() -> None:
    rng = np.random.default_rng(0)
    truth = rng.uniform(-1, 1, (HAND.num_keypoints, 2))
    instances = []
    for n in range(12):
        pts = _similar(truth + rng.normal(0, 0.01, truth.shape), rng)
        v = np.full(HAND.num_keypoints, 2.0)
        if n % 3 == 0:
            v[5] = 0  # some copies leave a keypoint unlabelled
        instances.append(np.column_stack([pts, v]))
    template = learn_template(instances, HAND)
    # the learned mean is the truth up to a similarity (it has its own orientation)
    from posecore.datasets.synthetic.schema import _align

    moved = _align(_centred(truth), template.mean)
    assert np.abs(moved - template.mean).max() < 0.02
    assert template.std.max() < 0.05 and template.std.min() >= 0.01
    assert template.links == tuple(HAND.skeleton_indices)


def test_a_keypoint_nobody_labels_starts_between_its_linked_neighbours() -> None:
    rng = np.random.default_rng(1)
    truth = rng.uniform(-1, 1, (HAND.num_keypoints, 2))
    never = 8
    instances = [np.column_stack([_similar(truth, rng), np.where(np.arange(21) == never, 0.0, 2.0)]) for _ in range(4)]
    template = learn_template(instances, HAND)
    near = [b if a == never else a for a, b in HAND.skeleton_indices if never in (a, b)]
    assert np.allclose(template.mean[never], template.mean[near].mean(0), atol=1e-9)
    with pytest.raises(ValueError, match="no annotation labels 3 keypoints of 'onehand10k'"):
        learn_template([np.zeros((21, 3))], HAND)


def test_a_skeleton_without_links_is_drawn_along_nearest_neighbours() -> None:
    wflw = load_meta("wflw")
    assert not wflw.skeleton_indices
    template = load_template(wflw)
    assert template.links and all(0 <= a < b < 98 for a, b in template.links)


@pytest.mark.parametrize("name", available_templates())
def test_every_shipped_template_fits_its_meta_and_draws(name: str) -> None:
    meta = load_meta(name)
    template = load_template(meta)
    assert template.mean.shape == (meta.num_keypoints, 2) and np.isfinite(template.mean).all()
    assert np.ptp(template.mean, axis=0).max() == pytest.approx(1.0, abs=1e-3)
    image, (ann,) = render_figure(np.random.default_rng(3), template, meta, 160, 128)
    assert image.shape == (128, 160, 3) and image.dtype == np.uint8
    labelled = ann.keypoints[:, 2] > 0
    assert labelled.sum() >= 0.8 * meta.num_keypoints
    x, y, w, h = ann.bbox
    kp = ann.keypoints[labelled, :2]
    assert (
        (kp[:, 0] >= x - 1).all()
        and (kp[:, 0] <= x + w).all()
        and (kp[:, 1] >= y - 1).all()
        and (kp[:, 1] <= y + h).all()
    )
    assert 0 < ann.area <= w * h
    again, (same,) = render_figure(np.random.default_rng(3), template, meta, 160, 128)
    assert np.array_equal(image, again) and np.array_equal(ann.keypoints, same.keypoints)


@pytest.mark.real_data
@pytest.mark.parametrize(
    ("name", "files"),
    [("wflw", ["wflw/test_wflw.json"]), ("ap10k", ["ap10k/test_ap10k.json"]), ("cofw", ["cofw/test_cofw.json"])],
)
def test_shipped_templates_are_what_the_samples_teach(shared_data: Path, name: str, files: list[str]) -> None:
    """The recipe in each template's header: generalised Procrustes over MMPose's sample annotations."""
    meta = load_meta(name)
    shipped = yaml.safe_load((TEMPLATE_DIR / f"{name}.yaml").read_text())
    instances = [
        np.asarray(a["keypoints"], np.float64).reshape(-1, 3)
        for f in files
        for a in json.loads((shared_data / "mmpose_samples" / f).read_text())["annotations"]
    ]
    learned = learn_template(instances, meta, rotation=shipped["rotation"])
    assert np.abs(learned.mean - np.asarray(shipped["mean"])).max() < 1e-3
    assert np.abs(learned.std - np.asarray(shipped["std"])).max() < 1e-3


def test_a_hand_dataset_generates_and_converts_with_its_meta(tmp_path: Path) -> None:
    params = SynthParams(
        out=str(tmp_path / "synth"), n_train=3, n_val=2, width=96, height=96, workers=1, meta="onehand10k"
    )
    counts = generate(params, tmp_path / "synth")
    assert counts == {"train": {"images": 3, "annotations": 3}, "val": {"images": 2, "annotations": 2}}
    doc = json.loads((tmp_path / "synth" / "annotations" / "train.json").read_text())
    assert doc["categories"][0]["keypoints"] == HAND.keypoint_names
    assert all(len(a["keypoints"]) == 63 for a in doc["annotations"])
    report = convert(SourceSpec(source="synthetic", meta="onehand10k", root=str(tmp_path / "synth")), tmp_path / "data")
    assert report.counts["train"]["annotations"] == 3
    parallel = generate(
        SynthParams(out=str(tmp_path / "p"), n_train=3, n_val=2, width=96, height=96, workers=2, meta="onehand10k"),
        tmp_path / "p",
    )
    assert parallel == counts
    for split in ("train", "val"):
        for image in sorted((tmp_path / "synth" / "images" / split).iterdir()):
            assert image.read_bytes() == (tmp_path / "p" / "images" / split / image.name).read_bytes()


def test_a_meta_without_a_template_fails_before_any_image(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no synthetic template for meta 'mpii'"):
        generate(SynthParams(out=str(tmp_path / "s"), n_train=1, n_val=1, workers=1, meta="mpii"), tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_params_keep_the_synthetic_meta_and_the_data_meta_together() -> None:
    from posecore.config import ConfigError, parse_params

    with pytest.raises(ConfigError, match=r"data\.meta \('coco'\) must equal synth\.meta \('wflw'\)"):
        parse_params({"synth": {"meta": "wflw"}})
    params = parse_params({"synth": {"meta": "wflw"}, "data": {"meta": "wflw"}})
    assert (params.synth.meta, params.data.meta) == ("wflw", "wflw")


def test_template_round_trips_through_its_dict() -> None:
    template = load_template(HAND)
    again = Template(
        HAND.name, np.asarray(template.to_dict()["mean"]), np.asarray(template.to_dict()["std"]), template.links
    )
    assert np.allclose(again.mean, template.mean, atol=1e-4)
