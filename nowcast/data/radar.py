"""The radar-sequence convention of ``nowcast``, on top of xarray.

A radar sequence is an :class:`xarray.Dataset` with

* dimensions ``(time, y, x)`` and a monotonically increasing, duplicate-free
  ``datetime64`` ``time`` coordinate (gaps between frames are allowed: later steps cut
  windows only inside contiguous runs, see :func:`contiguous_segments`);
* one intensity variable over ``(time, y, x)``, named by the data set attribute
  ``intensity_variable`` (default ``"intensity"``), whose ``units`` attribute is one of
  :data:`KNOWN_UNITS`: ``"dBZ"`` (reflectivity), ``"mm/h"`` (rain rate) or ``"1"``
  (normalised grey level in [0, 1]);
* any number of auxiliary variables (a noise mask, a true motion field, ...);
* provenance of every processing step in the ``history`` / ``nowcast_steps``
  attributes (see :func:`record_step`).

On disk it is compressed netCDF4 (or a zarr store, ``*.zarr``, with the optional
``zarr`` extra), chunked along time, so that many files open lazily as one
(dask-backed) data set and a multi-year archive never has to fit in memory.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import warnings
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import xarray as xr

__all__ = [
    "KNOWN_UNITS",
    "DEFAULT_INTENSITY",
    "make_radar_dataset",
    "intensity_name",
    "validate_radar",
    "write_radar",
    "open_radar",
    "radar_paths",
    "is_zarr",
    "RadarFileError",
    "infer_cadence",
    "contiguous_segments",
    "record_step",
    "processing_steps",
]

KNOWN_UNITS = ("dBZ", "mm/h", "1", "kg m-2", "mm")
_DIMS = {"time", "y", "x"}
DEFAULT_INTENSITY = "intensity"
_UNIT_ALIASES = {
    "dbz": "dBZ",
    "mm/h": "mm/h",
    "mm h-1": "mm/h",
    "mm hr-1": "mm/h",
    "mm/hr": "mm/h",
    "1": "1",
    "kg m-2": "kg m-2",  # vertically integrated liquid (SEVIR VIL)
    "kg m**-2": "kg m-2",
    "kg/m2": "kg m-2",
    "kg/m^2": "kg m-2",
    "mm": "mm",  # accumulations kept as amounts
    "": None,
}

PathLike = str | os.PathLike


def make_radar_dataset(
    values: np.ndarray,
    times: Sequence | np.ndarray,
    units: str,
    name: str = DEFAULT_INTENSITY,
    y: np.ndarray | None = None,
    x: np.ndarray | None = None,
    attrs: dict | None = None,
) -> xr.Dataset:
    """Wrap a ``(time, y, x)`` array into a data set that follows the convention.

    Parameters
    ----------
    values : numpy.ndarray, shape (T, H, W)
        Intensities in ``units``.
    times : sequence of datetime-like, length T
        Valid time of each frame.
    units : {"dBZ", "mm/h", "1"}
        Physical units of ``values``.
    name : str
        Name of the intensity variable.
    y, x : numpy.ndarray, optional
        Coordinates of the rows / columns; default pixel indices.
    attrs : dict, optional
        Global attributes (source, licence, ...).

    Returns
    -------
    xarray.Dataset
        A validated radar data set (NaN allowed, e.g. for no-data pixels).
    """
    values = np.asarray(values)
    if values.ndim != 3:
        raise ValueError(f"values must be (time, y, x), got shape {values.shape}")
    t, h, w = values.shape
    y = np.arange(h) if y is None else np.asarray(y)
    x = np.arange(w) if x is None else np.asarray(x)
    ds = xr.Dataset(
        {name: (("time", "y", "x"), values, {"units": units})},
        coords={"time": np.asarray(times, dtype="datetime64[ns]"), "y": y, "x": x},
        attrs=dict(attrs or {}),
    )
    ds.attrs["intensity_variable"] = name
    ds.attrs.setdefault("Conventions", "CF-1.8")
    return validate_radar(ds, allow_nan=True)


def intensity_name(ds: xr.Dataset) -> str:
    """Return the name of the intensity variable of a radar data set.

    The ``intensity_variable`` attribute wins; otherwise the only variable over
    ``(time, y, x)`` whose units are known.
    """
    name = ds.attrs.get("intensity_variable")
    if name is not None:
        if name not in ds.data_vars:
            raise ValueError(
                f"attribute intensity_variable={name!r} names no variable of the data set "
                f"(variables: {sorted(ds.data_vars)}); fix the attribute"
            )
        return str(name)
    candidates = [
        v
        for v, da in ds.data_vars.items()
        if da.dims == ("time", "y", "x") and _normalise_units(da.attrs.get("units"))
    ]
    if len(candidates) == 1:
        return str(candidates[0])
    if DEFAULT_INTENSITY in ds.data_vars:
        return DEFAULT_INTENSITY
    raise ValueError(_no_intensity_message(ds, candidates))


def _no_intensity_message(ds: xr.Dataset, candidates: list) -> str:
    """Why no variable qualifies as the intensity, and what fixes it."""
    if len(candidates) > 1:
        return (
            f"cannot tell which variable holds the radar intensity: {candidates} all "
            "have dims (time, y, x) and known units; name it with "
            "ds.attrs['intensity_variable'] = '<name>'"
        )
    right_dims = [v for v, da in ds.data_vars.items() if set(da.dims) == _DIMS]
    if right_dims:
        name = right_dims[0]
        units = ds[name].attrs.get("units")
        what = "no 'units' attribute" if units is None else f"unknown units {units!r}"
        return (
            f"cannot tell which variable holds the radar intensity: {name!r} has dims "
            f"(time, y, x) but {what}; set ds[{name!r}].attrs['units'] to one of "
            f"{KNOWN_UNITS}"
        )
    found = ", ".join(f"{v}{tuple(da.dims)}" for v, da in ds.data_vars.items())
    three_d = [da for da in ds.data_vars.values() if da.ndim == 3]
    fix = (
        "rename its dimensions, e.g. ds.rename("
        f"{dict(zip(three_d[0].dims, ('time', 'y', 'x'), strict=True))})"
        if three_d
        else "the intensity must be one variable over (time, y, x)"
    )
    return (
        "cannot tell which variable holds the radar intensity: no variable has dims "
        f"(time, y, x) (found {found or 'no variables'}); {fix}"
    )


def _normalise_units(units: object) -> str | None:
    if units is None:
        return None
    return _UNIT_ALIASES.get(str(units).strip().lower(), None) or (
        str(units) if str(units) in KNOWN_UNITS else None
    )


def validate_radar(
    ds: xr.Dataset, allow_nan: bool = False, check_values: bool = True
) -> xr.Dataset:
    """Check that ``ds`` follows the radar-sequence convention.

    Parameters
    ----------
    ds : xarray.Dataset
        Candidate data set.
    allow_nan : bool
        Whether NaN (no-data) pixels are allowed, as in raw archives. Infinite values
        are never allowed.
    check_values : bool
        Scan the values for NaN/inf (streams through dask chunks for lazy data sets).

    Returns
    -------
    xarray.Dataset
        ``ds`` itself, with ``units`` spelled canonically, so calls can be chained.

    Raises
    ------
    ValueError
        Naming the problem and the fix: missing dims, non-datetime, non-monotonic or
        duplicate times, unknown units, empty data, NaN/inf.
    """
    if not isinstance(ds, xr.Dataset):
        raise TypeError(
            f"expected an xarray.Dataset, got {type(ds).__name__}; wrap arrays with "
            "nowcast.data.radar.make_radar_dataset"
        )
    name = intensity_name(ds)
    da = _check_dims(ds, name)
    _check_times(ds)
    units = _normalise_units(da.attrs.get("units"))
    if units is None:
        what = (
            "no 'units' attribute"
            if "units" not in da.attrs
            else f"unknown units {da.attrs['units']!r}"
        )
        raise ValueError(
            f"variable {name!r} has {what}; expected one of {KNOWN_UNITS} (set "
            f"ds[{name!r}].attrs['units'])"
        )
    da.attrs["units"] = units
    if check_values:
        _check_values(da, name, allow_nan)
    ds.attrs["intensity_variable"] = name
    return ds


def _check_dims(ds: xr.Dataset, name: str) -> xr.DataArray:
    """The intensity over ``(time, y, x)`` (transposed in ``ds`` if needed), non-empty."""
    da = ds[name]
    if set(da.dims) != _DIMS or da.ndim != 3:
        fix = (
            f"rename them, e.g. ds.rename({dict(zip(da.dims, ('time', 'y', 'x'), strict=True))})"
            if da.ndim == 3
            else "select or reduce to one (time, y, x) field per variable"
        )
        raise ValueError(
            f"intensity variable {name!r} must have dims ('time', 'y', 'x'), got "
            f"{da.dims}; {fix}"
        )
    if da.dims != ("time", "y", "x"):
        ds[name] = da.transpose("time", "y", "x")
        da = ds[name]
    if any(ds.sizes[d] == 0 for d in ("time", "y", "x")):
        raise ValueError(
            f"radar data set is empty (sizes {dict(ds.sizes)}); check the input files"
        )
    return da


def _check_times(ds: xr.Dataset) -> None:
    """A datetime64, increasing, duplicate-free ``time`` coordinate."""
    if "time" not in ds.coords:
        raise ValueError("radar data set has no 'time' coordinate; assign one")
    times = ds["time"].values
    if not np.issubdtype(times.dtype, np.datetime64):
        raise ValueError(
            f"'time' must be datetime64, got {times.dtype}; decode times "
            "(xr.decode_cf) or build them with numpy.datetime64"
        )
    if times.size < 2:
        return
    steps = np.diff(times)
    if np.any(steps == np.timedelta64(0)):
        dup = times[1:][steps == np.timedelta64(0)][0]
        raise ValueError(
            f"duplicate time {dup}; drop duplicates with ds.drop_duplicates('time')"
        )
    if np.any(steps < np.timedelta64(0)):
        bad = int(np.argmax(steps < np.timedelta64(0)))
        raise ValueError(
            f"time is not increasing ({times[bad]} then {times[bad + 1]}); sort with "
            "ds.sortby('time')"
        )


def _check_values(da: xr.DataArray, name: str, allow_nan: bool) -> None:
    """No infinite values, and no NaN unless allowed (streams through dask chunks)."""
    values = da.data
    n_inf = int(np.isinf(values).sum())
    if n_inf:
        raise ValueError(
            f"variable {name!r} holds {n_inf} infinite values; replace them "
            "(e.g. ds[name].where(np.isfinite(ds[name])))"
        )
    if not allow_nan:
        n_nan = int(np.isnan(values).sum())
        if n_nan:
            raise ValueError(
                f"variable {name!r} holds {n_nan} NaN values where none may be; fill "
                "no-data pixels (e.g. ds[name].fillna(min_value)) before this step"
            )


def netcdf_encoding(ds: xr.Dataset, chunk_time: int, complevel: int) -> dict:
    """Per-variable netCDF4 encoding of :func:`write_radar`: zlib at ``complevel``,
    variables along ``time`` chunked by ``chunk_time`` whole frames."""
    encoding = {}
    for var, da in ds.data_vars.items():
        enc: dict = {"zlib": complevel > 0, "complevel": complevel}
        if "time" in da.dims:
            enc["chunksizes"] = _time_chunks(ds, da, chunk_time)
        encoding[var] = enc
    return encoding


def _time_chunks(ds: xr.Dataset, da: xr.DataArray, chunk_time: int) -> tuple:
    """Chunk shape of a variable along ``time``: ``chunk_time`` whole frames."""
    return tuple(
        min(chunk_time, ds.sizes[d]) if d == "time" else ds.sizes[d] for d in da.dims
    )


def write_radar(
    ds: xr.Dataset,
    path: PathLike,
    chunk_time: int = 16,
    complevel: int = 4,
    allow_nan: bool = True,
) -> Path:
    """Write a radar data set as compressed, time-chunked netCDF4 or zarr, atomically.

    The file (or store) is first written next to ``path`` and then renamed, so an
    interrupted write never leaves a truncated file behind.

    Parameters
    ----------
    ds : xarray.Dataset
        Data set following the convention (validated before writing).
    path : str or os.PathLike
        Destination ``.nc`` file, or ``*.zarr`` store (needs the ``zarr`` extra);
        parent directories are created.
    chunk_time : int
        Frames per chunk (one chunk holds whole frames).
    complevel : int
        zlib compression level, 0-9 (netCDF; zarr uses its default compressor).
    allow_nan : bool
        Passed to :func:`validate_radar`.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    validate_radar(ds, allow_nan=allow_nan)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if is_zarr(path):
            with warnings.catch_warnings():  # consolidated metadata "not in zarr 3"
                warnings.simplefilter("ignore", UserWarning)
                ds.to_zarr(tmp, mode="w", encoding=zarr_encoding(ds, chunk_time))
            if path.exists():
                shutil.rmtree(path)
        else:
            encoding = netcdf_encoding(ds, chunk_time, complevel)
            ds.to_netcdf(tmp, format="NETCDF4", engine="netcdf4", encoding=encoding)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp)
        elif tmp.exists():
            tmp.unlink()
    return path


