"""Real radar archives -> the radar-sequence convention of :mod:`nowcast.data.radar`.

Two readers cover the formats radar archives usually come in:

* :func:`read_image_frames` for 8-bit grey image archives, one frame per file (PNG or
  PGM, optionally gzipped), e.g. the HKO-7 benchmark of Shi et al. (2017) or the
  Finnish Meteorological Institute (FMI) composites. The valid time is parsed from the
  file name; a grey level ``p`` becomes ``gain * p + offset`` (usually dBZ) and the
  no-data grey levels become NaN.
* :func:`read_netcdf_frames` for netCDF archives with their own naming: variables and
  dimensions are renamed, valid times come from a (scalar) time variable per file, and
  accumulations (mm per interval) are converted to rain rates in mm/h, e.g. the
  Australian Bureau of Meteorology (BOM) Rainfields products.

Both stream file by file (with a progress bar), return one time-sorted data set that
follows the convention (NaN allowed for no-data pixels, units recorded, source /
institution / licence attributes, the import recorded with
:func:`~nowcast.data.radar.record_step`) and name the offending file in every error.
Archive formats are chosen by name through a small preset registry
(:func:`get_preset`); :func:`import_archive` writes the result with
:func:`~nowcast.data.radar.write_radar`, optionally in batches of files so that memory
stays bounded for long archives.

Memory: a reader holds its whole result in memory as float32, ``T * H * W * 4`` bytes
(40 FMI frames of 1226 x 760: 149 MB; one HKO-7 day of 240 frames of 480 x 480:
221 MB). For longer archives use ``import_archive(..., batch_size=N)``, which writes one
netCDF file per ``N`` input files; :func:`~nowcast.data.radar.open_radar` opens them
lazily as one data set.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import warnings
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import cast

import numpy as np
import xarray as xr
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from nowcast.data.radar import (
    DEFAULT_INTENSITY,
    make_radar_dataset,
    record_step,
    write_radar,
)

__all__ = [
    "ImagePreset",
    "NetCDFPreset",
    "PRESETS",
    "available_presets",
    "get_preset",
    "register_preset",
    "resolve_preset",
    "expand_paths",
    "compile_time_pattern",
    "parse_time",
    "pixel_lut",
    "parse_pgm_header",
    "read_image_frames",
    "read_netcdf_frames",
    "import_archive",
]

PathLike = str | os.PathLike


# --------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class ImagePreset:
    """How to read an archive of 8-bit grey image frames, one frame per file.

    Attributes
    ----------
    name : str
        Registry name.
    pattern : str
        How to find the valid time in the file name: a strptime-style format searched
        anywhere in the name (``"%Y%m%d%H%M"``; supported directives ``%Y %y %m %d %j
        %H %M %S``) or a regular expression with named groups ``year`` (or ``year2``),
        ``month``, ``day`` (or ``doy``), ``hour`` and optionally ``minute``,
        ``second``. Matched against the base name, or the whole path when the pattern
        contains ``/``.
    gain, offset : float
        Linear map from grey level ``p`` to the physical value: ``gain * p + offset``.
    nodata : tuple of int
        Grey levels that mean "no data" (become NaN).
    units : str
        Units of ``gain * p + offset`` (``"dBZ"``, ``"mm/h"`` or ``"1"``).
    shape : (int, int) or None
        Expected ``(height, width)`` of every frame; ``None`` takes the first frame's.
    glob : str
        Files to take when a directory is given (searched recursively).
    attrs : dict
        Global attributes of the result (source, institution, licence, ...).
    """

    name: str
    pattern: str
    gain: float = 1.0
    offset: float = 0.0
    nodata: tuple[int, ...] = ()
    units: str = "dBZ"
    shape: tuple[int, int] | None = None
    glob: str = "*"
    attrs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NetCDFPreset:
    """How to read an archive of netCDF files (one or more frames per file).

    Attributes
    ----------
    name : str
        Registry name.
    variable : str
        Name of the intensity variable in the files (before renaming).
    rename : dict
        Source dimension / coordinate names -> ``"time"``, ``"y"``, ``"x"``, e.g.
        ``{"lat": "y", "lon": "x"}``.
    time_variable : str or None
        Variable holding the valid time of the frame(s) (scalar or along ``time``);
        ``None`` takes the ``time`` coordinate or, failing that, ``pattern``.
    start_time_variable : str or None
        Variable holding the start of the accumulation period (for
        ``accumulation_minutes="auto"``).
    accumulation_minutes : float, "auto" or None
        ``None``: the variable is not an accumulation (already dBZ or mm/h). A number:
        the variable is an amount in mm (kg m-2) per that many minutes, converted to
        mm/h by ``x * 60 / accumulation_minutes``. ``"auto"``: the interval is
        ``time_variable - start_time_variable`` of each frame.
    pattern : str or None
        Time pattern of the file names (see :class:`ImagePreset`), used only when no
        time variable or coordinate exists.
    units : str or None
        Override the units of a non-accumulation variable (when the file's are
        missing or non-standard).
    keep_variables : tuple of str
        Auxiliary variables copied from the first file (e.g. the CF grid mapping).
    glob : str
        Files to take when a directory is given (searched recursively).
    attrs : dict
        Global attributes of the result; attributes of the first file take
        precedence.
    """

    name: str
    variable: str
    rename: Mapping[str, str] = field(default_factory=dict)
    time_variable: str | None = "time"
    start_time_variable: str | None = None
    accumulation_minutes: float | str | None = None
    pattern: str | None = None
    units: str | None = None
    keep_variables: tuple[str, ...] = ()
    glob: str = "*.nc"
    attrs: Mapping[str, str] = field(default_factory=dict)


Preset = ImagePreset | NetCDFPreset

PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset, overwrite: bool = False) -> Preset:
    """Add an archive preset to the registry used by :func:`get_preset`."""
    if not isinstance(preset, (ImagePreset, NetCDFPreset)):
        raise TypeError(
            f"preset must be an ImagePreset or NetCDFPreset, got {type(preset).__name__}"
        )
    if preset.name in PRESETS and not overwrite:
        raise ValueError(
            f"preset {preset.name!r} is already registered; pass overwrite=True to "
            "replace it"
        )
    PRESETS[preset.name] = preset
    return preset


def available_presets() -> list[str]:
    """Names of the registered archive presets, sorted."""
    return sorted(PRESETS)


def get_preset(name: str) -> Preset:
    """Return the archive preset registered under ``name``.

    Raises
    ------
    ValueError
        For an unknown name, listing the available ones.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown importer preset {name!r}; available: {available_presets()} "
            "(or register one with nowcast.data.importers.register_preset)"
        ) from None


