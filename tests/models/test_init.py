"""Warm starts (posecore.models.init): key mapping, the report, strictness, and the head's rows carried by keypoint name.

Head transfer is checked for every registered head (the registry drives the tests): the tensors
each head declares in ``keypoint_axes`` are exactly those whose size depends on K; a model whose
keypoints are the source's in another order computes the source's outputs in that order; and
from a source with other keypoints, the shared keypoints' rows move by value while the new
keypoints' rows keep their fresh values.
"""

from __future__ import annotations

import head_recipes as R  # tests/_helpers (on sys.path by tests/conftest.py)
import pytest
import torch
from torch import nn

import posecore.models.heads  # noqa: F401  (registers the heads)
from posecore.metainfo import load_meta
from posecore.models.builders import HEADS
from posecore.models.config import InitParams
from posecore.models.estimator import ModelSpec, build_estimator
from posecore.models.init import (
    InitError,
    InitSource,
    apply_init,
    keypoint_axes,
    keypoint_sources,
    select_state,
)

NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
#: Outputs indexed by keypoint, and the dim that is: heatmaps (B, C, H, W) hold C = K * per channels.
KEYPOINT_DIM = {"heatmaps": 1, "simcc_x": 1, "simcc_y": 1, "coords": 1, "sigmas": 1, "keypoints": 2, "vis_logits": 2}


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


def _toy() -> nn.Module:
    return nn.ModuleDict({"backbone": nn.Conv2d(3, 4, 1), "head": nn.Linear(4, 6)})


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _source(state: dict[str, torch.Tensor], names: tuple[str, ...] | None = None) -> InitSource:
    return InitSource(state, names, "test source", {"kind": "test"})


# --------------------------------------------------------------------------- keys, report, strict


def test_select_state_keeps_the_prefix_strips_it_and_puts_into_in_front() -> None:
    a, b, c = torch.zeros(1), torch.ones(1), torch.full((1,), 2.0)
    state = {"backbone.conv.weight": a, "backbone.bn.bias": b, "head.fc.weight": c}
    assert select_state(state) == state
    assert select_state(state, prefix="backbone.") == {"conv.weight": a, "bn.bias": b}
    assert select_state(state, prefix="backbone.", into="encoder.") == {"encoder.conv.weight": a, "encoder.bn.bias": b}
    assert select_state({"conv.weight": a}, into="backbone.") == {"backbone.conv.weight": a}


def test_prefix_loads_a_whole_models_backbone_and_reports_the_rest() -> None:
    model, source = _toy(), _toy()
    fresh = _snapshot(model)
    state = {f"model.{k}": v for k, v in source.state_dict().items()}
    state["other.ignored"] = torch.zeros(3)  # outside the prefix: neither loaded nor unexpected
    report = apply_init(model, _source(state), InitParams(source="x", prefix="model."), NAMES)
    assert sorted(report.loaded) == sorted(model.state_dict())
    assert report.missing == report.unexpected == report.mismatched == report.excluded == ()
    for key, value in model.state_dict().items():
        assert torch.equal(value, source.state_dict()[key])
        assert not torch.equal(value, fresh[key])


def test_into_loads_a_backbone_only_file_and_the_head_stays_fresh() -> None:
    model, backbone = _toy(), nn.Conv2d(3, 4, 1)
    fresh = _snapshot(model)
    report = apply_init(model, _source(backbone.state_dict()), InitParams(into="backbone."), NAMES)
    assert report.loaded == ("backbone.weight", "backbone.bias")
    assert report.missing == ("head.weight", "head.bias")
    assert torch.equal(model.state_dict()["backbone.weight"], backbone.weight)
    assert torch.equal(model.state_dict()["head.weight"], fresh["head.weight"])


def test_exclude_unexpected_and_mismatched_are_reported_and_left_alone() -> None:
    model = _toy()
    fresh = _snapshot(model)
    state = {
        "backbone.weight": torch.full((4, 3, 1, 1), 7.0),
        "backbone.bias": torch.full((4,), 8.0),
        "backbone.extra": torch.zeros(2),  # not in the model
        "head.weight": torch.full((6, 4), 9.0),  # excluded
        "head.bias": torch.zeros(5),  # another shape
    }
    cfg = InitParams(exclude=("head.w*",))
    report = apply_init(model, _source(state), cfg, NAMES)
    assert report.loaded == ("backbone.weight", "backbone.bias")
    assert report.excluded == ("head.weight",)
    assert report.unexpected == ("backbone.extra",)
    assert report.mismatched == (("head.bias", (5,), (6,)),)
    assert report.missing == ()
    now = model.state_dict()
    assert torch.equal(now["backbone.weight"], state["backbone.weight"])
    assert torch.equal(now["backbone.bias"], state["backbone.bias"])
    assert torch.equal(now["head.weight"], fresh["head.weight"])
    assert torch.equal(now["head.bias"], fresh["head.bias"])
    counts = report.counts()
    assert (counts["loaded"], counts["excluded"], counts["unexpected"], counts["mismatched"]) == (2, 1, 1, 1)
    data = report.to_dict()
    assert data["mismatched"] == [{"key": "head.bias", "source_shape": [5], "model_shape": [6]}]
    assert data["origin"] == {"kind": "test"} and data["counts"] == counts
    lines = report.summary().splitlines()
    assert lines[0] == "model.init from test source"
    assert any(line.split()[:2] == ["loaded", "2"] and "backbone.weight, backbone.bias" in line for line in lines)
    assert any(line.split()[:2] == ["mismatched", "1"] and "head.bias [5] -> [6]" in line for line in lines)