def is_zarr(path: PathLike) -> bool:
    """Whether ``path`` names a zarr store (``*.zarr``)."""
    return os.fspath(path).rstrip("/").endswith(".zarr")


def zarr_encoding(ds: xr.Dataset, chunk_time: int) -> dict:
    """Per-variable zarr chunks of :func:`write_radar`: ``chunk_time`` whole frames."""
    return {
        var: {"chunks": _time_chunks(ds, da, chunk_time)}
        for var, da in ds.data_vars.items()
        if "time" in da.dims
    }


class RadarFileError(OSError):
    """A radar file or store that exists but cannot be read (truncated, corrupt)."""


def unreadable(paths: Sequence[PathLike], err: BaseException) -> RadarFileError:
    """The error for radar files that cannot be read: which, why, and the fix."""
    names = ", ".join(str(p) for p in paths)
    return RadarFileError(
        f"cannot read radar file(s) {names}: {type(err).__name__}: {err}. The file is "
        "truncated or corrupt (an interrupted write or copy?) or not netCDF4/zarr; "
        "re-create it: a processed file with `python scripts/preprocess.py "
        "input=<raw radar files> output=<this file>`, a raw one with "
        "`python scripts/import_radar.py`"
    )


def radar_paths(path_or_paths: PathLike | Iterable[PathLike]) -> list[Path]:
    """The radar files a path, glob, directory or list of these names.

    A directory stands for its ``*.nc`` files and ``*.zarr`` stores; a ``*.zarr``
    path is one store (a directory itself).

    Raises
    ------
    FileNotFoundError
        Naming the pattern, directory or file that matched nothing.
    """
    if isinstance(path_or_paths, (str, os.PathLike)):
        items = [path_or_paths]
    else:
        items = list(path_or_paths)
    paths: list[Path] = []
    for item in items:
        s = os.fspath(item)
        if any(c in s for c in "*?["):
            matched = sorted(glob.glob(s))
            if not matched:
                raise FileNotFoundError(f"no file matches the pattern {s!r}")
            paths.extend(Path(m) for m in matched)
        else:
            p = Path(s)
            if p.is_dir() and not is_zarr(p):
                found = sorted([*p.glob("*.nc"), *p.glob("*.zarr")])
                if not found:
                    raise FileNotFoundError(
                        f"directory {p} holds no .nc files or .zarr stores"
                    )
                paths.extend(found)
            elif not p.exists():
                raise FileNotFoundError(
                    f"radar file {p} does not exist; write one with write_radar or "
                    "convert an archive with nowcast.data.importers"
                )
            else:
                paths.append(p)
    if not paths:
        raise FileNotFoundError("no radar files given")
    return paths


