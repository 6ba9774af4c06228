"""Functions whose ``**kwargs`` go on to another function's parameters.

A data-set builder that is a hydra ``_target_`` often passes most of its keywords on
(``moving_mnist_datasets(..., **generation)`` to :func:`prepare_moving_mnist`).
Writing the inner signature out again repeats it; taking bare ``**kwargs`` hides the
accepted names from config validation. :func:`forwards_to` records the inner
function, and :func:`accepted_keywords` gives the names a call may use: the outer
function's own plus the inner one's, minus what the outer one sets itself. Config
validation (:mod:`nowcast.training.schema`) and :func:`check_forwarded` both read it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

__all__ = ["forwards_to", "accepted_keywords", "check_forwarded"]

F = TypeVar("F", bound=Callable[..., Any])


def forwards_to(
    target: Callable[..., Any], *, sets: Collection[str] = ()
) -> Callable[[F], F]:
    """Decorator: ``fn``'s ``**kwargs`` are ``target``'s parameters except ``sets``.

    Parameters
    ----------
    target : callable
        The function the keywords go on to.
    sets : collection of str
        Parameters of ``target`` that ``fn`` computes itself (a caller may not give
        them).
    """

    def mark(fn: F) -> F:
        fn.__forwards_to__ = (target, frozenset(sets))  # type: ignore[attr-defined]
        return fn

    return mark


def accepted_keywords(fn: Callable[..., Any]) -> set[str] | None:
    """Keyword names a call of ``fn`` may use; None when any name goes.

    ``fn``'s named parameters, plus, for a ``**kwargs`` marked with
    :func:`forwards_to`, its target's (followed through further marks).
    """
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    own = {
        n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return own
    forwarded = getattr(fn, "__forwards_to__", None)
    if forwarded is None:
        return None
    target, sets = forwarded
    inner = accepted_keywords(target)
    return None if inner is None else own | (inner - sets - own)


def check_forwarded(fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> None:
    """Raise ``TypeError`` naming the keywords of ``kwargs`` that ``fn`` cannot pass on.

    Raises
    ------
    TypeError
        For an unknown keyword, or one that ``fn`` sets itself, with the accepted
        names.
    """
    known = accepted_keywords(fn)
    if known is None:
        return
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(
            f"{fn.__name__}() got unexpected keyword(s) {', '.join(unknown)}; it "
            f"accepts {', '.join(sorted(known))}"
        )