def resolve_preset(
    preset: str | Preset | None,
    kind: type[ImagePreset] | type[NetCDFPreset],
    **overrides: object,
) -> Preset:
    """A preset (by name or object) with the non-``None`` ``overrides`` applied.

    With ``preset=None`` a custom preset is built from ``overrides`` alone (``pattern``
    is then required for images, ``variable`` for netCDF).
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(
            f"unknown {kind.__name__} option(s) {unknown}; expected some of "
            f"{sorted(known - {'name'})}"
        )
    if "nodata" in overrides:
        overrides["nodata"] = _as_nodata(overrides["nodata"])
    if "shape" in overrides:
        overrides["shape"] = tuple(int(s) for s in overrides["shape"])
    if "keep_variables" in overrides:
        overrides["keep_variables"] = tuple(overrides["keep_variables"])
    if preset is None:
        required = "pattern" if kind is ImagePreset else "variable"
        if required not in overrides:
            raise ValueError(
                f"give a preset (one of {available_presets()}) or at least "
                f"{required}=... for a custom {kind.__name__}"
            )
        return kind(name="custom", **overrides)
    if isinstance(preset, str):
        preset = get_preset(preset)
    if not isinstance(preset, kind):
        raise ValueError(
            f"preset {preset.name!r} is a {type(preset).__name__}, but this reader "
            f"needs a {kind.__name__}; use "
            f"{'read_netcdf_frames' if kind is ImagePreset else 'read_image_frames'} "
            "or import_archive"
        )
    return replace(preset, **overrides) if overrides else preset


def _as_nodata(nodata: object) -> tuple[int, ...]:
    values = (nodata,) if np.isscalar(nodata) else tuple(nodata)  # type: ignore[arg-type]
    out = []
    for v in values:
        if int(v) != v or not 0 <= int(v) <= 255:
            raise ValueError(
                f"nodata grey levels must be integers in [0, 255], got {v}"
            )
        out.append(int(v))
    return tuple(out)


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
            import glob as _glob

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
    if "(?P<" in pattern:
        regex = pattern
    elif "%" in pattern:
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
                        f"supported: {['%' + d for d in _DIRECTIVES]} (or write a "
                        "regex with named groups)"
                    )
            else:
                parts.append(re.escape(token))
        regex = "".join(parts)
    else:
        raise ValueError(
            f"time pattern {pattern!r} has neither strptime directives (%Y%m%d%H%M) "
            "nor named regex groups ((?P<year>\\d{4})...); write one of those"
        )
    try:
        compiled = re.compile(regex)
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
        if "year" in g:
            year = int(g["year"])
        else:  # POSIX: 69-99 -> 19xx, 00-68 -> 20xx
            yy = int(g["year2"])
            year = yy + (1900 if yy >= 69 else 2000)
        hms = (int(g["hour"]), int(g.get("minute", 0)), int(g.get("second", 0)))
        if "month" in g:
            dt = datetime(year, int(g["month"]), int(g["day"]), *hms)
        else:
            dt = datetime.strptime(f"{year} {int(g['doy'])}", "%Y %j").replace(
                hour=hms[0], minute=hms[1], second=hms[2]
            )
    except (ValueError, KeyError) as err:
        raise ValueError(
            f"file name {text!r} ({path}) matched pattern {regex.pattern!r} but gives "
            f"no valid time ({m.group(0)!r}: {err})"
        ) from err
    return np.datetime64(dt, "s")


def _check_duplicates(times: np.ndarray, files: Sequence[Path]) -> None:
    """Raise naming both files when two consecutive (sorted) times are equal."""
    if times.size > 1:
        dup = np.flatnonzero(np.diff(times) == np.timedelta64(0))
        if dup.size:
            i = int(dup[0])
            raise ValueError(
                f"duplicate time {times[i]}: {files[i]} and {files[i + 1]} hold the same "
                "valid time; remove one of them from the input"
            )


# ------------------------------------------------------------------------- images
def pixel_lut(
    gain: float, offset: float, nodata: int | Sequence[int] = ()
) -> np.ndarray:
    """Look-up table from 8-bit grey level to physical value.

    Parameters
    ----------
    gain, offset : float
        Value of grey level ``p`` is ``gain * p + offset`` (computed in float64).
    nodata : int or sequence of int
        Grey levels mapped to NaN.

    Returns
    -------
    numpy.ndarray, shape (256,), float32
        ``lut[p]``; index a ``uint8`` image with it to convert a whole frame at once.
    """
    lut = (offset + gain * np.arange(256, dtype=np.float64)).astype(np.float32)
    lut[list(_as_nodata(nodata))] = np.nan
    return lut


def _read_bytes(path: Path) -> bytes:
    """File contents, gunzipped when the file is gzip-compressed (magic bytes)."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise FileNotFoundError(f"radar file {path} does not exist") from None
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"cannot read radar file {path}: {err}") from err
    return raw


