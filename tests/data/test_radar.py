"""Tests of the radar-sequence convention (nowcast/data/radar.py)."""

import numpy as np
import pytest
import xarray as xr

from nowcast.data.radar import (
    contiguous_segments,
    infer_cadence,
    intensity_name,
    make_radar_dataset,
    open_radar,
    processing_steps,
    record_step,
    validate_radar,
    write_radar,
)


def _times(n, start="2020-01-01T00:00", step_min=6):
    return np.datetime64(start) + np.arange(n) * np.timedelta64(step_min, "m")


def _ds(n=5, h=4, w=3, units="dBZ", seed=0):
    values = np.random.default_rng(seed).uniform(0, 50, (n, h, w)).astype(np.float32)
    return make_radar_dataset(values, _times(n), units)


def test_make_radar_dataset_follows_convention():
    ds = _ds()
    assert ds["intensity"].dims == ("time", "y", "x")
    assert ds.attrs["intensity_variable"] == "intensity"
    assert ds["intensity"].attrs["units"] == "dBZ"
    assert np.issubdtype(ds["time"].dtype, np.datetime64)


def test_units_aliases_are_canonicalised():
    ds = _ds(units="DBZ")
    assert ds["intensity"].attrs["units"] == "dBZ"
    ds = _ds(units="mm h-1")
    assert ds["intensity"].attrs["units"] == "mm/h"


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda ds: ds.rename({"x": "lon"}), "dims"),
        (lambda ds: ds.isel(time=[0, 2, 1]), "not increasing"),
        (lambda ds: ds.isel(time=[0, 1, 1, 2]), "duplicate time"),
        (lambda ds: ds.isel(time=slice(0, 0)), "empty"),
        (lambda ds: ds.assign_coords(time=np.arange(ds.sizes["time"])), "datetime64"),
    ],
)
def test_validate_rejects_bad_structure(mutate, match):
    with pytest.raises(ValueError, match=match):
        validate_radar(mutate(_ds()))


def test_validate_rejects_unknown_units():
    ds = _ds()
    ds["intensity"].attrs["units"] = "furlongs"
    with pytest.raises(ValueError, match="unknown units 'furlongs'"):
        validate_radar(ds)


def test_validate_nan_and_inf():
    ds = _ds()
    ds["intensity"][0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN values"):
        validate_radar(ds)
    validate_radar(ds, allow_nan=True)  # raw archives may hold no-data NaN
    ds["intensity"][1, 0, 0] = np.inf
    with pytest.raises(ValueError, match="1 infinite values"):
        validate_radar(ds, allow_nan=True)


def test_intensity_name_needs_disambiguation():
    ds = _ds()
    del ds.attrs["intensity_variable"]
    ds["other"] = ds["intensity"] * 2
    ds = ds.rename({"intensity": "reflectivity"})
    with pytest.raises(ValueError, match="cannot tell which variable"):
        intensity_name(ds)
    ds.attrs["intensity_variable"] = "reflectivity"
    assert intensity_name(ds) == "reflectivity"


def test_write_open_round_trip_is_compressed_and_chunked(tmp_path):
    ds = _ds(n=40, h=16, w=16)
    ds["noise_mask"] = (("y", "x"), np.eye(16, dtype=np.uint8))
    path = write_radar(ds, tmp_path / "sub" / "a.nc", chunk_time=8)
    assert not list(tmp_path.glob("sub/.*tmp"))  # no temp file left behind
    back = open_radar(path)
    assert back["intensity"].chunks is not None  # lazy (dask)
    np.testing.assert_array_equal(back["intensity"].values, ds["intensity"].values)
    np.testing.assert_array_equal(back["time"].values, ds["time"].values)
    enc = back["intensity"].encoding
    assert enc["zlib"] and enc["chunksizes"] == (8, 16, 16)
    back.close()


def test_open_many_files_as_one_sorted(tmp_path):
    ds = _ds(n=10)
    write_radar(ds.isel(time=slice(5, 10)), tmp_path / "b.nc")
    write_radar(
        ds.isel(time=slice(0, 5)), tmp_path / "c.nc"
    )  # later name, earlier times
    both = open_radar(tmp_path)
    np.testing.assert_array_equal(both["time"].values, ds["time"].values)
    np.testing.assert_allclose(both["intensity"].values, ds["intensity"].values)
    both.close()
    globbed = open_radar(str(tmp_path / "*.nc"))
    assert globbed.sizes["time"] == 10
    globbed.close()


def test_open_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.nc"):
        open_radar(tmp_path / "nope.nc")
    with pytest.raises(FileNotFoundError, match="no file matches"):
        open_radar(str(tmp_path / "*.nc"))


def test_contiguous_segments_split_at_gaps():
    t = np.concatenate([_times(4), _times(3, start="2020-01-01T01:00")])
    assert infer_cadence(t) == np.timedelta64(6, "m")
    # 00:00..00:18 (4 frames), gap, 01:00..01:12 (3 frames)
    assert contiguous_segments(t) == [(0, 4), (4, 7)]


def test_record_step_keeps_ordered_provenance():
    ds = _ds()
    record_step(ds, "center_crop", size=330)
    record_step(ds, "disk_filter", radius=10)
    steps = processing_steps(ds)
    assert [s["step"] for s in steps] == ["center_crop", "disk_filter"]
    assert steps[0]["size"] == 330
    assert "disk_filter(radius=10)" in ds.attrs["history"]
    assert isinstance(xr.Dataset(attrs=ds.attrs).attrs["nowcast_steps"], str)
