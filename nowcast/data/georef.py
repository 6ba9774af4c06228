"""Where a radar grid lies on the Earth: CF coordinates and grid mapping.

A georeferenced radar data set carries

* 1-D coordinates ``y`` and ``x`` at **cell centres**, in metres of its projection
  (``standard_name`` ``projection_y_coordinate`` / ``projection_x_coordinate``) or in
  degrees (``latitude`` / ``longitude``) for a regular latitude/longitude grid;
* a scalar variable ``crs`` whose attributes are the CF grid mapping (from
  :meth:`pyproj.CRS.to_cf`: ``grid_mapping_name``, its parameters, and ``crs_wkt``), plus
  ``proj4`` (the PROJ string) for tools that want one;
* ``grid_mapping = "crs"`` on every variable over ``(y, x)``.

A data set without them (pixel-index coordinates) is simply not georeferenced:
:func:`grid_crs` returns ``None`` and everything else still works. Cropping keeps the
coordinates (it selects them); resizing replaces them with the centres of the new cells
(:func:`resized_coordinate`). The netCDF files, forecasts and plots keep them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import xarray as xr

__all__ = [
    "CRS_VARIABLE",
    "crs_attrs",
    "set_grid",
    "grid_crs",
    "is_georeferenced",
    "grid_spacing",
    "resized_coordinate",
    "copy_grid",
    "GridInfo",
    "grid_info",
]

CRS_VARIABLE = "crs"
_PROJECTED = {
    "y": {
        "standard_name": "projection_y_coordinate",
        "long_name": "y coordinate of projection",
    },
    "x": {
        "standard_name": "projection_x_coordinate",
        "long_name": "x coordinate of projection",
    },
}
_GEOGRAPHIC = {
    "y": {
        "standard_name": "latitude",
        "long_name": "latitude",
        "units": "degrees_north",
    },
    "x": {
        "standard_name": "longitude",
        "long_name": "longitude",
        "units": "degrees_east",
    },
}


def _pyproj_crs(crs: object):
    try:
        import pyproj
    except ImportError as err:  # pragma: no cover - pyproj is a dependency
        raise ImportError("georeferencing needs pyproj: pip install pyproj") from err
    try:
        return pyproj.CRS.from_user_input(crs)
    except pyproj.exceptions.CRSError as err:
        raise ValueError(
            f"not a valid projection: {crs!r} ({err}). Give a PROJ string "
            "('+proj=stere +lat_0=90 ...'), a WKT string or 'EPSG:<code>'."
        ) from err


def crs_attrs(crs: object) -> dict:
    """CF grid-mapping attributes of a projection.

    Parameters
    ----------
    crs : str or pyproj.CRS
        PROJ string, WKT, ``"EPSG:<code>"`` or a :class:`pyproj.CRS`.

    Returns
    -------
    dict
        ``grid_mapping_name`` and its parameters where CF defines them, ``crs_wkt``
        always, and ``proj4``.
    """
    parsed = _pyproj_crs(crs)
    attrs = {k: v for k, v in parsed.to_cf().items() if v is not None}
    with warnings.catch_warnings():  # "may lose information": the WKT is kept beside it
        warnings.simplefilter("ignore", UserWarning)
        attrs["proj4"] = parsed.to_proj4()
    return attrs


def set_grid(
    ds: xr.Dataset,
    x: np.ndarray,
    y: np.ndarray,
    crs: object,
    units: str = "m",
) -> xr.Dataset:
    """Georeference a ``(time, y, x)`` radar data set.

    Parameters
    ----------
    ds : xarray.Dataset
        Radar data set whose ``y`` / ``x`` dimensions have ``len(y)`` / ``len(x)`` cells.
    x, y : numpy.ndarray, shape (W,), (H,)
        Cell-centre coordinates, in ``units``.
    crs : str or pyproj.CRS
        The projection of ``x``/``y`` (for degrees, a geographic CRS such as
        ``"EPSG:4326"``).
    units : {"m", "km", "degrees"}
        Units of ``x``/``y``.

    Returns
    -------
    xarray.Dataset
        A copy with the coordinates, the ``crs`` variable and ``grid_mapping`` attributes.
    """
    x, y = np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")
    if x.shape != (ds.sizes["x"],) or y.shape != (ds.sizes["y"],):
        raise ValueError(
            f"coordinates do not fit the grid: x {x.shape}, y {y.shape} for "
            f"(y, x) = ({ds.sizes['y']}, {ds.sizes['x']})"
        )
    geographic = units.startswith("degree")
    names = _GEOGRAPHIC if geographic else _PROJECTED
    out = ds.assign_coords(
        x=(
            "x",
            x,
            {**names["x"], "axis": "X", **({} if geographic else {"units": units})},
        ),
        y=(
            "y",
            y,
            {**names["y"], "axis": "Y", **({} if geographic else {"units": units})},
        ),
    )
    out[CRS_VARIABLE] = xr.DataArray(np.int32(0), attrs=crs_attrs(crs))
    for name, var in out.data_vars.items():
        if {"y", "x"} <= set(var.dims):
            out[name].attrs["grid_mapping"] = CRS_VARIABLE
    return out


def grid_crs(ds: xr.Dataset) -> str | None:
    """The WKT of a data set's projection, or ``None`` when it is not georeferenced."""
    if CRS_VARIABLE not in ds.variables:
        return None
    attrs = ds[CRS_VARIABLE].attrs
    return attrs.get("crs_wkt") or attrs.get("spatial_ref") or attrs.get("proj4")


