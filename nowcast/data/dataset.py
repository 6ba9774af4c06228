"""Torch datasets serving (inputs, targets) windows from a processed radar netCDF file.

The processed file (written by :class:`nowcast.data.preprocess.Preprocessor`) holds the
normalised intensity ``(time, y, x)`` in [0, 1], a ``noise_mask`` ``(y, x)`` (1 = noisy
pixel to exclude from the metrics), what the grey levels mean (``source_units``,
``zmin`` / ``zmax``, optionally ``zr_a`` / ``zr_b``: :class:`~nowcast.data.physical.
GreyScale`), which frames the noise mask was fitted on (``noise_mask_fit_*``) and, for
archives with no-data pixels, a per-frame ``coverage`` ``(time, y, x)`` (1 = observed).
Windows are read frame range by frame range (netCDF4, or zarr for a ``*.zarr`` store),
so the file never has to fit in memory; each DataLoader worker opens its own handle. A
file that cannot be read (truncated, corrupt) raises
:class:`~nowcast.data.radar.RadarFileError` naming it and the fix.

Items are ``(inputs, targets)``, or ``(inputs, targets, target_valid)`` when the file
has a coverage variable (``dataset.has_coverage``); consumers accept both.
"""

from __future__ import annotations

import functools
import os
import weakref
from collections.abc import Mapping
from pathlib import Path

import netCDF4
import numpy as np
import torch
import xarray as xr
from torch.utils.data import Dataset

from nowcast.data.physical import GreyScale
from nowcast.data.preprocess import COVERAGE, read_fit_split
from nowcast.data.radar import is_zarr, unreadable
from nowcast.data.split import (
    SPLITS,
    block_split,
    cut_at_changes,
    date_split,
    sliding_windows,
)

__all__ = [
    "RadarWindowDataset",
    "radar_datasets",
    "rainiest_windows",
    "check_fit_split",
    "overlap_groups",
    "scale_notes",
    "ProcessedFile",
]


def _read_times(path: Path) -> np.ndarray:
    """Decoded frame times of a processed radar file (datetime64[ns], shape (T,))."""
    engine = "zarr" if is_zarr(path) else "netcdf4"
    try:
        with xr.open_dataset(path, engine=engine) as ds:
            return np.asarray(ds["time"].values, dtype="datetime64[ns]")
    except (OSError, RuntimeError, ValueError, KeyError) as err:
        raise unreadable([path], err) from err


#: Per-frame sequence label of a file whose frames come from separate events (SEVIR).
EVENT_VARIABLE = "event_id"


def _read_events(path: Path) -> np.ndarray | None:
    """The per-frame ``event_id`` of a radar file, shape (T,), or None without one."""
    with ProcessedFile(path) as pf:
        if EVENT_VARIABLE not in pf.names:
            return None
        if pf.dims(EVENT_VARIABLE) != ("time",):
            raise ValueError(
                f"{path}: {EVENT_VARIABLE!r} has dims {pf.dims(EVENT_VARIABLE)}, "
                "expected ('time',): one event id per frame"
            )
        return pf.read(EVENT_VARIABLE).astype(str)


def _check_variable(pf: ProcessedFile, variable: str) -> tuple[int, int, int]:
    """``(T, H, W)`` of the frame variable of a processed file, or a clear error."""
    if variable not in pf.names:
        raise KeyError(
            f"{pf.path} has no variable {variable!r} (found {pf.names}); is it a "
            "processed radar file? Make one with `python scripts/preprocess.py`"
        )
    dims = pf.dims(variable)
    if dims != ("time", "y", "x"):
        raise ValueError(
            f"{pf.path}: variable {variable!r} has dims {dims}, expected "
            "('time', 'y', 'x'); processed files written by scripts/preprocess.py have "
            "them, re-run it on the raw archive"
        )
    return pf.shape(variable)  # type: ignore[return-value]


_SCALE_KEYS = ("source_units", "zmin", "zmax")


