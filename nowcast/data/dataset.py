"""Torch datasets serving (inputs, targets) windows from a processed radar netCDF file.

The processed file (written by :class:`nowcast.data.preprocess.Preprocessor`) holds the
normalised intensity ``(time, y, x)`` in [0, 1], a ``noise_mask`` ``(y, x)`` (1 = noisy
pixel to exclude from the metrics) and the min-max range in the ``zmin`` / ``zmax``
attributes. Windows are read frame range by frame range with netCDF4, so the file never
has to fit in memory; each DataLoader worker opens its own handle.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path

import netCDF4
import numpy as np
import torch
import xarray as xr
from torch.utils.data import Dataset

from nowcast.data.split import SPLITS, block_split, sliding_windows

__all__ = ["RadarWindowDataset", "radar_datasets", "rainiest_windows"]


def _read_times(path: Path) -> np.ndarray:
    """Decoded frame times of a radar netCDF file (datetime64[ns], shape (T,))."""
    with xr.open_dataset(path, engine="netcdf4") as ds:
        return np.asarray(ds["time"].values, dtype="datetime64[ns]")


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

    Attributes
    ----------
    valid_mask : torch.Tensor, bool, shape (H, W)
        True where a pixel counts in the metrics (not noise).
    zmin, zmax : float
        The min-max normalisation range, in ``source_units`` (dBZ for radar archives).
    times : numpy.ndarray of datetime64, shape (T,)
        Frame times of the whole file.

    Items are ``(inputs, targets)`` with shapes ``(input_len, 1, H, W)`` and
    ``(output_len, 1, H, W)``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        starts: np.ndarray,
        input_len: int = 5,
        output_len: int = 15,
        variable: str = "intensity",
        in_memory: bool = False,
    ) -> None:
        self.path = Path(path)
        self.starts = np.asarray(starts, dtype=np.int64)
        self.input_len = int(input_len)
        self.output_len = int(output_len)
        self.variable = variable
        self._handle: netCDF4.Dataset | None = None
        self._pid: int | None = None
        with netCDF4.Dataset(self.path) as nc:
            if variable not in nc.variables:
                raise KeyError(
                    f"{self.path} has no variable {variable!r} (found "
                    f"{sorted(nc.variables)}); is it a processed radar file?"
                )
            var = nc.variables[variable]
            n_time, height, width = var.shape
            units = getattr(var, "units", None)
            if units != "1":
                raise ValueError(
                    f"{self.path}: {variable!r} has units {units!r}, expected normalised "
                    "grey levels (units '1'); run scripts/preprocess.py on it first"
                )
            if "noise_mask" in nc.variables:
                noise = np.asarray(nc.variables["noise_mask"][:]).astype(bool)
            else:
                noise = np.zeros((height, width), dtype=bool)
            self.zmin = float(getattr(nc, "zmin", np.nan))
            self.zmax = float(getattr(nc, "zmax", np.nan))
            self.source_units = str(getattr(nc, "source_units", "dBZ"))
            self._data = np.asarray(var[:], dtype=np.float32) if in_memory else None
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

    def __len__(self) -> int:
        return int(self.starts.size)

    def _frames(self, start: int, stop: int) -> np.ndarray:
        if self._data is not None:
            return self._data[start:stop]
        if self._handle is None or self._pid != os.getpid():
            # one handle per process: netCDF4 handles must not cross a fork
            self._handle = netCDF4.Dataset(self.path)
            self._handle.set_auto_mask(False)
            self._pid = os.getpid()
            _OPEN_DATASETS.add(self)
        return np.asarray(
            self._handle.variables[self.variable][start:stop], dtype=np.float32
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        start = int(self.starts[index])
        frames = torch.from_numpy(
            self._frames(start, start + self.input_len + self.output_len)
        ).unsqueeze(1)
        return frames[: self.input_len], frames[self.input_len :]

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
        with netCDF4.Dataset(self.path) as nc:
            if "motion_u" not in nc.variables or "motion_v" not in nc.variables:
                return None
            uv = [nc.variables[k] for k in ("motion_u", "motion_v")]
            frames = [np.asarray(v[t] if v.ndim == 3 else v[:], np.float32) for v in uv]
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
) -> dict[str, RadarWindowDataset]:
    """Train / validation / test window datasets over one processed radar file.

    Parameters
    ----------
    path : str or os.PathLike
        Processed radar netCDF (``scripts/preprocess.py`` output).
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
    in_memory : bool or "auto"
        Load the intensities into memory; "auto" does so for files under 1 GiB of data.
    variable : str
        Name of the intensity variable.

    Returns
    -------
    dict
        ``{"train": ..., "val": ..., "test": ...}``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"processed radar file {path} does not exist; make it with "
            "`python scripts/preprocess.py input=<raw radar netCDF> output="
            f"{path}` (see README, 'Data')"
        )
    times = _read_times(path)
    with netCDF4.Dataset(path) as nc:
        if variable not in nc.variables:
            raise KeyError(
                f"{path} has no variable {variable!r} (found {sorted(nc.variables)})"
            )
        n_bytes = 4 * int(np.prod(nc.variables[variable].shape))
    if in_memory == "auto":
        in_memory = n_bytes < 2**30
    blocks = block_split(times, block_len=block_len, counts=counts, seed=seed)
    window = input_len + output_len
    if window > block_len:
        raise ValueError(
            f"input_len + output_len = {window} exceeds block_len = {block_len}"
        )
    out = {}
    for name in SPLITS:
        starts = sliding_windows(blocks[name], window=window, stride=stride)
        out[name] = RadarWindowDataset(
            path,
            starts,
            input_len,
            output_len,
            variable=variable,
            in_memory=bool(in_memory),
        )
    if counts[0] > 0 and len(out["train"]) == 0:
        raise ValueError(
            f"{path} yields no training windows: it needs at least one gap-free run of "
            f"{block_len} frames within a day ({times.size} frames found)"
        )
    return out


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
