"""Tests of nowcast.operational.latest: the newest consecutive frames of an input."""

from __future__ import annotations

import numpy as np
import pytest
from forecast_helpers import REAL, moving_blob

from nowcast.data.radar import write_radar
from nowcast.operational.latest import (
    format_times,
    guess_preset,
    read_latest,
    select_latest,
)

T0 = np.datetime64("2016-09-28T14:45")
FIVE = np.timedelta64(5, "m")


def test_select_latest_takes_the_newest_in_time_order():
    times = T0 + FIVE * np.array([3, 0, 2, 1, 4])  # shuffled 14:45..15:05
    index = select_latest(times, 3, FIVE)
    # the newest three are 14:55, 15:00, 15:05 at positions 2, 0, 4
    assert index.tolist() == [2, 0, 4]


def test_too_few_frames_names_the_times_and_what_is_needed():
    times = T0 + FIVE * np.arange(3)
    with pytest.raises(ValueError) as err:
        select_latest(times, 5, FIVE, where="fmi/")
    msg = str(err.value)
    assert "fmi/ holds 3 frame(s) (2016-09-28 14:45, 2016-09-28 14:50, " in msg
    assert "input_len=5 consecutive frames 5 min apart" in msg


def test_a_gap_among_the_newest_frames_is_refused():
    times = T0 + FIVE * np.array([0, 1, 2, 4, 5])  # 15:00 missing
    with pytest.raises(ValueError, match=r"gap: .*\(10 min after 2016-09-28 14:55\)"):
        select_latest(times, 4, FIVE)
    # the newest two are consecutive: fine
    assert select_latest(times, 2, FIVE).tolist() == [3, 4]


def test_wrong_cadence_says_how_to_forecast_anyway():
    times = T0 + FIVE * np.arange(5)
    with pytest.raises(ValueError) as err:
        select_latest(times, 5, np.timedelta64(6, "m"))
    assert "are 5 min apart" in str(err.value)
    assert "6 min apart" in str(err.value)
    assert "frame_minutes=5" in str(err.value)
    # without a required cadence any constant step is accepted
    assert select_latest(times, 5).tolist() == [0, 1, 2, 3, 4]


def test_format_times_drops_zero_seconds():
    times = [np.datetime64("2016-09-28T14:45:00"), np.datetime64("2016-09-28T14:45:30")]
    assert format_times(times) == "2016-09-28 14:45, 2016-09-28 14:45:30"


def test_raw_fmi_files_only_the_newest_are_read(fmi_files):
    ds, files = read_latest(REAL / "fmi", 2, cadence=FIVE)
    assert [f.name[:12] for f in files] == ["201609281450", "201609281455"]
    assert ds["time"].values.tolist() == (
        (T0 + FIVE * np.arange(1, 3)).astype("datetime64[ns]").tolist()
    )
    assert ds["intensity"].attrs["units"] == "dBZ"
    assert ds.sizes == {"time": 2, "y": 1226, "x": 760}


def test_globs_and_lists_of_raw_files(fmi_files):
    ds, files = read_latest(str(REAL / "fmi" / "*.pgm.gz"), 1)
    assert files == fmi_files[-1:] and ds.sizes["time"] == 1
    with pytest.raises(ValueError, match=r"fmi.*, \.\.\. \(3 paths\) holds 3 frame"):
        read_latest(iter(fmi_files), 4)  # any iterable, named briefly in the error


def test_presets_are_guessed_from_names_and_variables(fmi_files):
    assert guess_preset(fmi_files) == "fmi"
    assert guess_preset(sorted((REAL / "bom").glob("*.nc"))) == "bom"


def test_other_files_in_a_folder_are_left_out(fmi_files, tmp_path):
    for f in fmi_files:
        (tmp_path / f.name).symlink_to(f)
    (tmp_path / "README.txt").write_text("FMI frames")
    assert guess_preset(sorted(tmp_path.iterdir())) == "fmi"
    ds, files = read_latest(tmp_path, 1)
    assert files == [tmp_path / fmi_files[-1].name]


def test_no_fitting_preset_lists_them(tmp_path):
    odd = tmp_path / "frame_0001.png"
    odd.write_bytes(b"")
    with pytest.raises(ValueError, match=r"pass preset=<name>, one of \[.*'fmi'"):
        guess_preset([odd])


def test_radar_netcdf_and_zarr_inputs(tmp_path):
    ds = moving_blob(n_frames=12)
    nc = write_radar(ds, tmp_path / "raw.nc")
    latest, _ = read_latest(nc, 3, cadence=np.timedelta64(6, "m"))
    np.testing.assert_array_equal(latest["time"].values, ds["time"].values[-3:])
    np.testing.assert_array_equal(
        latest["intensity"].values, ds["intensity"].values[-3:]
    )
    store = tmp_path / "raw.zarr"
    ds.to_zarr(store, consolidated=False)
    latest, files = read_latest(store, 4)
    assert files == [store]
    np.testing.assert_array_equal(latest["time"].values, ds["time"].values[-4:])


def test_a_pattern_override_also_picks_the_newest_files(fmi_files, tmp_path):
    # renamed so that the preset's own pattern (%Y%m%d%H%M_fmi) no longer parses;
    # the names sort the other way round from the times they hold
    for f, name in zip(fmi_files, ("c", "b", "a"), strict=True):
        stamp = f.name[:12]  # 201609281445, ...50, ...55
        (tmp_path / f"{name}_{stamp}.pgm.gz").symlink_to(f)
    options = {"pattern": "_%Y%m%d%H%M"}
    ds, files = read_latest(tmp_path, 2, preset="fmi", options=options)
    assert [f.name for f in files] == ["b_201609281450.pgm.gz", "a_201609281455.pgm.gz"]
    assert ds["time"].values[-1] == np.datetime64("2016-09-28T14:55", "ns")
