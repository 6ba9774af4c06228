"""Named registries: the one lookup behind flow methods, training tasks and presets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(dict[str, T], Generic[T]):
    """Name -> object of one kind, with a decorator, the sorted names, a clear lookup.

    Otherwise a plain ``dict`` (a public registry such as ``PRESETS`` stays one).

    Parameters
    ----------
    kind : str
        What the objects are, for the error on an unknown name
        (``"optical-flow method"``).
    hint : str
        Appended to that error, e.g. how to register one.
    """

    def __init__(self, kind: str, hint: str = "") -> None:
        super().__init__()
        self.kind = kind
        self.hint = hint

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated object under ``name`` and return it."""

        def add(obj: T) -> T:
            self[name] = obj
            return obj

        return add

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self)

    def lookup(self, name: str) -> T:
        """The object registered as ``name``.

        Raises
        ------
        ValueError
            For an unknown name: the message lists the available ones.
        """
        try:
            return self[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; available: {self.names()}{self.hint}"
            ) from None
