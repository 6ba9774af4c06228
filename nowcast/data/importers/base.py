"""Shared machinery of the importers: presets, their registry, file discovery, file-name
times, reading files (in parallel) and the one provenance block of every import.

Every format is a :class:`Preset` subclass in its own module. A preset is a frozen
dataclass of plain fields (so it pickles to worker processes) with one method,
:meth:`Preset.read_file`, that turns one file into :class:`Frames`: float32 values
``(k, H, W)`` in physical units, their ``k`` valid times, the units, the grid (when the
file or the product definition knows it) and the attributes to record. Everything else
(finding the files, ordering them, decoding batches of files on several cores, stacking
the frames in time order, rejecting duplicate times and mixed grids, georeferencing,
recording the import) happens here, once, for every format.
"""

from __future__ import annotations

import glob as _glob
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import ClassVar

import numpy as np
import xarray as xr

from nowcast.data.georef import set_grid
from nowcast.data.parallel import batches, map_ordered
from nowcast.data.radar import DEFAULT_INTENSITY, make_radar_dataset, record_step
from nowcast.registry import Registry

__all__ = [
    "PathLike",
    "Grid",
    "Frames",
    "Preset",
    "PRESETS",
    "register_preset",
    "available_presets",
    "get_preset",
    "resolve_preset",
    "expand_paths",
    "compile_time_pattern",
    "parse_time",
    "order_files",
    "iter_frames",
    "read_frames",
    "build_dataset",
]

PathLike = str | os.PathLike

#: Files decoded per task sent to a worker: large enough to amortise the round trip,
#: small enough to keep a few batches in flight per core.
DEFAULT_FILES_PER_TASK = 16


# ------------------------------------------------------------------------ data types
@dataclass(frozen=True)
class Grid:
    """Where a frame's cells lie: cell-centre coordinates and their projection.

    Attributes
    ----------
    x, y : numpy.ndarray, shape (W,), (H,)
        Cell centres in ``units``; ``y[0]`` is the first (top) row of the frame.
    crs : str
        PROJ string, WKT or ``"EPSG:<code>"`` (see :func:`nowcast.data.georef.set_grid`).
    units : {"m", "km", "degrees"}
    """

    x: np.ndarray
    y: np.ndarray
    crs: str
    units: str = "m"

    def same_as(self, other: Grid | None) -> bool:
        """Whether ``other`` is the same grid (same projection and coordinates)."""
        return (
            other is not None
            and self.crs == other.crs
            and self.units == other.units
            and np.array_equal(self.x, other.x)
            and np.array_equal(self.y, other.y)
        )


@dataclass
class Frames:
    """What one file holds, decoded.

    Attributes
    ----------
    values : numpy.ndarray, shape (k, H, W), float32
        Physical values; NaN where the file says "no data" (measured zero stays 0).
    times : numpy.ndarray, shape (k,), datetime64[ns]
        Valid time of each frame.
    units : str
        Units of ``values`` (one of :data:`nowcast.data.radar.KNOWN_UNITS`).
    path : pathlib.Path
        The file, named in errors about these frames.
    grid : Grid or None
        The grid, when known.
    attrs : dict
        Global attributes to record (product, source, ...); those of the first file win.
    var_attrs : dict
        Attributes of the intensity variable (``long_name``, ``standard_name``, ...).
    extra : dict of str to numpy.ndarray, shape (k,)
        Auxiliary variables along time (e.g. the SEVIR event of each frame).
    y, x : numpy.ndarray or None
        Non-georeferenced coordinates of the rows / columns (e.g. a netCDF file's own),
        used when ``grid`` is None.
    """

    values: np.ndarray
    times: np.ndarray
    units: str
    path: Path
    grid: Grid | None = None
    attrs: dict = field(default_factory=dict)
    var_attrs: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    y: np.ndarray | None = None
    x: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.frame_shape = tuple(self.values.shape[1:])  # kept when values are freed

    @classmethod
    def one(
        cls, frame: np.ndarray, time: np.datetime64, units: str, path: Path, **fields
    ) -> Frames:
        """The :class:`Frames` of a file holding one ``(H, W)`` frame valid at ``time``."""
        times = np.array([time], dtype="datetime64[ns]")
        return cls(frame[None], times, units, path, **fields)