def parse_pgm_header(raw: bytes) -> dict[str, str]:
    """Metadata from the ``#`` comment lines of a PGM header.

    Each comment ``# key value`` becomes ``{key: value}``; repeated keys (e.g. FMI's
    one ``radar`` line per radar) are joined with ``"; "``. Returns ``{}`` for
    anything that is not a PGM.

    Parameters
    ----------
    raw : bytes
        The (decompressed) file contents.
    """
    if raw[:2] not in (b"P2", b"P5"):
        return {}
    meta: dict[str, str] = {}
    pos, n_tokens = 2, 0
    while n_tokens < 3:  # width, height, maxval; comments may only precede the data
        end = raw.find(b"\n", pos)
        if end < 0:
            break
        line = raw[pos:end].decode("latin-1").strip()
        pos = end + 1
        if line.startswith("#"):
            key, _, value = line[1:].strip().partition(" ")
            if key:
                value = value.strip().rstrip("{").strip()
                meta[key] = f"{meta[key]}; {value}" if key in meta else value
        else:
            n_tokens += len(line.split("#")[0].split())
    return meta


def _read_image(path: Path) -> tuple[np.ndarray, dict[str, str]]:
    """One 8-bit grey frame ``(H, W) uint8`` and its PGM header metadata."""
    raw = _read_bytes(path)
    try:
        with Image.open(io.BytesIO(raw)) as im:
            if im.mode != "L":
                raise ValueError(
                    f"{path} is not an 8-bit grey image (PIL mode {im.mode!r}, expected "
                    "'L'); convert the archive to 8-bit grey levels first"
                )
            pixels = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(
            f"cannot decode radar image {path}: {err}; expected PNG or PGM (optionally "
            "gzipped)"
        ) from err
    return pixels, parse_pgm_header(raw)


