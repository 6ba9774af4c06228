"""KNMI HDF5 radar composites (``knmi``): the Dutch 5-minute products (e.g.
``RAD_NL25_RAC_MFBS_5min``), in the layout KNMI documents for its HDF5 files.

* ``image1/image_data``: the raw pixel values ``PV`` (row 0 = north);
* ``image1/calibration``: ``calibration_formulas`` such as
  ``"GEO = 0.010000 * PV + 0.000000"``, ``calibration_missing_data`` and
  ``calibration_out_of_image`` (both become NaN: no data);
* ``image1`` attribute ``image_geo_parameter`` (``PRECIP_[MM]`` for accumulations,
  ``REFLECTIVITY_[DBZ]``);
* ``overview`` attributes ``product_datetime_start`` / ``product_datetime_end``
  (``"26-AUG-2010;00:00:00.000"``): the valid time is the end, the accumulation interval
  the difference;
* ``geographic`` attributes ``geo_number_columns`` / ``geo_number_rows`` and
  ``geo_product_corners`` (lon, lat of the lower-left, upper-left, upper-right and
  lower-right outer corners), ``geographic/map_projection`` attribute
  ``projection_proj4_params`` (KNMI gives the Earth radii in km; they are converted to
  m so that the grid is in metres).

Accumulations (mm per interval) become mm/h.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar

import numpy as np

from nowcast.data.importers.base import Frames, Preset, corner_grid, register_preset
from nowcast.data.importers.hdf5 import attr_number, attr_text, open_hdf5

__all__ = ["KNMIPreset", "parse_calibration", "knmi_datetime", "metre_proj4"]

_FORMULA = re.compile(
    r"GEO\s*=\s*([-+]?[\d.]+(?:[eE][-+]?\d+)?)\s*\*\s*PV\s*\+?\s*([-+]?\s*[\d.]+(?:[eE][-+]?\d+)?)"
)
_CORNERS = ("LL", "UL", "UR", "LR")


def parse_calibration(formula: str) -> tuple[float, float]:
    """``"GEO = 0.5 * PV + -32"`` -> ``(gain, offset)`` = ``(0.5, -32.0)``."""
    m = _FORMULA.search(formula)
    if m is None:
        raise ValueError(
            f"calibration formula {formula!r} is not of the form 'GEO = a * PV + b'"
        )
    return float(m.group(1)), float(m.group(2).replace(" ", ""))


def knmi_datetime(text: str) -> np.datetime64:
    """KNMI's ``"26-AUG-2010;00:05:00.000"`` -> datetime64[s]."""
    return np.datetime64(datetime.strptime(text[:20].title(), "%d-%b-%Y;%H:%M:%S"), "s")


def metre_proj4(proj4: str) -> str:
    """A PROJ string with Earth radii given in km (``+a=6378.137``) rewritten in m."""

    def to_m(m: re.Match) -> str:
        value = float(m.group(2))
        return f"+{m.group(1)}={value * 1000.0 if value < 1e4 else value}"

    return re.sub(r"\+(a|b|R)=([\d.]+)", to_m, proj4)


@dataclass(frozen=True, kw_only=True)
class KNMIPreset(Preset):
    """How to read KNMI HDF5 composites.

    Attributes
    ----------
    accumulation_minutes : float or None
        Interval of accumulation products; ``None`` reads it from ``overview``.
    """

    glob: str = "*.h5"
    accumulation_minutes: float | None = None

    step: ClassVar[str] = "import_knmi"

    def read_file(self, path: Path) -> Frames:
        """One KNMI composite, ``(1, H, W)``: mm/h (accumulations) or dBZ."""
        with open_hdf5(path) as f:
            try:
                raw = f["image1/image_data"][...]
                cal = f["image1/calibration"].attrs
                image = f["image1"].attrs
                overview = f["overview"].attrs
                geo = f["geographic"].attrs
                proj4 = attr_text(
                    f["geographic/map_projection"].attrs, "projection_proj4_params"
                )
            except KeyError as err:
                raise ValueError(f"{path} is not a KNMI HDF5 composite: {err}") from err
            gain, offset = parse_calibration(attr_text(cal, "calibration_formulas", ""))
            nodata = [
                attr_number(cal, k)
                for k in ("calibration_missing_data", "calibration_out_of_image")
            ]
            parameter = attr_text(image, "image_geo_parameter", "") or ""
            start, end = (
                attr_text(overview, f"product_datetime_{k}") for k in ("start", "end")
            )
            corners = np.ravel(geo["geo_product_corners"]).astype(float)
        values = (raw.astype(np.float64) * gain + offset).astype(np.float32)
        for v in nodata:
            if v is not None:
                values[raw == v] = np.nan
        time = knmi_datetime(end or start or "")
        units, var_attrs = "dBZ", {"long_name": "radar reflectivity"}
        if "MM" in parameter.upper():
            minutes = self.accumulation_minutes or _minutes(start, end, path)
            values *= np.float32(60.0 / minutes)
            units, var_attrs = (
                "mm/h",
                {"long_name": "rain rate", "standard_name": "rainfall_rate"},
            )
        grid = corner_grid(
            metre_proj4(proj4 or ""),
            {c: (corners[2 * k], corners[2 * k + 1]) for k, c in enumerate(_CORNERS)},
            raw.shape,
        )
        attrs = {
            "product": path.name.rsplit("_", 1)[0],
            "knmi_geo_parameter": parameter,
        }
        return Frames.one(
            values, time, units, path, grid=grid, attrs=attrs, var_attrs=var_attrs
        )


def _minutes(start: str | None, end: str | None, path: Path) -> float:
    if start is None or end is None or knmi_datetime(end) <= knmi_datetime(start):
        raise ValueError(
            f"{path}: overview gives no positive accumulation interval "
            f"({start!r} .. {end!r}); pass accumulation_minutes=..."
        )
    return float((knmi_datetime(end) - knmi_datetime(start)) / np.timedelta64(1, "m"))


register_preset(
    KNMIPreset(
        name="knmi",
        attrs={
            "description": "KNMI HDF5 radar composite of the Netherlands (5-minute)",
            "institution": "Royal Netherlands Meteorological Institute (KNMI)",
            "source": "KNMI HDF5 radar composite",
            "conversion": "GEO = a * PV + b (image1/calibration); missing and "
            "out-of-image values -> NaN; accumulations (mm) * 60 / interval minutes",
        },
    )
)
