"""Operational nowcasting: a forecast for "now" from the latest radar frames.

``python scripts/forecast.py ckpt_path=<best.pt> input=<latest files> output=forecast.nc``
is built from the pieces here:

* :mod:`~nowcast.operational.latest` -- the newest ``input_len`` frames of raw files, a
  folder or a radar netCDF/zarr, checked for cadence, gaps and count;
* :mod:`~nowcast.operational.preprocessing` -- the fitted preprocessor as a plain state
  that travels in the checkpoint, and the choice of preprocessing for a forecast;
* :mod:`~nowcast.operational.output` -- the CF-1.8 forecast netCDF and its PNG strip;
* :mod:`~nowcast.operational.run` -- :func:`make_forecast`, which composes them.
"""

from nowcast.operational.latest import read_latest, select_latest
from nowcast.operational.output import forecast_dataset, plot_forecast, write_forecast
from nowcast.operational.preprocessing import (
    CHECKPOINT_KEY,
    Preprocessing,
    checkpoint_preprocessing,
    preprocessor_from_state,
    preprocessor_state,
    resolve_preprocessing,
)
from nowcast.operational.run import (
    BASELINES,
    ForecastResult,
    LoadedForecaster,
    baseline_forecaster,
    load_forecaster_for,
    make_forecast,
)

__all__ = [
    "BASELINES",
    "CHECKPOINT_KEY",
    "ForecastResult",
    "LoadedForecaster",
    "Preprocessing",
    "baseline_forecaster",
    "checkpoint_preprocessing",
    "forecast_dataset",
    "load_forecaster_for",
    "make_forecast",
    "plot_forecast",
    "preprocessor_from_state",
    "preprocessor_state",
    "read_latest",
    "resolve_preprocessing",
    "select_latest",
    "write_forecast",
]
