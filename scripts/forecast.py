"""A forecast for "now" from the latest radar frames: `python scripts/forecast.py`.

Usage::

    python scripts/forecast.py ckpt_path=runs/<name>/<time>/checkpoints/best.pt \
        input=/path/to/latest/files output=forecast.nc
    python scripts/forecast.py forecaster=rover1 preprocess=hko \
        input=/work/shared/data/radar/fmi-finland-5min output=fmi_forecast.nc

Thin hydra entry point (config ``configs/forecast.yaml``); the work is done by
:func:`nowcast.operational.make_forecast`.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from nowcast.cli import hydra_entry
from nowcast.operational import (
    ForecastResult,
    LoadedForecaster,
    baseline_forecaster,
    load_forecaster_for,
    make_forecast,
)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def _forecaster(cfg: DictConfig) -> LoadedForecaster:
    if (cfg.ckpt_path is None) == (cfg.forecaster is None):
        raise ValueError(
            "give exactly one of ckpt_path=<best.pt> (a trained model) or "
            "forecaster=persistence|rover1|rover2|rover3 (a baseline), got "
            f"ckpt_path={cfg.ckpt_path!r}, forecaster={cfg.forecaster!r}"
        )
    if cfg.ckpt_path is not None:
        return load_forecaster_for(str(cfg.ckpt_path), device=str(cfg.device))
    return baseline_forecaster(str(cfg.forecaster), CONFIG_DIR)


def run(cfg: DictConfig) -> ForecastResult:
    """Make the forecast described by ``cfg`` (``configs/forecast.yaml``)."""
    inputs = cfg.input
    paths = [str(p) for p in inputs] if OmegaConf.is_list(inputs) else str(inputs)
    preprocess = cfg.get("preprocess")
    result = make_forecast(
        paths,
        str(cfg.output),
        _forecaster(cfg),
        preset=cfg.preset,
        input_len=cfg.input_len,
        n_steps=cfg.n_steps,
        frame_minutes=cfg.frame_minutes,
        preprocessor=cfg.preprocessor,
        preprocess=None if preprocess is None else OmegaConf.to_container(preprocess),
        importer_options=OmegaConf.to_container(cfg.importer_options),
        plot=bool(cfg.plot),
    )
    ds = result.dataset
    print(
        f"wrote {result.netcdf}: {ds.attrs['forecaster']} issued "
        f"{ds.attrs['issue_time']}, {ds.sizes['time']} leads to "
        f"{str(ds['time'].values[-1])[:16]}Z, {ds.sizes['y']}x{ds.sizes['x']} frames "
        f"in {ds['intensity'].attrs['units']}"
    )
    if result.picture is not None:
        print(f"wrote {result.picture}")
    return result


main = hydra_entry(run, "forecast", bad_input=(ValueError,))


if __name__ == "__main__":
    main()
