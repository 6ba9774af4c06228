"""Ordered, bounded parallel map for ingest: local processes or a dask cluster.

Importing and preprocessing an archive are embarrassingly parallel over batches of frames,
but the results must come back **in time order** (they are appended to one file) and
**streamed** (a multi-year archive never fits in memory). :func:`map_ordered` does both:
it keeps at most ``max_in_flight`` batches submitted, and yields each result as soon as it
and all batches before it are done.

The same code runs serially (``workers=1``: no pool, easiest to debug), on local
processes (the default), on local threads, or on a ``dask.distributed`` cluster when the
user passes its address (``scheduler="tcp://host:8786"``), so that an archive too large
for one machine is ingested by many. The function and its arguments must then be
picklable (module-level functions, plain data).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from tqdm.auto import tqdm

__all__ = [
    "NETCDF_LOCK",
    "available_workers",
    "resolve_workers",
    "map_ordered",
    "executor",
    "batches",
]

T = TypeVar("T")
R = TypeVar("R")

_LOCAL = ("processes", "threads", "serial")
#: netCDF-C and the HDF5 library bundled with netCDF4 are not thread-safe: every netCDF
#: read or write that may run beside another thread's (``scheduler="threads"``) holds
#: this lock. Concurrent calls crash the process (SIGSEGV), they do not just fail.
NETCDF_LOCK = threading.RLock()
CONNECT_TIMEOUT_S = 10.0  # how long to wait for a dask scheduler before giving up


def available_workers() -> int:
    """Number of CPU cores this process may use (respects affinity masks and cgroups)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int | None) -> int:
    """Turn a ``workers`` setting into a count: ``None`` or ``0`` means every core.

    Raises
    ------
    ValueError
        For a negative or non-integer count.
    """
    if workers is None or workers == 0:
        return available_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(
            f"workers must be a positive integer, or 0/None for every core; got {workers!r}"
        )
    return workers


@contextmanager
def executor(
    workers: int | None = None, scheduler: str | None = None
) -> Iterator[Executor | None]:
    """Open the executor that :func:`map_ordered` submits to.

    Parameters
    ----------
    workers : int or None
        Local worker count (``None``/``0``: every core). Ignored for a cluster.
    scheduler : str or None
        ``None`` or ``"processes"``: local processes (``"spawn"`` start, safe with torch
        loaded); ``"threads"``: local threads (enough when the work releases the GIL);
        ``"serial"``: no pool; anything else is the address of a running
        ``dask.distributed`` scheduler, e.g. ``"tcp://10.0.0.5:8786"``.

    Yields
    ------
    concurrent.futures.Executor or None
        ``None`` means "run serially in this process".
    """
    scheduler = scheduler or "processes"
    n = resolve_workers(workers)
    if scheduler == "serial" or (scheduler in _LOCAL and n == 1):
        yield None
    elif scheduler == "threads":
        with ThreadPoolExecutor(max_workers=n) as pool:
            yield pool
    elif scheduler == "processes":
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
            yield pool
    else:
        with _cluster_executor(scheduler) as pool:
            yield pool


@contextmanager
def _cluster_executor(address: str) -> Iterator[Executor]:
    try:
        from distributed import Client
    except ImportError as err:  # pragma: no cover - distributed is a dependency
        raise ImportError(
            f"scheduler={address!r} needs dask.distributed: pip install 'distributed'"
        ) from err
    try:
        client = Client(address, timeout=f"{CONNECT_TIMEOUT_S}s")
    except OSError as err:
        raise ConnectionError(
            f"could not reach the dask scheduler at {address!r} ({err}). Start one "
            "(`dask scheduler` and `dask worker <address>` on each machine) or leave "
            "scheduler unset to use this machine's cores."
        ) from err
    try:
        yield client.get_executor()
    finally:
        client.close()


def map_ordered(
    func: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    max_in_flight: int | None = None,
    progress: bool = True,
    desc: str = "",
    unit: str = "frame",
    total: int | None = None,
    count: Callable[[T], int] | None = None,
) -> Iterator[R]:
    """Apply ``func`` to every item in parallel and yield the results in input order.

    Parameters
    ----------
    func : callable
        A picklable (module-level) function of one item.
    items : iterable
        Work items, e.g. batches of file paths. Consumed lazily.
    workers, scheduler
        Where to run, see :func:`executor`.
    max_in_flight : int, optional
        Most items submitted but not yet yielded (default ``2 * workers``, at least 2);
        bounds memory to that many results.
    progress : bool
        Show a tqdm bar with rate and ETA.
    desc, unit : str
        Label and unit of the progress bar.
    total : int, optional
        Total units for the bar's ETA (frames, not items, when ``count`` is given).
    count : callable, optional
        Units in one item (e.g. ``len`` for a batch of frames); default 1 per item.

    Yields
    ------
    object
        ``func(item)`` for each item, in the order of ``items``.
    """
    n = resolve_workers(workers)
    window = max(2, max_in_flight or 2 * n)
    count = count or (lambda item: 1)
    bar = tqdm(
        total=total, desc=desc, unit=unit, disable=not progress, dynamic_ncols=True
    )
    try:
        with executor(workers, scheduler) as pool:
            yield from _drain(func, items, pool, window, count, bar)
    finally:
        bar.close()


def _drain(
    func: Callable[[T], R],
    items: Iterable[T],
    pool: Executor | None,
    window: int,
    count: Callable[[T], int],
    bar: Any,
) -> Iterator[R]:
    if pool is None:
        for item in items:
            result = func(item)
            bar.update(count(item))
            yield result
        return
    pending: deque[tuple[Future, int]] = deque()
    for item in items:
        pending.append((pool.submit(func, item), count(item)))
        if len(pending) >= window:
            yield _pop(pending, bar)
    while pending:
        yield _pop(pending, bar)


def _pop(pending: deque[tuple[Future, int]], bar: Any) -> Any:
    future, units = pending.popleft()
    result = future.result()
    bar.update(units)
    return result


def batches(seq: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Split ``seq`` into consecutive slices of at most ``size`` elements."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    for start in range(0, len(seq), size):
        yield seq[start : start + size]