@dataclass(frozen=True, kw_only=True)
class Preset:
    """How to read one archive format; subclasses implement :meth:`read_file`.

    Attributes
    ----------
    name : str
        Registry name.
    glob : str
        Files to take when a directory is given (searched recursively).
    pattern : str or None
        Valid time in the file names (see :func:`compile_time_pattern`): files are then
        ordered by it before reading (so a long archive streams in time order). ``None``:
        ordered by name, times taken from the files.
    attrs : dict
        Global attributes of the result (source, institution, licence, ...).
    """

    name: str
    glob: str = "*"
    pattern: str | None = None
    attrs: Mapping[str, str] = field(default_factory=dict)

    #: Name of the provenance step recorded by the import.
    step: ClassVar[str] = "import_frames"
    #: Fields a custom preset (``preset=None``) must be given.
    required: ClassVar[tuple[str, ...]] = ()
    #: Whether every file holds exactly one frame (then imports compress whole chunks
    #: in the workers, see :func:`iter_chunks`).
    one_frame_per_file: ClassVar[bool] = False

    def read_file(self, path: Path) -> Frames:
        """Decode one file (to be implemented by each format)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement read_file")

    def packing(self) -> dict | None:
        """CF packing of the intensity on disk, for formats whose values are a linear map
        of small integer codes (``scale_factor``, ``add_offset``, ``_FillValue``);
        ``None`` (the default) stores float32. See :meth:`read_codes`."""
        return None

    def read_codes(self, path: Path) -> Frames:
        """Like :meth:`read_file` but the values are the packed integer codes of
        :meth:`packing` (``value = code * scale_factor + add_offset``), so that an
        import can write them without decoding and re-encoding every pixel."""
        raise NotImplementedError(f"{type(self).__name__} stores no packed codes")

    def step_params(self) -> dict:
        """The preset's fields as recorded in the provenance (not ``attrs``)."""
        skip = {"name", "attrs", "glob"}
        return {
            f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip
        }


# -------------------------------------------------------------------------- registry
PRESETS: Registry[Preset] = Registry(
    "importer preset", " (or register one with nowcast.data.importers.register_preset)"
)


def register_preset(preset: Preset, overwrite: bool = False) -> Preset:
    """Add an archive preset to the registry used by :func:`get_preset`."""
    if not isinstance(preset, Preset):
        raise TypeError(f"preset must be a Preset, got {type(preset).__name__}")
    if preset.name in PRESETS and not overwrite:
        raise ValueError(
            f"preset {preset.name!r} is already registered; pass overwrite=True to "
            "replace it"
        )
    PRESETS[preset.name] = preset
    return preset


# get_preset(name) raises a ValueError listing available_presets() for an unknown name.
available_presets = PRESETS.names
get_preset = PRESETS.lookup


