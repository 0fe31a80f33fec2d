"""The model component builders: one registry per kind of part (see ``posecore/models/__init__.py`` for the contracts)."""

from __future__ import annotations

from torch import nn

from posecore._registry import Registry

BACKBONES: Registry[nn.Module] = Registry("backbone")
NECKS: Registry[nn.Module] = Registry("neck")
HEADS: Registry[nn.Module] = Registry("head")
LOSSES: Registry[nn.Module] = Registry("loss")
