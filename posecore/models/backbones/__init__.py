"""Backbones: ``x (B, 3, H, W) -> tuple`` of multi-scale features, one module per family.

Every backbone subclasses :class:`~posecore.models.backbones._common.Backbone`, so it has
``out_channels``, ``strides`` (increasing), ``out_indices`` (which stages it returns; builders
take ``out_indices=None`` for their default) and the input normalisation ``mean``/``std`` (RGB,
0..255 pixel values) that its weights expect.

To add a backbone: write a builder ``def name(out_indices=None, pretrained=None) -> MyBackbone``
in a module of this package (a new file per family), decorate it with
``@BACKBONES.register("name")``, end it with ``finish(backbone, "name", pretrained)`` (loads
registered weights, then drops unused layers), and import the module below. The registry-driven
tests in ``tests/models/backbones/test_backbones.py`` then build it and run forward and backward.
To give it pretrained weights, describe them in ``posecore/models/pretrained.py``.
"""

from posecore.models.backbones import cspnext, efficientnet_lite, hrnet, mobilenet_v3, resnet  # noqa: F401
from posecore.models.backbones._common import Backbone, StagedBackbone

__all__ = ["Backbone", "StagedBackbone"]
