"""A forecast for "now": the latest frames in, a CF netCDF forecast (and a PNG) out.

:func:`make_forecast` composes the pieces: the forecaster (a trained checkpoint, or a
baseline by name), the preprocessing it was trained with
(:func:`~nowcast.operational.preprocessing.resolve_preprocessing`), the newest
``input_len`` frames at its cadence (:func:`~nowcast.operational.latest.read_latest`),
``predict(inputs, n_steps)`` (:class:`nowcast.forecast.Forecaster`), the grey levels
back to physical units (:meth:`nowcast.data.physical.GreyScale.to_source`) and the
output files (:mod:`nowcast.operational.output`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from nowcast.data.physical import GreyScale, normalise_units
from nowcast.data.preprocess import COVERAGE
from nowcast.forecast import Forecaster, check_n_steps
from nowcast.operational.latest import read_latest
from nowcast.operational.output import (
    forecast_dataset,
    input_summary,
    plot_forecast,
    write_forecast,
)
from nowcast.operational.preprocessing import Preprocessing, resolve_preprocessing

__all__ = [
    "BASELINES",
    "ForecastResult",
    "LoadedForecaster",
    "baseline_forecaster",
    "load_forecaster_for",
    "make_forecast",
]

PathLike = str | os.PathLike

#: Baselines available by name without a checkpoint (``configs/baseline/<name>.yaml``).
BASELINES = ("persistence", "rover1", "rover2", "rover3")
DEFAULT_INPUT_LEN = 5
DEFAULT_N_STEPS = 15


@dataclass
class LoadedForecaster:
    """A forecaster ready to predict, with what the forecast file records about it.

    Attributes
    ----------
    model : Forecaster
        Has ``predict(inputs, n_steps)``.
    name : str
        Display name (``"Persistence"``, ``"ROVER1"``, the model class).
    checkpoint : dict or None
        The checkpoint it was read from (its config names the training data).
    provenance : dict
        Global attributes for the forecast file.
    """

    model: Forecaster
    name: str
    checkpoint: dict | None
    provenance: dict[str, Any]


@dataclass
class ForecastResult:
    """What :func:`make_forecast` wrote.

    Attributes
    ----------
    dataset : xarray.Dataset
        The forecast (as written).
    netcdf : pathlib.Path
        The CF netCDF file.
    picture : pathlib.Path or None
        The PNG strip beside it.
    """

    dataset: xr.Dataset
    netcdf: Path
    picture: Path | None


def _baseline_node(name: str, config_dir: Path) -> dict[str, Any]:
    """``configs/baseline/<name>.yaml`` with its defaults list merged in (no hydra)."""
    from omegaconf import OmegaConf

    path = config_dir / "baseline" / f"{name}.yaml"
    node = OmegaConf.load(path)
    merged = OmegaConf.create()
    for entry in node.pop("defaults", []):
        if entry != "_self_":
            merged = OmegaConf.merge(merged, _baseline_node(str(entry), config_dir))
    return OmegaConf.to_container(OmegaConf.merge(merged, node), resolve=True)


def baseline_forecaster(name: str, config_dir: PathLike) -> LoadedForecaster:
    """A baseline by name, built from its config (``persistence``, ``rover1..3``).

    Raises
    ------
    ValueError
        For an unknown name, listing :data:`BASELINES`.
    """
    key = str(name).lower()
    if key not in BASELINES:
        raise ValueError(
            f"unknown forecaster {name!r}; available without a checkpoint: "
            f"{list(BASELINES)} (or pass ckpt_path=<best.pt>)"
        )
    from hydra.utils import instantiate  # config-building helper: hydra stays here

    node = _baseline_node(key, Path(config_dir))
    label = "Persistence" if key == "persistence" else key.upper()
    return LoadedForecaster(
        instantiate(node, _convert_="all"),
        label,
        None,
        {"forecaster_config": node, "forecaster_kind": "baseline"},
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_forecaster_for(
    ckpt_path: PathLike, device: str | torch.device = "cpu"
) -> LoadedForecaster:
    """A trained forecaster from a checkpoint (mapped to ``device``, CPU by default)."""
    from nowcast.training.checkpoint import load_checkpoint, load_forecaster

    path = Path(ckpt_path)
    ckpt = load_checkpoint(path, map_location=device)
    model = load_forecaster(ckpt, map_location=device)
    config = ckpt.get("config") or {}
    shipped = ckpt.get("shipped") or {}
    data = config.get("data") or {}
    provenance = {
        "forecaster_kind": "checkpoint",
        "checkpoint": str(path),
        "checkpoint_sha256": _sha256(path),
        "checkpoint_step": int(ckpt.get("step", -1)),
        "model_target": (config.get("model") or {}).get("_target_"),
        "model_config": config.get("model"),
        "training_command": shipped.get("command"),
        "training_data": (data.get("datasets") or {}).get("path") or data.get("root"),
    }
    return LoadedForecaster(model, type(model).__name__, ckpt, provenance)


def _check_model_fits(forecaster: LoadedForecaster, grey: np.ndarray) -> None:
    """Refuse processed frames ``(T, H, W)`` a trained model cannot take (patch, size).

    Baselines take any frame size.
    """
    if forecaster.checkpoint is None:
        return
    model, c, (h, w) = forecaster.model, 1, grey.shape[-2:]
    ckpt_path = forecaster.provenance.get("checkpoint", forecaster.name)
    channels = getattr(model, "in_channels", c)
    patch = int(getattr(model, "patch_size", 1))
    size = getattr(model, "frame_size", None)
    if c != channels or h % patch or w % patch or (size and tuple(size) != (h, w)):
        raise ValueError(
            f"the preprocessed input frames are {c}x{h}x{w} (C x H x W) but the "
            f"forecaster of {ckpt_path} takes {channels} channel(s), H and W divisible "
            f"by its patch size {patch}"
            + (f" and {tuple(size)} frames" if size else "")
            + "; use the preprocessing it was trained with (or pass preprocessor="
            "<fitted preprocessor .json> whose resize_to fits)"
        )


def _check_units(raw: xr.Dataset, prep: Preprocessing) -> None:
    """Refuse input of another quantity than the training data's (dBZ vs mm/h)."""
    name = raw.attrs["intensity_variable"]
    units = normalise_units(raw[name].attrs.get("units"))
    if prep.source_units is not None and normalise_units(prep.source_units) != units:
        raise ValueError(
            f"the input frames are in {units} but the forecaster was trained on "
            f"{prep.source_units} data; give input of the same quantity (or another "
            "importer preset)"
        )