def read_image_frames(
    paths: PathLike | Iterable[PathLike],
    preset: str | ImagePreset | None = None,
    *,
    pattern: str | None = None,
    gain: float | None = None,
    offset: float | None = None,
    nodata: int | Sequence[int] | None = None,
    units: str | None = None,
    shape: tuple[int, int] | None = None,
    name: str = DEFAULT_INTENSITY,
    progress: bool = True,
) -> xr.Dataset:
    """Read an 8-bit grey image archive (one frame per file) into a radar data set.

    Parameters
    ----------
    paths : path, glob pattern, directory, or an iterable of these
        The frames, in any order (they are sorted by the time in their names).
    preset : str or ImagePreset, optional
        ``"hko7"``, ``"fmi"`` (see :data:`PRESETS`) or a custom preset; the keyword
        arguments below override its fields (``None`` keeps the preset's value).
    pattern : str, optional
        Time pattern of the file names (see :func:`compile_time_pattern`).
    gain, offset : float, optional
        Grey level ``p`` -> ``gain * p + offset`` in ``units``.
    nodata : int or sequence of int, optional
        Grey levels that mean no data (-> NaN); ``()`` for none.
    units : str, optional
        ``"dBZ"``, ``"mm/h"`` or ``"1"``.
    shape : (int, int), optional
        Expected ``(height, width)``.
    name : str
        Name of the intensity variable.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    xarray.Dataset
        ``name`` over ``(time, y, x)``, float32, shape (T, H, W), NaN where no data;
        ``y``, ``x`` are pixel indices (row 0 = top of the image); PGM header
        metadata of the first file in ``pgm_*`` attributes.

    Raises
    ------
    FileNotFoundError
        Missing file or empty input.
    ValueError
        Naming the file: undecodable image, not 8-bit grey, size different from the
        first frame (or ``shape``), time not parsable from the name, duplicate time.

    Notes
    -----
    HKO-7 (Shi et al. 2017): dBZ = p / 255 * 70 - 10. FMI composites:
    dBZ = 0.5 p - 32, p = 255 outside radar coverage.
    """
    p = resolve_preset(
        preset,
        ImagePreset,
        pattern=pattern,
        gain=gain,
        offset=offset,
        nodata=nodata,
        units=units,
        shape=shape,
    )
    p = cast(ImagePreset, p)
    files = expand_paths(paths, p.glob)
    files, times = _sort_by_name_time(files, p.pattern)
    lut = pixel_lut(p.gain, p.offset, p.nodata)

    out: np.ndarray | None = None
    header0: dict[str, str] = {}
    bar = tqdm(files, desc=f"import {p.name}", unit="file", disable=not progress)
    for i, path in enumerate(bar):
        pixels, header = _read_image(path)
        if out is None:
            expected = p.shape or pixels.shape
            header0 = header
            out = np.empty((len(files), *expected), dtype=np.float32)
        if pixels.shape != out.shape[1:]:
            source = "the preset's shape" if p.shape else f"the first frame {files[0]}"
            raise ValueError(
                f"frame {path} is {pixels.shape[0]} x {pixels.shape[1]} (H x W) but "
                f"{source} is {out.shape[1]} x {out.shape[2]}; all frames of an "
                "archive must share one grid"
            )
        np.take(lut, pixels, out=out[i])
        _check_obstime(path, header, times[i])
    out = cast(np.ndarray, out)

    attrs = dict(p.attrs)
    attrs.update(
        {f"pgm_{k}": v for k, v in header0.items() if k not in ("obstime", "}")}
    )
    attrs.setdefault("importer_preset", p.name)
    ds = make_radar_dataset(out, times, p.units, name=name, attrs=attrs)
    ds[name].attrs["long_name"] = "radar reflectivity" if p.units == "dBZ" else name
    record_step(
        ds,
        "import_image_frames",
        preset=p.name,
        pattern=p.pattern,
        gain=p.gain,
        offset=p.offset,
        nodata=list(p.nodata),
        n_files=len(files),
        first_file=files[0].name,
        last_file=files[-1].name,
    )
    return ds


def _sort_by_name_time(
    files: Sequence[Path], pattern: str
) -> tuple[list[Path], np.ndarray]:
    """Files sorted by the time in their names, duplicates rejected."""
    regex = compile_time_pattern(pattern)
    times = np.array([parse_time(f, regex) for f in files], dtype="datetime64[s]")
    order = np.argsort(times, kind="stable")
    files = [files[i] for i in order]
    times = times[order]
    _check_duplicates(times, files)
    return files, times


