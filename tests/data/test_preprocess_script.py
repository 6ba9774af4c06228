"""scripts/preprocess.py: the hydra config reaches preprocess_archive (workers included)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from hydra import compose, initialize_config_dir
from support import load_script

from nowcast.data.radar import write_radar
from nowcast.data.synthetic import make_synthetic_radar

REPO = Path(__file__).resolve().parents[2]


def _script():
    return load_script("scripts/preprocess.py")


def test_script_runs_the_config_on_threads(tmp_path):
    raw = write_radar(
        make_synthetic_radar(1, frames_per_day=240, size=48, seed=1), tmp_path / "r.nc"
    )
    out = tmp_path / "p.zarr"
    with initialize_config_dir(str(REPO / "configs"), version_base=None):
        cfg = compose(
            "preprocess",
            [
                "preprocess=synthetic",
                f"input={raw}",
                f"output={out}",
                "preprocess.crop_size=32",
                "preprocess.disk_radius=2",
                "preprocess.resize_to=16",
                "workers=2",
                "executor=threads",
                "progress=false",
            ],
        )
    assert cfg.workers == 2 and cfg.executor == "threads"
    written = _script().run(cfg)
    assert written == out
    with xr.open_dataset(out, engine="zarr") as ds:
        assert ds["intensity"].shape == (240, 16, 16)
        assert 0.0 <= float(ds["intensity"].min()) and float(ds["intensity"].max()) <= 1
        assert ds.attrs["noise_mask_fit_on"] == "train"
    assert (tmp_path / "p_preprocessor.json").exists()
    assert np.isfinite(xr.open_zarr(out)["intensity"][0].values).all()