def _cadence(
    frame_minutes: float | None, prep: Preprocessing, data_cfg: Mapping
) -> np.timedelta64 | None:
    minutes = frame_minutes or prep.frame_minutes or data_cfg.get("frame_minutes")
    if minutes is None:
        return None
    return np.timedelta64(int(round(float(minutes) * 60)), "s")


def _step(times: np.ndarray, cadence: np.timedelta64 | None) -> np.timedelta64:
    """Time between leads: the input's step (or the cadence, for one frame)."""
    if times.size > 1:
        return np.diff(times)[-1]
    if cadence is None:
        raise ValueError("one input frame gives no cadence; pass frame_minutes=...")
    return cadence


def _mask_unobserved(
    forecast: np.ndarray, processed: xr.Dataset
) -> tuple[np.ndarray, int]:
    """NaN where no input frame observed a cell (outside radar coverage), and how many.

    The preprocessing marks a processed cell unobserved when less than
    ``min_coverage`` of its raw footprint had data (the ``coverage`` variable).
    """
    if COVERAGE not in processed:
        return forecast, 0
    never = ~np.asarray(processed[COVERAGE].values, dtype=bool).any(axis=0)
    return np.where(never[None], np.float32(np.nan), forecast), int(never.sum())


def _predict(model: Forecaster, grey: np.ndarray, n_steps: int) -> np.ndarray:
    """(T, H, W) grey levels -> (n_steps, H, W) forecast grey levels in [0, 1]."""
    device = next(iter(getattr(model, "parameters", lambda: iter(()))()), None)
    device = device.device if device is not None else torch.device("cpu")
    inputs = torch.from_numpy(np.ascontiguousarray(grey))[None, :, None].to(device)
    with torch.no_grad():
        out = model.predict(inputs, n_steps)
    return out[0, :, 0].clamp(0.0, 1.0).float().cpu().numpy()


