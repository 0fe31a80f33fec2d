"""Models: backbones, necks, heads and losses, composed into a pose estimator.

Contracts (shapes for a batch of B crops of size H x W):

- Backbone: ``nn.Module``; ``forward(x (B, 3, H, W) float32, normalised) -> tuple[Tensor, ...]``
  of multi-scale features ``(B, C_i, H / s_i, W / s_i)``; attributes ``out_channels: tuple[int, ...]``
  and ``strides: tuple[int, ...]`` (one per output, increasing strides).
- Neck: ``nn.Module``; ``forward(feats: tuple[Tensor, ...]) -> tuple[Tensor, ...]``; built from the
  backbone's ``in_channels``/``strides``; attributes ``out_channels`` and ``strides``.
- Head: ``nn.Module``; ``forward(feats: tuple[Tensor, ...]) -> dict[str, Tensor]`` keyed exactly like
  its codec's targets (``"heatmaps"``, ``"simcc_x"``/``"simcc_y"``, ``"coords"``, ...); built from
  ``in_channels``, ``in_stride`` (of the feature it reads), ``num_keypoints`` and the ``codec``
  whose sizes it must produce; ``loss(outputs, targets) -> dict[str, Tensor]`` (named scalar losses
  summed by the trainer).
- Loss: ``nn.Module``; ``forward(pred, target, weights (B, K)) -> scalar Tensor``.

Each kind has a registry in ``posecore.models.builders`` (``BACKBONES``, ``NECKS``, ``HEADS``,
``LOSSES``). To add a component, decorate its builder with ``@BACKBONES.register("name")`` in a
module of the matching sub-package and import that module in the sub-package's ``__init__``;
registry-driven tests then build it and run forward and backward.
"""
