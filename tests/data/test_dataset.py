"""Tests of the window datasets over a processed file (nowcast/data/dataset.py)."""

import numpy as np
import pytest
import torch
import xarray as xr
from support import SAME_GEOMETRY
from torch.utils.data import DataLoader

from nowcast.data.dataset import RadarWindowDataset, radar_datasets, rainiest_windows
from nowcast.data.physical import GreyScale
from nowcast.data.preprocess import preprocess_archive
from nowcast.data.radar import make_radar_dataset, write_radar


@pytest.fixture()
def processed(tmp_path):
    """Two 240-frame days of normalised 8x8 frames; frame k holds the value k / 1000."""
    step = np.timedelta64(6, "m")
    times = np.concatenate(
        [np.datetime64(f"2013-07-0{d}T00:00") + np.arange(240) * step for d in (1, 3)]
    )
    values = np.broadcast_to(
        (np.arange(times.size, dtype=np.float32) / 1000)[:, None, None],
        (times.size, 8, 8),
    ).copy()
    ds = make_radar_dataset(values, times, "1")
    mask = np.zeros((8, 8), np.uint8)
    mask[0, :] = 1
    ds["noise_mask"] = (("y", "x"), mask)
    ds.attrs.update(zmin=-10.0, zmax=60.0, source_units="dBZ")
    return write_radar(ds, tmp_path / "processed.nc", allow_nan=False)


@pytest.mark.parametrize("in_memory", [False, True])
def test_items_are_the_right_frames(processed, in_memory):
    ds = RadarWindowDataset(processed, np.array([0, 7]), 5, 15, in_memory=in_memory)
    x, y = ds[1]
    assert x.shape == (5, 1, 8, 8) and y.shape == (15, 1, 8, 8)
    assert x.dtype == torch.float32
    # frame k holds k / 1000: window 1 starts at frame 7
    np.testing.assert_allclose(
        x[:, 0, 0, 0].numpy(), np.arange(7, 12) / 1000, rtol=1e-6
    )
    np.testing.assert_allclose(
        y[:, 0, 0, 0].numpy(), np.arange(12, 27) / 1000, rtol=1e-6
    )
    assert ds.valid_mask.dtype == torch.bool and not ds.valid_mask[0].any()
    assert ds.valid_mask[1:].all()
    assert (ds.zmin, ds.zmax) == (-10.0, 60.0)
    with pytest.raises(IndexError):
        ds[2]


def test_radar_datasets_counts_and_loader_with_workers(processed):
    splits = radar_datasets(processed, input_len=5, output_len=15, in_memory=False)
    # 2 days x (4, 1, 1) blocks x 21 windows per block
    assert {k: len(v) for k, v in splits.items()} == {
        "train": 168,
        "val": 42,
        "test": 42,
    }
    loader = DataLoader(splits["train"], batch_size=16, num_workers=2)
    x, y = next(iter(loader))
    assert x.shape == (16, 5, 1, 8, 8) and y.shape == (16, 15, 1, 8, 8)
    # consecutive frames inside every window (no window across the day gap)
    d = torch.diff(torch.cat([x, y], 1)[:, :, 0, 0, 0], dim=1)
    torch.testing.assert_close(d, torch.full_like(d, 1e-3), atol=1e-6, rtol=0)


def test_missing_and_unprocessed_files_are_explained(tmp_path, processed):
    with pytest.raises(FileNotFoundError, match="scripts/preprocess.py"):
        radar_datasets(tmp_path / "absent.nc")
    raw = make_radar_dataset(
        np.zeros((40, 4, 4), np.float32),
        np.datetime64("2020-01-01") + np.arange(40) * np.timedelta64(6, "m"),
        "dBZ",
    )
    path = write_radar(raw, tmp_path / "raw.nc")
    with pytest.raises(ValueError, match="units 'dBZ'.*preprocess"):
        radar_datasets(path, input_len=5, output_len=15)
    with pytest.raises(ValueError, match="exceeds block_len"):
        radar_datasets(processed, input_len=30, output_len=15)


def test_rainiest_windows_and_true_motion(processed, tmp_path):
    ds = radar_datasets(processed, input_len=5, output_len=15)["train"]
    # frame k holds k / 1000, so the latest windows are the "rainiest"; distinct windows
    # are at least 20 frames apart
    picked = rainiest_windows(ds, 3)
    starts = ds.starts[picked]
    assert starts[0] == ds.starts.max()
    assert np.all(np.abs(np.diff(starts)) >= 20)
    assert rainiest_windows(ds, 2, distinct=False) == [len(ds) - 1, len(ds) - 2]
    assert ds.true_motion(0) is None  # this file stores no motion
    with pytest.raises(ValueError, match="n must be >= 1"):
        rainiest_windows(ds, 0)