def _preprocessing_attrs(prep: Preprocessing) -> dict[str, Any]:
    return {
        "preprocessing": prep.origin,
        "preprocessing_params": prep.preprocessor.params(),
        "preprocessing_notes": "; ".join(prep.notes) or None,
    }


def _zr(data_cfg: Mapping) -> dict[str, float]:
    return {k: data_cfg[k] for k in ("zr_a", "zr_b") if data_cfg.get(k) is not None}


def make_forecast(
    input: PathLike | list[PathLike],
    output: PathLike,
    forecaster: LoadedForecaster,
    *,
    preset: str | None = None,
    input_len: int | None = None,
    n_steps: int | None = None,
    frame_minutes: float | None = None,
    preprocessor: PathLike | None = None,
    preprocess: Mapping[str, Any] | None = None,
    importer_options: Mapping[str, Any] | None = None,
    plot: bool = True,
) -> ForecastResult:
    """Forecast from the newest frames of ``input`` and write ``output``.

    Parameters
    ----------
    input : path, glob, folder or list
        Raw radar files (an importer preset), a folder, radar netCDF or ``*.zarr``.
    output : path
        The forecast netCDF; the PNG strip goes beside it (``<stem>.png``).
    forecaster : LoadedForecaster
        From :func:`load_forecaster_for` or :func:`baseline_forecaster`.
    preset : str, optional
        Importer preset of raw files (guessed from the file names when omitted).
    input_len, n_steps : int, optional
        Frames in and leads out; default the checkpoint's ``data.input_len`` /
        ``data.output_len``, else 5 and 15.
    frame_minutes : float, optional
        Required cadence; default the training data's (checkpoint), else any constant
        step of the input.
    preprocessor, preprocess
        See :func:`~nowcast.operational.preprocessing.resolve_preprocessing`.
    importer_options : mapping, optional
        Preset overrides for the importer.
    plot : bool
        Also write the PNG strip.

    Returns
    -------
    ForecastResult
    """
    ckpt = forecaster.checkpoint
    data_cfg = ((ckpt or {}).get("config") or {}).get("data") or {}
    prep = resolve_preprocessing(ckpt, preprocessor, preprocess)
    input_len = int(input_len or data_cfg.get("input_len") or DEFAULT_INPUT_LEN)
    n_steps = check_n_steps(n_steps or data_cfg.get("output_len") or DEFAULT_N_STEPS)
    cadence = _cadence(frame_minutes, prep, data_cfg)
    raw, files = read_latest(input, input_len, preset, cadence, importer_options)
    _check_units(raw, prep)
    processed = prep.preprocessor.transform(raw)
    grey = np.asarray(processed["intensity"].values, dtype=np.float32)
    _check_model_fits(forecaster, grey)
    scale = GreyScale.from_attrs(processed.attrs, **_zr(data_cfg))
    forecast = scale.to_source(_predict(forecaster.model, grey, n_steps))
    forecast, n_unobserved = _mask_unobserved(forecast, processed)
    times, name = raw["time"].values, forecaster.name
    step = _step(times, cadence)
    provenance = {
        **forecaster.provenance,
        **input_summary(files, times),
        **_preprocessing_attrs(prep),
        "grey_scale": scale.describe(),
        "unobserved_cells": n_unobserved,
    }
    ds = forecast_dataset(forecast, step, raw, processed, name, provenance)
    path = write_forecast(ds, output)
    png = Path(output).with_suffix(".png")
    picture = plot_forecast(scale.to_source(grey), ds, png) if plot else None
    return ForecastResult(ds, path, picture)
