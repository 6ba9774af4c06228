"""Tests of nowcast.data.synthetic: determinism, realism, time axis, cache, datasets."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest
import xarray as xr

from nowcast.data.radar import contiguous_segments, processing_steps, validate_radar
from nowcast.data.synthetic import (
    DEFAULT_PREPROCESS,
    make_synthetic_radar,
    prepare_synthetic,
    synthetic_datasets,
)

SIX_MINUTES = np.timedelta64(6, "m")


@pytest.fixture(scope="module")
def two_days() -> xr.Dataset:
    """2 days x 120 frames of 128x128 (~1 s)."""
    return make_synthetic_radar(2, frames_per_day=120, size=128, seed=0).load()


def test_deterministic_for_a_seed_and_different_for_another():
    a = make_synthetic_radar(2, frames_per_day=20, size=48, seed=5)
    b = make_synthetic_radar(2, frames_per_day=20, size=48, seed=5)
    c = make_synthetic_radar(2, frames_per_day=20, size=48, seed=6)
    np.testing.assert_array_equal(a["intensity"].values, b["intensity"].values)
    np.testing.assert_array_equal(a["motion_u"].values, b["motion_u"].values)
    np.testing.assert_array_equal(a["time"].values, b["time"].values)
    assert not np.array_equal(
        np.nan_to_num(a["intensity"].values), np.nan_to_num(c["intensity"].values)
    )


def test_convention_attributes_and_variables(two_days):
    ds = validate_radar(two_days, allow_nan=True)
    assert ds["intensity"].dims == ("time", "y", "x")
    assert ds["intensity"].attrs["units"] == "dBZ"
    assert ds["intensity"].dtype == np.float32
    assert ds.attrs["synthetic"] == 1 and "Synthetic" in ds.attrs["description"]
    assert json.loads(ds.attrs["generator_params"])["seed"] == 0
    assert ds["motion_u"].dims == ds["motion_v"].dims == ("time", "y", "x")
    assert ds["clutter_mask"].dims == ("y", "x") and ds["clutter_mask"].dtype == bool
    # no data (NaN) only outside the radar's circular range: the centre is covered
    z = ds["intensity"].values
    assert np.isnan(z[:, 0, 0]).all() and not np.isnan(z[:, 64, 64]).any()


def test_time_axis_six_minute_steps_with_gaps_between_days(two_days):
    times = two_days["time"].values
    segments = contiguous_segments(times)
    # one gap-free run of 120 six-minute steps per day, starting at 00:00 UTC
    assert segments == [(0, 120), (120, 240)]
    assert np.all(np.diff(times[:120]) == SIX_MINUTES)
    gap = times[120] - times[119]
    assert gap >= np.timedelta64(1, "D")  # days are not consecutive (>= 2 days apart)
    assert (times[120] - times[0]) >= np.timedelta64(2, "D")
    assert str(times[120])[11:16] == "00:00"


def test_intensity_distribution_mostly_dry_with_strong_cores(two_days):
    z = two_days["intensity"].values
    rain = z[:, ~two_days["clutter_mask"].values]
    rain = rain[np.isfinite(rain)]
    dry = np.mean(rain <= -10.0)
    strong = np.mean(rain > 40.0)
    # radar climatology of rainy days: most pixels dry, a small share of cores
    assert 0.6 < dry < 0.97, dry
    assert 0.0005 < strong < 0.05, strong
    assert rain.max() <= 70.0 and rain.min() >= -10.0
    # clutter pixels are persistently bright: median over time > 25 dBZ
    clutter = z[:, two_days["clutter_mask"].values]
    assert np.median(clutter) > 25.0


def test_rain_moves_with_the_true_motion(two_days):
    # clutter and speckle aside, rain is advected by the stored velocity field: the
    # global shift between frames k and k + 5 (phase correlation) matches 5 x the mean
    # velocity over the frame within a pixel
    z = np.nan_to_num(two_days["intensity"].values, nan=-10.0) + 10.0
    z[:, two_days["clutter_mask"].values] = 0.0
    for k in (40, 150):
        (dx, dy), _ = cv2.phaseCorrelate(
            z[k].astype(np.float64), z[k + 5].astype(np.float64)
        )
        u = float(two_days["motion_u"][k].mean())
        v = float(two_days["motion_v"][k].mean())
        assert abs(dx - 5 * u) < 1.0 and abs(dy - 5 * v) < 1.0, (dx, dy, u, v)
    # the motion varies in space (rotation / shear), not a single translation
    assert float(two_days["motion_u"][0].std()) > 0.0


def test_bad_arguments_rejected():
    with pytest.raises(ValueError, match="frames_per_day must be an integer in 1..240"):
        make_synthetic_radar(1, frames_per_day=300)
    with pytest.raises(ValueError, match="n_days must be a positive integer"):
        make_synthetic_radar(0)


def test_prepare_synthetic_caches_and_regenerates(tmp_path):
    kwargs = dict(
        n_days=1,
        frames_per_day=80,
        size=64,
        preprocess={"crop_size": 44, "disk_radius": 1, "resize_to": 16},
    )
    path = prepare_synthetic(tmp_path, **kwargs)
    assert path == tmp_path / "processed.nc"
    assert (tmp_path / "preprocessor_noise_mask.nc").exists()
    meta = json.loads((tmp_path / "prepare.json").read_text())
    assert meta["fitted_on"] == "train blocks"
    stamp = path.stat().st_mtime_ns
    t0 = time.perf_counter()
    assert prepare_synthetic(tmp_path, **kwargs) == path
    assert time.perf_counter() - t0 < 0.5 and path.stat().st_mtime_ns == stamp
    with xr.open_dataset(path) as ds:
        assert ds["intensity"].shape == (80, 16, 16)
        assert ds["intensity"].attrs["units"] == "1"
        assert "noise_mask" in ds and "motion_u" in ds
        assert [s["step"] for s in processing_steps(ds)][:2] == [
            "fill_nan",
            "minmax_normalize",
        ]
    # a changed configuration regenerates
    kwargs["preprocess"]["resize_to"] = 22
    prepare_synthetic(tmp_path, **kwargs)
    with xr.open_dataset(path) as ds:
        assert ds["intensity"].shape == (80, 22, 22)


def test_synthetic_datasets_paper_block_split(tmp_path):
    # one full day of 240 frames -> 6 blocks of 40: 4 train, 1 val, 1 test, each
    # block giving 40 - 20 + 1 = 21 windows of 5 + 15 frames
    sets = synthetic_datasets(
        tmp_path,
        n_days=1,
        size=48,
        preprocess={"crop_size": 33, "disk_radius": 1, "resize_to": 16},
    )
    assert {k: len(v) for k, v in sets.items()} == {"train": 84, "val": 21, "test": 21}
    x, y = sets["train"][0]
    assert tuple(x.shape) == (5, 1, 16, 16) and tuple(y.shape) == (15, 1, 16, 16)


@pytest.mark.slow
def test_default_embedded_data_set_is_cheap(tmp_path):
    t0 = time.perf_counter()
    path = prepare_synthetic(tmp_path)
    elapsed = time.perf_counter() - t0
    with xr.open_dataset(path) as ds:
        # 3 days x 240 frames, processed to 64x64 (DEFAULT_PREPROCESS)
        assert ds["intensity"].shape == (720, 64, 64)
        assert ds["noise_mask"].values.sum() > 0
    assert DEFAULT_PREPROCESS["resize_to"] == 64
    assert elapsed < 60.0, elapsed