def test_summary_shows_the_first_names_and_how_many_more() -> None:
    model = nn.ModuleDict({f"l{i}": nn.Linear(1, 1, bias=False) for i in range(5)})
    report = apply_init(
        model,
        _source(nn.ModuleDict({f"l{i}": nn.Linear(1, 1, bias=False) for i in range(5)}).state_dict()),
        InitParams(),
        NAMES,
    )
    loaded = next(line for line in report.summary().splitlines() if line.split()[0] == "loaded")
    assert loaded.split()[1] == "5" and "l0.weight, l1.weight, l2.weight, ... (+2)" in loaded


def test_strict_lists_every_problem_and_leaves_the_model_untouched() -> None:
    model = _toy()
    fresh = _snapshot(model)
    state = {
        "backbone.weight": torch.zeros(4, 3, 1, 1),
        "head.weight": torch.zeros(5, 4),
        "neck.weight": torch.zeros(1),
    }
    with pytest.raises(InitError) as err:
        apply_init(model, _source(state), InitParams(strict=True), NAMES)
    message = str(err.value)
    assert "(2 missing, 1 unexpected, 1 mismatched)" in message
    for line in (
        "missing in the source: backbone.bias",
        "missing in the source: head.bias",
        "not in the model: neck.weight",
        "shape [5, 4] in the source, [6, 4] in the model: head.weight",
    ):
        assert line in message
    assert all(torch.equal(v, fresh[k]) for k, v in model.state_dict().items())


def test_strict_passes_when_everything_fits() -> None:
    model, source = _toy(), _toy()
    report = apply_init(model, _source(source.state_dict()), InitParams(strict=True), NAMES)
    assert len(report.loaded) == 4


def test_a_prefix_that_keeps_nothing_says_what_the_keys_look_like() -> None:
    with pytest.raises(
        InitError, match=r"prefix 'backbone\.' keeps no tensor of test source \(its keys look like head"
    ):
        apply_init(_toy(), _source({"head.weight": torch.zeros(6, 4)}), InitParams(prefix="backbone."), NAMES)


def test_a_checkpoint_of_another_architecture() -> None:
    """Strict: an error listing the mismatches; not strict: the backbone-independent parts load, the rest is reported."""
    meta = load_meta("coco")
    spec = ModelSpec.resolve("synthetic-lite0", input_size=(64, 64), backbone={"name": "mobilenetv3_small"})
    other = ModelSpec.resolve("synthetic-lite0", input_size=(64, 64), backbone={"name": "resnet18"})
    model = build_estimator(spec, meta, pretrained=False)
    source = build_estimator(other, meta, pretrained=False).state_dict()
    with pytest.raises(InitError) as err:
        apply_init(model, _source(source, tuple(meta.keypoint_names)), InitParams(strict=True), meta.keypoint_names)
    assert "not in the model: backbone." in str(err.value) and "missing in the source: backbone." in str(err.value)
    assert "shape [17, 512, 3, 3] in the source, [17, 576, 3, 3] in the model: head.final_layer.weight" in str(
        err.value
    )
    report = apply_init(model, _source(source, tuple(meta.keypoint_names)), InitParams(), meta.keypoint_names)
    assert report.missing and report.unexpected
    assert ("head.final_layer.weight", (17, 512, 3, 3), (17, 576, 3, 3)) in report.mismatched
    assert "head.cls_x.weight" in report.loaded  # the head's layers after the backbone-specific conv fit
    assert torch.equal(model.state_dict()["head.cls_x.weight"], source["head.cls_x.weight"])


# --------------------------------------------------------------------------- keypoint mapping