# open_mfdataset options for files that are consecutive pieces of one archive: stack
# them along time as they are, taking coordinates and attributes from the first file
# instead of comparing or aligning them (each file was validated when written).
_CONCAT_IN_TIME = {
    "combine": "nested",
    "concat_dim": "time",
    "data_vars": "minimal",
    "coords": "minimal",
    "compat": "override",
    "join": "override",
    "combine_attrs": "override",
}


def open_radar(
    path_or_paths: PathLike | Iterable[PathLike],
    chunk_time: int | None = 64,
    validate: bool = True,
    allow_nan: bool = True,
) -> xr.Dataset:
    """Open one or many radar netCDF files or zarr stores lazily as one data set.

    Parameters
    ----------
    path_or_paths : path, glob pattern, directory, or list of these
        Files written by :func:`write_radar` (or any netCDF / zarr that follows the
        convention); ``*.zarr`` names a zarr store. Several are concatenated along
        time and sorted.
    chunk_time : int or None
        Frames per dask chunk; ``0``: lazy without dask (each read goes straight to
        the file, window by window; one file or store only); ``None`` loads eagerly
        (small files only).
    validate : bool
        Run :func:`validate_radar` (metadata only; values are not scanned, so opening
        stays lazy).
    allow_nan : bool
        Accepted for symmetry with :func:`validate_radar`.

    Returns
    -------
    xarray.Dataset

    Raises
    ------
    FileNotFoundError
        When nothing matches.
    RadarFileError
        When a file exists but cannot be read (truncated, corrupt): names it and the fix.
    """
    paths = radar_paths(path_or_paths)
    chunks = {"time": chunk_time} if chunk_time else None
    engine = "zarr" if all(is_zarr(p) for p in paths) else "netcdf4"
    try:
        if len(paths) == 1:
            ds = xr.open_dataset(paths[0], engine=engine, chunks=chunks)
        else:
            ds = xr.open_mfdataset(
                paths, engine=engine, chunks=chunks, **_CONCAT_IN_TIME
            )
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        raise unreadable(paths, err) from err
    if len(paths) > 1:
        ds = ds.sortby("time")
    if chunk_time is None:
        ds = ds.load()
    if validate:
        validate_radar(ds, allow_nan=allow_nan, check_values=False)
    return ds