def resolve_preset(
    preset: str | Preset | None,
    kind: type[Preset] | None = None,
    **overrides: object,
) -> Preset:
    """A preset (by name or object) with the non-``None`` ``overrides`` applied.

    Parameters
    ----------
    preset : str, Preset or None
        Registered name or preset object; ``None`` builds a custom ``kind`` preset from
        ``overrides`` alone (its :attr:`Preset.required` fields must be given).
    kind : type, optional
        Preset class the caller needs (e.g. :class:`ImagePreset` for
        ``read_image_frames``); ``None`` accepts any.
    **overrides
        New values of preset fields.

    Raises
    ------
    TypeError
        For an option that is not a field of the preset.
    ValueError
        For a preset of the wrong kind, or a custom preset missing a required field.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if preset is None:
        if kind is None:
            raise ValueError(f"give a preset, one of {available_presets()}")
        missing = [f for f in kind.required if f not in overrides]
        if missing:
            raise ValueError(
                f"give a preset (one of {available_presets()}) or at least "
                f"{', '.join(f'{m}=...' for m in missing)} for a custom {kind.__name__}"
            )
        _check_options(kind, overrides)
        return kind(name="custom", **overrides)
    if isinstance(preset, str):
        preset = get_preset(preset)
    if kind is not None and not isinstance(preset, kind):
        raise ValueError(
            f"preset {preset.name!r} is a {type(preset).__name__}, but this reader "
            f"needs a {kind.__name__}; use nowcast.data.importers.read_frames or "
            "import_archive, which read any preset"
        )
    _check_options(type(preset), overrides)
    return replace(preset, **overrides) if overrides else preset


def _check_options(kind: type[Preset], overrides: Mapping[str, object]) -> None:
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(
            f"unknown {kind.__name__} option(s) {unknown}; expected some of "
            f"{sorted(known - {'name'})}"
        )


# ------------------------------------------------------------------------ file lists
def expand_paths(paths: PathLike | Iterable[PathLike], glob: str = "*") -> list[Path]:
    """Turn files, glob patterns and directories into a list of existing files.

    Parameters
    ----------
    paths : path, glob pattern, directory, or an iterable of these
        Directories are searched recursively for ``glob``.
    glob : str
        File-name pattern used inside directories.

    Returns
    -------
    list of pathlib.Path
        In the order given (globs and directories sorted by name).
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    out: list[Path] = []
    for item in items:
        s = os.fspath(item)
        if any(c in s for c in "*?["):
            matched = sorted(_glob.glob(s, recursive=True))
            if not matched:
                raise FileNotFoundError(f"no file matches the pattern {s!r}")
            out.extend(Path(m) for m in matched if Path(m).is_file())
        elif Path(s).is_dir():
            found = sorted(
                p for p in Path(s).rglob(glob) if p.is_file() and p.name[0] != "."
            )
            if not found:
                raise FileNotFoundError(
                    f"directory {s} holds no files matching {glob!r}"
                )
            out.extend(found)
        elif not Path(s).exists():
            raise FileNotFoundError(f"radar file {s} does not exist; check the path")
        else:
            out.append(Path(s))
    if not out:
        raise FileNotFoundError("no radar files given")
    return out


# ---------------------------------------------------------------------- time parsing
_DIRECTIVES = {
    "Y": r"(?P<year>\d{4})",
    "y": r"(?P<year2>\d{2})",
    "m": r"(?P<month>\d{2})",
    "d": r"(?P<day>\d{2})",
    "j": r"(?P<doy>\d{3})",
    "H": r"(?P<hour>\d{2})",
    "M": r"(?P<minute>\d{2})",
    "S": r"(?P<second>\d{2})",
}


def _pattern_regex(pattern: str) -> str:
    """The regular expression of a strptime-style pattern (or the regex itself)."""
    if "(?P<" in pattern:
        return pattern
    if "%" not in pattern:
        raise ValueError(
            f"time pattern {pattern!r} has neither strptime directives (%Y%m%d%H%M) "
            "nor named regex groups ((?P<year>\\d{4})...); write one of those"
        )
    parts = []
    for token in re.split(r"(%.)", pattern):
        if len(token) == 2 and token[0] == "%":
            if token[1] == "%":
                parts.append("%")
            elif token[1] in _DIRECTIVES:
                parts.append(_DIRECTIVES[token[1]])
            else:
                raise ValueError(
                    f"time pattern {pattern!r} uses unsupported directive {token}; "
                    f"supported: {['%' + d for d in _DIRECTIVES]} (or write a regex "
                    "with named groups)"
                )
        else:
            parts.append(re.escape(token))
    return "".join(parts)


def compile_time_pattern(pattern: str) -> re.Pattern:
    """Compile a file-name time pattern (strptime-style format or named-group regex).

    Parameters
    ----------
    pattern : str
        Either a strptime-style format such as ``"%Y%m%d%H%M_fmi"`` (directives
        ``%Y %y %m %d %j %H %M %S %%``; everything else literal) or a regular
        expression with named groups ``year``/``year2``, ``month`` + ``day`` or
        ``doy``, ``hour`` and optional ``minute``, ``second``.

    Returns
    -------
    re.Pattern
        To be searched (not full-matched) in a file name.
    """
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"time pattern must be a non-empty string, got {pattern!r}")
    try:
        compiled = re.compile(_pattern_regex(pattern))
    except re.error as err:
        raise ValueError(
            f"time pattern {pattern!r} is not a valid regex: {err}"
        ) from err
    groups = set(compiled.groupindex)
    missing = []
    if not groups & {"year", "year2"}:
        missing.append("year (%Y or %y)")
    if not ({"month", "day"} <= groups or "doy" in groups):
        missing.append("month and day (%m %d) or day of year (%j)")
    if "hour" not in groups:
        missing.append("hour (%H)")
    if missing:
        raise ValueError(
            f"time pattern {pattern!r} lacks {', '.join(missing)}; a file name must "
            "give the full valid time"
        )
    return compiled