def _file_scale(
    path: Path, attrs: Mapping, zr_a: float | None, zr_b: float | None
) -> GreyScale:
    """The grey scale a processed file records (see :meth:`GreyScale.from_attrs`).

    A file that records none of ``source_units`` / ``zmin`` / ``zmax`` (written by
    hand or by an old version) is read as HKO-7 dBZ (-10..60), the data sets' legacy
    assumption, and says so in the notes (:func:`scale_notes`).
    """
    if not any(k in attrs for k in _SCALE_KEYS):
        return GreyScale.from_attrs(
            {"source_units": "dBZ", "zmin": -10.0, "zmax": 60.0}, zr_a, zr_b
        )
    try:
        return GreyScale.from_attrs(attrs, zr_a, zr_b)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def scale_notes(attrs: Mapping, scale: GreyScale) -> list[str]:
    """Report sentences on the grey-level conversion of a processed file."""
    notes = [f"grey-level conversion: {scale.describe()}"]
    if not any(k in attrs for k in _SCALE_KEYS):
        notes.append(
            "the processed file records no source_units/zmin/zmax: grey levels "
            "assumed to be HKO-7 dBZ (-10..60); re-run scripts/preprocess.py to record "
            "them"
        )
    return notes


def overlap_groups(starts: np.ndarray, window: int) -> np.ndarray:
    """Group ids of windows: windows that overlap (directly or in a chain) share one.

    Parameters
    ----------
    starts : numpy.ndarray of int, shape (N,)
        Window start frames.
    window : int
        Frames per window.

    Returns
    -------
    numpy.ndarray of int64, shape (N,)
        ``0, 0, ..., 1, 1, ...`` in start order (ids follow the sorted starts).
    """
    starts = np.asarray(starts, dtype=np.int64)
    if starts.size == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(starts, kind="stable")
    new = np.concatenate([[0], np.diff(starts[order]) >= window]).astype(np.int64)
    ids = np.empty_like(starts)
    ids[order] = np.cumsum(new)
    return ids


def _frame_flags(n_time: int, blocks) -> np.ndarray:
    flags = np.zeros(n_time, dtype=bool)
    for a, b in blocks:
        flags[a:b] = True
    return flags


def check_fit_split(
    path: Path,
    attrs: Mapping,
    times: np.ndarray,
    blocks: Mapping[str, list],
    block_len: int,
    counts,
    seed: int,
    split_dates: Mapping | None = None,
) -> list[str]:
    """Refuse a split that validates or tests on frames the noise mask was fitted on.

    Parameters
    ----------
    path : pathlib.Path
        The processed file (for the messages).
    attrs : mapping
        Its global attributes (``noise_mask_fit_*``, see
        :func:`nowcast.data.preprocess.fit_split_attrs`).
    times : numpy.ndarray of datetime64, shape (T,)
        Its frame times.
    blocks : mapping
        The requested split (:func:`nowcast.data.split.block_split` output).
    block_len, counts, seed
        The requested block split's settings (for the messages).
    split_dates : mapping, optional
        The requested date split (:func:`nowcast.data.split.date_split`), when the
        split is by dates (then ``block_len``, ``counts`` and ``seed`` are unused).

    Returns
    -------
    list of str
        Notes for the report (fit on all frames, or fit split not recorded).

    Raises
    ------
    ValueError
        When any fitting frame lies in a validation or test block; the message names
        both splits and the fix.
    """
    fit = read_fit_split(attrs)
    if fit is None or fit["fit_on"] != "train":
        return _unchecked_fit_notes(path, attrs, fit)
    fit_blocks = block_split(
        times, block_len=fit["block_len"], counts=fit["counts"], seed=fit["seed"]
    )["train"]
    fitted = _frame_flags(times.size, fit_blocks)
    held_out = _frame_flags(times.size, [*blocks["val"], *blocks["test"]])
    n_leak = int((fitted & held_out).sum())
    if n_leak:
        fitted_on = (
            f"{path}: its noise mask was fitted on the training blocks of "
            f"block_len={fit['block_len']}, counts={fit['counts']}, seed={fit['seed']}, "
        )
        raise ValueError(
            fitted_on + _leak_advice(n_leak, block_len, counts, seed, split_dates)
        )
    return []