def test_true_motion_at_the_analysis_time(tmp_path):
    times = np.datetime64("2013-07-01") + np.arange(40) * np.timedelta64(6, "m")
    ds = make_radar_dataset(np.zeros((40, 4, 4), np.float32), times, "1")
    ds["motion_u"] = (
        ("time", "y", "x"),
        np.broadcast_to(
            np.arange(40, dtype=np.float32)[:, None, None], (40, 4, 4)
        ).copy(),
    )
    ds["motion_v"] = (("time", "y", "x"), -ds["motion_u"].values)
    path = write_radar(ds, tmp_path / "m.nc", allow_nan=False)
    window = RadarWindowDataset(path, np.array([3]), 5, 15)
    uv = window.true_motion(0)
    # analysis time = start 3 + input_len 5 - 1 = frame 7
    assert uv.shape == (2, 4, 4)
    assert float(uv[0, 0, 0]) == 7.0 and float(uv[1, 0, 0]) == -7.0


def test_test_only_split_for_evaluating_short_archives(processed):
    # e.g. a few hours of real radar: every 40-frame block goes to the test split
    splits = radar_datasets(processed, 5, 15, counts=(0, 0, 1))
    # 2 days x 6 blocks x 21 windows, all in test
    assert {k: len(v) for k, v in splits.items()} == {"train": 0, "val": 0, "test": 252}


def test_open_handles_are_closed_before_workers_fork(processed):
    # HDF5 is not fork-safe: a handle opened by reads in the main process must be
    # closed before DataLoader workers fork, and reads must still work afterwards
    ds = radar_datasets(processed, 5, 15, in_memory=False)["train"]
    x0, _ = ds[0]  # opens a handle in this process
    assert ds._handle is not None
    batches = list(DataLoader(ds, batch_size=64, num_workers=2))
    assert ds._handle is None  # closed at fork
    torch.testing.assert_close(batches[0][0][0], x0)
    torch.testing.assert_close(ds[0][0], x0)  # reopened lazily


# ----------------------------------------------------- scale, blocks, coverage, fit split
def _raw(values: np.ndarray, units: str = "dBZ", start: str = "2013-07-01T00:00"):
    times = np.datetime64(start) + np.arange(values.shape[0]) * np.timedelta64(6, "m")
    return make_radar_dataset(values.astype(np.float32), times, units)


def test_scale_comes_from_the_file_and_the_config_zr_only_for_dbz(processed, tmp_path):
    ds = radar_datasets(processed, 5, 15, zr_a=200.0, zr_b=1.6)["test"]
    assert ds.scale == GreyScale("dBZ", -10.0, 60.0, 200.0, 1.6)
    assert any("Z = 200 R^1.6" in n for n in ds.notes)
    rain = make_radar_dataset(
        np.zeros((40, 4, 4), np.float32),
        np.datetime64("2018-06-16") + np.arange(40) * np.timedelta64(6, "m"),
        "1",
        attrs={"source_units": "mm/h", "zmin": 0.0, "zmax": 50.0},
    )
    path = write_radar(rain, tmp_path / "rain.nc", allow_nan=False)
    scale = RadarWindowDataset(path, np.array([0]), 5, 15, zr_a=200.0, zr_b=1.6).scale
    assert scale == GreyScale("mm/h", 0.0, 50.0)  # no Z-R for a rain-rate archive
    assert scale.to_score(0.2) == pytest.approx(10.0)


def test_block_ids_group_the_windows_of_one_block(processed):
    splits = radar_datasets(processed, 5, 15)
    for ds in splits.values():
        # 21 windows per 40-frame block; the id is the block's first frame
        ids, counts = np.unique(ds.block_ids, return_counts=True)
        assert (counts == 21).all() and ids.size == len(ds) // 21
        for i in range(len(ds)):
            assert ds.block_ids[i] <= ds.starts[i] < ds.block_ids[i] + 40 - 20 + 1
    all_ids = np.concatenate([ds.block_ids for ds in splits.values()])
    assert np.unique(all_ids).size == all_ids.size // 21  # no block in two splits
    # the default for hand-made datasets: chains of overlapping windows share an id
    # (0-19, 5-24, 19-38, 20-39 chain; 40-59 touches none of them; 100-119 alone)
    ds = RadarWindowDataset(processed, np.array([0, 5, 19, 20, 40, 100]), 5, 15)
    assert ds.block_ids.tolist() == [0, 0, 0, 0, 1, 2]