def parse_time(path: PathLike, pattern: str | re.Pattern) -> np.datetime64:
    """Valid time encoded in a file name.

    Parameters
    ----------
    path : path
        File whose base name (or whole path, for patterns containing ``/``) holds the
        time.
    pattern : str or re.Pattern
        See :func:`compile_time_pattern`.

    Returns
    -------
    numpy.datetime64
        In seconds (times in file names are UTC by convention; no zone is applied).
    """
    regex = compile_time_pattern(pattern) if isinstance(pattern, str) else pattern
    text = Path(path).as_posix() if "/" in regex.pattern else Path(path).name
    m = regex.search(text)
    if m is None:
        raise ValueError(
            f"cannot parse a time from file name {text!r} ({path}) with pattern "
            f"{regex.pattern!r}; pass pattern=... matching the archive's naming "
            "(strptime format like '%Y%m%d%H%M' or a regex with named groups)"
        )
    g = {k: v for k, v in m.groupdict().items() if v is not None}
    try:
        return np.datetime64(_datetime_from_groups(g), "s")
    except (ValueError, KeyError) as err:
        raise ValueError(
            f"file name {text!r} ({path}) matched pattern {regex.pattern!r} but gives "
            f"no valid time ({m.group(0)!r}: {err})"
        ) from err


def _datetime_from_groups(g: Mapping[str, str]) -> datetime:
    if "year" in g:
        year = int(g["year"])
    else:  # POSIX: 69-99 -> 19xx, 00-68 -> 20xx
        yy = int(g["year2"])
        year = yy + (1900 if yy >= 69 else 2000)
    hms = (int(g["hour"]), int(g.get("minute", 0)), int(g.get("second", 0)))
    if "month" in g:
        return datetime(year, int(g["month"]), int(g["day"]), *hms)
    day = datetime.strptime(f"{year} {int(g['doy'])}", "%Y %j")
    return day.replace(hour=hms[0], minute=hms[1], second=hms[2])


def check_duplicates(times: np.ndarray, owners: Sequence[object]) -> None:
    """Raise naming both owners (files, events) when two consecutive sorted times are equal."""
    if times.size > 1:
        dup = np.flatnonzero(np.diff(times) == np.timedelta64(0))
        if dup.size:
            i = int(dup[0])
            raise ValueError(
                f"duplicate time {times[i]}: {owners[i]} and {owners[i + 1]} hold the "
                "same valid time; remove one of them from the input"
            )


def order_files(
    files: Sequence[Path], pattern: str | None
) -> tuple[list[Path], np.ndarray | None]:
    """Files in time order (by the time in their names) or, without a pattern, by name.

    Returns
    -------
    files : list of pathlib.Path
    times : numpy.ndarray of datetime64[s] or None
        The file-name times (duplicates rejected), or ``None`` without a pattern.
    """
    if pattern is None:
        return sorted(files, key=lambda f: (f.name, str(f))), None
    regex = compile_time_pattern(pattern)
    times = np.array([parse_time(f, regex) for f in files], dtype="datetime64[s]")
    order = np.argsort(times, kind="stable")
    files = [files[i] for i in order]
    times = times[order]
    check_duplicates(times, files)
    return files, times


# --------------------------------------------------------------------------- reading
def _read_batch(job: tuple[Preset, Sequence[Path]]) -> list[Frames]:
    """Worker: decode a batch of files (module level, so it pickles to processes)."""
    preset, paths = job
    return [preset.read_file(Path(p)) for p in paths]


