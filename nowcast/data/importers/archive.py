"""Import a whole archive to netCDF: decode in parallel, append in time order, memory flat.

Workers (local processes, threads or a ``dask.distributed`` cluster, through
:func:`nowcast.data.parallel.map_ordered`) decode batches of files; this process stacks
each group of ``chunk_time`` frames, checks it against the first file (grid, units) and
the previous group (time order), and appends it to the output file, whose ``time``
dimension is unlimited. At most a few batches are held at once, however long the
archive. The file is written next to its destination and renamed when complete.

Image archives (one 8-bit frame per file) go faster: their grey levels are stored packed
(uint8 with ``scale_factor``/``add_offset``, lossless), and the workers also compress
each chunk of ``chunk_time`` frames, which this process writes with HDF5's direct chunk
write, so that it only copies bytes (profiled: compressing in the writer cost more than
decoding the PNGs).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import netCDF4
import numpy as np
import xarray as xr

from nowcast.data.importers.base import (
    DEFAULT_FILES_PER_TASK,
    Chunk,
    Frames,
    PathLike,
    Preset,
    build_dataset,
    check_same_grid,
    expand_paths,
    iter_chunks,
    iter_frames,
    order_files,
    resolve_preset,
    stack_extra,
    stack_frames,
)
from nowcast.data.parallel import NETCDF_LOCK, batches
from nowcast.data.radar import DEFAULT_INTENSITY, netcdf_encoding

__all__ = ["import_archive", "AppendingWriter"]

_EPOCH = np.datetime64("1970-01-01T00:00:00", "ns")


class AppendingWriter:
    """Write a radar data set to netCDF4 group by group along an unlimited ``time``.

    The first :meth:`append` writes the file (attributes, coordinates, grid mapping,
    the encoding of :func:`nowcast.data.radar.write_radar`, times as int64 seconds since
    1970); later ones extend every variable along ``time``. Written to a temporary file
    next to ``path`` and renamed by :meth:`close` (``ok=False`` removes it instead).

    Parameters
    ----------
    path : path
        Destination ``.nc`` file; parent directories are created.
    chunk_time, complevel : int
        netCDF chunk length along time (whole frames) and zlib level.
    packing : dict, optional
        ``{"scale_factor", "add_offset", "_FillValue"}`` when the intensity variable of
        the appended data sets holds packed integer codes (written as they are; xarray
        decodes them to ``code * scale_factor + add_offset`` on reading).
    """

    def __init__(
        self,
        path: PathLike,
        chunk_time: int = 16,
        complevel: int = 4,
        packing: dict | None = None,
    ) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.chunk_time, self.complevel = int(chunk_time), int(complevel)
        self.packing = packing
        self.nc: netCDF4.Dataset | None = None
        self.h5 = None  # h5py handle once chunks are written directly
        self.name = ""
        self.n_frames = 0

    def append(self, ds: xr.Dataset) -> None:
        """Write ``ds`` (a radar data set) after the frames already written."""
        with NETCDF_LOCK:  # worker threads may be reading netCDF (preset bom, threads)
            self._append(ds)

    def _append(self, ds: xr.Dataset) -> None:
        if self.nc is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            encoding = netcdf_encoding(ds, self.chunk_time, self.complevel)
            encoding["time"] = {
                "units": "seconds since 1970-01-01 00:00:00",
                "dtype": "int64",
                "chunksizes": (self.chunk_time,),
            }
            name = self.name = ds.attrs["intensity_variable"]
            if self.packing is not None:
                ds[name].attrs.update(
                    {k: v for k, v in self.packing.items() if k != "_FillValue"}
                )
                encoding[name]["_FillValue"] = self.packing["_FillValue"]
            ds.to_netcdf(
                self.tmp,
                format="NETCDF4",
                engine="netcdf4",
                encoding=encoding,
                unlimited_dims=["time"],
            )
            self.nc = netCDF4.Dataset(self.tmp, "a")
            self.nc[name].set_auto_maskandscale(self.packing is None)
            self.n_frames = ds.sizes["time"]
            return
        k = ds.sizes["time"]
        where = slice(self.n_frames, self.n_frames + k)
        seconds = (
            ds["time"].values.astype("datetime64[ns]") - _EPOCH
        ) // np.timedelta64(1, "s")
        self.nc["time"][where] = seconds.astype(np.int64)
        for var, da in ds.data_vars.items():
            if "time" in da.dims:
                values = da.values
                self.nc[var][where] = (
                    values.astype(object) if values.dtype.kind == "U" else values
                )
        self.n_frames += k

    def append_chunk(self, times: np.ndarray, blob: bytes) -> None:
        """Append ``len(times)`` packed frames given as one compressed netCDF chunk.

        ``blob`` is the zlib stream of ``chunk_time`` frames of codes (the filters of the
        file's intensity variable: shuffle, a no-op on bytes, then deflate), written with
        HDF5's direct chunk write: no decoding or compressing here. The previous frames
        must fill whole chunks.
        """
        if self.n_frames % self.chunk_time:
            raise ValueError("direct chunk writes must start on a chunk boundary")
        if self.h5 is None:
            import h5py

            self.nc.close()  # type: ignore[union-attr]
            self.nc = None
            self.h5 = h5py.File(self.tmp, "r+")
        k, n = len(times), self.n_frames
        var, time = self.h5[self.name], self.h5["time"]
        var.resize(n + k, axis=0)
        var.id.write_direct_chunk((n, 0, 0), blob)
        time.resize(n + k, axis=0)
        time[n:] = (times.astype("datetime64[ns]") - _EPOCH) // np.timedelta64(1, "s")
        self.n_frames += k

    def close(self, ok: bool = True) -> Path:
        """Finish the file (rename it into place) or, with ``ok=False``, remove it."""
        if self.h5 is not None:
            self.h5.close()
            self.h5 = None
        if self.nc is not None:
            self.nc.close()
            self.nc = None
        if ok:
            os.replace(self.tmp, self.path)
        elif self.tmp.exists():
            self.tmp.unlink()
        return self.path


def _groups(frames: Iterator[Frames], n_frames: int) -> Iterator[list[Frames]]:
    """Group decoded files into lists of at least ``n_frames`` frames (the last: fewer)."""
    group: list[Frames] = []
    count = 0
    for f in frames:
        group.append(f)
        count += len(f.times)
        if count >= n_frames:
            yield group
            group, count = [], 0
    if group:
        yield group


@dataclass(frozen=True)
class _Part:
    """One output file of an import: where it goes and how its frames are written."""

    path: Path
    preset: Preset
    files: Sequence[Path]  # the archive files whose frames it holds, in time order
    first: list[Frames]  # the archive's first frames (the grid); shared by all parts
    name: str  # intensity variable
    chunk_time: int  # frames per netCDF chunk
    complevel: int  # zlib level


def _write_part(frames: Iterator[Frames], part: _Part) -> Path:
    """Append the frames of ``part.files`` to ``part.path``, group by group, in order."""
    first = part.first
    writer = AppendingWriter(part.path, part.chunk_time, part.complevel)  # float32
    last: tuple[np.datetime64, Path] | None = None
    try:
        for group in _groups(frames, part.chunk_time):
            if not first:
                first.append(group[0])
            for f in group:
                check_same_grid(first[0], f)
            values, times, owners = stack_frames(group)
            last = _check_after(last, times, owners)
            extra = stack_extra(group)
            writer.append(
                build_dataset(
                    values, times, first[0], part.preset, part.files, part.name, extra
                )
            )
    except BaseException:
        writer.close(ok=False)
        raise
    return writer.close()


def _check_after(
    last: tuple[np.datetime64, Path] | None, times: np.ndarray, owners: Sequence[Path]
) -> tuple[np.datetime64, Path]:
    """Raise unless ``times`` start after the last appended time; the new last one."""
    if last is not None and times[0] <= last[0]:
        raise ValueError(
            f"{owners[0]} holds time {times[0]}, not after {last[0]} of {last[1]}: "
            "an archive is appended in file order, which must be the time order; "
            "name the files so, or give the preset a file-name pattern=... to "
            "order them by time"
        )
    return times[-1], owners[-1]


def _write_packed_part(chunks: Iterator[Chunk], part: _Part) -> Path:
    """Write chunks compressed by the workers to ``part.path`` (:func:`iter_chunks`)."""
    first = part.first
    packing = part.preset.packing()
    writer = AppendingWriter(part.path, part.chunk_time, part.complevel, packing)
    last: tuple[np.datetime64, Path] | None = None
    try:
        for chunk in chunks:
            if not first:
                first.append(chunk.first)
            check_same_grid(first[0], chunk.first)
            last = _check_after(last, chunk.times, chunk.owners)
            if writer.n_frames == 0:
                codes = chunk.codes(first[0].frame_shape, first[0].values.dtype)
                ds = build_dataset(
                    codes, chunk.times, first[0], part.preset, part.files, part.name
                )
                writer.append(ds)
            else:
                writer.append_chunk(chunk.times, chunk.blob)
    except BaseException:
        writer.close(ok=False)
        raise
    return writer.close()


def _part_path(output: Path, j: int) -> Path:
    return output.with_name(f"{output.stem}_{j:05d}{output.suffix or '.nc'}")


def _write_parts(
    decoded: Iterator[Frames] | Iterator[Chunk],
    write: Callable[..., Path],
    p: Preset,
    files: Sequence[Path],
    output: Path,
    batch_size: int | None,
    name: str,
    chunk_time: int,
    complevel: int,
) -> list[Path]:
    """Write the decoded archive to ``output`` or, with ``batch_size``, to its parts."""
    parts = [files] if batch_size is None else list(batches(files, int(batch_size)))
    written, first = [], []
    for j, part in enumerate(parts):
        target = output if batch_size is None else _part_path(output, j)
        n_items = (
            -(-len(part) // chunk_time) if write is _write_packed_part else len(part)
        )
        frames = itertools.islice(decoded, n_items)
        written.append(
            write(frames, _Part(target, p, part, first, name, chunk_time, complevel))
        )
    return written


def import_archive(
    paths: PathLike | Iterable[PathLike],
    preset: str | Preset,
    output: PathLike,
    *,
    batch_size: int | None = None,
    workers: int | None = 1,
    scheduler: str | None = None,
    files_per_task: int = DEFAULT_FILES_PER_TASK,
    progress: bool = True,
    name: str = DEFAULT_INTENSITY,
    chunk_time: int = 16,
    complevel: int = 4,
    **options: object,
) -> list[Path]:
    """Convert a radar archive to the convention and write it as netCDF.

    Parameters
    ----------
    paths : path, glob pattern, directory, or an iterable of these
        The archive's files.
    preset : str or Preset
        Archive format (see :func:`~nowcast.data.importers.available_presets`).
    output : path
        Destination ``.nc`` file. With ``batch_size``, files
        ``<stem>_00000.nc, <stem>_00001.nc, ...`` next to it instead.
    batch_size : int, optional
        Input files per output file; open the parts together with
        :func:`~nowcast.data.radar.open_radar` (``"<stem>_*.nc"``). Memory is flat
        either way (frames are appended ``chunk_time`` at a time).
    workers : int or None
        Local processes decoding files (1: serially in this process; ``None``/``0``:
        every core). Ignored for a cluster.
    scheduler : str or None
        ``"processes"`` (default), ``"threads"``, ``"serial"``, or the address of a
        ``dask.distributed`` scheduler (``"tcp://host:8786"``) to decode on a cluster;
        the files must then be readable from its workers.
    files_per_task : int
        Files decoded per task sent to a worker.
    progress : bool
        Show a progress bar (files, rate, ETA).
    name, chunk_time, complevel
        Intensity variable name; frames per netCDF chunk and zlib level.
    **options
        Overrides of preset fields (``pattern=``, ``gain=``, ``quantity=``, ``bbox=``...).

    Returns
    -------
    list of pathlib.Path
        The written files.

    Raises
    ------
    ValueError
        Naming the file: what a reader rejects, another grid than the first file's, a
        time not after the previous file's (files are appended by the time in their
        names when the preset has a ``pattern``, else by name).
    """
    if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    p = resolve_preset(preset, **options)
    files, _ = order_files(expand_paths(paths, p.glob), p.pattern)
    output = Path(output)
    where = {"workers": workers, "scheduler": scheduler, "progress": progress}
    if batch_size is not None:  # parts made of whole chunks
        chunk_time = math.gcd(int(chunk_time), int(batch_size))
    if p.packing() is not None and p.one_frame_per_file and complevel > 0:
        write = _write_packed_part  # workers decode and compress whole chunks
        decoded = iter_chunks(
            files, p, chunk_time=chunk_time, complevel=complevel, **where
        )
    else:
        write = _write_part
        decoded = iter_frames(files, p, files_per_task=files_per_task, **where)
    return _write_parts(
        decoded, write, p, files, output, batch_size, name, chunk_time, complevel
    )
