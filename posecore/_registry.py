"""The one registry helper behind every registry: a decorator that stores typed builders by name, and ``build``.

Model parts (``posecore.models.builders``), codecs, transforms, dataset converters and the local
stack's services each keep one :class:`Registry`. A registry may check what is registered
(``check``) and keep a few facts per entry beside the builder (``register(name, **info)``, read
back with :meth:`Registry.info`), e.g. which batch layouts a transform accepts.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
B = TypeVar("B", bound=Callable[..., Any])


class Registry(Generic[T]):
    """Builders (classes or functions returning ``T``) by name.

    >>> BACKBONES = Registry[nn.Module]("backbone")
    >>> @BACKBONES.register("resnet18")
    ... def resnet18(pretrained: bool = False) -> ResNet: ...
    >>> BACKBONES.build("resnet18")

    ``check(name, builder)`` runs at registration and raises TypeError for a builder that does
    not fit the registry's contract. Registering another builder under a taken name is an error;
    registering the same one again (a reloaded module) is not.
    """

    def __init__(self, kind: str, check: Callable[[str, Callable[..., T]], None] | None = None) -> None:
        self.kind = kind
        self._check = check
        self._builders: dict[str, Callable[..., T]] = {}
        self._info: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **info: Any) -> Callable[[B], B]:
        def deco(builder: B) -> B:
            taken = self._builders.get(name)
            if taken is not None and taken is not builder:
                owner = getattr(taken, "__qualname__", repr(taken))
                raise ValueError(f"{self.kind} name {name!r} is already taken by {owner}")
            if self._check is not None:
                self._check(name, builder)
            self._builders[name] = builder
            self._info[name] = dict(info)
            return builder

        return deco

    def names(self) -> list[str]:
        return sorted(self._builders)

    def __contains__(self, name: object) -> bool:
        return name in self._builders

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._builders)

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._builders:
            raise ValueError(
                f"unknown {self.kind} {name!r}; available {self.kind}s: {', '.join(self.names()) or 'none'}"
            )
        return self._builders[name]

    def info(self, name: str) -> dict[str, Any]:
        """The facts registered with ``name`` (``register(name, **info)``)."""
        self.get(name)
        return dict(self._info[name])

    def build(self, name: str, **kwargs: Any) -> T:
        """Call the builder; unknown and missing keyword arguments are reported with the accepted ones.

        A dataclass builder (codecs, transforms) is checked against its ``init`` fields.
        """
        builder = self.get(name)
        if dataclasses.is_dataclass(builder):
            fields = {f.name: f for f in dataclasses.fields(builder) if f.init}
            what = f"{self.kind} {name!r} ({builder.__name__})"
            unknown = sorted(set(kwargs) - set(fields))
            if unknown:
                raise ValueError(f"{what} has no field(s) {', '.join(unknown)}; its fields are: {', '.join(fields)}")
            missing = [
                f.name
                for f in fields.values()
                if f.name not in kwargs
                and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING
            ]
            if missing:
                raise ValueError(f"{what} needs field(s) {', '.join(missing)}")
            return builder(**kwargs)
        params = inspect.signature(builder).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            unknown = sorted(set(kwargs) - set(params))
            if unknown:
                raise ValueError(
                    f"{self.kind} {name!r} got unknown option(s) {', '.join(unknown)}; "
                    f"accepted: {', '.join(p for p in params if p != 'self')}"
                )
        return builder(**kwargs)
