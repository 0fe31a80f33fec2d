"""Necks: ``feats: tuple[Tensor, ...] -> tuple[Tensor, ...]`` between a backbone and a head.

A neck is built from the backbone's ``in_channels`` and ``strides`` (its ``out_channels`` and
``strides``) and declares its own ``out_channels`` and ``strides`` for the head.

To add a neck: write a builder ``def name(in_channels, strides, ...) -> MyNeck`` in a module of
this package, decorate it with ``@NECKS.register("name")``, and import the module below. The
registry-driven tests in ``tests/models/necks/test_necks.py`` then build it on a typical
four-level feature pyramid and run forward and backward.
"""

from posecore.models.necks import feature_map_processor, fpn, global_average_pooling, pafpn  # noqa: F401
