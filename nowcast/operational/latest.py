"""The latest radar frames of an archive: find them, check them, read only them.

A forecast for "now" starts from the newest ``input_len`` frames, which must be
consecutive at the forecaster's cadence. The input may be raw files of any importer
preset (file names that carry the valid time are sorted by it, so only the frames used
are decoded), a folder of them, or a radar data set in the convention of
:mod:`nowcast.data.radar` (netCDF files or a ``*.zarr`` store), opened lazily.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from nowcast.data import importers
from nowcast.data.radar import intensity_name, is_zarr, open_radar, validate_radar

__all__ = [
    "format_times",
    "select_latest",
    "read_latest",
    "guess_preset",
]

PathLike = str | os.PathLike


def format_times(times: Sequence | np.ndarray) -> str:
    """Times as ``YYYY-MM-DD HH:MM[:SS]`` separated by commas, for error messages."""
    out = []
    for t in np.asarray(times, dtype="datetime64[s]"):
        text = str(t).replace("T", " ")
        out.append(text[:-3] if text.endswith(":00") else text)
    return ", ".join(out)


def _minutes(step: np.timedelta64) -> str:
    return f"{step / np.timedelta64(1, 'm'):g} min"


def select_latest(
    times: Sequence | np.ndarray,
    input_len: int,
    cadence: np.timedelta64 | None = None,
    where: str = "the input",
) -> np.ndarray:
    """Indices of the newest ``input_len`` frames, checked to be consecutive.

    Parameters
    ----------
    times : sequence of datetime64, shape (T,)
        Valid times of the available frames, in any order (no duplicates).
    input_len : int
        Frames the forecaster needs.
    cadence : numpy.timedelta64, optional
        Required step between frames (the forecaster's training cadence). ``None``
        accepts any constant step.
    where : str
        What the frames come from, for error messages (a path).

    Returns
    -------
    numpy.ndarray of int, shape (input_len,)
        Indices into ``times``, oldest first.

    Raises
    ------
    ValueError
        Too few frames, a gap among the newest ones, or a constant step other than
        ``cadence``; the message names the times found and what is needed.
    """
    times = np.asarray(times, dtype="datetime64[ns]")
    need = int(input_len)
    if need < 1:
        raise ValueError(f"input_len must be a positive integer, got {input_len!r}")
    step_text = f" {_minutes(cadence)} apart" if cadence is not None else ""
    wanted = f"the forecaster needs input_len={need} consecutive frames{step_text}"
    if times.size < need:
        raise ValueError(
            f"{where} holds {times.size} frame(s) ({format_times(np.sort(times))}); "
            f"{wanted}: add older frames or lower input_len"
        )
    order = np.argsort(times, kind="stable")
    index = order[-need:]
    latest = times[index]
    steps = np.diff(latest)
    if np.any(steps == np.timedelta64(0)):
        raise ValueError(f"{where} holds duplicate times ({format_times(latest)})")
    if steps.size and np.any(steps != steps[0]):
        regular = steps.min() if cadence is None else cadence
        bad = int(np.argmax(steps != regular))
        raise ValueError(
            f"the newest {need} frames of {where} have a gap: "
            f"{format_times(latest)} ({_minutes(steps[bad])} after "
            f"{format_times(latest[bad : bad + 1])}); {wanted}, ending at the newest "
            "frame: supply the missing frames"
        )
    if cadence is not None and steps.size and steps[0] != cadence:
        raise ValueError(
            f"the frames of {where} are {_minutes(steps[0])} apart "
            f"({format_times(latest)}) but {wanted}; forecast at the input's own "
            f"cadence with frame_minutes={steps[0] / np.timedelta64(1, 'm'):g} (the "
            "lead times then follow the input, not the training data)"
        )
    return np.asarray(index, dtype=np.int64)


# ------------------------------------------------------------------ input kinds
def _is_radar_netcdf(path: Path) -> bool:
    """Whether a netCDF file already follows the radar convention."""
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            validate_radar(ds, allow_nan=True, check_values=False)
    except (ValueError, KeyError, OSError):
        return False
    return True


def guess_preset(files: Sequence[Path]) -> str:
    """The one importer preset whose file-name pattern (or netCDF variable) fits.

    Parameters
    ----------
    files : sequence of pathlib.Path
        Raw files of one archive: a preset fits when the time pattern parses every
        file its ``glob`` matches (other files, e.g. a README, are left out), or, for
        netCDF, when the first ``.nc`` file holds the preset's variable.

    Returns
    -------
    str
        The preset's name.

    Raises
    ------
    ValueError
        When no preset or more than one fits; the message lists the presets.
    """
    fits = [n for n in importers.available_presets() if _preset_fits(n, files)]
    if len(fits) == 1:
        return fits[0]
    what = "no importer preset" if not fits else f"several presets ({fits})"
    raise ValueError(
        f"{what} fit(s) the input files ({files[0].name}, ...); pass preset=<name>, one "
        f"of {importers.available_presets()}"
    )


def _preset_fits(name: str, files: Sequence[Path]) -> bool:
    preset = importers.get_preset(name)
    variable = getattr(preset, "variable", None)
    netcdf = [f for f in files if f.suffix == ".nc"]
    if variable is not None and netcdf:
        try:
            with xr.open_dataset(netcdf[0], engine="netcdf4") as ds:
                return variable in ds.variables
        except (OSError, ValueError):
            return False
    pattern = getattr(preset, "pattern", None)
    matching = [f for f in files if f.match(preset.glob)]
    if not pattern or not matching:
        return False
    try:
        for f in matching:
            importers.parse_time(f, pattern)
    except ValueError:
        return False
    return True


def _read_raw(files: Sequence[Path], preset: str, options: Mapping) -> xr.Dataset:
    """Raw files of an importer preset -> a radar data set (the convention)."""
    return importers.read_frames(list(files), preset, progress=False, **options)


def _candidate_files(
    files: Sequence[Path], preset: str, n: int, options: Mapping
) -> list[Path]:
    """The ``n`` newest raw files: by the time in their names (the preset's pattern,
    or an overriding ``pattern=``), else by name."""
    pattern = importers.resolve_preset(preset, **options).pattern
    return importers.order_files(list(files), pattern)[0][-n:]


def _radar_input(
    paths: PathLike | Iterable[PathLike], preset: str | None
) -> tuple[xr.Dataset | None, list[Path]]:
    """Open the input lazily when it is a radar data set; else list its raw files."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if len(items) == 1 and is_zarr(items[0]):
        return open_radar(items[0]), [Path(items[0])]
    files = importers.expand_paths(items)
    netcdf = [f for f in files if f.suffix == ".nc"]
    if preset is None and netcdf and _is_radar_netcdf(netcdf[-1]):
        return open_radar(netcdf), netcdf
    return None, files


def _describe(paths: PathLike | Iterable[PathLike]) -> str:
    """The input as named in messages: the path, or the first of several and a count."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if len(items) <= 2:
        return ", ".join(str(p) for p in items)
    return f"{items[0]}, ... ({len(items)} paths)"


def read_latest(
    paths: PathLike | Iterable[PathLike],
    input_len: int,
    preset: str | None = None,
    cadence: np.timedelta64 | None = None,
    options: Mapping | None = None,
) -> tuple[xr.Dataset, list[Path]]:
    """The newest ``input_len`` consecutive frames of a radar input, in memory.

    Parameters
    ----------
    paths : path, glob, folder, or a list of these
        Raw files of an importer preset, a folder of them, radar netCDF file(s) in
        the convention, or a ``*.zarr`` store.
    input_len : int
        Frames to return.
    preset : str, optional
        Importer preset of raw files (:func:`nowcast.data.importers.available_presets`);
        ``None`` reads radar netCDF / zarr as they are and otherwise takes the one preset
        whose naming fits (:func:`guess_preset`).
    cadence : numpy.timedelta64, optional
        Required step between the frames (see :func:`select_latest`).
    options : mapping, optional
        Preset overrides passed to the importer (``gain=``, ``pattern=``, ...).

    Returns
    -------
    (xarray.Dataset, list of pathlib.Path)
        The frames ``(input_len, H, W)`` in the convention (loaded), and the files
        they were read from.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    where = _describe(paths)
    ds, files = _radar_input(paths, preset)
    if ds is None:
        preset = preset or guess_preset(files)
        files = importers.expand_paths(paths, importers.get_preset(preset).glob)
        options = dict(options or {})
        files = _candidate_files(files, preset, int(input_len), options)
        ds = _read_raw(files, preset, options)
    index = select_latest(ds["time"].values, input_len, cadence, where=where)
    ds = ds.isel(time=index).load()
    ds.attrs["intensity_variable"] = intensity_name(ds)
    return ds, files