def test_keypoint_sources_by_name_then_by_the_map() -> None:
    assert keypoint_sources(["b", "x", "a"], ["a", "b"]) == [(1,), None, (0,)]
    assert keypoint_sources(["b", "x", "a"], ["a", "b"], {"x": "a"}) == [(1,), (0,), (0,)]
    assert keypoint_sources(["b", "x", "a"], ["a", "b"], {"x": ("a", "b")}) == [(1,), (0, 1), (0,)]
    with pytest.raises(InitError) as err:
        keypoint_sources(["b", "x", "a"], ["a", "b"], {"y": "a", "x": "z", "a": ("b", "w"), "b": ()})
    assert "'y' is not a keypoint of the model" in str(err.value)
    assert "'z' (for 'x') is not a keypoint of the source" in str(err.value)
    assert "'w' (for 'a') is not a keypoint of the source" in str(err.value)
    assert "'b' maps to an empty list" in str(err.value)


def test_keypoint_map_needs_a_source_with_names() -> None:
    with pytest.raises(InitError, match="keypoint_map needs the source's keypoint names"):
        apply_init(_toy(), _source(_toy().state_dict()), InitParams(keypoint_map={"nose": "nose"}), NAMES)


def _builders() -> dict[str, object]:
    """Every registered head, and the variants whose keypoint layout differs (UDP's 3 maps per
    keypoint; a heatmap head whose last deconv is the output layer): name -> build(K)."""
    out: dict[str, object] = {}
    for name in HEADS.names():
        if R.is_multi_level(name):
            out[name] = lambda k, n=name: R.build_multi_level(n, num_keypoints=k)[0]
        else:
            out[name] = lambda k, n=name: R.RECIPES[n].build(num_keypoints=k)[0]
    udp = next(r for r in R.VARIANTS if r.id == "heatmap-udp_combined")
    out["heatmap-udp_combined"] = lambda k: udp.build(num_keypoints=k)[0]
    out["heatmap-no_final_layer"] = lambda k: R.RECIPES["heatmap"].build(
        num_keypoints=k, deconv_out_channels=(16, k), has_final_layer=False
    )[0]
    return out


BUILDERS = _builders()


def _features(name: str) -> tuple[torch.Tensor, ...]:
    return R.pyramid() if name in R.MULTI_LEVEL else R.features()


def _randomise(module: nn.Module) -> None:
    """Distinct values everywhere (MMPose's init zeroes biases, which would hide a wrong row)."""
    with torch.no_grad():
        for key, value in module.state_dict().items():
            if value.is_floating_point():
                value.copy_(torch.rand_like(value) + 0.5 if "running_var" in key else torch.randn_like(value) * 0.2)


def test_every_registered_head_is_covered() -> None:
    assert set(HEADS.names()) <= set(BUILDERS)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_keypoint_axes_are_exactly_the_tensors_that_depend_on_k(name: str) -> None:
    five, four = BUILDERS[name](5), BUILDERS[name](4)
    s5, s4 = five.state_dict(), four.state_dict()
    depends = {k for k in s5 if s5[k].shape != s4[k].shape}
    axes = five.keypoint_axes()
    assert set(axes) == depends
    for key, (dim, per) in axes.items():
        assert s5[key].shape[dim] == 5 * per and s4[key].shape[dim] == 4 * per, key


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_reordered_keypoints_give_the_sources_outputs_reordered(name: str) -> None:
    """The model's keypoints are the source's in another order: every keypoint-indexed row must move
    with its keypoint, so the warm-started head predicts keypoint k exactly as the source did."""
    source, model = BUILDERS[name](5).eval(), BUILDERS[name](5).eval()
    _randomise(source)
    order = [3, 0, 4, 2, 1]  # the model's keypoint i is the source's order[i]
    names = tuple(NAMES[j] for j in order)
    report = apply_init(model, _source(source.state_dict(), NAMES), InitParams(strict=True), names)
    assert {k for k, _ in report.transferred} == set(model.keypoint_axes())
    assert all(n == 5 for _, n in report.transferred) and report.fresh_keypoints == ()
    feats = _features(name)
    with torch.no_grad():
        want, got = source(feats), model(feats)
    assert set(want) == set(got)
    for key, value in want.items():
        dim = KEYPOINT_DIM.get(key)
        if dim is not None:
            per = value.shape[dim] // 5
            index = torch.tensor([j * per + p for j in order for p in range(per)])
            value = value.index_select(dim, index)
        torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-5, msg=f"{name}: {key}")


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_other_keypoints_carry_the_shared_rows_and_keep_the_new_ones_fresh(name: str) -> None:
    source, model = BUILDERS[name](5), BUILDERS[name](4)
    _randomise(source)
    fresh = _snapshot(model)
    names = ("right_ear", "nose", "head_top", "left_eye")  # head_top is new
    report = apply_init(model, _source(source.state_dict(), NAMES), InitParams(), names)
    assert report.fresh_keypoints == ("head_top",)
    assert report.mismatched == report.missing == report.unexpected == ()
    assert dict(report.transferred) == {key: 3 for key in model.keypoint_axes()}
    src, now = source.state_dict(), model.state_dict()
    for key, (dim, per) in model.keypoint_axes().items():
        for i, j in ((0, 4), (1, 0), (3, 1)):  # model keypoint i <- source keypoint j
            assert torch.equal(now[key].narrow(dim, i * per, per), src[key].narrow(dim, j * per, per)), key
        assert torch.equal(now[key].narrow(dim, 2 * per, per), fresh[key].narrow(dim, 2 * per, per)), key
    for key in report.loaded:
        assert torch.equal(now[key], src[key]), key


