"""Streaming raw frames through the preprocessing, on one core or many.

An archive is cut into chunks of consecutive frames (:class:`FrameChunk`); each chunk
is read and processed by a worker (:func:`nowcast.data.parallel.map_ordered`: local
processes, threads, serially, or a ``dask.distributed`` cluster) and the results come
back in time order, a bounded number at a time, so memory stays flat whatever the
archive's length. When the archive's files are known, a worker reads its own chunk
from them (decoding is then parallel too and nothing large crosses process
boundaries); otherwise the chunk's values travel with it.

The processed frames are written as they come by a sink: :class:`NetCDFSink` (the
default) or :class:`ZarrSink` (``*.zarr`` output), both complete only when closed
(written beside the destination and renamed), so an interrupted run leaves nothing.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from nowcast.data.parallel import NETCDF_LOCK
from nowcast.data.radar import is_zarr, zarr_encoding

__all__ = [
    "FrameChunk",
    "frame_chunks",
    "read_frames_window",
    "index_runs",
    "NetCDFSink",
    "ZarrSink",
    "open_sink",
]

#: Open sources of this process, so a worker opens its archive once, not per chunk.
_SOURCES: dict[tuple, xr.DataArray] = {}


def index_runs(index: np.ndarray) -> list[slice]:
    """Consecutive runs of an increasing integer index, as slices.

    >>> index_runs(np.array([3, 4, 5, 9, 10]))
    [slice(3, 6, None), slice(9, 11, None)]
    """
    index = np.asarray(index, dtype=np.int64)
    if index.size == 0:
        return []
    cuts = np.flatnonzero(np.diff(index) != 1) + 1
    edges = np.concatenate([[0], cuts, [index.size]])
    return [
        slice(int(index[a]), int(index[b - 1]) + 1)
        for a, b in zip(edges[:-1], edges[1:], strict=True)
    ]


def read_frames_window(
    da: xr.DataArray, index: np.ndarray, window: tuple[slice, slice]
) -> np.ndarray:
    """Frames ``index`` of a ``(time, y, x)`` array, cut to ``window``, as float32.

    Consecutive frames are read as one slice (netCDF / zarr read whole chunks, so a
    fancy index would decode the same chunk many times).

    Returns
    -------
    numpy.ndarray of float32, shape (len(index), window height, window width)
    """
    import dask

    ys, xs = window
    with dask.config.set(scheduler="synchronous"):  # no thread pool in a worker
        parts = [
            np.asarray(da.isel(time=run, y=ys, x=xs).values, dtype=np.float32)
            for run in index_runs(index)
        ]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _open_source(paths: tuple[str, ...], variable: str) -> xr.DataArray:
    key = (paths, variable)
    if key not in _SOURCES:
        from nowcast.data.radar import open_radar

        _SOURCES.clear()  # one archive at a time per process
        ds = open_radar(list(paths), chunk_time=0, validate=False)
        _SOURCES[key] = ds[variable].transpose("time", "y", "x")
    return _SOURCES[key]


@dataclass(frozen=True)
class FrameChunk:
    """Consecutive raw frames to process: where they are and, if needed, their values.

    Attributes
    ----------
    index : numpy.ndarray of int, shape (t,)
        Positions of the frames along the source's time axis (increasing).
    window : (slice, slice)
        Rows and columns to read.
    paths : tuple of str, optional
        The archive's files; a worker opens them itself (once per process).
    variable : str, optional
        The intensity variable in those files.
    data : numpy.ndarray, shape (t, h, w), optional
        The frames themselves, when the source is not a set of files.
    """

    index: np.ndarray
    window: tuple[slice, slice]
    paths: tuple[str, ...] | None = None
    variable: str | None = None
    data: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.index.size)

    def load(self) -> np.ndarray:
        """The chunk's frames, float32 ``(t, h, w)``."""
        if self.data is not None:
            return self.data
        if self.paths is None or self.variable is None:
            raise ValueError("a FrameChunk needs either data or paths and a variable")
        with NETCDF_LOCK:  # threads read one at a time, then compute in parallel
            da = _open_source(self.paths, self.variable)
            return read_frames_window(da, self.index, self.window)


def frame_chunks(
    da: xr.DataArray,
    index: np.ndarray,
    chunk_time: int,
    window: tuple[slice, slice] = (slice(None), slice(None)),
    paths: Sequence[str] | None = None,
) -> Iterator[FrameChunk]:
    """Cut frames ``index`` of ``da`` into chunks of ``chunk_time`` frames.

    With ``paths`` (the files ``da`` was opened from) the chunks carry only where the
    frames are; without, each chunk is read here, lazily as the consumer asks.
    """
    index = np.asarray(index, dtype=np.int64)
    name = str(da.name)
    for a in range(0, index.size, chunk_time):
        part = index[a : a + chunk_time]
        if paths is not None:
            yield FrameChunk(part, window, tuple(map(str, paths)), name)
        else:
            yield FrameChunk(part, window, data=read_frames_window(da, part, window))


