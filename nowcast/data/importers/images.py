"""8-bit grey image archives, one frame per file: PNG or PGM, optionally gzipped.

E.g. the HKO-7 benchmark of Shi et al. (2017) (``hko7``: dBZ = p / 255 * 70 - 10) or the
Finnish Meteorological Institute composites (``fmi``: dBZ = 0.5 p - 32, p = 255 no data).
The valid time comes from the file name; grey level ``p`` becomes ``gain * p + offset``
through a 256-entry look-up table. HKO-7 PNGs record no grid; FMI PGM headers record
their polar stereographic projection and corners, which become the grid.
"""

from __future__ import annotations

import gzip
import io
import warnings
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import xarray as xr
from PIL import Image, UnidentifiedImageError

from nowcast.data.importers.base import (
    Frames,
    Grid,
    PathLike,
    Preset,
    compile_time_pattern,
    parse_time,
    read_frames,
    register_preset,
)

__all__ = [
    "ImagePreset",
    "pixel_lut",
    "parse_pgm_header",
    "pgm_grid",
    "read_image_frames",
    "FMI_EARTH_RADIUS_M",
]

#: Sphere radius of FMI's stereographic composite grid (the pysteps FMI definition).
FMI_EARTH_RADIUS_M = 6371288.0


def as_nodata(nodata: object) -> tuple[int, ...]:
    """No-data grey levels as a tuple of ints in [0, 255] (a scalar or a sequence)."""
    values = (nodata,) if np.isscalar(nodata) else tuple(nodata)  # type: ignore[arg-type]
    out = []
    for v in values:
        if int(v) != v or not 0 <= int(v) <= 255:
            raise ValueError(
                f"nodata grey levels must be integers in [0, 255], got {v}"
            )
        out.append(int(v))
    return tuple(out)


@dataclass(frozen=True, kw_only=True)
class ImagePreset(Preset):
    """How to read an archive of 8-bit grey image frames, one frame per file.

    Attributes
    ----------
    pattern : str
        Valid time in the file name (required), see
        :func:`~nowcast.data.importers.base.compile_time_pattern`.
    gain, offset : float
        Linear map from grey level ``p`` to the physical value: ``gain * p + offset``.
    nodata : tuple of int
        Grey levels that mean "no data" (become NaN).
    units : str
        Units of ``gain * p + offset`` (``"dBZ"``, ``"mm/h"`` or ``"1"``).
    shape : (int, int) or None
        Expected ``(height, width)`` of every frame; ``None`` takes the first frame's.
    grid_from_header : bool
        Georeference from the PGM header's stereographic projection and corners
        (:func:`pgm_grid`), as FMI records them.
    """

    pattern: str | None = None
    gain: float = 1.0
    offset: float = 0.0
    nodata: tuple[int, ...] = ()
    units: str = "dBZ"
    shape: tuple[int, int] | None = None
    grid_from_header: bool = False

    step: ClassVar[str] = "import_image_frames"
    required: ClassVar[tuple[str, ...]] = ("pattern",)
    one_frame_per_file: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodata", as_nodata(self.nodata))
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if self.pattern is None:
            raise ValueError(
                f"image preset {self.name!r} needs pattern=... (time in names)"
            )
        compile_time_pattern(self.pattern)

    def read_file(self, path: Path) -> Frames:
        """One frame: ``(1, H, W)`` float32 through the look-up table."""
        frames = self.read_codes(path)
        lut = pixel_lut(self.gain, self.offset, self.nodata)
        frames.values = np.take(lut, frames.values)
        return frames

    def packing(self) -> dict:
        """Grey levels stored as uint8 with ``scale_factor = gain``, ``add_offset =
        offset`` and the first no-data grey level as ``_FillValue`` (lossless)."""
        fill = np.uint8(self.nodata[0]) if self.nodata else None
        return {
            "scale_factor": np.float32(self.gain),
            "add_offset": np.float32(self.offset),
            "_FillValue": fill,
        }

    def read_codes(self, path: Path) -> Frames:
        """One frame of grey levels, ``(1, H, W)`` uint8 (no-data levels -> the first)."""
        pixels, header = read_grey_image(path)
        if self.shape is not None and pixels.shape != self.shape:
            raise ValueError(
                f"frame {path} is {pixels.shape[0]} x {pixels.shape[1]} (H x W) but the "
                f"preset's shape is {self.shape[0]} x {self.shape[1]}; pass shape=None "
                "or the archive's size"
            )
        time = parse_time(path, self.pattern)  # type: ignore[arg-type]
        check_obstime(path, header, time)
        if len(self.nodata) > 1:
            pixels = np.where(np.isin(pixels, self.nodata), self.nodata[0], pixels)
        attrs = {f"pgm_{k}": v for k, v in header.items() if k not in ("obstime", "}")}
        grid = pgm_grid(header, pixels.shape, path) if self.grid_from_header else None
        long_name = "radar reflectivity" if self.units == "dBZ" else "radar intensity"
        return Frames.one(
            pixels,
            time,
            self.units,
            path,
            grid=grid,
            attrs=attrs,
            var_attrs={"long_name": long_name},
        )


