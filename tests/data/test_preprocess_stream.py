"""The streamed, parallel preprocessing: same results on any number of workers, equal to
the paper's steps composed by hand, georeferenced grids carried through, zarr output."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from nowcast.data.georef import CRS_VARIABLE, grid_crs, set_grid
from nowcast.data.preprocess import (
    Preprocessor,
    center_crop,
    disk_filter,
    minmax_normalize,
    preprocess_archive,
    resize,
)
from nowcast.data.preprocess.stream import index_runs
from nowcast.data.radar import make_radar_dataset, open_radar, write_radar
from nowcast.data.synthetic import make_synthetic_radar


@pytest.fixture(scope="module")
def raw_file(tmp_path_factory):
    """One day of 240 frames of 64x64 synthetic radar (with clutter) on disk."""
    ds = make_synthetic_radar(1, frames_per_day=240, size=64, seed=5).load()
    path = tmp_path_factory.mktemp("raw") / "raw.nc"
    write_radar(ds, path)
    return path


PARAMS = dict(crop_size=40, disk_radius=3, resize_to=20, chunk_time=16)


def _values(path) -> dict:
    with xr.open_dataset(path) as ds:
        return {v: ds[v].values for v in ds.data_vars}


def test_index_runs():
    assert index_runs(np.array([3, 4, 5, 9, 10, 20])) == [
        slice(3, 6),
        slice(9, 11),
        slice(20, 21),
    ]
    assert index_runs(np.array([], dtype=int)) == []


def test_threads_give_the_serial_result(raw_file, tmp_path):
    serial = preprocess_archive(
        raw_file, tmp_path / "serial.nc", progress=False, workers=1, **PARAMS
    )
    threads = preprocess_archive(
        raw_file,
        tmp_path / "threads.nc",
        progress=False,
        workers=2,
        scheduler="threads",
        **PARAMS,
    )
    a, b = _values(serial), _values(threads)
    assert a.keys() == b.keys()
    assert a["noise_mask"].sum() > 0  # the synthetic clutter is found and masked
    for var in a:  # bit for bit: the same chunks, summed in the same order
        np.testing.assert_array_equal(a[var], b[var])


@pytest.mark.slow
def test_processes_give_the_serial_result(raw_file, tmp_path):
    serial = preprocess_archive(
        raw_file, tmp_path / "serial.nc", progress=False, workers=1, **PARAMS
    )
    procs = preprocess_archive(
        raw_file, tmp_path / "procs.nc", progress=False, workers=2, **PARAMS
    )
    a, b = _values(serial), _values(procs)
    for var in a:
        np.testing.assert_array_equal(a[var], b[var])


def test_fit_on_frame_index_equals_fit_on_the_selection(raw_file):
    ds = open_radar(raw_file)
    frames = np.r_[0:40, 80:120, 200:240]
    a = Preprocessor(progress=False, **PARAMS).fit(ds.isel(time=frames))
    b = Preprocessor(progress=False, **PARAMS).fit(
        ds, frames=frames, paths=[str(raw_file)], workers=2, scheduler="threads"
    )
    np.testing.assert_array_equal(a.noise_mask.mask, b.noise_mask.mask)
    np.testing.assert_array_equal(a.noise_mask.centroids, b.noise_mask.centroids)


def test_transform_equals_the_steps_composed_by_hand(raw_file):
    """Normalise (NaN -> zmin), zero the clutter, disk-filter the whole frame, crop,
    resize: the windowed, chunked pipeline must give the same numbers."""
    ds = open_radar(raw_file).load()
    pre = Preprocessor(progress=False, **PARAMS).fit(ds)
    got = pre.transform(ds.isel(time=slice(0, 20)))["intensity"].values
    v = ds["intensity"].values[:20]
    grey = minmax_normalize(np.where(np.isnan(v), -10.0, v), -10.0, 60.0)
    grey = np.where(pre.noise_mask.mask, 0.0, grey).astype(np.float32)
    want = resize(center_crop(disk_filter(grey, 3), 40), 20)
    np.testing.assert_allclose(got, want, atol=1e-6)


def _georeferenced(n: int = 6, size: int = 12) -> xr.Dataset:
    """A 12x12 grid of 1 km cells whose first centre is (x, y) = (500, 9500) m, y
    decreasing (north up), on a polar stereographic projection; frame 2 without data
    in rows and columns 2-3 (the first processed cell after crop 8 and resize 4)."""
    times = np.datetime64("2020-06-01T00:00") + np.arange(n) * np.timedelta64(5, "m")
    values = np.random.default_rng(0).uniform(0, 50, (n, size, size))
    values[2, 2:4, 2:4] = np.nan
    ds = make_radar_dataset(values.astype(np.float32), times, units="dBZ")
    x = 500.0 + 1000.0 * np.arange(size)
    y = 9500.0 - 1000.0 * np.arange(size)
    return set_grid(ds, x, y, "+proj=stere +lat_0=90 +lon_0=10 +lat_ts=60")


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_crop_and_resize_keep_the_grid(tmp_path, suffix):
    ds = _georeferenced()
    pre = Preprocessor(
        crop_size=8,
        disk_radius=1,
        resize_to=4,
        noise_mask=False,
        chunk_time=2,  # the no-data frame 2 opens the second chunk: coverage starts late
        progress=False,
    )
    pre.fit(ds)
    path = pre.transform_to_file(ds, tmp_path / f"proc{suffix}", chunk_time=2)
    out = open_radar(path)
    # crop 8 of 12 cells: offset 2, cells 2..9 span x = 2000..10000 m (edges);
    # resized to 4 cells of 2 km: centres 3000, 5000, 7000, 9000 m
    np.testing.assert_allclose(out["x"].values, [3000, 5000, 7000, 9000])
    # y: cells 2..9 have edges 8000 .. 0 m (decreasing), 4 cells: 7000 .. 1000
    np.testing.assert_allclose(out["y"].values, [7000, 5000, 3000, 1000])
    assert out["x"].attrs["standard_name"] == "projection_x_coordinate"
    assert grid_crs(out) == grid_crs(ds)
    assert "stere" in out[CRS_VARIABLE].attrs["proj4"]
    for var in ("intensity", "noise_mask", "coverage"):
        assert out[var].attrs["grid_mapping"] == CRS_VARIABLE, var
    assert out["coverage"].values[2, 0, 0] == 0 and out["coverage"].values.sum() == 95
    out.close()