def _unchecked_fit_notes(path: Path, attrs: Mapping, fit: Mapping | None) -> list[str]:
    """Report notes when there is no training-block fit to check against."""
    if fit is None:
        if int(attrs.get("_noise_mask_enabled", 1)):
            return [
                f"{path.name} does not record which frames its noise mask was fitted "
                "on, so leakage into validation/test cannot be checked (re-run "
                "scripts/preprocess.py to record it)"
            ]
        return []
    if fit["fit_on"] == "all":
        return [
            "noise mask fitted on all frames (fit_on=all): evaluation-only archive; "
            "its validation/test frames took part in the mask fit"
        ]
    return []  # "none": nothing was fitted on data


def _leak_advice(
    n_leak: int, block_len: int, counts, seed: int, split_dates: Mapping | None
) -> str:
    """The second half of the leak error: the requested split and the fix."""
    if split_dates is not None:
        return (
            f"but the requested date split {dict(split_dates)} puts {n_leak} of those "
            "fitting frames into validation or test. Preprocess without a fitted "
            "noise mask (`python scripts/preprocess.py ... preprocess.noise_mask=false`"
            ", as configs/preprocess/sevir.yaml does), or, for an evaluation-only "
            "archive, with `fit_on=all`"
        )
    c = [int(x) for x in counts]
    refit = (
        "Refit on the split you evaluate with: `python scripts/preprocess.py ... "
        f"fit_block_len={block_len} fit_counts=[{c[0]},{c[1]},{c[2]}] "
        f"split_seed={seed}`, or, for an evaluation-only archive, `python "
        "scripts/preprocess.py ... fit_on=all`"
        if c[0] > 0
        else "The requested split has no training blocks to fit on: for this "
        "evaluation-only archive refit with `python scripts/preprocess.py ... "
        "fit_on=all`"
    )
    return (
        f"but the requested split (block_len={block_len}, counts={c}, seed={seed}) "
        f"puts {n_leak} of those fitting frames into validation or test. {refit}"
    )