def is_georeferenced(ds: xr.Dataset) -> bool:
    """Whether ``ds`` has a grid mapping and coordinates on both axes."""
    return grid_crs(ds) is not None and "x" in ds.coords and "y" in ds.coords


def grid_spacing(coord: np.ndarray) -> float:
    """Signed spacing of a regular 1-D coordinate (cell size; negative when decreasing).

    Raises
    ------
    ValueError
        When the coordinate has fewer than two cells or is not evenly spaced (to 0.1 %).
    """
    coord = np.asarray(coord, dtype="float64")
    if coord.size < 2:
        raise ValueError("a coordinate needs at least two cells to have a spacing")
    steps = np.diff(coord)
    step = float(np.mean(steps))
    if not np.allclose(steps, step, rtol=1e-3, atol=0):
        raise ValueError("coordinate is not evenly spaced; resize needs a regular grid")
    return step


def resized_coordinate(coord: np.ndarray, n_out: int) -> np.ndarray:
    """Cell centres of a regular coordinate resampled to ``n_out`` cells over the same extent.

    The outer cell edges stay where they are (what an area-average resize does): with
    spacing ``d`` and ``n`` cells the extent is ``[c0 - d/2, c0 + (n - 1/2) d]``, and the new
    cells divide it evenly.

    Parameters
    ----------
    coord : numpy.ndarray, shape (n,)
        Regular cell-centre coordinate.
    n_out : int
        Cells after resizing.

    Returns
    -------
    numpy.ndarray, shape (n_out,)
    """
    coord = np.asarray(coord, dtype="float64")
    step = grid_spacing(coord)
    first_edge = coord[0] - step / 2
    new_step = step * coord.size / n_out
    return first_edge + new_step * (np.arange(n_out) + 0.5)


def copy_grid(src: xr.Dataset, dst: xr.Dataset) -> xr.Dataset:
    """Give ``dst`` (same ``y``/``x`` size) the coordinates and grid mapping of ``src``."""
    if not is_georeferenced(src):
        return dst
    out = dst.assign_coords(x=src["x"], y=src["y"])
    out[CRS_VARIABLE] = src[CRS_VARIABLE]
    for name, var in out.data_vars.items():
        if {"y", "x"} <= set(var.dims):
            out[name].attrs["grid_mapping"] = CRS_VARIABLE
    return out


@dataclass(frozen=True)
class GridInfo:
    """A summary of a georeferenced grid, for reports and plot scale bars.

    Attributes
    ----------
    crs_wkt : str
        The projection.
    dx, dy : float
        Cell size along x / y in ``units`` (signed).
    units : str
        Coordinate units (``"m"``, ``"km"``, ``"degrees"``).
    extent : tuple of float
        ``(x_min, x_max, y_min, y_max)`` of the outer cell edges.
    """

    crs_wkt: str
    dx: float
    dy: float
    units: str
    extent: tuple[float, float, float, float]


def grid_info(ds: xr.Dataset) -> GridInfo | None:
    """Summarise the grid of ``ds``; ``None`` when it is not georeferenced."""
    if not is_georeferenced(ds):
        return None
    x, y = ds["x"].values, ds["y"].values
    dx, dy = grid_spacing(x), grid_spacing(y)
    xs = (x.min() - abs(dx) / 2, x.max() + abs(dx) / 2)
    ys = (y.min() - abs(dy) / 2, y.max() + abs(dy) / 2)
    units = ds["x"].attrs.get("units", "m")
    units = "degrees" if units.startswith("degree") else units
    return GridInfo(grid_crs(ds), dx, dy, units, (*map(float, xs), *map(float, ys)))
