"""Series scores (hand-computed) and the series evaluation on the same windows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr

from nowcast.data.radar import make_radar_dataset, write_radar
from nowcast.data.series import radar_series_datasets
from nowcast.evaluation.series import SeriesScores, evaluate_series, series_table


def test_scores_by_hand():
    s = SeriesScores(n_leads=2, wet_threshold=1.0)
    forecast = torch.tensor([[0.5, 2.0], [1.5, 0.0], [3.0, 1.0]])
    observed = torch.tensor([[0.0, 2.0], [1.0, 1.0], [2.0, 0.5]])
    s.update(forecast[:2], observed[:2])  # counts are summed over updates
    s.update(forecast[2:], observed[2:])
    r = s.compute()
    # lead 1: errors 0.5, 0.5, 1 -> MAE 2/3, RMSE sqrt(1.5/3); wet f: F T T, o: F T T
    assert r["mae"][0] == pytest.approx(2 / 3)
    assert r["rmse"][0] == pytest.approx(math.sqrt(1.5 / 3))
    assert (r["csi"][0], r["pod"][0], r["far"][0]) == (1.0, 1.0, 0.0)
    # lead 2: f wet T F T, o wet T T F -> 1 hit, 1 miss, 1 false alarm
    assert r["csi"][1] == pytest.approx(1 / 3)
    assert r["pod"][1] == pytest.approx(1 / 2) and r["far"][1] == pytest.approx(1 / 2)
    assert r["n"] == [3.0, 3.0]
    table = series_table({"m": r}, frame_minutes=6)
    assert "| m | 6 | 0.667 | 0.707 | 1.000 | 1.000 | 0.000 |" in table
    assert "| m | mean |" in table


class _Oracle:
    """A field 'forecaster' that returns the true future frames of the archive."""

    def __init__(self, frames):
        self.frames = torch.from_numpy(frames)

    def predict(self, inputs, n_steps):
        # inputs carry their own frame values t / 1000: find t from the last input
        t_last = torch.round(inputs[:, -1, 0, 1, 1] * 1000).long()
        idx = t_last[:, None] + torch.arange(1, n_steps + 1)
        return self.frames[idx][:, :, None]


def test_evaluate_series_on_the_same_windows(tmp_path):
    t = np.arange(240, dtype=np.float32)
    frames = np.broadcast_to((t / 1000)[:, None, None], (240, 6, 6)).copy()
    times = np.datetime64("2015-06-01T00:00") + np.arange(240) * np.timedelta64(6, "m")
    ds = make_radar_dataset(frames, times, units="1")
    ds["noise_mask"] = xr.DataArray(np.zeros((6, 6), np.uint8), dims=("y", "x"))
    ds.attrs.update(zmin=0.0, zmax=100.0, source_units="mm/h")
    path = write_radar(ds, tmp_path / "p.nc")
    test = radar_series_datasets(path, input_len=3, output_len=2)["test"]
    res = evaluate_series(None, {"oracle": _Oracle(frames)}, test, wet_threshold=1.0)
    assert res["oracle"]["mae"] == pytest.approx([0.0, 0.0], abs=1e-5)
    # the area mean grows 0.1 mm/h per frame: persistence is 0.1 and 0.2 mm/h low
    assert res["Persistence"]["mae"] == pytest.approx([0.1, 0.2], rel=1e-4)
    assert res["Persistence"]["n"] == [float(len(test))] * 2
