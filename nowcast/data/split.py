"""Train / validation / test splits of a radar archive, as in Shi et al. (2015).

Each rainy day is cut into non-overlapping 40-frame blocks (6 per day at a 6-minute
cadence); per day, 4 blocks are drawn for training, 1 for validation and 1 for testing.
Training samples are 20-frame sliding windows (stride 1) inside the blocks, so no window
ever straddles two blocks, two days, or a gap in the time axis. With 97 full days this
gives the paper's 97 * 4 * 21 = 8,148 training and 97 * 21 = 2,037 validation and test
windows.

Benchmarks defined by dates (SEVIR: train before 2019-01-01, validate before 2019-06-01,
test before 2020-01-01) use :func:`date_split` instead: every gap-free run of frames is
cut at the boundary dates and each piece goes to the split its dates fall in, so no
window straddles a boundary. Archives of separate events (SEVIR's ``event_id`` per
frame) are also cut where the event changes (:func:`cut_at_changes`), so no window
spans two events even when one starts one step after the other ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from nowcast.data.radar import contiguous_segments, infer_cadence

__all__ = [
    "SPLITS",
    "DATE_KEYS",
    "day_blocks",
    "block_split",
    "date_split",
    "parse_split_dates",
    "cut_at_changes",
    "sliding_windows",
]

SPLITS = ("train", "val", "test")
Block = tuple[int, int]
#: Keys of a date split: the end (exclusive) of the training, validation and test periods.
DATE_KEYS = ("train_end", "val_end", "test_end")


def day_blocks(
    times: np.ndarray, block_len: int = 40, cadence: np.timedelta64 | None = None
) -> list[list[Block]]:
    """Cut each calendar day (UTC) into non-overlapping gap-free blocks.

    Parameters
    ----------
    times : numpy.ndarray of datetime64, shape (T,)
        Increasing frame times of the archive.
    block_len : int
        Frames per block (40 in the paper).
    cadence : numpy.timedelta64, optional
        Time step between frames; inferred when omitted.

    Returns
    -------
    list of list of (start, stop)
        For each day that holds at least one full block, its blocks as half-open index
        ranges into ``times``, in time order. Leftover frames at the end of a
        contiguous run (shorter than ``block_len``) are dropped.
    """
    if block_len < 1:
        raise ValueError(f"block_len must be >= 1, got {block_len}")
    times = np.asarray(times, dtype="datetime64[ns]")
    if times.size < block_len:
        return []
    cadence = infer_cadence(times) if cadence is None else cadence
    days = times.astype("datetime64[D]")
    result: list[list[Block]] = []
    current_day = None
    for seg_start, seg_stop in contiguous_segments(times, cadence):
        # a contiguous run may cross midnight: cut it at day boundaries too
        seg_days = days[seg_start:seg_stop]
        cuts = np.flatnonzero(seg_days[1:] != seg_days[:-1]) + 1 + seg_start
        edges = [seg_start, *cuts.tolist(), seg_stop]
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            n_blocks = (b - a) // block_len
            if n_blocks == 0:
                continue
            blocks = [
                (a + k * block_len, a + (k + 1) * block_len) for k in range(n_blocks)
            ]
            if days[a] != current_day:
                result.append([])
                current_day = days[a]
            result[-1].extend(blocks)
    return result


def block_split(
    times: np.ndarray,
    block_len: int = 40,
    counts: Sequence[int] = (4, 1, 1),
    seed: int = 0,
    cadence: np.timedelta64 | None = None,
) -> dict[str, list[Block]]:
    """Assign each day's blocks to train / val / test at random (seeded).

    Parameters
    ----------
    times : numpy.ndarray of datetime64, shape (T,)
        Increasing frame times.
    block_len : int
        Frames per block (40 in the paper).
    counts : (n_train, n_val, n_test)
        Blocks per day for each split (4, 1, 1 in the paper). A day with more blocks
        repeats the pattern; a day with fewer fills train first, then validation, then
        test, so short days never leak one block into several splits.
    seed : int
        Seed of the per-day random draw.
    cadence : numpy.timedelta64, optional
        Time step; inferred when omitted.

    Returns
    -------
    dict
        ``{"train": [...], "val": [...], "test": [...]}``, each a time-sorted list of
        ``(start, stop)`` index ranges.
    """
    if len(counts) != 3 or any(int(c) < 0 for c in counts) or sum(counts) == 0:
        raise ValueError(
            f"counts must be three non-negative ints (train, val, test), got {counts}"
        )
    labels = [
        name for name, c in zip(SPLITS, counts, strict=True) for _ in range(int(c))
    ]
    rng = np.random.default_rng(seed)
    out: dict[str, list[Block]] = {name: [] for name in SPLITS}
    for blocks in day_blocks(times, block_len, cadence):
        n = len(blocks)
        day_labels = (labels * (n // len(labels) + 1))[:n]
        order = rng.permutation(n)
        for label, idx in zip(day_labels, order, strict=True):
            out[label].append(blocks[idx])
    for name in SPLITS:
        out[name].sort()
    return out


def parse_split_dates(dates: Mapping[str, object]) -> dict[str, np.datetime64]:
    """Check and parse the boundary dates of a date split.

    Parameters
    ----------
    dates : mapping
        ``train_end`` and ``val_end`` (required) and ``test_end`` (optional, ``None``
        = no end), each an ISO date or date-time (UTC), e.g. ``"2019-01-01"``.

    Returns
    -------
    dict
        The given keys as ``numpy.datetime64[ns]``.

    Raises
    ------
    ValueError
        Naming the key: unknown or missing key, unreadable date, dates not increasing.
    """
    unknown = sorted(set(dates) - set(DATE_KEYS))
    missing = [k for k in DATE_KEYS[:2] if dates.get(k) is None]
    if unknown or missing:
        raise ValueError(
            f"split dates {dict(dates)} need train_end and val_end (and optionally "
            f"test_end); unknown {unknown}, missing {missing}"
        )
    out: dict[str, np.datetime64] = {}
    for key in DATE_KEYS:
        if dates.get(key) is None:
            continue
        try:
            out[key] = np.datetime64(str(dates[key]).replace(" ", "T"), "ns")
        except ValueError as err:
            raise ValueError(
                f"split date {key}={dates[key]!r} is not an ISO date such as "
                f"'2019-01-01' ({err})"
            ) from err
    values = [out[k] for k in DATE_KEYS if k in out]
    if any(b <= a for a, b in zip(values[:-1], values[1:], strict=False)):
        raise ValueError(
            f"split dates must increase (train_end < val_end < test_end), got "
            f"{ {k: str(dates[k]) for k in out} }"
        )
    return out


def cut_at_changes(blocks: Sequence[Block], labels: np.ndarray) -> list[Block]:
    """Cut blocks where a per-frame label (e.g. the SEVIR event id) changes.

    Parameters
    ----------
    blocks : sequence of (start, stop)
        Half-open index ranges.
    labels : numpy.ndarray, shape (T,)
        One label per frame of the archive.

    Returns
    -------
    list of (start, stop)
        The pieces, each holding one label, in the order of ``blocks``.
    """
    labels = np.asarray(labels)
    out: list[Block] = []
    for a, b in blocks:
        cuts = np.flatnonzero(labels[a + 1 : b] != labels[a : b - 1]) + a + 1
        edges = [a, *cuts.tolist(), b]
        out.extend(zip(edges[:-1], edges[1:], strict=True))
    return out


def date_split(
    times: np.ndarray,
    dates: Mapping[str, object],
    labels: np.ndarray | None = None,
    cadence: np.timedelta64 | None = None,
) -> dict[str, list[Block]]:
    """Assign frames to train / val / test by date, in gap-free runs.

    Frames before ``train_end`` train, from ``train_end`` to before ``val_end``
    validate, from ``val_end`` to before ``test_end`` (or to the end of the archive
    when it is not given) test; later frames are left out. Gap-free runs (and, with
    ``labels``, runs of one label) are cut at those dates, so no window built inside
    a block crosses a boundary, a gap or a label change.

    Parameters
    ----------
    times : numpy.ndarray of datetime64, shape (T,)
        Increasing frame times (UTC).
    dates : mapping
        ``train_end``, ``val_end`` and optionally ``test_end``
        (:func:`parse_split_dates`).
    labels : numpy.ndarray, shape (T,), optional
        Per-frame sequence label (the SEVIR ``event_id``); blocks never span two.
    cadence : numpy.timedelta64, optional
        As in :func:`block_split`.

    Returns
    -------
    dict
        As :func:`block_split`'s: the splits' time-sorted half-open index ranges.
    """
    bounds = parse_split_dates(dates)
    times = np.asarray(times, dtype="datetime64[ns]")
    out: dict[str, list[Block]] = {name: [] for name in SPLITS}
    if times.size == 0:
        return out
    runs = contiguous_segments(times, cadence)
    if labels is not None:
        runs = cut_at_changes(runs, _checked_labels(labels, times.size))
    ends = [bounds[k] for k in DATE_KEYS if k in bounds]
    # period of each frame: 0 train, 1 val, 2 test, 3 after test_end (left out)
    period = np.searchsorted(np.asarray(ends), times, side="right")
    for piece in cut_at_changes(runs, period):
        label = int(period[piece[0]])
        if label < len(SPLITS):
            out[SPLITS[label]].append(piece)
    return out


def _checked_labels(labels: np.ndarray, n_time: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n_time,):
        raise ValueError(
            f"need one label per frame, got shape {labels.shape} for {n_time} frames"
        )
    return labels


def sliding_windows(
    blocks: Sequence[Block], window: int = 20, stride: int = 1
) -> np.ndarray:
    """Start indices of all windows of ``window`` frames that fit inside a block.

    Parameters
    ----------
    blocks : sequence of (start, stop)
        Half-open, gap-free index ranges (from :func:`block_split`).
    window : int
        Frames per window (input + output length; 20 in the paper).
    stride : int
        Step between window starts.

    Returns
    -------
    numpy.ndarray of int64, shape (N,)
        Window start indices; window ``i`` covers ``[starts[i], starts[i] + window)``.
    """
    if window < 1 or stride < 1:
        raise ValueError(
            f"window and stride must be >= 1, got window={window}, stride={stride}"
        )
    starts = [
        np.arange(a, b - window + 1, stride, dtype=np.int64)
        for a, b in blocks
        if b - a >= window
    ]
    if blocks and not starts:
        longest = max(b - a for a, b in blocks)
        raise ValueError(
            f"window of {window} frames does not fit in any block (longest {longest}); "
            "use shorter input/output lengths or longer blocks"
        )
    return np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
