"""Zarr stores through the radar convention and the datasets; clear errors on files that
cannot be read and on intensity variables without units or with the wrong dims."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from nowcast.data.dataset import RadarWindowDataset, radar_datasets
from nowcast.data.radar import (
    RadarFileError,
    intensity_name,
    make_radar_dataset,
    open_radar,
    validate_radar,
    write_radar,
)

pytest.importorskip("zarr")


def _processed(n_days: int = 1) -> xr.Dataset:
    """240-frame days of normalised 8x8 frames; frame k holds k / 1000."""
    step = np.timedelta64(6, "m")
    times = np.concatenate(
        [
            np.datetime64(f"2013-07-0{d + 1}T00:00") + np.arange(240) * step
            for d in range(n_days)
        ]
    )
    values = np.broadcast_to(
        (np.arange(times.size, dtype=np.float32) / 1000)[:, None, None],
        (times.size, 8, 8),
    ).copy()
    ds = make_radar_dataset(values, times, "1")
    ds["noise_mask"] = (("y", "x"), np.eye(8, dtype=np.uint8))
    ds.attrs.update(zmin=-10.0, zmax=60.0, source_units="dBZ")
    return ds


def test_zarr_round_trip_reads_lazily_window_by_window(tmp_path):
    ds = _processed()
    path = write_radar(ds, tmp_path / "radar.zarr", chunk_time=16, allow_nan=False)
    assert path.is_dir() and not list(tmp_path.glob(".*tmp"))
    back = open_radar(path)
    assert back["intensity"].chunks is not None  # dask: nothing read yet
    np.testing.assert_array_equal(back["time"].values, ds["time"].values)
    window = back["intensity"].isel(time=slice(100, 120)).values
    np.testing.assert_allclose(window[:, 0, 0], np.arange(100, 120) / 1000, rtol=1e-6)
    assert back["intensity"].attrs["units"] == "1"
    # without dask (chunk_time=0) a read goes straight to the store
    direct = open_radar(path, chunk_time=0)
    assert direct["intensity"].chunks is None
    np.testing.assert_array_equal(direct["intensity"][5].values, ds["intensity"][5])
    # a directory lists its stores; the store itself is one path
    assert open_radar(tmp_path).sizes["time"] == 240


def test_datasets_serve_windows_from_a_zarr_store(tmp_path):
    path = write_radar(_processed(), tmp_path / "p.zarr", allow_nan=False)
    for in_memory in (False, True):
        ds = RadarWindowDataset(path, np.array([3]), 5, 15, in_memory=in_memory)
        x, y = ds[0]
        np.testing.assert_allclose(x[:, 0, 0, 0], np.arange(3, 8) / 1000, rtol=1e-6)
        np.testing.assert_allclose(y[:, 0, 0, 0], np.arange(8, 23) / 1000, rtol=1e-6)
        assert not ds.valid_mask[0, 0] and ds.valid_mask[0, 1]  # eye noise mask
    splits = radar_datasets(path, in_memory=False)
    # one day = 6 blocks of 40 frames, 4 of them training; a block holds
    # 40 - (5 + 15) + 1 = 21 windows (default input 5 + output 15 frames, stride 1)
    assert len(splits["train"]) == 4 * 21


def test_truncated_processed_file_names_the_file_and_the_fix(tmp_path):
    path = write_radar(_processed(), tmp_path / "p.nc", allow_nan=False)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])  # an interrupted copy
    with pytest.raises(RadarFileError, match="p.nc") as err:
        radar_datasets(path)
    assert "re-create it" in str(err.value) and "scripts/preprocess.py" in str(
        err.value
    )
    with pytest.raises(RadarFileError, match="truncated or corrupt"):
        RadarWindowDataset(path, np.array([0]), 5, 15)
    with pytest.raises(RadarFileError, match="p.nc"):
        open_radar(path)
    path.write_bytes(b"not a netCDF file at all")
    with pytest.raises(RadarFileError, match="p.nc"):
        radar_datasets(path)


def test_intensity_without_units_is_named_as_such():
    ds = _processed()
    ds = ds.rename({"intensity": "reflectivity"})
    del ds.attrs["intensity_variable"]
    del ds["reflectivity"].attrs["units"]
    with pytest.raises(ValueError, match="'reflectivity' has dims") as err:
        intensity_name(ds)
    message = str(err.value)
    assert "no 'units' attribute" in message
    assert "ds['reflectivity'].attrs['units']" in message
    assert "intensity_variable" not in message  # not the fix here
    ds["reflectivity"].attrs["units"] = "furlongs"
    with pytest.raises(ValueError, match="unknown units 'furlongs'"):
        validate_radar(ds)


def test_intensity_with_wrong_dims_is_named_as_such():
    ds = _processed().rename({"y": "lat", "x": "lon", "time": "t"})
    ds = ds.rename({"intensity": "reflectivity"})
    del ds.attrs["intensity_variable"]
    with pytest.raises(ValueError, match="no variable has dims") as err:
        validate_radar(ds)
    message = str(err.value)
    assert "reflectivity('t', 'lat', 'lon')" in message
    assert "ds.rename({'t': 'time', 'lat': 'y', 'lon': 'x'})" in message
    # named by the attribute, the wrong dims are reported for that variable
    ds.attrs["intensity_variable"] = "reflectivity"
    with pytest.raises(ValueError, match="must have dims"):
        validate_radar(ds)


def test_processed_file_with_wrong_dims_is_refused(tmp_path):
    ds = _processed().rename({"y": "row"})
    path = tmp_path / "bad.nc"
    ds.to_netcdf(path)
    with pytest.raises(ValueError, match="has dims .*'row'.* re-run it"):
        radar_datasets(path)


def test_preprocessing_refuses_an_archive_in_other_units(tmp_path):
    # a rain-rate archive through the dBZ parameter set (preprocess=hko: -10..60 dBZ)
    # would be min-max normalised on the wrong range without a word; it is refused
    from nowcast.data.preprocess import preprocess_archive
    from nowcast.data.radar import make_radar_dataset, write_radar

    times = np.array(["2020-01-01T00:00", "2020-01-01T00:05"], dtype="datetime64[ns]")
    raw = write_radar(
        make_radar_dataset(np.ones((2, 8, 8), "float32"), times, "mm/h"),
        tmp_path / "raw.nc",
    )
    with pytest.raises(
        ValueError, match=r"holds 'mm/h' but this preprocessing is for 'dBZ'"
    ):
        preprocess_archive(
            raw,
            tmp_path / "out.nc",
            fit_on="all",
            units="dBZ",
            zmin=-10.0,
            zmax=60.0,
            progress=False,
        )
    assert not (tmp_path / "out.nc").exists()