def iter_frames(
    files: Sequence[Path],
    preset: Preset,
    *,
    workers: int | None = 1,
    scheduler: str | None = None,
    files_per_task: int = DEFAULT_FILES_PER_TASK,
    progress: bool = True,
) -> Iterator[Frames]:
    """Decode ``files`` with ``preset``, in parallel, yielding one :class:`Frames` per
    file in the order of ``files`` (at most a few batches held at once).

    Parameters
    ----------
    files : sequence of pathlib.Path
    preset : Preset
    workers, scheduler
        Where to decode, see :func:`nowcast.data.parallel.executor` (``workers=1``:
        serially in this process; ``None``/``0``: every core; ``scheduler`` a
        ``dask.distributed`` address to use a cluster).
    files_per_task : int
        Files decoded per task.
    progress : bool
        Show a progress bar (files, rate, ETA).
    """
    jobs = ((preset, batch) for batch in batches(list(files), files_per_task))
    for result in _map_jobs(
        _read_batch, jobs, preset, len(files), workers, scheduler, progress
    ):
        yield from result


def _map_jobs(
    func: Callable[[tuple], object],
    jobs: Iterable[tuple],
    preset: Preset,
    n_files: int,
    workers: int | None,
    scheduler: str | None,
    progress: bool,
) -> Iterator:
    """:func:`map_ordered` over jobs whose second item is their list of files."""
    return map_ordered(
        func,
        jobs,
        workers=workers,
        scheduler=scheduler,
        progress=progress,
        desc=f"import {preset.name}",
        unit="file",
        total=n_files,
        count=lambda job: len(job[1]),
    )


