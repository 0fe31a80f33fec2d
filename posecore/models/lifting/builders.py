"""The lifter registry: ``LIFTERS.build(name, codec=..., **options)`` or :func:`build_lifter`.

Every builder takes the :class:`~posecore.codecs.pose_lifting.LiftingCodec` that encodes the
lifter's inputs and targets (it sets the joint counts and input channels, so they cannot
disagree) plus the lifter's own options, and returns a :class:`~posecore.models.lifting._base.Lifter`.

To add a lifter: subclass ``Lifter`` in a module of this package (set ``temporal``), write a
typed builder ``def name(codec: LiftingCodec, *, ...) -> MyLifter`` decorated with
``@register_lifter("name")``, import the module in ``posecore/models/lifting/__init__.py`` and
add a recipe (codec and tiny options) for it in ``tests/models/lifting/test_lifters.py``, whose
registry-driven tests then build it and check shapes, gradients and decoding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from posecore._registry import Registry
from posecore.codecs.pose_lifting import LiftingCodec
from posecore.models.lifting._base import Lifter

__all__ = ["LIFTERS", "available_lifters", "build_lifter", "register_lifter"]

B = TypeVar("B", bound=Callable[..., Lifter])

LIFTERS: Registry[Lifter] = Registry("lifter")


def register_lifter(name: str) -> Callable[[B], B]:
    """Decorator: make a builder ``(codec, **options) -> Lifter`` buildable as ``build_lifter(name, codec)``."""
    return LIFTERS.register(name)


def available_lifters() -> tuple[str, ...]:
    """Registered lifter names, sorted."""
    return tuple(LIFTERS.names())


def build_lifter(name: str, codec: LiftingCodec, **options: Any) -> Lifter:
    """Build the lifter registered as ``name`` for ``codec``; unknown options are reported with the accepted ones."""
    return LIFTERS.build(name, codec=codec, **options)
