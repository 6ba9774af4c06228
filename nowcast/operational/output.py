"""A forecast as a CF-1.8 netCDF file, and a picture of it.

The file is itself a radar sequence in the convention of :mod:`nowcast.data.radar`
(dims ``(time, y, x)``, one intensity variable with physical units), so every tool of the
package opens it, and it follows the CF conventions for forecasts:

* ``time`` (valid time of each lead, ``standard_name = "time"``);
* ``forecast_reference_time``, a scalar coordinate: the issue time (the newest input
  frame);
* ``forecast_period`` along ``time``: the lead time;
* ``x`` / ``y`` and the grid mapping ``crs`` of the processed grid when the input was
  georeferenced (:mod:`nowcast.data.georef`), else pixel centres;
* the forecaster and its provenance, the input frames and the preprocessing in the
  global attributes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from nowcast import __version__
from nowcast.data.georef import (
    copy_grid,
    grid_crs,
    is_georeferenced,
    set_grid,
)
from nowcast.data.radar import record_step, write_radar

__all__ = [
    "STANDARD_NAMES",
    "raw_projection",
    "forecast_dataset",
    "write_forecast",
    "plot_forecast",
    "input_summary",
]

PathLike = str | os.PathLike

#: CF standard names of the intensity, by units.
STANDARD_NAMES = {"dBZ": "equivalent_reflectivity_factor", "mm/h": "rainfall_rate"}
_PIXEL_AXIS = {
    axis: {
        "long_name": f"{name} of the raw grid at the processed cell centre (not "
        "georeferenced)",
        "units": "1",
        "axis": axis.upper(),
    }
    for axis, name in (("x", "column index"), ("y", "row index"))
}
_TIME_ENCODING = {"units": "seconds since 1970-01-01 00:00:00", "calendar": "standard"}


def raw_projection(raw: xr.Dataset) -> str | None:
    """The projection of a raw grid: its ``crs`` (:func:`grid_crs`), else the WKT of a
    CF grid-mapping variable it carries under another name (e.g. BOM's ``proj``)."""
    crs = grid_crs(raw)
    if crs is not None or "x" not in raw.coords:
        return crs
    for var in raw.data_vars.values():
        if var.ndim == 0 and "grid_mapping_name" in var.attrs:
            import pyproj

            return pyproj.CRS.from_cf(dict(var.attrs)).to_wkt()
    return None


def _grid(out: xr.Dataset, processed: xr.Dataset, raw: xr.Dataset) -> xr.Dataset:
    """Give ``out`` the processed grid: coordinates and the raw grid mapping."""
    if is_georeferenced(processed):  # the preprocessing kept the grid itself
        return copy_grid(processed, out)
    # the raw cell centres after the crop and resize (Preprocessor._result)
    x = np.asarray(processed["x"].values, dtype=np.float64)
    y = np.asarray(processed["y"].values, dtype=np.float64)
    crs = raw_projection(raw)
    if crs is None:
        return out.assign_coords(
            x=("x", x, _PIXEL_AXIS["x"]), y=("y", y, _PIXEL_AXIS["y"])
        )
    units = str(raw["x"].attrs.get("units", "m"))
    return set_grid(out, x, y, crs, units=units)


def _intensity_attrs(units: str, forecaster: str) -> dict[str, str]:
    attrs = {
        "units": units,
        "long_name": f"forecast radar intensity ({forecaster})",
        "comment": "NaN where no input frame observed the cell (outside coverage)",
    }
    if units in STANDARD_NAMES:
        attrs["standard_name"] = STANDARD_NAMES[units]
    return attrs


def forecast_dataset(
    values: np.ndarray,
    step: np.timedelta64,
    raw: xr.Dataset,
    processed: xr.Dataset,
    forecaster: str,
    provenance: Mapping[str, Any],
) -> xr.Dataset:
    """Wrap forecast frames into a CF-1.8 radar data set.

    Parameters
    ----------
    values : numpy.ndarray, shape (n_steps, H, W)
        Forecast on the processed grid, in the units of the raw frames (``"dBZ"``,
        ``"mm/h"``, ...).
    step : numpy.timedelta64
        Time between leads (the input cadence).
    raw : xarray.Dataset
        The raw input frames: the newest one's time is the issue time (forecast
        reference time); their units, grid mapping and source attributes.
    processed : xarray.Dataset
        The preprocessed input frames (their grid, the raw cell centres after the
        crop and resize, and provenance).
    forecaster : str
        Name of the forecaster.
    provenance : mapping
        Global attributes to add (strings or numbers; others are JSON-encoded).

    Returns
    -------
    xarray.Dataset
        ``intensity`` (time, y, x) float32 with ``forecast_reference_time`` and
        ``forecast_period`` coordinates, grid and provenance attributes.
    """
    values = np.asarray(values, dtype=np.float32)
    n = values.shape[0]
    leads = step * np.arange(1, n + 1)
    issue = np.datetime64(raw["time"].values[-1], "ns")
    units = str(raw[raw.attrs["intensity_variable"]].attrs["units"])
    out = xr.Dataset(
        {
            "intensity": (
                ("time", "y", "x"),
                values,
                _intensity_attrs(units, forecaster),
            )
        },
        coords={
            "time": ("time", issue + leads, {"standard_name": "time", "axis": "T"}),
            "forecast_period": (
                "time",
                leads.astype("timedelta64[ns]"),
                {"standard_name": "forecast_period", "long_name": "lead time"},
            ),
            "forecast_reference_time": (
                (),
                issue,
                {"standard_name": "forecast_reference_time", "long_name": "issue time"},
            ),
        },
    )
    out = _grid(out, processed, raw)
    out.attrs.update(_global_attrs(processed, raw, forecaster, issue))
    out.attrs.update({k: _attr(v) for k, v in provenance.items() if v is not None})
    record_step(out, "forecast", forecaster=forecaster, n_steps=n, issue_time=issue)
    for name in ("time", "forecast_reference_time"):
        out[name].encoding.update(_TIME_ENCODING)
    out["forecast_period"].encoding.update(units="minutes", dtype="int32")
    for name in ("x", "y"):
        out[name].encoding["_FillValue"] = None  # CF: no fill value on coordinates
    return out


def _attr(value: Any) -> Any:
    if isinstance(value, (str, int, float, np.integer, np.floating)):
        return value
    return json.dumps(value, default=str)


def _global_attrs(
    processed: xr.Dataset, raw: xr.Dataset, forecaster: str, issue: np.datetime64
) -> dict[str, Any]:
    """CF global attributes; the input's source attributes and processing history."""
    kept = ("institution", "source", "licence", "license", "references")
    attrs: dict[str, Any] = {k: raw.attrs[k] for k in kept if k in raw.attrs}
    issued = str(np.datetime64(issue, "s"))
    attrs.update(
        {
            "Conventions": "CF-1.8",
            "nowcast_version": __version__,
            "title": f"radar nowcast issued {issued}Z by {forecaster}",
            "featureType": "grid",
            "intensity_variable": "intensity",
            "forecaster": forecaster,
            "issue_time": f"{issued}Z",
            "date_created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "history": processed.attrs.get("history", ""),
            "nowcast_steps": processed.attrs.get("nowcast_steps", "[]"),
        }
    )
    if "source" in raw.attrs:
        attrs["input_source"] = raw.attrs["source"]
    attrs["source"] = f"nowcast forecast ({forecaster}) from radar observations"
    return attrs


def write_forecast(ds: xr.Dataset, path: PathLike) -> Path:
    """Write a forecast atomically as compressed netCDF4 (see ``write_radar``)."""
    return write_radar(ds, path, chunk_time=max(1, ds.sizes["time"]), allow_nan=True)


def plot_forecast(
    inputs: np.ndarray, forecast: xr.Dataset, path: PathLike, max_frames: int = 8
) -> Path:
    """A PNG strip: the input frames, then the forecast, in physical units.

    Parameters
    ----------
    inputs : numpy.ndarray, shape (T_in, H, W)
        Preprocessed input frames in the forecast's units.
    forecast : xarray.Dataset
        From :func:`forecast_dataset`: its frames, units (the colour scale of
        :func:`nowcast.viz.radar_cmap`; grey levels for units it has none for),
        lead times, issue time and forecaster.
    path : path
        Destination ``.png``.
    max_frames : int
        At most this many evenly spaced frames per row.

    Returns
    -------
    pathlib.Path
    """
    from nowcast.viz import available_units, plot_sequence

    units = forecast["intensity"].attrs["units"]
    name = forecast.attrs["forecaster"]
    step = forecast["forecast_period"].values[0] / np.timedelta64(1, "m")
    issue = np.datetime64(forecast["forecast_reference_time"].values, "m")
    fig = plot_sequence(
        inputs,
        None,
        {name: forecast["intensity"].values},
        frame_minutes=float(step),
        units=units if units in available_units() else "1",
        max_frames=max_frames,
        title=f"{name}, issued {issue}Z",
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    return path


def input_summary(files: Sequence[Path], times: np.ndarray) -> dict[str, str]:
    """Provenance attributes naming the input files and their times."""
    names = [Path(f).name for f in files]
    shown = names if len(names) <= 6 else [*names[:3], "...", *names[-2:]]
    return {
        "input_files": ", ".join(shown),
        "input_times": ", ".join(str(np.datetime64(t, "s")) + "Z" for t in times),
    }
