"""ODIM_H5 composites (``odim``): the EUMETNET OPERA information model.

Generic, not OPERA-only: the reader follows the attributes. It looks for the
``datasetN/dataM`` whose ``what/quantity`` is the one asked for (``RATE``, ``DBZH``,
``TH``, ``ACRR``, ...), with ``what`` attributes at the data level overriding the dataset
level and that overriding the root (ODIM_H5 2.x, section 4). Values are
``raw * gain + offset``; ``nodata`` (outside coverage) becomes NaN and ``undetect``
(measured, but below the detection limit) becomes the quantity's "nothing" value (0 mm/h,
0 mm, or ``undetect_dbz`` for reflectivities), so no-data and measured zero stay apart.
The valid time is the root ``what/date`` + ``what/time`` (the nominal time), else the
dataset's ``enddate`` + ``endtime``. The grid comes from the root ``where``: ``projdef``,
the corner lon/lats (of the outer corners of the corner pixels), ``xscale``/``yscale``
(m) and ``xsize``/``ysize``. Accumulations (``ACRR``, mm) become mm/h over the interval
``startdate/starttime`` .. ``enddate/endtime``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar

import numpy as np

from nowcast.data.importers.base import Frames, Preset, corner_grid, register_preset
from nowcast.data.importers.hdf5 import attr_number, attr_text, open_hdf5

__all__ = ["ODIMPreset", "ODIM_UNITS", "odim_datetime"]

#: Units of the ODIM quantities this reader converts (ODIM_H5 2.x, Table 16).
ODIM_UNITS = {
    "RATE": "mm/h",
    "ACRR": "mm",
    "DBZH": "dBZ",
    "DBZV": "dBZ",
    "TH": "dBZ",
    "TV": "dBZ",
}
_WHAT_KEYS = ("quantity", "gain", "offset", "nodata", "undetect", "product")
_TIME_KEYS = ("date", "time", "startdate", "starttime", "enddate", "endtime")


def odim_datetime(date: str, time: str) -> np.datetime64:
    """``YYYYMMDD`` + ``HHmmss`` (ODIM's date/time attributes) -> datetime64[s]."""
    return np.datetime64(datetime.strptime(f"{date}{time[:6]}", "%Y%m%d%H%M%S"), "s")


@dataclass(frozen=True, kw_only=True)
class ODIMPreset(Preset):
    """How to read ODIM_H5 composites.

    Attributes
    ----------
    quantity : str
        ODIM quantity to read (one of :data:`ODIM_UNITS`).
    undetect_dbz : float
        Reflectivity given to ``undetect`` pixels of dBZ quantities.
    accumulation_to_rate : bool
        Convert accumulations (mm) to mm/h over their interval.
    """

    glob: str = "*.h*"  # .h5, .hdf, .hdf5
    quantity: str = "RATE"
    undetect_dbz: float = -32.0
    accumulation_to_rate: bool = True

    step: ClassVar[str] = "import_odim"

    def __post_init__(self) -> None:
        if self.quantity not in ODIM_UNITS:
            raise ValueError(
                f"ODIM quantity {self.quantity!r} is not supported; choose one of "
                f"{sorted(ODIM_UNITS)}"
            )

    def read_file(self, path: Path) -> Frames:
        """The requested quantity of one ODIM_H5 file, ``(1, H, W)``."""
        with open_hdf5(path) as f:
            group, what = self._find_quantity(f, path)
            raw = group["data"][...]
            where = f["where"].attrs if "where" in f else {}
            grid = _odim_grid(where, raw.shape, path)
            root_what = f["what"].attrs if "what" in f else {}
            attrs = {
                "source": attr_text(root_what, "source", ""),
                "object": attr_text(root_what, "object", ""),
                "product": str(what.get("product", "")),
                "quantity": self.quantity,
                "odim_conventions": attr_text(f.attrs, "Conventions", ""),
            }
        values = self._physical(raw, what)
        time, minutes = _odim_times(what, path)
        units = ODIM_UNITS[self.quantity]
        if units == "mm" and self.accumulation_to_rate:
            if minutes is None:
                raise ValueError(
                    f"{path}: {self.quantity} is an accumulation but the file gives no "
                    "startdate/starttime .. enddate/endtime; pass accumulation_to_rate=False"
                )
            values *= np.float32(60.0 / minutes)
            units = "mm/h"
        if minutes is not None:
            attrs["odim_interval_minutes"] = float(minutes)
        return Frames.one(
            values,
            time,
            units,
            path,
            grid=grid,
            attrs=attrs,
            var_attrs={
                "long_name": f"ODIM {self.quantity}",
                "odim_quantity": self.quantity,
            },
        )

    def _find_quantity(self, f, path: Path):
        """The ``dataM`` group holding the quantity and its merged ``what`` attributes."""
        root = _what(f)
        found = []
        for ds_name in sorted(k for k in f if k.startswith("dataset")):
            ds_what = {**root, **_what(f[ds_name])}
            for data_name in sorted(k for k in f[ds_name] if k.startswith("data")):
                what = {**ds_what, **_what(f[ds_name][data_name])}
                found.append(what.get("quantity"))
                if what.get("quantity") == self.quantity:
                    return f[ds_name][data_name], what
        raise ValueError(
            f"{path} holds no {self.quantity!r} data (quantities found: {found}); pass "
            "quantity=... (one of those)"
        )

    def _physical(self, raw: np.ndarray, what: dict) -> np.ndarray:
        gain, offset = float(what.get("gain", 1.0)), float(what.get("offset", 0.0))
        values = (raw.astype(np.float64) * gain + offset).astype(np.float32)
        nothing = self.undetect_dbz if ODIM_UNITS[self.quantity] == "dBZ" else 0.0
        if "undetect" in what:
            values[raw == what["undetect"]] = nothing
        if "nodata" in what:
            values[raw == what["nodata"]] = np.nan
        return values


def _what(group) -> dict:
    """A group's ``what`` attributes, text decoded and numbers as float."""
    if "what" not in group:
        return {}
    attrs = group["what"].attrs
    out = {}
    for key in (*_WHAT_KEYS, *_TIME_KEYS):
        if key in attrs:
            text = key in ("quantity", "product", *_TIME_KEYS)
            out[key] = attr_text(attrs, key) if text else attr_number(attrs, key)
    return out


def _odim_times(what: dict, path: Path) -> tuple[np.datetime64, float | None]:
    """Valid time (nominal date/time, else end) and the accumulation interval (minutes)."""
    start = end = None
    try:
        if "startdate" in what and "starttime" in what:
            start = odim_datetime(what["startdate"], what["starttime"])
        if "enddate" in what and "endtime" in what:
            end = odim_datetime(what["enddate"], what["endtime"])
        if "date" in what and "time" in what:
            valid = odim_datetime(what["date"], what["time"])
        elif end is not None:
            valid = end
        else:
            raise ValueError("no what/date + what/time nor enddate + endtime")
    except ValueError as err:
        raise ValueError(f"{path}: cannot read the ODIM valid time ({err})") from err
    minutes = None
    if start is not None and end is not None and end > start:
        minutes = float((end - start) / np.timedelta64(1, "m"))
    return valid, minutes


def _odim_grid(where, shape: tuple[int, int], path: Path):
    """The grid of the root ``where`` group (projdef, corners, xscale/yscale)."""
    projdef = attr_text(where, "projdef")
    need = ("LL_lon", "LL_lat", "UR_lon", "UR_lat")
    if projdef is None or any(k not in where for k in need):
        raise ValueError(
            f"{path}: the root 'where' group lacks projdef or the corner coordinates "
            f"({', '.join(need)}); it is not an ODIM_H5 composite (image) file"
        )
    for key, n in (("ysize", shape[0]), ("xsize", shape[1])):
        size = attr_number(where, key)
        if size is not None and int(size) != n:
            raise ValueError(f"{path}: where/{key} = {int(size)} but the data have {n}")
    corners = {
        c: (attr_number(where, f"{c}_lon"), attr_number(where, f"{c}_lat"))
        for c in ("LL", "UL", "UR", "LR")
        if f"{c}_lon" in where and f"{c}_lat" in where
    }
    spacing = (attr_number(where, "xscale"), attr_number(where, "yscale"))
    return corner_grid(projdef, corners, shape, spacing)


register_preset(
    ODIMPreset(
        name="odim",
        attrs={
            "description": "ODIM_H5 radar composite (EUMETNET OPERA information model)",
            "institution": "EUMETNET OPERA (or the national service named in 'source')",
            "conversion": "value = raw * gain + offset (each dataset's what); nodata -> "
            "NaN; undetect -> 0 (rates, amounts) or undetect_dbz (reflectivity)",
        },
    )
)
