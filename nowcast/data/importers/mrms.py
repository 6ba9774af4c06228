"""NOAA MRMS GRIB2 products (``mrms``), e.g. the surface PrecipRate in mm/h.

Read through ``pygrib`` (an optional extra: ``pip install 'nowcast[grib]'``; its wheel
carries ecCodes). The CONUS grid is regular latitude/longitude, 3500 x 7000 points at
0.01 degree, north row first; a ``bbox=[lon_min, lon_max, lat_min, lat_max]`` box is cut
at import so that frames stay small. Negative values (-3: no radar coverage) become NaN;
0 is measured "no rain". The valid time is the message's ``dataDate``/``dataTime``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar

import numpy as np

from nowcast.data.importers.base import Frames, Grid, Preset, register_preset

__all__ = ["MRMSPreset", "bbox_slices"]


def _pygrib():
    try:
        import pygrib
    except ImportError as err:  # pragma: no cover - pygrib is in the grib/dev extras
        raise ImportError(
            "the mrms importer needs pygrib: pip install 'nowcast[grib]' (or pygrib)"
        ) from err
    return pygrib


def bbox_slices(
    lon: np.ndarray, lat: np.ndarray, bbox: tuple[float, float, float, float]
) -> tuple[slice, slice]:
    """Row and column slices of the cells whose centres lie in ``bbox``.

    Parameters
    ----------
    lon, lat : numpy.ndarray, shape (W,), (H,)
        Cell-centre longitudes / latitudes (degrees; latitudes may decrease).
    bbox : (lon_min, lon_max, lat_min, lat_max)
        Degrees east / north.

    Returns
    -------
    (rows, cols) : tuple of slice
    """
    lon_min, lon_max, lat_min, lat_max = (float(b) for b in bbox)
    if not (lon_min < lon_max and lat_min < lat_max):
        raise ValueError(
            f"bbox must be [lon_min, lon_max, lat_min, lat_max] with min < max, got {bbox}"
        )
    cols = np.flatnonzero((lon >= lon_min) & (lon <= lon_max))
    rows = np.flatnonzero((lat >= lat_min) & (lat <= lat_max))
    if cols.size == 0 or rows.size == 0:
        raise ValueError(
            f"bbox {list(bbox)} holds no grid cell: the grid spans lon "
            f"{lon.min():.3f}..{lon.max():.3f}, lat {lat.min():.3f}..{lat.max():.3f}"
        )
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


@dataclass(frozen=True, kw_only=True)
class MRMSPreset(Preset):
    """How to read MRMS GRIB2 files.

    Attributes
    ----------
    bbox : (float, float, float, float) or None
        ``[lon_min, lon_max, lat_min, lat_max]`` in degrees to cut; ``None``: the whole
        grid.
    units : str
        Units of the product (PrecipRate: ``"mm/h"``).
    """

    glob: str = "*.grib2*"
    pattern: str | None = "%Y%m%d-%H%M%S"
    bbox: tuple[float, float, float, float] | None = None
    units: str = "mm/h"

    step: ClassVar[str] = "import_mrms"

    def __post_init__(self) -> None:
        if self.bbox is not None:
            if len(self.bbox) != 4:
                raise ValueError(
                    f"bbox must be [lon_min, lon_max, lat_min, lat_max], got {self.bbox}"
                )
            object.__setattr__(self, "bbox", tuple(float(b) for b in self.bbox))

    def read_file(self, path: Path) -> Frames:
        """The first message of one GRIB2 file, cut to ``bbox``, ``(1, h, w)``."""
        pygrib = _pygrib()
        if not path.exists():
            raise FileNotFoundError(f"radar file {path} does not exist")
        try:
            with pygrib.open(str(path)) as grbs:
                msg = grbs.message(1)
                lon, lat = _regular_axes(msg, path)
                rows, cols = (slice(None), slice(None))
                if self.bbox is not None:
                    rows, cols = bbox_slices(lon, lat, self.bbox)
                values = np.asarray(msg.values, dtype=np.float32)[rows, cols]
                time = datetime.strptime(
                    f"{msg['dataDate']}{msg['dataTime']:04d}", "%Y%m%d%H%M"
                )
        except (OSError, RuntimeError) as err:
            raise ValueError(f"cannot read GRIB2 file {path}: {err}") from err
        values[values < 0] = np.nan  # -3: no coverage (MRMS missing values)
        grid = Grid(x=lon[cols], y=lat[rows], crs="EPSG:4326", units="degrees")
        return Frames.one(
            values,
            np.datetime64(time, "s"),
            self.units,
            path,
            grid=grid,
            attrs={
                "product": path.name.split("_")[0],
                "mrms_bbox": list(self.bbox or []),
            },
            var_attrs={"long_name": "MRMS surface precipitation rate"},
        )


def _regular_axes(msg, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre longitudes (-180..180) and latitudes of a regular_ll message."""
    if msg["gridType"] != "regular_ll":
        raise ValueError(f"{path}: grid type {msg['gridType']!r}, expected regular_ll")
    ni, nj = int(msg["Ni"]), int(msg["Nj"])
    di, dj = (
        float(msg["iDirectionIncrementInDegrees"]),
        float(msg["jDirectionIncrementInDegrees"]),
    )
    lon0 = float(msg["longitudeOfFirstGridPointInDegrees"])
    lat0 = float(msg["latitudeOfFirstGridPointInDegrees"])
    lon = lon0 + di * np.arange(ni) * (-1 if msg["iScansNegatively"] else 1)
    lat = lat0 + dj * np.arange(nj) * (1 if msg["jScansPositively"] else -1)
    lon = np.where(lon > 180.0, lon - 360.0, lon)
    return np.round(lon, 6), np.round(lat, 6)


register_preset(
    MRMSPreset(
        name="mrms",
        attrs={
            "description": "NOAA Multi-Radar Multi-Sensor (MRMS) surface precipitation "
            "rate over the contiguous US (GRIB2, 0.01 degree, every 2 minutes)",
            "institution": "NOAA/NSSL Multi-Radar Multi-Sensor",
            "source": "MRMS PrecipRate GRIB2",
            "conversion": "mm/h as stored; values < 0 (-3: no coverage) -> NaN",
        },
    )
)
