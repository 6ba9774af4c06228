"""Tests of the window datasets over a processed file (nowcast/data/dataset.py)."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from nowcast.data.dataset import RadarWindowDataset, radar_datasets, rainiest_windows
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