class ProcessedFile:
    """Read access to the variables of a processed radar file: netCDF4 or zarr.

    Parameters
    ----------
    path : pathlib.Path
        ``.nc`` file or ``*.zarr`` store.

    Raises
    ------
    nowcast.data.radar.RadarFileError
        When the file exists but cannot be read (truncated, corrupt); also on a read
        that fails later. The message names the file and the fix.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.is_zarr = is_zarr(self.path)
        try:
            if self.is_zarr:
                import zarr

                self._group = zarr.open_group(self.path, mode="r")
            else:
                self._group = netCDF4.Dataset(self.path)
                self._group.set_auto_mask(False)
        except (OSError, RuntimeError, ValueError, KeyError) as err:
            raise unreadable([self.path], err) from err

    @property
    def names(self) -> list[str]:
        """Variable names."""
        if self.is_zarr:
            return sorted(self._group.array_keys())
        return sorted(self._group.variables)

    def _var(self, name: str):
        return self._group[name] if self.is_zarr else self._group.variables[name]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._var(name).shape)

    def dims(self, name: str) -> tuple[str, ...]:
        var = self._var(name)
        if not self.is_zarr:
            return tuple(var.dimensions)
        dims = getattr(var.metadata, "dimension_names", None)
        return tuple(dims or var.attrs.get("_ARRAY_DIMENSIONS", ()))

    def var_attrs(self, name: str) -> dict:
        var = self._var(name)
        if self.is_zarr:
            return dict(var.attrs)
        return {k: var.getncattr(k) for k in var.ncattrs()}

    def attrs(self) -> dict:
        """Global attributes."""
        if self.is_zarr:
            return dict(self._group.attrs)
        return {k: self._group.getncattr(k) for k in self._group.ncattrs()}

    def read(self, name: str, start: int | None = None, stop: int | None = None):
        """Values of ``name`` (frames ``start:stop`` along its first axis)."""
        try:
            return np.asarray(self._var(name)[start:stop])
        except (OSError, RuntimeError, ValueError) as err:
            raise unreadable([self.path], err) from err

    def close(self) -> None:
        if not self.is_zarr:
            self._group.close()

    def __enter__(self) -> ProcessedFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: Datasets holding an open netCDF4 handle in this process.
_OPEN_DATASETS: weakref.WeakSet[RadarWindowDataset] = weakref.WeakSet()


def _close_handles_before_fork() -> None:
    """HDF5 is not fork-safe: close open handles before DataLoader workers fork.

    Each process reopens its own handle lazily on the next read.
    """
    for ds in list(_OPEN_DATASETS):
        ds.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_close_handles_before_fork)


class RadarWindowDataset(Dataset):
    """Windows of a processed radar sequence as float32 tensors.

    Parameters
    ----------
    path : str or os.PathLike
        Processed radar netCDF file.
    starts : numpy.ndarray of int, shape (N,)
        Index of the first frame of each window (see :func:`nowcast.data.split.sliding_windows`).
    input_len, output_len : int
        Frames given to the forecaster and frames to predict.
    variable : str
        Name of the intensity variable.
    in_memory : bool
        Load the intensity once into memory (fast for small files); otherwise windows
        are read from disk on demand.
    block_ids : numpy.ndarray of int, shape (N,), optional
        Block of each window (windows of one block overlap and are not independent).
        Default: windows that overlap in time, directly or through a chain of
        overlapping windows, share an id.
    zr_a, zr_b : float, optional
        Z-R relation of the data config, used for dBZ files that record none (see
        :meth:`nowcast.data.physical.GreyScale.from_attrs`).
    notes : list of str, optional
        Sentences for the report (see :func:`radar_datasets`); default the
        grey-level conversion (:func:`scale_notes`).

    Attributes
    ----------
    scale : nowcast.data.physical.GreyScale
        What the grey levels mean; the one conversion to scoring units.
    valid_mask : torch.Tensor, bool, shape (H, W)
        True where a pixel counts in the metrics (not clutter: the K-Means noise mask).
    has_coverage : bool
        Whether the file has a per-frame coverage variable; items then carry
        ``target_valid``.
    block_ids : numpy.ndarray of int64, shape (N,)
        One id per window; equal ids = same block. The bootstrap's independent units.
    notes : list of str
        Sentences the report must print.
    zmin, zmax : float
        The min-max normalisation range, in ``source_units``.
    source_units : str
        Units of the archive before normalisation (``scale.units``).
    times : numpy.ndarray of datetime64, shape (T,)
        Frame times of the whole file.

    Items are ``(inputs, targets)`` with shapes ``(input_len, 1, H, W)`` and
    ``(output_len, 1, H, W)`` (float32 grey levels), plus ``target_valid``, bool
    ``(output_len, 1, H, W)``, True where the observation exists, when
    :attr:`has_coverage`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        starts: np.ndarray,
        input_len: int = 5,
        output_len: int = 15,
        variable: str = "intensity",
        in_memory: bool = False,
        block_ids: np.ndarray | None = None,
        zr_a: float | None = None,
        zr_b: float | None = None,
        notes: list[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.starts = np.asarray(starts, dtype=np.int64)
        self.input_len = int(input_len)
        self.output_len = int(output_len)
        self.variable = variable
        self._handle: ProcessedFile | None = None
        self._pid: int | None = None
        with ProcessedFile(self.path) as pf:
            n_time, height, width = _check_variable(pf, variable)
            units = pf.var_attrs(variable).get("units")
            if units != "1":
                raise ValueError(
                    f"{self.path}: {variable!r} has units {units!r}, expected normalised "
                    "grey levels (units '1'); run scripts/preprocess.py on it first"
                )
            if "noise_mask" in pf.names:
                noise = pf.read("noise_mask").astype(bool)
            else:
                noise = np.zeros((height, width), dtype=bool)
            attrs = pf.attrs()
            self.scale = _file_scale(self.path, attrs, zr_a, zr_b)
            self.zmin, self.zmax = self.scale.vmin, self.scale.vmax
            self.source_units = self.scale.units
            self._data = (
                pf.read(variable).astype(np.float32, copy=False) if in_memory else None
            )
            self.has_coverage = COVERAGE in pf.names
            self._coverage = (
                pf.read(COVERAGE).astype(bool)
                if self.has_coverage and in_memory
                else None
            )
        self.notes = (
            list(notes) if notes is not None else scale_notes(attrs, self.scale)
        )
        self.times = _read_times(self.path)
        self.valid_mask = torch.from_numpy(~noise)
        self.frame_shape = (height, width)
        window = self.input_len + self.output_len
        if self.starts.size and (
            self.starts.min() < 0 or self.starts.max() + window > n_time
        ):
            raise ValueError(
                f"window starts out of range for {n_time} frames and window {window}"
            )
        if block_ids is None:
            block_ids = overlap_groups(self.starts, window)
        self.block_ids = np.asarray(block_ids, dtype=np.int64)
        if self.block_ids.shape != self.starts.shape:
            raise ValueError(
                f"need one block id per window, got {self.block_ids.shape[0]} ids for "
                f"{self.starts.shape[0]} windows"
            )

    def __len__(self) -> int:
        return int(self.starts.size)

    def _file(self) -> ProcessedFile:
        if self._handle is None or self._pid != os.getpid():
            # one handle per process: netCDF4 handles must not cross a fork
            self._handle = ProcessedFile(self.path)
            self._pid = os.getpid()
            _OPEN_DATASETS.add(self)
        return self._handle

    def _frames(self, start: int, stop: int) -> np.ndarray:
        if self._data is not None:
            return self._data[start:stop]
        return (
            self._file().read(self.variable, start, stop).astype(np.float32, copy=False)
        )

    def _covered(self, start: int, stop: int) -> np.ndarray:
        """Coverage (bool, (stop - start, H, W), True = observed) of frames."""
        if self._coverage is not None:
            return self._coverage[start:stop]
        return self._file().read(COVERAGE, start, stop).astype(bool)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        start = int(self.starts[index])
        stop = start + self.input_len + self.output_len
        frames = torch.from_numpy(self._frames(start, stop)).unsqueeze(1)
        inputs, targets = frames[: self.input_len], frames[self.input_len :]
        if not self.has_coverage:
            return inputs, targets
        valid = self._covered(start + self.input_len, stop)
        return inputs, targets, torch.from_numpy(valid).unsqueeze(1)

    @functools.cached_property
    def pixel_counts(self) -> dict[str, int]:
        """What each mask removes, over the distinct target frames of these windows.

        Returns
        -------
        dict
            ``frame_pixels`` (H * W), ``clutter_pixels`` (per frame, the noise mask),
            ``target_frames`` (distinct frames predicted by at least one window),
            ``unobserved_pixel_frames`` (pixels of those frames without data that the
            clutter mask does not already remove; 0 without coverage).
        """
        h, w = self.frame_shape
        valid = self.valid_mask.numpy()
        frames = np.zeros(self.times.size, dtype=bool)
        for a in self.starts.tolist():
            frames[a + self.input_len : a + self.input_len + self.output_len] = True
        unobserved = 0
        if self.has_coverage and frames.any():
            idx = np.flatnonzero(frames)
            # contiguous runs of target frames, read run by run
            cuts = np.flatnonzero(np.diff(idx) > 1) + 1
            for run in np.split(idx, cuts):
                cov = self._covered(int(run[0]), int(run[-1]) + 1)
                unobserved += int((~cov & valid).sum())
        return {
            "frame_pixels": int(h * w),
            "clutter_pixels": int((~valid).sum()),
            "target_frames": int(frames.sum()),
            "unobserved_pixel_frames": unobserved,
        }

    def window_times(self, index: int) -> np.ndarray:
        """Frame times ``(input_len + output_len,)`` of window ``index``."""
        start = int(self.starts[index])
        return self.times[start : start + self.input_len + self.output_len]

    def true_motion(self, index: int) -> torch.Tensor | None:
        """True motion ``(2, H, W)`` (u right, v down; pixels per step) at the last input.

        Only data sets that store it (the synthetic one: ``motion_u`` / ``motion_v``)
        have it; returns ``None`` otherwise.
        """
        t = int(self.starts[index]) + self.input_len - 1
        with ProcessedFile(self.path) as pf:
            if "motion_u" not in pf.names or "motion_v" not in pf.names:
                return None
            frames = [
                pf.read(k, t, t + 1)[0] if len(pf.shape(k)) == 3 else pf.read(k)
                for k in ("motion_u", "motion_v")
            ]
        frames = [np.asarray(f, np.float32) for f in frames]
        return torch.from_numpy(np.stack(frames))

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handle"] = None
        state["_pid"] = None
        return state

    def close(self) -> None:
        """Close this process's file handle (reopened lazily on the next read)."""
        handle, self._handle, self._pid = getattr(self, "_handle", None), None, None
        if handle is not None:
            try:
                handle.close()
            except RuntimeError:  # already closed
                pass

    def __del__(self) -> None:
        self.close()


def radar_datasets(
    path: str | os.PathLike,
    input_len: int = 5,
    output_len: int = 15,
    seed: int = 0,
    stride: int = 1,
    block_len: int = 40,
    counts: tuple[int, int, int] = (4, 1, 1),
    in_memory: bool | str = "auto",
    variable: str = "intensity",
    zr_a: float | None = None,
    zr_b: float | None = None,
    split_dates: Mapping | None = None,
) -> dict[str, RadarWindowDataset]:
    """Train / validation / test window datasets over one processed radar file.

    Parameters
    ----------
    path : str or os.PathLike
        Processed radar netCDF or ``*.zarr`` store (``scripts/preprocess.py`` output).
    input_len, output_len : int
        Frames in and frames out (5 and 15 in the paper); their sum must fit a block.
    seed : int
        Seed of the per-day block draw.
    stride : int
        Step between window starts (1 in the paper).
    block_len : int
        Frames per block (40 in the paper).
    counts : (n_train, n_val, n_test)
        Blocks per day for each split.
    split_dates : mapping, optional
        Split by dates instead of blocks: ``{"train_end", "val_end", "test_end"}``
        (ISO dates, ``test_end`` optional; :func:`nowcast.data.split.date_split`);
        ``block_len``, ``counts`` and ``seed`` are then unused. Either way, a file
        with a per-frame ``event_id`` (SEVIR) never has a window spanning two events.
    in_memory : bool or "auto"
        Load the intensities into memory; "auto" does so for files under 1 GiB of data.
    variable : str
        Name of the intensity variable.
    zr_a, zr_b : float, optional
        The data config's Z-R relation ``Z = a R^b``: used for dBZ files that record
        none, ignored for rain-rate files (:meth:`GreyScale.from_attrs`).

    Returns
    -------
    dict
        ``{"train": ..., "val": ..., "test": ...}``; each dataset's ``block_ids`` are
        the first frame of its window's block, its ``notes`` say how grey levels are
        converted and on which frames the noise mask was fitted.

    Raises
    ------
    ValueError
        When the requested split validates or tests on frames the noise mask was
        fitted on (:func:`check_fit_split`).
    """
    path = _existing(Path(path))
    window = input_len + output_len
    if split_dates is None and window > block_len:
        raise ValueError(f"input_len + output_len = {window} exceeds {block_len=}")
    times = _read_times(path)
    n_bytes, attrs = _file_facts(path, variable)
    if in_memory == "auto":
        in_memory = n_bytes < 2**30
    blocks = _split_blocks(path, times, block_len, counts, seed, split_dates, window)
    notes = scale_notes(attrs, _file_scale(path, attrs, zr_a, zr_b))
    notes += check_fit_split(
        path, attrs, times, blocks, block_len, counts, seed, split_dates
    )
    kwargs = dict(variable=variable, in_memory=bool(in_memory), zr_a=zr_a, zr_b=zr_b)
    out = {}
    for name in SPLITS:
        starts, ids = _block_windows(blocks[name], window, stride)
        out[name] = RadarWindowDataset(
            path, starts, input_len, output_len, block_ids=ids, notes=notes, **kwargs
        )
    if split_dates is None and counts[0] > 0 and len(out["train"]) == 0:
        raise ValueError(_no_training_message(path, block_len, times.size))
    return out


def _split_blocks(
    path: Path,
    times: np.ndarray,
    block_len: int,
    counts,
    seed: int,
    split_dates: Mapping | None,
    window: int,
) -> dict[str, list]:
    """The split's blocks: by dates or per-day blocks, cut where the event changes.

    Date-split pieces shorter than ``window`` frames (cut at a date or an event) are
    dropped.
    """
    events = _read_events(path)
    if split_dates is not None:
        try:
            blocks = date_split(times, split_dates, labels=events)
        except ValueError as err:
            raise ValueError(f"{path}: data.datasets.split_dates: {err}") from err
        return {k: [(a, b) for a, b in v if b - a >= window] for k, v in blocks.items()}
    blocks = block_split(times, block_len=block_len, counts=counts, seed=seed)
    if events is None:
        return blocks
    return {name: cut_at_changes(b, events) for name, b in blocks.items()}


def _no_training_message(path: Path, block_len: int, n_frames: int) -> str:
    return (
        f"{path} yields no training windows: it needs at least one gap-free run of "
        f"{block_len} frames within a day ({n_frames} frames found)"
    )


def _existing(path: Path) -> Path:
    """``path``, or a ``FileNotFoundError`` that says how to make it."""
    if not path.exists():
        raise FileNotFoundError(
            f"processed radar file {path} does not exist; make it with "
            "`python scripts/preprocess.py input=<raw radar netCDF> output="
            f"{path}` (see README, 'Data')"
        )
    return path


def _file_facts(path: Path, variable: str) -> tuple[int, dict]:
    """Bytes of the frame variable (float32) and the global attributes of a processed
    file, plus ``_noise_mask_enabled`` (0 without a noise mask or when disabled)."""
    with ProcessedFile(path) as pf:
        shape = _check_variable(pf, variable)
        attrs = pf.attrs()
        enabled = 0
        if "noise_mask" in pf.names:
            enabled = int(pf.var_attrs("noise_mask").get("enabled", 1))
    attrs["_noise_mask_enabled"] = enabled
    return 4 * int(np.prod(shape)), attrs


def _block_windows(
    blocks: list, window: int, stride: int
) -> tuple[np.ndarray, np.ndarray]:
    """Window starts inside ``blocks`` and, per window, its block's first frame."""
    starts = sliding_windows(blocks, window=window, stride=stride)
    ids = [
        np.full(len(range(a, b - window + 1, stride)), a, dtype=np.int64)
        for a, b in blocks
        if b - a >= window
    ]
    return starts, (np.concatenate(ids) if ids else np.zeros(0, np.int64))


def rainiest_windows(
    dataset: RadarWindowDataset, n: int, distinct: bool = True
) -> list[int]:
    """Indices of the ``n`` windows whose targets hold the most echo.

    Parameters
    ----------
    dataset : RadarWindowDataset
        Windows to rank by the mean grey level of their target frames.
    n : int
        How many to return.
    distinct : bool
        Skip windows that overlap in time one already picked, so the cases differ.

    Returns
    -------
    list of int
        Window indices, rainiest first (fewer than ``n`` if the data set runs out).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    wetness = np.array([float(dataset[i][1].mean()) for i in range(len(dataset))])
    span = dataset.input_len + dataset.output_len
    picked: list[int] = []
    for i in np.argsort(-wetness, kind="stable").tolist():
        start = int(dataset.starts[i])
        if not distinct or all(
            abs(start - int(dataset.starts[j])) >= span for j in picked
        ):
            picked.append(i)
        if len(picked) == n:
            break
    return picked