def _check_obstime(path: Path, header: Mapping[str, str], time: np.datetime64) -> None:
    """Warn when a PGM ``obstime`` (YYYYMMDDHHMM) disagrees with the file name."""
    obstime = header.get("obstime", "")
    if len(obstime) == 12 and obstime.isdigit():
        t = np.datetime64(
            f"{obstime[:4]}-{obstime[4:6]}-{obstime[6:8]}T{obstime[8:10]}:{obstime[10:]}"
        )
        if t != time:
            warnings.warn(
                f"{path}: header obstime {t} differs from the time in the file name "
                f"{time}; the file name is used",
                stacklevel=3,
            )


# ------------------------------------------------------------------------- netCDF
_AMOUNT_UNITS = {"mm", "kg m-2", "kg m**-2", "kg/m2", "kg/m^2", "kg m^-2", "kg.m-2"}


def read_netcdf_frames(
    paths: PathLike | Iterable[PathLike],
    preset: str | NetCDFPreset | None = None,
    *,
    variable: str | None = None,
    rename: Mapping[str, str] | None = None,
    time_variable: str | None = None,
    start_time_variable: str | None = None,
    accumulation_minutes: float | str | None = None,
    pattern: str | None = None,
    units: str | None = None,
    keep_variables: Sequence[str] | None = None,
    name: str = DEFAULT_INTENSITY,
    progress: bool = True,
) -> xr.Dataset:
    """Read a netCDF radar archive with its own naming into a radar data set.

    Parameters
    ----------
    paths : path, glob pattern, directory, or an iterable of these
        The files, in any order (frames are sorted by time).
    preset : str or NetCDFPreset, optional
        ``"bom"`` (see :data:`PRESETS`) or a custom preset; the keyword arguments
        override its fields (``None`` keeps the preset's value; see
        :class:`NetCDFPreset` for their meaning).
    variable, rename, time_variable, start_time_variable, accumulation_minutes, \
pattern, units, keep_variables
        See :class:`NetCDFPreset`.
    name : str
        Name of the intensity variable of the result.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    xarray.Dataset
        ``name`` over ``(time, y, x)``, float32, shape (T, H, W), in ``"mm/h"`` for
        accumulations (``rate = amount * 60 / interval_minutes``; BOM: mm per 6
        minutes * 10) or in the file's units otherwise; the ``y``/``x`` coordinates
        (and their attributes) of the first file, which every file must share.

    Raises
    ------
    FileNotFoundError
        Missing file or empty input.
    ValueError
        Naming the file: unreadable file, missing variable (listing the available
        ones), unexpected dimensions, grid different from the first file, times not
        decodable, non-positive accumulation interval, unknown units, duplicate time.
    """
    p = resolve_preset(
        preset,
        NetCDFPreset,
        variable=variable,
        rename=rename,
        time_variable=time_variable,
        start_time_variable=start_time_variable,
        accumulation_minutes=accumulation_minutes,
        pattern=pattern,
        units=units,
        keep_variables=keep_variables,
    )
    p = cast(NetCDFPreset, p)
    acc = p.accumulation_minutes
    if acc is not None and acc != "auto":
        if isinstance(acc, str) or not acc > 0:
            raise ValueError(
                f"accumulation_minutes must be a positive number, 'auto' or None, got "
                f"{acc!r}"
            )
    if acc == "auto" and p.start_time_variable is None:
        raise ValueError(
            "accumulation_minutes='auto' needs start_time_variable=... (the variable "
            "holding the start of each accumulation); or give the interval in minutes"
        )
    files = expand_paths(paths, p.glob)
    regex = compile_time_pattern(p.pattern) if p.pattern else None

    frames: list[np.ndarray] = []
    times: list[np.ndarray] = []
    owners: list[int] = []
    grid: dict | None = None
    out_units = "mm/h" if acc is not None else None
    bar = tqdm(files, desc=f"import {p.name}", unit="file", disable=not progress)
    for k, path in enumerate(bar):
        try:
            src = xr.open_dataset(path, engine="netcdf4", cache=False)
        except FileNotFoundError:
            raise FileNotFoundError(f"radar file {path} does not exist") from None
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot open netCDF file {path}: {err}") from err
        with src:
            values, t, this_grid, src_units = _netcdf_frames(src, path, p, regex)
            if grid is None:
                grid = this_grid
                grid["attrs"] = _source_attrs(src, p)
                grid["keep"] = _kept_variables(src, path, p.keep_variables)
                grid["var_attrs"] = dict(src[p.variable].attrs)
                grid["file"] = path
                if acc is None:
                    out_units = p.units or src_units
                    if out_units is None:
                        raise ValueError(
                            f"variable {p.variable!r} of {path} has no units "
                            "attribute; pass units='dBZ' or 'mm/h'"
                        )
            else:
                _check_same_grid(grid, this_grid, path)
            if acc is not None:
                values = _to_rate(values, t, src, path, p, src_units)
        frames.append(values)
        times.append(t)
        owners.extend([k] * len(t))
    grid, out_units = cast(dict, grid), cast(str, out_units)

    all_times = np.concatenate(times).astype("datetime64[ns]")
    order = np.argsort(all_times, kind="stable")
    all_times = all_times[order]
    frame_files = [files[owners[i]] for i in order]
    _check_duplicates(all_times, frame_files)
    # fill the sorted stack file by file, freeing each file's frames once copied, so
    # the peak memory stays near one copy of the archive
    stack = np.empty((all_times.size, *frames[0].shape[1:]), dtype=np.float32)
    position = np.empty(all_times.size, dtype=np.intp)
    position[order] = np.arange(all_times.size)
    start = 0
    for j, block in enumerate(frames):
        stack[position[start : start + len(block)]] = block
        start += len(block)
        frames[j] = np.empty((0, 0, 0), dtype=np.float32)
    del frames

    attrs = dict(grid["attrs"])
    attrs.setdefault("importer_preset", p.name)
    try:
        ds = make_radar_dataset(
            stack,
            all_times,
            out_units,
            name=name,
            y=grid["y"],
            x=grid["x"],
            attrs=attrs,
        )
    except ValueError as err:
        raise ValueError(
            f"frames from {files[0]} .. {files[-1]} do not form a radar data set: {err}"
        ) from err
    ds["y"].attrs.update(grid["y_attrs"])
    ds["x"].attrs.update(grid["x_attrs"])
    var_attrs = {
        k: v for k, v in grid["var_attrs"].items() if k in ("long_name", "grid_mapping")
    }
    if acc is not None:
        var_attrs["long_name"] = "rain rate"
        var_attrs["standard_name"] = "rainfall_rate"
    if var_attrs.get("grid_mapping") not in grid["keep"]:
        var_attrs.pop("grid_mapping", None)
    ds[name].attrs.update(var_attrs)
    for var, da in grid["keep"].items():
        ds[var] = da
    record_step(
        ds,
        "import_netcdf_frames",
        preset=p.name,
        variable=p.variable,
        time_variable=p.time_variable,
        accumulation_minutes=acc,
        start_time_variable=p.start_time_variable,
        rename=dict(p.rename),
        n_files=len(files),
        first_file=files[0].name,
        last_file=files[-1].name,
    )
    return ds


