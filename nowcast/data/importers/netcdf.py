"""netCDF radar archives with their own naming, e.g. the Australian Bureau of
Meteorology (BOM) Rainfields products (``bom``).

Variables and dimensions are renamed, valid times come from a (scalar) time variable per
file, accumulations (mm per interval) become rain rates in mm/h with the interval read
from each file (valid time - start time), and a CF grid mapping named by the variable's
``grid_mapping`` attribute becomes the grid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import xarray as xr

from nowcast.data.importers.base import (
    Frames,
    Grid,
    PathLike,
    Preset,
    parse_time,
    read_frames,
    register_preset,
)
from nowcast.data.parallel import NETCDF_LOCK

__all__ = ["NetCDFPreset", "AMOUNT_UNITS", "read_netcdf_frames", "accumulation_to_rate"]

#: Spellings of "mm of water" (an accumulation) accepted for accumulation variables.
AMOUNT_UNITS = {"mm", "kg m-2", "kg m**-2", "kg/m2", "kg/m^2", "kg m^-2", "kg.m-2"}


@dataclass(frozen=True, kw_only=True)
class NetCDFPreset(Preset):
    """How to read an archive of netCDF files (one or more frames per file).

    Attributes
    ----------
    variable : str
        Name of the intensity variable in the files (required).
    rename : dict
        Source dimension / coordinate names -> ``"time"``, ``"y"``, ``"x"``.
    time_variable : str or None
        Variable holding the valid time of the frame(s) (scalar or along ``time``);
        ``None`` takes the ``time`` coordinate or, failing that, ``pattern``.
    start_time_variable : str or None
        Variable holding the start of the accumulation period (for
        ``accumulation_minutes="auto"``).
    accumulation_minutes : float, "auto" or None
        ``None``: not an accumulation (already dBZ or mm/h). A number: an amount in mm
        per that many minutes, converted by ``x * 60 / minutes``. ``"auto"``: the
        interval of each frame is ``time_variable - start_time_variable``.
    units : str or None
        Override the units of a non-accumulation variable.
    """

    glob: str = "*.nc"
    variable: str | None = None
    rename: Mapping[str, str] = field(default_factory=dict)
    time_variable: str | None = "time"
    start_time_variable: str | None = None
    accumulation_minutes: float | str | None = None
    units: str | None = None

    step: ClassVar[str] = "import_netcdf_frames"
    required: ClassVar[tuple[str, ...]] = ("variable",)

    def __post_init__(self) -> None:
        acc = self.accumulation_minutes
        if acc is not None and acc != "auto" and (isinstance(acc, str) or not acc > 0):
            raise ValueError(
                f"accumulation_minutes must be a positive number, 'auto' or None, got {acc!r}"
            )
        if acc == "auto" and self.start_time_variable is None:
            raise ValueError(
                "accumulation_minutes='auto' needs start_time_variable=... (the variable "
                "holding the start of each accumulation); or give the interval in minutes"
            )
        object.__setattr__(self, "rename", dict(self.rename))

    def read_file(self, path: Path) -> Frames:
        """All frames of one netCDF file, in physical units, with their grid."""
        with NETCDF_LOCK:  # netCDF-C is not thread-safe (scheduler="threads")
            return self._read_locked(path)

    def _read_locked(self, path: Path) -> Frames:
        try:
            src = xr.open_dataset(path, engine="netcdf4", cache=False)
        except FileNotFoundError:
            raise FileNotFoundError(f"radar file {path} does not exist") from None
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot open netCDF file {path}: {err}") from err
        with src:
            da = self._intensity(src, path)
            values = np.asarray(da.values, dtype=np.float32)
            times = self._times(src, da, path, values.shape[0])
            units = da.attrs.get("units")
            var_attrs = {k: v for k, v in da.attrs.items() if k == "long_name"}
            if self.accumulation_minutes is not None:
                minutes = self._interval_minutes(src, times, path)
                values = accumulation_to_rate(values, minutes, units, path)
                units = "mm/h"
                var_attrs = {"long_name": "rain rate", "standard_name": "rainfall_rate"}
            units = self.units or units
            if units is None:
                raise ValueError(
                    f"variable {self.variable!r} of {path} has no units attribute; pass "
                    "units='dBZ' or 'mm/h'"
                )
            attrs = {
                k: v
                for k, v in src.attrs.items()
                if k not in ("Conventions", "history")
            }
            frames = Frames(
                values, times, str(units), path, attrs=attrs, var_attrs=var_attrs
            )
            frames.grid = cf_grid(src, da)
            if frames.grid is None:
                frames.y, frames.x = (
                    _coordinate(da, d, n)
                    for d, n in zip("yx", values.shape[1:], strict=True)
                )
        return frames

    def _intensity(self, src: xr.Dataset, path: Path) -> xr.DataArray:
        if self.variable not in src.data_vars:
            raise ValueError(
                f"{path} has no variable {self.variable!r}; available: "
                f"{sorted(map(str, src.data_vars))}; pass variable=..."
            )
        da = src[self.variable]
        ren = {k: v for k, v in self.rename.items() if k in da.dims or k in da.coords}
        da = da.rename(ren) if ren else da
        squeezable = [
            d for d in da.dims if d not in ("time", "y", "x") and da.sizes[d] == 1
        ]
        if squeezable:
            da = da.isel({d: 0 for d in squeezable}, drop=True)
        if set(da.dims) not in ({"y", "x"}, {"time", "y", "x"}):
            raise ValueError(
                f"variable {self.variable!r} of {path} has dims {da.dims}; expected (y, x) "
                "or (time, y, x): pass rename={'<row dim>': 'y', '<column dim>': 'x'}"
            )
        da = da if "time" in da.dims else da.expand_dims("time")
        return da.transpose("time", "y", "x")

    def _times(
        self, src: xr.Dataset, da: xr.DataArray, path: Path, n: int
    ) -> np.ndarray:
        tv = self.time_variable
        if tv is not None and tv in src.variables:
            t = np.atleast_1d(src[tv].values)
        elif tv is not None and tv != "time":
            raise ValueError(
                f"{path} has no time variable {tv!r}; available: "
                f"{sorted(map(str, src.variables))}; pass time_variable=..."
            )
        elif "time" in da.coords:
            t = np.atleast_1d(da["time"].values)
        elif self.pattern is not None:
            t = np.array([parse_time(path, self.pattern)])
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
        if t.size != n:
            raise ValueError(
                f"{path}: {t.size} times for {n} frames of {self.variable!r}; check "
                "time_variable"
            )
        return t.astype("datetime64[ns]")

    def _interval_minutes(
        self, src: xr.Dataset, t: np.ndarray, path: Path
    ) -> np.ndarray:
        if self.accumulation_minutes != "auto":
            return np.full(t.shape, float(self.accumulation_minutes))  # type: ignore[arg-type]
        if self.start_time_variable not in src.variables:
            raise ValueError(
                f"{path} has no start-time variable {self.start_time_variable!r}; "
                f"available: {sorted(map(str, src.variables))}; pass "
                "start_time_variable=... or accumulation_minutes=<minutes>"
            )
        start = np.atleast_1d(src[self.start_time_variable].values).astype(
            "datetime64[ns]"
        )
        minutes = (t - start) / np.timedelta64(1, "m")
        if minutes.shape != t.shape or np.any(~(minutes > 0)):
            raise ValueError(
                f"{path}: accumulation interval {self.time_variable} - "
                f"{self.start_time_variable} is {minutes} minutes; it must be positive"
            )
        return minutes


def accumulation_to_rate(
    values: np.ndarray, minutes: np.ndarray, units: object, path: Path
) -> np.ndarray:
    """Accumulations ``(k, H, W)`` in mm over ``minutes`` ``(k,)`` -> rain rates in mm/h.

    ``rate = amount * 60 / minutes`` (a 6-minute amount times 10).

    Raises
    ------
    ValueError
        When ``units`` is not an amount (see :data:`AMOUNT_UNITS`), naming ``path``.
    """
    if units is not None and str(units).strip() not in AMOUNT_UNITS:
        raise ValueError(
            f"{path} holds units {units!r}, not an amount (expected one of "
            f"{sorted(AMOUNT_UNITS)}); set accumulation_minutes=None for rates or "
            "reflectivities"
        )
    factor = (60.0 / np.asarray(minutes, dtype=np.float64)).astype(np.float32)
    return values * factor[:, None, None]


def cf_grid(src: xr.Dataset, da: xr.DataArray) -> Grid | None:
    """The grid of a variable with a CF ``grid_mapping`` and projected x/y coordinates."""
    import pyproj

    mapping = da.attrs.get("grid_mapping") or da.encoding.get("grid_mapping")
    if not mapping or mapping not in src.variables or "x" not in da.coords:
        return None
    crs = pyproj.CRS.from_cf(dict(src[mapping].attrs))
    units = str(da["x"].attrs.get("units", "m"))
    units = "km" if units in ("km", "kilometre", "kilometer") else "m"
    return Grid(
        x=np.asarray(da["x"].values, "float64"),
        y=np.asarray(da["y"].values, "float64"),
        crs=crs.to_wkt(),
        units=units,
    )


def _coordinate(da: xr.DataArray, dim: str, n: int) -> np.ndarray:
    return np.asarray(da[dim].values) if dim in da.coords else np.arange(n)


def read_netcdf_frames(
    paths: PathLike | Iterable[PathLike],
    preset: str | NetCDFPreset | None = None,
    **options: Any,
) -> xr.Dataset:
    """Read a netCDF radar archive with its own naming into a radar data set.

    :func:`~nowcast.data.importers.base.read_frames` for netCDF presets: ``preset`` is
    ``"bom"``, a :class:`NetCDFPreset`, or ``None`` for a custom one from ``options``
    (``variable=`` then required). ``paths`` are the files in any order (frames are
    sorted by time); ``options`` are ``read_frames``' keywords (``name``,
    ``progress``, ``workers``, ``scheduler``) and overrides of :class:`NetCDFPreset`
    fields (``variable``, ``rename``, ``time_variable``, ``start_time_variable``,
    ``accumulation_minutes``, ``pattern``, ``units``).

    Returns
    -------
    xarray.Dataset
        ``name`` over ``(time, y, x)``, float32, in ``"mm/h"`` for accumulations (BOM:
        mm per 6 minutes * 10) or in the file's units otherwise; georeferenced when the
        files carry a CF grid mapping.
    """
    return read_frames(paths, preset, kind=NetCDFPreset, **options)


register_preset(
    NetCDFPreset(
        name="bom",
        variable="precipitation",
        time_variable="valid_time",
        start_time_variable="start_time",
        accumulation_minutes="auto",
        glob="*.nc",
        attrs={
            "description": "Bureau of Meteorology Rainfields 3 radar precipitation "
            "accumulations, via the pysteps-data example collection",
            "institution": "Commonwealth of Australia, Bureau of Meteorology",
            "source": "BOM Rainfields 3 (prcp-cscn netCDF)",
            "product": "radar-derived bias-corrected precipitation accumulation",
            "licence": "http://www.bom.gov.au/other/copyright.shtml",
            "conversion": "rain rate mm/h = accumulation (kg m-2 per interval) * 60 / "
            "interval minutes (valid_time - start_time, read from each file)",
        },
    )
)