# ----------------------------------------------------------------------------- sinks
class NetCDFSink:
    """Writes processed frames into a netCDF file chunk by chunk (see :func:`open_sink`).

    Parameters
    ----------
    path : pathlib.Path
        Destination; written as ``.<name>.<pid>.tmp`` beside it until :meth:`close`.
    result : xarray.Dataset
        Everything but the frames (coordinates, noise mask, motion, attributes).
    n_time : int
        Frames in the output.
    chunk_time, complevel : int
        Frames per chunk and zlib level of the frame variables.
    """

    def __init__(self, path, result, n_time, chunk_time, complevel) -> None:
        import netCDF4

        from nowcast.data.radar import netcdf_encoding

        self.path, self.n_time = Path(path), int(n_time)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._chunking = (min(chunk_time, n_time), result.sizes["y"], result.sizes["x"])
        self._complevel = int(complevel)
        encoding = netcdf_encoding(result, chunk_time, complevel)
        result.to_netcdf(
            self.tmp, format="NETCDF4", engine="netcdf4", encoding=encoding
        )
        self._nc = netCDF4.Dataset(self.tmp, "a")

    def create(self, name: str, dtype: str, attrs: dict, fill=None) -> None:
        """Add a ``(time, y, x)`` variable."""
        var = self._nc.createVariable(
            name,
            dtype,
            ("time", "y", "x"),
            zlib=self._complevel > 0,
            complevel=self._complevel,
            chunksizes=self._chunking,
            fill_value=fill,
        )
        var.setncatts(attrs)

    def write(self, name: str, sl: slice, values: np.ndarray) -> None:
        """Write frames ``sl`` of variable ``name``."""
        with NETCDF_LOCK:  # worker threads may be reading netCDF at the same time
            self._nc.variables[name][sl] = values

    def close(self, attrs: dict) -> Path:
        """Set the global attributes, check the file and move it into place."""
        from nowcast.data.radar import validate_radar

        self._nc.setncatts({k: v for k, v in attrs.items() if v is not None})
        self._nc.close()
        with xr.open_dataset(self.tmp, engine="netcdf4") as written:
            validate_radar(written, allow_nan=False, check_values=False)
        os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        """Remove the partial file (after an error)."""
        try:
            self._nc.close()
        except RuntimeError:  # already closed
            pass
        if self.tmp.exists():
            self.tmp.unlink()


class ZarrSink:
    """Writes processed frames into a zarr store chunk by chunk (see :func:`open_sink`).

    The store is built beside the destination and renamed when complete; parameters
    as :class:`NetCDFSink` (``complevel`` is ignored: zarr's default compressor).
    """

    def __init__(self, path, result, n_time, chunk_time, complevel) -> None:
        self.path, self.n_time = Path(path), int(n_time)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._chunks = (min(chunk_time, n_time), result.sizes["y"], result.sizes["x"])
        self._shape = (self.n_time, result.sizes["y"], result.sizes["x"])
        encoding = zarr_encoding(result, chunk_time)
        result.to_zarr(self.tmp, mode="w", encoding=encoding, consolidated=False)

    def create(self, name: str, dtype: str, attrs: dict, fill=None) -> None:
        """Add a ``(time, y, x)`` variable (metadata only; chunks come with writes)."""
        import dask.array

        empty = dask.array.zeros(self._shape, dtype=dtype, chunks=self._chunks)
        var = xr.Variable(("time", "y", "x"), empty, attrs)
        encoding = {name: {"chunks": self._chunks}}
        if fill is not None:
            encoding[name]["fill_value"] = fill
        xr.Dataset({name: var}).to_zarr(
            self.tmp, mode="a", compute=False, encoding=encoding, consolidated=False
        )

    def write(self, name: str, sl: slice, values: np.ndarray) -> None:
        """Write frames ``sl`` of variable ``name``."""
        xr.Dataset({name: (("time", "y", "x"), values)}).to_zarr(
            self.tmp, region={"time": sl}, consolidated=False
        )

    def close(self, attrs: dict) -> Path:
        """Set the global attributes, consolidate the metadata and move into place."""
        import zarr

        group = zarr.open_group(self.tmp, mode="a")
        group.attrs.update(_zarr_attrs(attrs))
        with (
            warnings.catch_warnings()
        ):  # "not part of the zarr 3 spec": xarray reads it
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(self.tmp)
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        """Remove the partial store (after an error)."""
        if self.tmp.exists():
            shutil.rmtree(self.tmp)


def _zarr_attrs(attrs: dict) -> dict:
    """Global attributes as JSON values (numpy scalars and arrays to plain ones)."""
    out = {}
    for k, v in attrs.items():
        if v is None:
            continue
        out[k] = v.tolist() if isinstance(v, (np.ndarray, np.generic)) else v
    return out


def open_sink(path, result, n_time, chunk_time, complevel) -> NetCDFSink | ZarrSink:
    """A sink for ``path``: zarr for a ``*.zarr`` destination, netCDF otherwise."""
    kind = ZarrSink if is_zarr(path) else NetCDFSink
    return kind(path, result, n_time, chunk_time, complevel)