def _netcdf_frames(
    src: xr.Dataset, path: Path, p: NetCDFPreset, regex: re.Pattern | None
) -> tuple[np.ndarray, np.ndarray, dict, str | None]:
    """Frames ``(k, H, W) float32``, their times ``(k,)``, grid and source units."""
    if p.variable not in src.data_vars:
        raise ValueError(
            f"{path} has no variable {p.variable!r}; available: "
            f"{sorted(map(str, src.data_vars))}; pass variable=..."
        )
    da = src[p.variable]
    ren = {k: v for k, v in p.rename.items() if k in da.dims or k in da.coords}
    da = da.rename(ren) if ren else da
    extra = [d for d in da.dims if d not in ("time", "y", "x")]
    squeezable = [d for d in extra if da.sizes[d] == 1]
    if squeezable:
        da = da.isel({d: 0 for d in squeezable}, drop=True)
    if set(da.dims) not in ({"y", "x"}, {"time", "y", "x"}):
        raise ValueError(
            f"variable {p.variable!r} of {path} has dims {da.dims}; expected (y, x) or "
            "(time, y, x): pass rename={'<row dim>': 'y', '<column dim>': 'x'}"
        )
    if "time" not in da.dims:
        da = da.expand_dims("time")
    da = da.transpose("time", "y", "x")
    values = np.asarray(da.values, dtype=np.float32)

    if p.time_variable is not None and p.time_variable in src.variables:
        t = np.atleast_1d(src[p.time_variable].values)
    elif p.time_variable is not None and p.time_variable != "time":
        raise ValueError(
            f"{path} has no time variable {p.time_variable!r}; available: "
            f"{sorted(map(str, src.variables))}; pass time_variable=..."
        )
    elif "time" in da.coords:
        t = np.atleast_1d(da["time"].values)
    elif regex is not None:
        t = np.array([parse_time(path, regex)])
    else:
        raise ValueError(
            f"{path} has no time variable or coordinate; pass time_variable=... or a "
            "file-name pattern=..."
        )
    if not np.issubdtype(t.dtype, np.datetime64):
        raise ValueError(
            f"time of {path} is not a decodable date (dtype {t.dtype}); it needs CF "
            "units like 'seconds since 1970-01-01'"
        )
    if t.size != values.shape[0]:
        raise ValueError(
            f"{path}: {t.size} times for {values.shape[0]} frames of {p.variable!r}; "
            "check time_variable"
        )

    def coord(dim: str, n: int) -> tuple[np.ndarray, dict]:
        if dim in da.coords:
            return np.asarray(da[dim].values), dict(da[dim].attrs)
        return np.arange(n), {}

    y, y_attrs = coord("y", values.shape[1])
    x, x_attrs = coord("x", values.shape[2])
    grid = {"y": y, "x": x, "y_attrs": y_attrs, "x_attrs": x_attrs}
    src_units = da.attrs.get("units")
    return values, t.astype("datetime64[ns]"), grid, src_units