def test_coverage_survives_preprocess_frame_by_frame(tmp_path):
    # 40 frames of 30 dBZ on 16x16; frames 10-19 lose a disc of radius 2 around (4, 4),
    # frames 20-39 one around (10, 11); frames 0-9 are complete (so the coverage
    # variable is created mid-stream, chunk_time=4).
    values = np.full((40, 16, 16), 30.0)
    yy, xx = np.mgrid[:16, :16]
    disc_a = (yy - 4) ** 2 + (xx - 4) ** 2 <= 4
    disc_b = (yy - 10) ** 2 + (xx - 11) ** 2 <= 4
    values[10:20, disc_a] = np.nan
    values[20:, disc_b] = np.nan
    raw = write_radar(_raw(values), tmp_path / "raw.nc")
    options = {**SAME_GEOMETRY, "disk_radius": 1, "noise_mask": False, "chunk_time": 4}
    out = preprocess_archive(raw, tmp_path / "proc.nc", fit_on="all", **options)
    ds = radar_datasets(out, 5, 15, block_len=20, counts=(0, 0, 1))["test"]
    assert ds.has_coverage and len(ds) == 2
    # window 0: frames 0-19, targets 5-19; window 1: frames 20-39, targets 25-39
    for index, expect in ((0, [True] * 5 + [False] * 10), (1, [False] * 15)):
        x, y, valid = ds[index]
        assert valid.dtype == torch.bool and valid.shape == (15, 1, 16, 16)
        disc = disc_a if index == 0 else disc_b
        for t in range(15):
            lost = np.zeros_like(disc) if expect[t] else disc
            np.testing.assert_array_equal(valid[t, 0].numpy(), ~lost)
        # no smearing: every observed pixel keeps (30 + 10) / 70, even next to the disc
        np.testing.assert_allclose(y[valid].numpy(), 40 / 70, rtol=1e-6)
        assert (y[~valid] == 0).all()
    counts = ds.pixel_counts
    # targets: frames 5-19 (10 with disc a: 13 pixels each) and 25-39 (15 with disc b)
    assert counts == {
        "frame_pixels": 256,
        "clutter_pixels": 0,
        "target_frames": 30,
        "unobserved_pixel_frames": 25 * 13,
    }


def test_no_coverage_variable_without_no_data(processed):
    ds = radar_datasets(processed, 5, 15)["train"]
    assert not ds.has_coverage and len(ds[0]) == 2
    assert ds.pixel_counts["unobserved_pixel_frames"] == 0


def _clutter_archive(tmp_path) -> str:
    """One day of 40 frames, 8x8, random echo and a bright clutter pixel."""
    rng = np.random.default_rng(0)
    values = rng.uniform(-10.0, 20.0, (40, 8, 8))
    values[:, 2, 3] = 55.0
    return str(write_radar(_raw(values), tmp_path / "raw.nc"))


def test_split_that_tests_on_fitting_frames_is_refused(tmp_path):
    raw = _clutter_archive(tmp_path)
    kw = SAME_GEOMETRY
    train_fit = preprocess_archive(raw, tmp_path / "a.nc", **kw)  # 40-frame blocks
    with xr.open_dataset(train_fit) as f:
        assert f.attrs["noise_mask_fit_on"] == "train"
        assert f.attrs["noise_mask_fit_block_len"] == 40
        assert f["noise_mask"].values[2, 3] == 1
    radar_datasets(train_fit, 5, 15)  # the fitting split itself: fine
    # the README's short-archive evaluation: 20-frame blocks, all in test
    with pytest.raises(ValueError) as err:
        radar_datasets(train_fit, 5, 15, block_len=20, counts=(0, 0, 1))
    msg = str(err.value)
    assert "block_len=40, counts=[4, 1, 1], seed=0" in msg  # the fitting split
    assert "block_len=20, counts=[0, 0, 1], seed=0" in msg  # the requested one
    assert "40 of those fitting frames" in msg
    assert "no training blocks" in msg and "fit_on=all" in msg  # the only fix here
    # a split with training blocks is told how to refit on it
    with pytest.raises(ValueError, match=r"fit_block_len=20 fit_counts=\[1,0,1\]"):
        radar_datasets(train_fit, 5, 15, block_len=20, counts=(1, 0, 1))
    # refit on all frames: an evaluation-only archive, said in the notes
    all_fit = preprocess_archive(raw, tmp_path / "b.nc", fit_on="all", **kw)
    test = radar_datasets(all_fit, 5, 15, block_len=20, counts=(0, 0, 1))["test"]
    assert len(test) == 2
    assert any("fit_on=all" in n and "evaluation-only" in n for n in test.notes)
    # refit on the split used: 20-frame blocks, one train and one test block
    matched = preprocess_archive(
        raw, tmp_path / "c.nc", fit_block_len=20, fit_counts=[1, 0, 1], **kw
    )
    splits = radar_datasets(matched, 5, 15, block_len=20, counts=(1, 0, 1))
    assert len(splits["train"]) == len(splits["test"]) == 1
    with pytest.raises(ValueError, match="20 of those fitting frames"):
        radar_datasets(matched, 5, 15, block_len=20, counts=(0, 0, 1))


def test_nothing_fitted_means_nothing_to_refuse(tmp_path):
    raw = _clutter_archive(tmp_path)
    out = preprocess_archive(raw, tmp_path / "n.nc", noise_mask=False, **SAME_GEOMETRY)
    with xr.open_dataset(out) as f:
        assert f.attrs["noise_mask_fit_on"] == "none"
    test = radar_datasets(out, 5, 15, block_len=20, counts=(0, 0, 1))["test"]
    assert len(test) == 2 and not any("noise mask" in n for n in test.notes)