@lru_cache(maxsize=16)
def _cached_lut(gain: float, offset: float, nodata: tuple[int, ...]) -> np.ndarray:
    lut = (offset + gain * np.arange(256, dtype=np.float64)).astype(np.float32)
    lut[list(nodata)] = np.nan
    lut.flags.writeable = False
    return lut


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
    return _cached_lut(float(gain), float(offset), as_nodata(nodata))


def read_bytes(path: Path) -> bytes:
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


def read_grey_image(path: Path) -> tuple[np.ndarray, dict[str, str]]:
    """One 8-bit grey frame ``(H, W) uint8`` and its PGM header metadata."""
    raw = read_bytes(path)
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


def pgm_grid(header: Mapping[str, str], shape: tuple[int, int], path: Path) -> Grid:
    """The grid of an FMI-style PGM from its header comments.

    The header gives a polar stereographic projection (``type stereographic``,
    ``centrallongitude``, ``centrallatitude``, ``truelatitude``), the lon/lat of the
    ``bottomleft`` and ``topright`` corners and ``metersperpixel_x``/``_y``. The
    bottom-left corner, projected (sphere of radius :data:`FMI_EARTH_RADIUS_M`), is the
    outer edge of the bottom-left cell; row 0 is the top of the image.

    Raises
    ------
    ValueError
        Naming the file and the missing header key.
    """
    import pyproj

    need = ("type", "centrallongitude", "centrallatitude", "truelatitude", "bottomleft")
    missing = [
        k for k in (*need, "metersperpixel_x", "metersperpixel_y") if k not in header
    ]
    if missing or header["type"] != "stereographic":
        raise ValueError(
            f"{path}: the PGM header lacks {missing or 'a stereographic projection'} to "
            "georeference the frame; pass grid_from_header=False"
        )
    crs = (
        f"+proj=stere +lat_0={float(header['centrallatitude'])} "
        f"+lon_0={float(header['centrallongitude'])} "
        f"+lat_ts={float(header['truelatitude'])} +R={FMI_EARTH_RADIUS_M} +units=m +no_defs"
    )
    lon, lat = (float(v) for v in header["bottomleft"].split()[:2])
    x0, y0 = pyproj.Proj(crs)(lon, lat)
    dx, dy = float(header["metersperpixel_x"]), float(header["metersperpixel_y"])
    h, w = shape
    x = x0 + dx * (np.arange(w) + 0.5)
    y = y0 + dy * (h - np.arange(h) - 0.5)
    return Grid(x=x, y=y, crs=crs, units="m")


def check_obstime(path: Path, header: Mapping[str, str], time: np.datetime64) -> None:
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


def read_image_frames(
    paths: PathLike | Iterable[PathLike],
    preset: str | ImagePreset | None = None,
    **options: Any,
) -> xr.Dataset:
    """Read an 8-bit grey image archive (one frame per file) into a radar data set.

    :func:`~nowcast.data.importers.base.read_frames` for image presets: ``preset`` is
    ``"hko7"``, ``"fmi"``, an :class:`ImagePreset`, or ``None`` for a custom one from
    ``options`` (``pattern=`` then required). ``paths`` are the frames in any order
    (sorted by the time in their names); ``options`` are ``read_frames``' keywords
    (``name``, ``progress``, ``workers``, ``scheduler``) and overrides of
    :class:`ImagePreset` fields (``pattern``, ``gain``, ``offset``, ``nodata``,
    ``units``, ``shape``; ``None`` keeps the preset's value).

    Returns
    -------
    xarray.Dataset
        ``name`` over ``(time, y, x)``, float32, NaN where no data; PGM header metadata
        of the first file in ``pgm_*`` attributes.

    Notes
    -----
    HKO-7 (Shi et al. 2017): dBZ = p / 255 * 70 - 10. FMI composites:
    dBZ = 0.5 p - 32, p = 255 outside radar coverage.
    """
    return read_frames(paths, preset, kind=ImagePreset, **options)


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
            "source": "HKO-7 radar echo PNG archive",
            "product": "CAPPI reflectivity, 2 km",
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
        grid_from_header=True,
        attrs={
            "description": "FMI national lowest-elevation radar reflectivity composite "
            "(8-bit PGM, ~1 km polar stereographic grid), via the pysteps-data "
            "example collection",
            "institution": "Finnish Meteorological Institute",
            "source": "FMI open data radar composite (PGM)",
            "product": "lowest-elevation reflectivity composite",
            "licence": "FMI open data licence: CC BY 4.0 (since 2015-03-01)",
            "conversion": "dBZ = 0.5 * p - 32; p = 255 no data",
        },
    )
)