def _check_same_grid(first: dict, this: dict, path: Path) -> None:
    for dim in ("y", "x"):
        a, b = first[dim], this[dim]
        if a.shape != b.shape:
            raise ValueError(
                f"{path} has {b.size} {dim} points but the first file {first['file']} "
                f"has {a.size}; all files of an archive must share one grid"
            )
        if not np.array_equal(a, b):
            raise ValueError(
                f"the {dim} coordinate of {path} differs from that of the first file "
                f"{first['file']}; all files of an archive must share one grid"
            )


def _to_rate(
    values: np.ndarray,
    t: np.ndarray,
    src: xr.Dataset,
    path: Path,
    p: NetCDFPreset,
    src_units: str | None,
) -> np.ndarray:
    """Accumulation (mm per interval) -> rain rate (mm/h), frame by frame."""
    if src_units is not None and str(src_units).strip() not in _AMOUNT_UNITS:
        raise ValueError(
            f"variable {p.variable!r} of {path} has units {src_units!r}, not an amount "
            f"(expected one of {sorted(_AMOUNT_UNITS)}); set accumulation_minutes=None "
            "for rates or reflectivities"
        )
    if p.accumulation_minutes == "auto":
        if p.start_time_variable not in src.variables:
            raise ValueError(
                f"{path} has no start-time variable {p.start_time_variable!r}; "
                f"available: {sorted(map(str, src.variables))}; pass "
                "start_time_variable=... or accumulation_minutes=<minutes>"
            )
        start = np.atleast_1d(src[p.start_time_variable].values).astype(
            "datetime64[ns]"
        )
        minutes = (t - start) / np.timedelta64(1, "m")
        if minutes.shape != t.shape or np.any(~(minutes > 0)):
            raise ValueError(
                f"{path}: accumulation interval {p.time_variable} - "
                f"{p.start_time_variable} is {minutes} minutes; it must be positive"
            )
    else:
        minutes = np.full(t.shape, float(p.accumulation_minutes))  # type: ignore[arg-type]
    factor = (60.0 / minutes).astype(np.float32)
    return values * factor[:, None, None]


def _source_attrs(src: xr.Dataset, p: NetCDFPreset) -> dict:
    attrs = dict(p.attrs)
    for k, v in src.attrs.items():
        if k not in ("Conventions", "history"):
            attrs[k] = v
    return attrs


def _kept_variables(
    src: xr.Dataset, path: Path, names: Sequence[str]
) -> dict[str, xr.DataArray]:
    kept = {}
    for n in names:
        if n not in src.variables:
            raise ValueError(
                f"{path} has no variable {n!r} to keep; available: "
                f"{sorted(map(str, src.variables))}; fix keep_variables"
            )
        da = src[n]
        if da.dims:
            raise ValueError(
                f"keep_variables takes scalar variables (grid mappings), but {n!r} of "
                f"{path} has dims {da.dims}"
            )
        kept[n] = xr.DataArray(da.values, attrs=dict(da.attrs))
    return kept


