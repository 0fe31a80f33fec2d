"""A tiny one-stage "trained" model and everything around it, as the pipeline leaves it after ``train``, in seconds.

``build(root)`` writes under ``root``: a synthetic dataset (4 train / 4 val images, 128x128 or
96x128 (W x H), 1-3 people each), its converted form and the one-stage cache (whole letterboxed
images, :mod:`posecore.data.images`), and ``models/train`` with ``best.pt``, ``model.json`` and
``meta.yaml``. The model is the ``yoloxpose-lite0`` preset at 64x64 with random weights, woken
up by :func:`wake` so that its outputs are not degenerate. Loaded like ``tiny_model`` (tests are
not a package here); it reuses that module's :class:`TinyRun`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from tiny_model import TinyRun, one_thread

from posecore.data.build import build_cache
from posecore.data.cache import open_cache
from posecore.data.config import EncodeParams
from posecore.datasets.converters import SourceSpec, convert
from posecore.datasets.synthetic import SynthParams, generate
from posecore.engine.checkpoint import BEST, save_checkpoint
from posecore.evaluation.topdown import normalized_inputs
from posecore.metainfo import load_meta
from posecore.models.estimator import ModelSpec, PoseEstimator, build_estimator

__all__ = ["INPUT_SIZE", "build", "model", "spec", "wake"]

INPUT_SIZE = (64, 64)
MODEL = {"preset": "yoloxpose-lite0", "input_size": list(INPUT_SIZE)}


def spec() -> ModelSpec:
    return ModelSpec.resolve(MODEL["preset"], input_size=INPUT_SIZE)


@torch.no_grad()
def wake(model: PoseEstimator, inputs: torch.Tensor) -> PoseEstimator:
    """Give a random-weight one-stage model outputs worth comparing, in eval mode.

    Fresh BatchNorm statistics make the features nearly constant (every anchor scores the same, so
    NMS breaks ties by float noise): one train-mode pass over ``inputs`` (B, 3, h, w) sets them to
    the batch's, and an objectness bias of 0 puts the person scores around 0.5, above ``score_thr``.
    Random heatmaps are flat, a field of near-ties where last-digit differences decide which
    peak a keypoint snaps to: logits of -10 everywhere (last conv zeroed, bias -10) leave no peak
    above ``peak_thr``, so comparisons
    of runtimes see the regressed keypoints (the refinement is tested on made heatmaps in
    tests/codecs/test_refine.py and test_yoloxpose.py).
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 1.0
    model.train()
    model(inputs)
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
    with torch.no_grad():
        for conv in model.head.obj_preds:
            conv.bias.zero_()
        if hasattr(model.head, "heatmap_convs"):
            model.head.heatmap_convs[-1].weight.zero_()
            model.head.heatmap_convs[-1].bias.fill_(-10.0)
    return model.eval()


def model(seed: int = 0, inputs: torch.Tensor | None = None) -> PoseEstimator:
    """The preset at :data:`INPUT_SIZE`, COCO keypoints, woken on ``inputs`` (default: noise)."""
    torch.manual_seed(seed)
    net = build_estimator(spec(), load_meta("coco"), pretrained=False)
    w, h = INPUT_SIZE
    return wake(net, inputs if inputs is not None else torch.randn(8, 3, h, w))


def build(root: Path, seed: int = 0) -> TinyRun:
    with one_thread():
        return _build(root, seed)


def _build(root: Path, seed: int) -> TinyRun:
    synth, converted, cache = root / "synthetic", root / "converted", root / "cache"
    train_dir = root / "models" / "train"
    synth_params = SynthParams(
        out=str(synth), n_train=4, n_val=4, seed=seed, width=96, height=128, min_people=1, max_people=3, workers=1
    )
    generate(synth_params, synth)
    convert(SourceSpec(source="synthetic", meta="coco", root=str(synth)), converted)
    encode = EncodeParams(out=str(cache), workers=1)
    model_spec = spec()
    build_cache(converted, cache, encode, model_spec.build_codec())
    meta = load_meta(converted / "meta.yaml")
    torch.manual_seed(seed)
    net = build_estimator(model_spec, meta, pretrained=False)
    split = open_cache(cache)["val"]
    wake(net, normalized_inputs(split, np.arange(len(split)), net.mean, net.std))
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    train_dir.mkdir(parents=True)
    save_checkpoint(
        train_dir / BEST,
        {
            "model": weights,
            "ema": None,
            "epoch": 1,
            "global_step": 1,
            "best_metric": 0.1,
            "best_epoch": 1,
            "metric_name": "AP",
            "val_history": [],
            "config": {},
        },
    )
    (train_dir / "model.json").write_text(json.dumps({"model": model_spec.to_dict(), "meta": meta.name}))
    shutil.copyfile(converted / "meta.yaml", train_dir / "meta.yaml")
    raw = {
        "synth": {"out": str(synth)},
        "data": {"source": "synthetic", "meta": "coco", "root": str(synth), "out": str(converted)},
        "model": MODEL,
        "encode": {"out": str(cache), "workers": 1},
        "train": {"checkpoint_dir": str(train_dir)},
        "evaluate": {"batch_size": 4},
    }
    return TinyRun(root, raw, weights, weights)
