"""A tiny registry: a decorator that stores typed builders by name, and ``build(name, **kwargs)``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Builders (classes or functions returning ``T``) by name.

    >>> BACKBONES = Registry[nn.Module]("backbone")
    >>> @BACKBONES.register("resnet18")
    ... def resnet18(pretrained: bool = False) -> ResNet: ...
    >>> BACKBONES.build("resnet18")
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._builders: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(builder: Callable[..., T]) -> Callable[..., T]:
            if name in self._builders:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._builders[name] = builder
            return builder

        return deco

    def names(self) -> list[str]:
        return sorted(self._builders)

    def __contains__(self, name: str) -> bool:
        return name in self._builders

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._builders:
            raise ValueError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}")
        return self._builders[name]

    def build(self, name: str, **kwargs: Any) -> T:
        """Call the builder; unknown keyword arguments are reported with the accepted ones."""
        builder = self.get(name)
        params = inspect.signature(builder).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            unknown = sorted(set(kwargs) - set(params))
            if unknown:
                raise ValueError(
                    f"{self.kind} {name!r} got unknown option(s) {', '.join(unknown)}; "
                    f"accepted: {', '.join(p for p in params if p != 'self')}"
                )
        return builder(**kwargs)
