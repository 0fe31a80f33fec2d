"""Heads: features -> outputs keyed like the codec's targets, plus the loss against those targets.

Every head is built as ``HEADS.build(name, in_channels=..., in_stride=..., num_keypoints=...,
codec=..., **options)`` from the feature it reads (``feats[in_index]``, default the last), the
dataset's keypoint count and the codec that encodes its targets and decodes its outputs. The
build checks that the parts fit (codec kind, feature size, heatmap size, bins) and says what to
change when they do not.

======================  ===========================  ==============================================
name                    codec                        outputs (B instances, K keypoints)
======================  ===========================  ==============================================
``heatmap``             msra_heatmap, udp_heatmap    "heatmaps" (B, K or 3K, H_hm, W_hm)
``rtmcc``               simcc                        "simcc_x" (B, K, Wx), "simcc_y" (B, K, Wy)
``simcc``               simcc                        "simcc_x" (B, K, Wx), "simcc_y" (B, K, Wy)
``regression``          regression                   "coords" (B, K, 2) normalised
``rle``                 regression                   "coords", "sigmas" (B, K, 2) in (0, 1)
``integral_regression`` integral_regression          "heatmaps" (B, K, H_hm, W_hm) softmaxed, "coords"
``yoloxpose``           yoloxpose (one-stage)        "obj_logits" (B, A), "boxes" (B, A, 4),
                                                     "keypoints" (B, A, K, 2), "vis_logits" (B, A, K)
======================  ===========================  ==============================================

A one-stage head (class attribute ``multi_level = True``, not a :class:`PoseHead`) reads every
level: it is built with ``in_channels`` and ``in_stride`` tuples (all neck outputs), predicts for
the A anchors of whole images and trains on the batch's people (see ``yoloxpose.py``).

``head.loss(outputs, targets) -> dict[str, Tensor]`` returns one named scalar per term
("loss_<target key>"); ``loss=`` takes a loss name, a built loss module or None (the head's
MMPose default). ``head.decode(outputs)`` is ``head.codec.decode(outputs)``.
Flip test-time augmentation lives in :mod:`posecore.models.flip`.

To add a head: subclass :class:`posecore.models.heads._base.PoseHead` in a module of this
package, set ``codec_keys`` / ``output_keys``, check its sizes in ``__init__``, implement
``forward``, ``loss`` and ``keypoint_axes`` (its tensors indexed by keypoint, which a warm start
carries by keypoint name: :mod:`posecore.models.init`), decorate it with ``@HEADS.register("name")``, import the module below and
add a codec recipe for it in ``tests/_helpers/head_recipes.py`` (the registry-driven tests then
check shapes, loss, gradients, decoding and flipping). A one-stage head is a plain ``nn.Module``
with ``multi_level = True`` and a ``MULTI_LEVEL_RECIPES`` entry there (tested without flipping).
"""

from __future__ import annotations

from . import heatmap, integral_regression, regression, simcc, yoloxpose  # noqa: F401  (registers the heads)
from ._base import PoseHead
from .heatmap import HeatmapHead
from .integral_regression import IntegralRegressionHead
from .regression import RegressionHead, RLEHead
from .simcc import RTMCCHead, SimCCHead
from .yoloxpose import YOLOXPoseHead

__all__ = [
    "HeatmapHead",
    "IntegralRegressionHead",
    "PoseHead",
    "RLEHead",
    "RTMCCHead",
    "RegressionHead",
    "SimCCHead",
    "YOLOXPoseHead",
]
