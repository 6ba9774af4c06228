"""The CF grid contract of nowcast.data.georef, against hand-computed coordinates."""

import numpy as np
import pytest
import xarray as xr

from nowcast.data.georef import (
    copy_grid,
    crs_attrs,
    grid_crs,
    grid_info,
    is_georeferenced,
    resized_coordinate,
    set_grid,
)
from nowcast.data.radar import make_radar_dataset

STERE = "+proj=stere +lat_0=90 +lon_0=10 +lat_ts=60 +ellps=WGS84 +units=m"


def _ds(h=4, w=6):
    times = np.array(["2020-01-01T00:00", "2020-01-01T00:05"], dtype="datetime64[ns]")
    return make_radar_dataset(np.zeros((2, h, w), "float32"), times, "dBZ")


def test_crs_attrs_are_cf():
    attrs = crs_attrs(STERE)
    assert attrs["grid_mapping_name"] == "polar_stereographic"
    assert attrs["standard_parallel"] == 60.0
    assert attrs["straight_vertical_longitude_from_pole"] == 10.0
    assert "PROJCRS" in attrs["crs_wkt"]
    assert "+proj=stere" in attrs["proj4"]


def test_bad_projection_is_named():
    with pytest.raises(ValueError, match="not a valid projection: 'no such'"):
        crs_attrs("no such")


def test_set_grid_coordinates_and_mapping(tmp_path):
    x = 1000.0 * np.arange(6) + 500.0
    y = -1000.0 * np.arange(4) + 3500.0
    ds = set_grid(_ds(), x, y, STERE)
    assert is_georeferenced(ds)
    assert ds["intensity"].attrs["grid_mapping"] == "crs"
    assert ds["x"].attrs["standard_name"] == "projection_x_coordinate"
    path = tmp_path / "g.nc"
    ds.to_netcdf(path)
    back = xr.open_dataset(path)
    assert "Polar Stereographic" in grid_crs(back)
    np.testing.assert_array_equal(back["y"].values, y)
    info = grid_info(back)
    # outer cell edges: x from 0 to 6000 m, y from 0 to 4000 m
    assert info.extent == (0.0, 6000.0, 0.0, 4000.0)
    assert (info.dx, info.dy, info.units) == (1000.0, -1000.0, "m")


def test_set_grid_rejects_wrong_lengths():
    with pytest.raises(ValueError, match="do not fit the grid"):
        set_grid(_ds(), np.arange(5.0), np.arange(4.0), STERE)


def test_resized_coordinate_keeps_outer_edges():
    # 6 cells of 1 km centred at 0.5 .. 5.5 km -> 4 cells of 1.5 km centred at 0.75 ...
    new = resized_coordinate(np.arange(6) * 1.0 + 0.5, 4)
    np.testing.assert_allclose(new, [0.75, 2.25, 3.75, 5.25])
    # decreasing coordinates stay decreasing
    np.testing.assert_allclose(resized_coordinate([3.5, 2.5, 1.5, 0.5], 2), [3.0, 1.0])


def test_resized_coordinate_needs_regular_grid():
    with pytest.raises(ValueError, match="not evenly spaced"):
        resized_coordinate(np.array([0.0, 1.0, 3.0]), 2)


def test_copy_grid_and_plain_grid():
    src = set_grid(_ds(), np.arange(6.0), np.arange(4.0), "EPSG:4326", units="degrees")
    assert src["y"].attrs["units"] == "degrees_north"
    out = copy_grid(src, _ds())
    assert (
        grid_crs(out) == grid_crs(src)
        and out["intensity"].attrs["grid_mapping"] == "crs"
    )
    assert grid_crs(_ds()) is None and grid_info(_ds()) is None
    assert copy_grid(_ds(), _ds()).identical(_ds())