def infer_cadence(times: np.ndarray) -> np.timedelta64:
    """Most common step between consecutive times (the archive's cadence).

    Parameters
    ----------
    times : numpy.ndarray of datetime64, shape (T,), T >= 2

    Returns
    -------
    numpy.timedelta64
    """
    times = np.asarray(times, dtype="datetime64[ns]")
    if times.size < 2:
        raise ValueError("need at least two times to infer the cadence")
    steps, counts = np.unique(np.diff(times), return_counts=True)
    return steps[np.argmax(counts)]


def contiguous_segments(
    times: np.ndarray, cadence: np.timedelta64 | None = None
) -> list[tuple[int, int]]:
    """Split a time axis into runs without gaps.

    Parameters
    ----------
    times : numpy.ndarray of datetime64, shape (T,)
        Increasing valid times.
    cadence : numpy.timedelta64, optional
        Expected step; inferred with :func:`infer_cadence` when omitted.

    Returns
    -------
    list of (start, stop)
        Half-open index ranges ``times[start:stop]`` in which every step equals the
        cadence. Windows must never be built across two ranges.
    """
    times = np.asarray(times, dtype="datetime64[ns]")
    if times.size == 0:
        return []
    if times.size == 1:
        return [(0, 1)]
    cadence = infer_cadence(times) if cadence is None else np.timedelta64(cadence, "ns")
    breaks = np.flatnonzero(np.diff(times) != cadence) + 1
    edges = np.concatenate([[0], breaks, [times.size]])
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def record_step(ds: xr.Dataset, step: str, **params: object) -> xr.Dataset:
    """Append a processing step and its parameters to the data set's provenance.

    The steps are kept as a JSON list in ``attrs['nowcast_steps']`` and as a human
    readable line in ``attrs['history']`` (the CF convention).
    """
    steps = processing_steps(ds)
    steps.append({"step": step, **{k: _jsonable(v) for k, v in params.items()}})
    ds.attrs["nowcast_steps"] = json.dumps(steps)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    line = f"{stamp} nowcast {step}({', '.join(f'{k}={v}' for k, v in params.items())})"
    history = ds.attrs.get("history", "")
    ds.attrs["history"] = f"{history}\n{line}" if history else line
    return ds


def processing_steps(ds: xr.Dataset) -> list[dict]:
    """The processing steps recorded by :func:`record_step`, oldest first."""
    raw = ds.attrs.get("nowcast_steps")
    return list(json.loads(raw)) if raw else []


def _jsonable(v: object) -> object:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (tuple, list)):
        return [_jsonable(i) for i in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)