def test_keypoint_map_fills_a_new_keypoint_from_a_named_source_one() -> None:
    source, model = BUILDERS["regression"](5), BUILDERS["regression"](4)
    _randomise(source)
    names = ("right_ear", "nose", "head_top", "left_eye")
    report = apply_init(
        model, _source(source.state_dict(), NAMES), InitParams(keypoint_map={"head_top": "nose"}), names
    )
    assert report.fresh_keypoints == () and dict(report.transferred) == {"fc.weight": 4, "fc.bias": 4}
    assert torch.equal(model.fc.weight[4:6], source.fc.weight[0:2])  # head_top (x, y) <- nose (x, y)
    assert torch.equal(model.fc.weight[2:4], source.fc.weight[0:2])


def test_keypoint_map_averages_the_rows_of_a_list_of_source_keypoints() -> None:
    """LSP's neck from COCO's shoulders: the new keypoint's rows are the mean of the listed ones,
    so a linear layer predicts the mean of their outputs."""
    source, model = BUILDERS["regression"](5), BUILDERS["regression"](4)
    _randomise(source)
    names = ("right_ear", "nose", "neck", "left_eye")
    init = InitParams(keypoint_map={"neck": ("left_ear", "right_ear")})
    report = apply_init(model, _source(source.state_dict(), NAMES), init, names)
    assert report.fresh_keypoints == () and dict(report.transferred) == {"fc.weight": 4, "fc.bias": 4}
    w, b = source.fc.weight, source.fc.bias
    assert torch.allclose(model.fc.weight[4:6], (w[6:8] + w[8:10]) / 2)  # neck (x, y) <- mean of the ears
    assert torch.allclose(model.fc.bias[4:6], (b[6:8] + b[8:10]) / 2)
    assert torch.equal(model.fc.weight[0:2], w[8:10])  # one name still copies exactly
    with torch.no_grad():
        out_src, out = source(R.features())["coords"], model(R.features())["coords"]
    assert torch.allclose(out[:, 2], (out_src[:, 3] + out_src[:, 4]) / 2, atol=1e-5)


def test_a_source_without_names_loads_same_shapes_only() -> None:
    source, model = BUILDERS["simcc"](5), BUILDERS["simcc"](4)
    fresh = _snapshot(model)
    report = apply_init(model, _source(source.state_dict()), InitParams(), NAMES[:4])
    assert {k for k, _, _ in report.mismatched} == {"final_layer.weight", "final_layer.bias"}
    assert report.transferred == () and report.fresh_keypoints == ()
    assert torch.equal(model.state_dict()["final_layer.weight"], fresh["final_layer.weight"])


def test_coco_to_lsp_on_a_built_model() -> None:
    """COCO-17 -> LSP-14: the 12 shared joints move, neck and head_top start fresh, the backbone loads whole."""
    spec = ModelSpec.resolve("synthetic-lite0", input_size=(64, 64), backbone={"name": "mobilenetv3_small"})
    coco, lsp = load_meta("coco"), load_meta("lsp")
    source = build_estimator(spec, coco, pretrained=False)
    model = build_estimator(spec, lsp, pretrained=False)
    fresh = _snapshot(model)
    report = apply_init(
        model, _source(source.state_dict(), tuple(coco.keypoint_names)), InitParams(), lsp.keypoint_names
    )
    assert report.fresh_keypoints == ("neck", "head_top")
    assert dict(report.transferred) == {"head.final_layer.weight": 12, "head.final_layer.bias": 12}
    assert set(keypoint_axes(model)) == {"head.final_layer.weight", "head.final_layer.bias"}
    assert all(k.startswith(("backbone.", "head.")) for k in report.loaded) and report.missing == ()
    now, src = model.state_dict(), source.state_dict()
    knee_lsp, knee_coco = lsp.keypoint_names.index("left_knee"), coco.keypoint_names.index("left_knee")
    assert torch.equal(now["head.final_layer.weight"][knee_lsp], src["head.final_layer.weight"][knee_coco])
    neck = lsp.keypoint_names.index("neck")
    assert torch.equal(now["head.final_layer.weight"][neck], fresh["head.final_layer.weight"][neck])
