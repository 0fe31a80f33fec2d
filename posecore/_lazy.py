"""``lazy_import(name)``: a module stand-in that imports the module on first attribute access.

Why: a codec, the flip rules and the crop geometry each keep their torch and NumPy versions in
one module, and the bundle runtime (onnxruntime + NumPy) imports those modules where torch may
be absent. With ``torch = lazy_import("torch")`` such a module imports without torch, and torch
is loaded the first time torch code runs. Type checkers should see the real module::

    if TYPE_CHECKING:
        import torch
    else:
        torch = lazy_import("torch")

Each attribute is looked up on the real module once and then stored on the stand-in, so later
reads (``torch.where`` in a hot loop) are plain module attribute reads, as fast as on torch
itself. Default arguments and module-level constants are evaluated at import, so a module that
wants to stay importable without torch must not touch the stand-in there.
"""

from __future__ import annotations

import importlib
import types
from typing import Any

__all__ = ["lazy_import"]


def lazy_import(name: str) -> Any:
    """A stand-in for module ``name`` (e.g. "torch", "torch.nn.functional") that imports it when first used."""
    stand_in = types.ModuleType(name, f"Stand-in for {name}, imported on first attribute access.")

    # A module-level ``__getattr__`` (PEP 562) rather than a ModuleType subclass: it runs only for
    # names not stored yet, and stored ones are read by the plain module lookup, with no hook in between.
    def __getattr__(attr: str) -> Any:
        value = getattr(importlib.import_module(name), attr)
        setattr(stand_in, attr, value)
        return value

    stand_in.__getattr__ = __getattr__  # type: ignore[method-assign]
    return stand_in
