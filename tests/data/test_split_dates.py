"""Tests of the date split (SEVIR's protocol) and event-respecting windows.

nowcast/data/split.py (``date_split``, ``cut_at_changes``) and its use by
``radar_datasets(split_dates=...)`` in nowcast/data/dataset.py.
"""

import numpy as np
import pytest
import xarray as xr
from support import SAME_GEOMETRY

from nowcast.data.dataset import radar_datasets
from nowcast.data.preprocess import preprocess_archive
from nowcast.data.radar import make_radar_dataset, write_radar
from nowcast.data.split import cut_at_changes, date_split, sliding_windows

STEP = np.timedelta64(5, "m")
DATES = {
    "train_end": "2019-01-01",
    "val_end": "2019-01-01T03:00",
    "test_end": "2019-01-02T02:00",
}


def _events():
    """Three 30-frame events 5 minutes apart: A then B back to back, C a day later.

    A: 2018-12-31 23:00 .. 2019-01-01 01:25 (frames 0-29: 12 before train_end),
    B: 01:30 .. 03:55 (frames 30-59, no gap after A: 18 before val_end),
    C: 2019-01-02 00:00 .. 02:25 (frames 60-89: 24 before test_end, 6 after).
    """
    starts = ["2018-12-31T23:00", "2019-01-01T01:30", "2019-01-02T00:00"]
    times = np.concatenate([np.datetime64(s) + np.arange(30) * STEP for s in starts])
    events = np.repeat(np.array(["A", "B", "C"]), 30)
    return times.astype("datetime64[ns]"), events


def test_date_split_cuts_runs_at_dates_and_events():
    times, events = _events()
    split = date_split(times, DATES, labels=events)
    # train: A before midnight; val: rest of A, B before 03:00; test: rest of B, C to 02:00
    assert split == {
        "train": [(0, 12)],
        "val": [(12, 30), (30, 48)],
        "test": [(48, 60), (60, 84)],
    }
    # 10-frame windows: 12-10+1 = 3; 9 + 9; 3 + 15
    counts = {k: sliding_windows(v, window=10).size for k, v in split.items()}
    assert counts == {"train": 3, "val": 18, "test": 18}
    # without the event ids, A and B are one gap-free run: one 36-frame val block
    assert date_split(times, DATES)["val"] == [(12, 48)]


def test_date_split_without_test_end_keeps_the_rest_in_test():
    times, events = _events()
    dates = {k: v for k, v in DATES.items() if k != "test_end"}
    assert date_split(times, dates, labels=events)["test"] == [(48, 60), (60, 90)]


@pytest.mark.parametrize(
    ("dates", "match"),
    [
        ({"train_end": "2019-01-01"}, "missing \\['val_end'\\]"),
        ({**DATES, "val_start": "2019-01-01"}, "unknown \\['val_start'\\]"),
        ({**DATES, "val_end": "June 2019"}, "val_end='June 2019'"),
        ({**DATES, "val_end": "2018-06-01"}, "must increase"),
    ],
)
def test_bad_split_dates_are_named(dates, match):
    times, _ = _events()
    with pytest.raises(ValueError, match=match):
        date_split(times, dates)


def test_cut_at_changes():
    labels = np.array([1, 1, 2, 2, 2, 3, 3])
    assert cut_at_changes([(0, 7)], labels) == [(0, 2), (2, 5), (5, 7)]
    assert cut_at_changes([(1, 4), (5, 7)], labels) == [(1, 2), (2, 4), (5, 7)]


def _processed(path, fit_attrs):
    times, events = _events()
    values = np.broadcast_to(
        (np.arange(times.size, dtype=np.float32) / 100)[:, None, None], (90, 4, 4)
    ).copy()
    ds = make_radar_dataset(values, times, "1")
    ds["event_id"] = (("time",), events)
    ds["noise_mask"] = (("y", "x"), np.zeros((4, 4), np.uint8))
    ds.attrs.update(zmin=0.0, zmax=81.3253, source_units="kg m-2", **fit_attrs)
    return write_radar(ds, path, allow_nan=False)


def test_radar_datasets_split_by_dates_within_events(tmp_path):
    path = _processed(tmp_path / "p.nc", {"noise_mask_fit_on": "none"})
    sets = radar_datasets(path, 4, 6, split_dates=DATES)
    assert {k: len(v) for k, v in sets.items()} == {"train": 3, "val": 18, "test": 18}
    # val windows start in A's after-midnight piece (12..20) and B's piece (30..38)
    assert sets["val"].starts.tolist() == [*range(12, 21), *range(30, 39)]
    assert sorted(set(sets["test"].block_ids.tolist())) == [48, 60]
    # test window 2 is the last of B's piece 48..60: frames 50..59 (frame k holds k/100)
    inputs, targets = sets["test"][2][:2]
    assert float(inputs[0, 0, 0, 0]) == pytest.approx(0.50)
    assert float(targets[-1, 0, 0, 0]) == pytest.approx(0.59)  # B's last frame
    assert int(sets["test"].starts[3]) == 60  # then C begins
    for ds in sets.values():  # no window crosses an event or a date
        for i in range(len(ds)):
            t = ds.window_times(i)
            assert np.all(np.diff(t) == STEP)


def test_date_split_refuses_a_mask_fitted_on_its_held_out_frames(tmp_path):
    # the mask was fitted on the training blocks of a 40-frame block split with all
    # blocks training: day 2019-01-01 holds frames 12..59 (48, one block 12..52); the
    # other days hold no full block. Of 12..52, val 12..48 (36) and test 48..52 (4) leak.
    fit = {
        "noise_mask_fit_on": "train",
        "noise_mask_fit_block_len": 40,
        "noise_mask_fit_counts": np.array([1, 0, 0], np.int32),
        "noise_mask_fit_seed": 0,
    }
    path = _processed(tmp_path / "p.nc", fit)
    with pytest.raises(ValueError) as err:
        radar_datasets(path, 4, 6, split_dates=DATES)
    msg = str(err.value)
    assert "40 of those fitting frames" in msg and "noise_mask=false" in msg
    assert "2019-01-01T03:00" in msg  # the requested split is named


def test_event_ids_survive_preprocessing_and_cut_block_split(tmp_path):
    times, events = _events()
    raw = make_radar_dataset(np.full((90, 4, 4), 2.0, np.float32), times, "kg m-2")
    raw["event_id"] = (("time",), events)
    raw_path = write_radar(raw, tmp_path / "raw.nc")
    bounds = {"zmin": 0.0, "zmax": 81.3253}
    out = preprocess_archive(
        raw_path, tmp_path / "p.nc", noise_mask=False, **bounds, **SAME_GEOMETRY
    )
    with xr.open_dataset(out) as f:
        assert f["event_id"].values.tolist() == events.tolist()
    # block split: day 2019-01-01 is frames 12..59, one 40-frame block 12..52 cut at
    # the A|B change (frame 30) into 12..30 and 30..52 -> 18-10+1 + 22-10+1 = 22 windows
    sets = radar_datasets(out, 4, 6, block_len=40, counts=(1, 0, 0))
    assert len(sets["train"]) == 22
    assert sorted(set(sets["train"].block_ids.tolist())) == [12, 30]