@dataclass
class Chunk:
    """``len(times)`` consecutive frames of packed codes, compressed as one netCDF chunk.

    Attributes
    ----------
    first : Frames
        The first file's frames (metadata, grid), to check and describe; its
        ``values`` are emptied to ``(0, H, W)`` of the codes' dtype (the frames are
        in ``blob``; ``frame_shape`` is kept).
    times : numpy.ndarray, shape (k,), datetime64[ns]
    owners : list of pathlib.Path
        The file of each frame.
    blob : bytes
        zlib stream of ``chunk_time`` frames of codes (the last chunk padded with 0).
    """

    first: Frames
    times: np.ndarray
    owners: list[Path]
    blob: bytes

    def codes(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """The chunk's frames, decompressed: ``(k, *shape)``."""
        flat = np.frombuffer(zlib.decompress(self.blob), dtype=dtype)
        return flat.reshape(-1, *shape)[: len(self.times)]


def _read_chunk(job: tuple[Preset, Sequence[Path], int, int]) -> Chunk:
    """Worker: read one frame per file as codes and compress them as one chunk."""
    preset, paths, chunk_time, complevel = job
    decoded = [preset.read_codes(Path(p)) for p in paths]
    for frames in decoded[1:]:
        check_same_grid(decoded[0], frames)
    codes = np.zeros((chunk_time, *decoded[0].frame_shape), decoded[0].values.dtype)
    for i, frames in enumerate(decoded):
        codes[i] = frames.values[0]
    times = np.concatenate([f.times for f in decoded])
    blob = zlib.compress(codes.tobytes(), complevel)
    first = decoded[0]  # the writer needs only its dtype and frame shape: no values
    first.values = np.empty((0, *first.frame_shape), dtype=first.values.dtype)
    return Chunk(first, times, [f.path for f in decoded], blob)


def iter_chunks(
    files: Sequence[Path],
    preset: Preset,
    *,
    chunk_time: int,
    complevel: int,
    workers: int | None = 1,
    scheduler: str | None = None,
    progress: bool = True,
) -> Iterator[Chunk]:
    """Read one-frame files as packed codes, ``chunk_time`` files per :class:`Chunk`,
    compressed by the workers (so that writing the archive only copies bytes).

    Parameters are those of :func:`iter_frames`; ``complevel`` is the zlib level.
    """
    if complevel < 1:
        raise ValueError(f"compressed chunks need complevel >= 1, got {complevel}")
    jobs = (
        (preset, batch, chunk_time, complevel)
        for batch in batches(list(files), chunk_time)
    )
    yield from _map_jobs(
        _read_chunk, jobs, preset, len(files), workers, scheduler, progress
    )


def stack_frames(decoded: list[Frames]) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """Stack decoded files into one time-sorted ``(T, H, W)`` array.

    Returns
    -------
    values : numpy.ndarray, shape (T, H, W)
        float32 (or the codes' dtype for packed frames).
    times : numpy.ndarray, shape (T,), datetime64[ns], increasing
    owners : list of pathlib.Path
        The file of each frame.

    Raises
    ------
    ValueError
        Naming the file: a grid or units different from the first file's, a duplicate
        time.
    """
    first = decoded[0]
    for frames in decoded[1:]:
        check_same_grid(first, frames)
    times = np.concatenate([f.times for f in decoded]).astype("datetime64[ns]")
    owners = [f.path for f in decoded for _ in range(len(f.times))]
    order = np.argsort(times, kind="stable")
    times = times[order]
    owners = [owners[i] for i in order]
    check_duplicates(times, owners)
    stack = np.empty((times.size, *first.frame_shape), dtype=first.values.dtype)
    position = np.empty(times.size, dtype=np.intp)
    position[order] = np.arange(times.size)
    start = 0
    for frames in decoded:  # fill the sorted stack file by file, freeing each copy
        stack[position[start : start + len(frames.times)]] = frames.values
        start += len(frames.times)
        frames.values = np.empty((0, 0, 0), dtype=np.float32)
    return stack, times, owners


def check_same_grid(first: Frames, this: Frames) -> None:
    """Raise naming both files when ``this`` has another grid, shape or units."""
    where = f"; all files of an archive must share one grid (first file {first.path})"
    if this.frame_shape != first.frame_shape:
        (h, w), (h0, w0) = this.frame_shape, first.frame_shape
        raise ValueError(
            f"{this.path} is {h} x {w} (H x W) but the first file {first.path} is "
            f"{h0} x {w0}{where}"
        )
    if this.units != first.units:
        raise ValueError(
            f"{this.path} holds {this.units!r} but {first.path} holds {first.units!r}; "
            "import the two quantities separately"
        )
    if first.grid is not None and not first.grid.same_as(this.grid):
        raise ValueError(
            f"the grid (projection or corners) of {this.path} differs{where}"
        )
    for dim in ("y", "x"):
        a, b = getattr(first, dim), getattr(this, dim)
        if a is not None and (b is None or not np.array_equal(a, b)):
            raise ValueError(f"the {dim} coordinate of {this.path} differs{where}")


def build_dataset(
    values: np.ndarray,
    times: np.ndarray,
    first: Frames,
    preset: Preset,
    files: Sequence[Path],
    name: str = DEFAULT_INTENSITY,
    extra: Mapping[str, np.ndarray] | None = None,
) -> xr.Dataset:
    """The radar data set of decoded frames, georeferenced, with its provenance.

    This is the one place where every importer's result is assembled: the preset's and
    the first file's attributes, the intensity variable's attributes, auxiliary
    variables, the grid (:func:`nowcast.data.georef.set_grid`) and the import step
    (:func:`nowcast.data.radar.record_step` with the preset's fields and the files).

    Parameters
    ----------
    values : numpy.ndarray, shape (T, H, W)
    times : numpy.ndarray, shape (T,)
    first : Frames
        The first file's frames (attributes, units, grid).
    preset : Preset
    files : sequence of pathlib.Path
        All input files of the import (recorded: count, first and last name).
    name : str
        Name of the intensity variable.
    extra : dict, optional
        Auxiliary variables along time, ``(T,)`` each.
    """
    attrs = {**dict(preset.attrs), **first.attrs}
    attrs.setdefault("importer_preset", preset.name)
    try:
        ds = make_radar_dataset(
            values, times, first.units, name=name, y=first.y, x=first.x, attrs=attrs
        )
    except ValueError as err:
        raise ValueError(
            f"frames from {files[0]} .. {files[-1]} do not form a radar data set: {err}"
        ) from err
    ds[name].attrs.update(first.var_attrs)
    for var, column in (extra or {}).items():
        ds[var] = ("time", np.asarray(column))
    if first.grid is not None:
        g = first.grid
        ds = set_grid(ds, g.x, g.y, g.crs, units=g.units)
    record_step(
        ds,
        preset.step,
        preset=preset.name,
        **preset.step_params(),
        n_files=len(files),
        first_file=Path(files[0]).name,
        last_file=Path(files[-1]).name,
    )
    return ds


def read_frames(
    paths: PathLike | Iterable[PathLike],
    preset: str | Preset | None,
    *,
    kind: type[Preset] | None = None,
    name: str = DEFAULT_INTENSITY,
    progress: bool = True,
    workers: int | None = 1,
    scheduler: str | None = None,
    **options: object,
) -> xr.Dataset:
    """Read a radar archive of any registered format into one radar data set.

    Parameters
    ----------
    paths : path, glob pattern, directory, or an iterable of these
        The archive's files, in any order (frames are sorted by time).
    preset : str, Preset or None
        Format: one of :func:`available_presets` or a preset object; ``None`` builds
        a custom ``kind`` preset from ``options`` (:func:`resolve_preset`).
    kind : type, optional
        Preset class the format must be (the format front ends set it).
    name : str
        Name of the intensity variable.
    progress : bool
        Show a progress bar.
    workers, scheduler
        Decode on several cores or a cluster, see :func:`iter_frames`.
    **options
        Overrides of preset fields (``pattern=``, ``quantity=``, ``bbox=``, ...).

    Returns
    -------
    xarray.Dataset
        ``name`` over ``(time, y, x)``, float32, shape (T, H, W), NaN where no data,
        georeferenced when the format knows its grid, units / product / source in the
        attributes, the import recorded in ``nowcast_steps``.

    Raises
    ------
    FileNotFoundError
        Missing file or empty input.
    ValueError
        Naming the file: undecodable file, missing quantity, grid different from the
        first file, duplicate time, ...
    """
    p = resolve_preset(preset, kind, **options)
    files, _ = order_files(expand_paths(paths, p.glob), p.pattern)
    decoded = list(
        iter_frames(files, p, workers=workers, scheduler=scheduler, progress=progress)
    )
    values, times, _ = stack_frames(decoded)
    extra = stack_extra(decoded)
    return build_dataset(values, times, decoded[0], p, files, name=name, extra=extra)


def stack_extra(decoded: Sequence[Frames]) -> dict[str, np.ndarray]:
    """The files' per-frame auxiliary variables (``Frames.extra``, e.g. SEVIR's
    ``event_id``), concatenated in the time order of :func:`stack_frames`."""
    names = list(decoded[0].extra)
    if not names:
        return {}
    order = np.argsort(np.concatenate([f.times for f in decoded]), kind="stable")
    return {k: np.concatenate([f.extra[k] for f in decoded])[order] for k in names}


# ----------------------------------------------------------------------- grid helpers
def corner_grid(
    crs: str,
    corners: Mapping[str, tuple[float, float]],
    shape: tuple[int, int],
    spacing: tuple[float | None, float | None] = (None, None),
    units: str = "m",
) -> Grid:
    """The grid of a north-up raster from the lon/lat of its outer corners.

    Parameters
    ----------
    crs : str
        Projection of the raster (PROJ string, WKT or EPSG code).
    corners : dict
        ``(lon, lat)`` of the outer corners ``"LL"``, ``"UR"`` and, when known, ``"UL"``,
        ``"LR"`` (degrees).
    shape : (int, int)
        ``(H, W)``; row 0 is the top (north) of the raster.
    spacing : (float or None, float or None)
        Cell size ``(dx, dy)`` in ``units`` as the file records it; ``None`` derives it
        from the corners.
    units : str
        Units of the projection's coordinates.

    Returns
    -------
    Grid
        Cell-centre coordinates: ``x`` increasing, ``y`` decreasing from the top row.
    """
    import pyproj

    proj = pyproj.Proj(crs)
    xy = {k: proj(*corners[k]) for k in corners}
    x_left = min(xy["LL"][0], xy.get("UL", xy["LL"])[0])
    x_right = max(xy["UR"][0], xy.get("LR", xy["UR"])[0])
    y_top = max(xy["UR"][1], xy.get("UL", xy["UR"])[1])
    y_bottom = min(xy["LL"][1], xy.get("LR", xy["LL"])[1])
    h, w = shape
    dx = spacing[0] or (x_right - x_left) / w
    dy = spacing[1] or (y_top - y_bottom) / h
    x = x_left + dx * (np.arange(w) + 0.5)
    y = y_top - dy * (np.arange(h) + 0.5)
    return Grid(x=x, y=y, crs=crs, units=units)