# ------------------------------------------------------------------------- archive
def import_archive(
    paths: PathLike | Iterable[PathLike],
    preset: str | Preset,
    output: PathLike,
    *,
    batch_size: int | None = None,
    progress: bool = True,
    **options: object,
) -> list[Path]:
    """Convert a radar archive to the convention and write it as netCDF.

    Parameters
    ----------
    paths : path, glob pattern, directory, or an iterable of these
        The archive's files.
    preset : str or ImagePreset or NetCDFPreset
        Archive format (see :func:`get_preset`); the reader follows from its type.
    output : path
        Destination ``.nc`` file. With ``batch_size``, files
        ``<stem>_00000.nc, <stem>_00001.nc, ...`` next to it instead.
    batch_size : int, optional
        Input files per output file. Memory then stays at about
        ``batch_size * H * W * 4`` bytes however long the archive; open the parts
        together with :func:`~nowcast.data.radar.open_radar` (``"<stem>_*.nc"``).
        Image archives are split in time order (times from the file names, duplicates
        across batches rejected); netCDF archives in file-name order.
    progress : bool
        Show progress bars.
    **options
        Overrides of preset fields, passed to the reader (``pattern=``, ``gain=``,
        ``variable=``, ...).

    Returns
    -------
    list of pathlib.Path
        The written files.
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    if not isinstance(p, (ImagePreset, NetCDFPreset)):
        raise TypeError(
            f"preset must be a name or an ImagePreset/NetCDFPreset, got {preset!r}"
        )
    reader = read_image_frames if isinstance(p, ImagePreset) else read_netcdf_frames
    read_opts = {k: options.pop(k) for k in ("name",) if k in options}
    p = resolve_preset(p, type(p), **options)
    files = expand_paths(paths, p.glob)
    output = Path(output)
    if batch_size is None:
        ds = reader(files, p, progress=progress, **read_opts)  # type: ignore[operator]
        return [write_radar(ds, output)]
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(p, ImagePreset):
        files, _ = _sort_by_name_time(files, p.pattern)
    else:
        files = sorted(files, key=lambda f: f.name)
    written = []
    starts = range(0, len(files), int(batch_size))
    for j, s in enumerate(tqdm(starts, desc="batches", disable=not progress)):
        ds = reader(files[s : s + batch_size], p, progress=False, **read_opts)  # type: ignore[operator]
        part = output.with_name(f"{output.stem}_{j:05d}{output.suffix or '.nc'}")
        written.append(write_radar(ds, part))
        del ds
    return written


# ------------------------------------------------------------------------ registry
register_preset(
    ImagePreset(
        name="hko7",
        pattern="RAD%y%m%d%H%M%S",
        gain=70.0 / 255.0,
        offset=-10.0,
        nodata=(),
        units="dBZ",
        shape=(480, 480),
        glob="*.png",
        attrs={
            "description": "HKO-7 radar echo data set: 2 km CAPPI reflectivity PNG frames, "
            "480 x 480 pixels, every 6 minutes (Shi et al. 2017)",
            "institution": "Hong Kong Observatory",
            "licence": "HKO-7 data set terms of use (research only; obtained from the "
            "Hong Kong Observatory under agreement)",
            "conversion": "dBZ = p / 255 * 70 - 10",
        },
    )
)
register_preset(
    ImagePreset(
        name="fmi",
        pattern="%Y%m%d%H%M_fmi",
        gain=0.5,
        offset=-32.0,
        nodata=(255,),
        units="dBZ",
        shape=None,
        glob="*.pgm*",
        attrs={
            "description": "FMI national lowest-elevation radar reflectivity composite "
            "(8-bit PGM, ~1 km polar stereographic grid), via the pysteps-data "
            "example collection",
            "institution": "Finnish Meteorological Institute",
            "licence": "FMI open data licence: CC BY 4.0 (since 2015-03-01)",
            "conversion": "dBZ = 0.5 * p - 32; p = 255 no data",
        },
    )
)
register_preset(
    NetCDFPreset(
        name="bom",
        variable="precipitation",
        time_variable="valid_time",
        start_time_variable="start_time",
        accumulation_minutes="auto",
        keep_variables=("proj",),
        glob="*.nc",
        attrs={
            "description": "Bureau of Meteorology Rainfields 3 radar precipitation "
            "accumulations, via the pysteps-data example collection",
            "institution": "Commonwealth of Australia, Bureau of Meteorology",
            "licence": "http://www.bom.gov.au/other/copyright.shtml",
            "conversion": "rain rate mm/h = accumulation (kg m-2 per interval) * 60 / "
            "interval minutes (x10 for 6 minutes)",
        },
    )
)
