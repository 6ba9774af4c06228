"""Tests of nowcast.operational.run.make_forecast (the library behind the script)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from forecast_helpers import moving_blob

from nowcast.data.radar import write_radar
from nowcast.operational import baseline_forecaster, make_forecast

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
GEOMETRY = {"zmin": -10.0, "zmax": 60.0, "crop_size": None, "disk_radius": 0}


def test_cells_no_input_frame_observed_are_nan(tmp_path):
    raw = moving_blob(n_frames=3)
    raw["intensity"].values[:, :, :10] = np.nan  # outside coverage: 10 raw columns
    path = write_radar(raw, tmp_path / "raw.nc")
    result = make_forecast(
        path,
        tmp_path / "f.nc",
        baseline_forecaster("persistence", CONFIG_DIR),
        input_len=3,
        n_steps=2,
        preprocess={**GEOMETRY, "resize_to": 20},
        plot=False,
    )
    values = result.dataset["intensity"].values
    # 2 x 2 raw cells per processed cell: processed columns 0-4 were never observed
    assert np.isnan(values[:, :, :5]).all() and np.isfinite(values[:, :, 5:]).all()
    assert result.dataset.attrs["unobserved_cells"] == 20 * 5
    # persistence: the newest frame's 2 x 2 means, in dBZ
    newest = raw["intensity"].values[-1].reshape(20, 2, 20, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(values[1, :, 5:], newest[:, 5:], atol=1e-4)


def test_baselines_by_name():
    assert baseline_forecaster("ROVER2", CONFIG_DIR).model.variant == 2
    with pytest.raises(ValueError, match=r"available without a checkpoint: \['persist"):
        baseline_forecaster("steps", CONFIG_DIR)
