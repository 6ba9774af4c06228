"""Tests of the paper's block split and sliding windows (nowcast/data/split.py)."""

import numpy as np
import pytest

from nowcast.data.split import block_split, day_blocks, sliding_windows


def _days(n_days, frames_per_day=240, every_other=True):
    """n_days rainy days of 6-minute frames, separated by dry days (time gaps)."""
    day0 = np.datetime64("2011-05-01T00:00")
    step = np.timedelta64(6, "m")
    gap = 2 if every_other else 1
    return np.concatenate(
        [
            day0 + np.timedelta64(gap * d, "D") + np.arange(frames_per_day) * step
            for d in range(n_days)
        ]
    )


def test_paper_window_counts_for_97_days():
    # Shi et al. (2015): 97 days x 240 frames, 40-frame blocks (6/day), 4/1/1 blocks per
    # day, 20-frame windows with stride 1 -> 21 windows per block:
    # train 97 * 4 * 21 = 8148, val = test = 97 * 21 = 2037.
    split = block_split(_days(97), block_len=40, counts=(4, 1, 1), seed=0)
    counts = {k: sliding_windows(v, window=20).size for k, v in split.items()}
    assert counts == {"train": 8148, "val": 2037, "test": 2037}


def test_blocks_are_disjoint_and_per_day():
    times = _days(3)
    split = block_split(times, seed=1)
    all_blocks = sorted(b for blocks in split.values() for b in blocks)
    assert len(all_blocks) == 18
    covered = np.concatenate([np.arange(a, b) for a, b in all_blocks])
    assert np.unique(covered).size == covered.size == 3 * 240
    for a, b in all_blocks:
        assert times[a].astype("datetime64[D]") == times[b - 1].astype("datetime64[D]")


def test_split_is_seeded():
    times = _days(5)
    assert block_split(times, seed=3) == block_split(times, seed=3)
    assert block_split(times, seed=3) != block_split(times, seed=4)


def test_windows_never_cross_a_gap():
    # one day with a 1-hour hole after frame 50: 00:00-04:54, then 06:00 onwards
    step = np.timedelta64(6, "m")
    t0 = np.datetime64("2012-06-01T00:00")
    times = np.concatenate(
        [t0 + np.arange(50) * step, t0 + np.timedelta64(6, "h") + np.arange(90) * step]
    )
    blocks = day_blocks(times, block_len=40)
    # 50 frames -> one block (10 dropped); 90 frames -> two blocks (10 dropped)
    assert blocks == [[(0, 40), (50, 90), (90, 130)]]
    starts = sliding_windows(blocks[0], window=20)
    for s in starts:
        steps = np.diff(times[s : s + 20])
        assert np.all(steps == step)


def test_short_day_fills_train_first():
    times = _days(1, frames_per_day=80)  # 2 blocks only
    split = block_split(times)
    assert len(split["train"]) == 2 and split["val"] == [] and split["test"] == []


def test_sliding_windows_values_and_errors():
    np.testing.assert_array_equal(sliding_windows([(0, 40)], 20, 5), [0, 5, 10, 15, 20])
    with pytest.raises(ValueError, match="does not fit"):
        sliding_windows([(0, 10)], window=20)
    with pytest.raises(ValueError, match="counts must be three"):
        block_split(_days(1), counts=(4, 1))
