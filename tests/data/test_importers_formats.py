"""Tests of the ODIM, KNMI, MeteoSwiss, MRMS and SEVIR importers.

Real samples in tests/data/real/{odim,mch,mrms} are unmodified copies from the pysteps
example data (tests/data/real/ATTRIBUTION.md); the expected values were read
independently of the importers (h5py / PIL / pygrib on the raw file, formulas by hand).
KNMI and SEVIR ship no sample: the tests write small files in their documented layouts.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pyproj
import pytest
from PIL import Image

from nowcast.data import importers as imp
from nowcast.data.importers.knmi import metre_proj4, parse_calibration
from nowcast.data.radar import processing_steps

REAL = Path(__file__).parent / "real"
ODIM_FILES = sorted((REAL / "odim").glob("*.hdf"))
MCH_FILES = sorted((REAL / "mch").glob("*.gif"))
MRMS_FILES = sorted((REAL / "mrms").glob("*.grib2"))


# ----------------------------------------------------------------------------- ODIM
@pytest.fixture(scope="module")
def odim():
    return imp.read_frames(ODIM_FILES[::-1], "odim", progress=False)


def test_odim_real_values_times_grid(odim):
    da = odim["intensity"]
    assert da.shape == (2, 2200, 1900) and da.attrs["units"] == "mm/h"
    # root what/date + what/time: 18:00 and 18:15 (files given in reverse order)
    np.testing.assert_array_equal(
        odim["time"].values,
        np.array(["2018-08-24T18:00", "2018-08-24T18:15"], "M8[ns]"),
    )
    with h5py.File(ODIM_FILES[0]) as f:
        raw = f["dataset1/data1/data"][...]  # RATE, gain 1, offset 0
    frame = da.values[0]
    assert frame[407, 391] == pytest.approx(1205.22, rel=1e-6)  # the file's maximum
    assert frame[94, 1271] == pytest.approx(0.02)
    assert np.isnan(frame).sum() == (raw == -9999000).sum() == 2085857  # nodata
    assert (frame == 0).sum() == (raw == -8888000).sum() + (raw == 0).sum()  # undetect
    assert (raw == -8888000).sum() == 1605989
    # grid: the UL corner projects to (0, 0) in the file's laea, cells of 2 km
    np.testing.assert_allclose(
        odim["x"].values[[0, -1]], [1000.0, 3799000.0], atol=0.01
    )
    np.testing.assert_allclose(
        odim["y"].values[[0, -1]], [-1000.0, -4399000.0], atol=0.01
    )
    assert "+proj=laea" in odim["crs"].attrs["proj4"]
    assert da.attrs["grid_mapping"] == "crs"
    assert odim.attrs["source"] == "ORG:247" and odim.attrs["quantity"] == "RATE"
    assert processing_steps(odim)[-1]["step"] == "import_odim"


def _write_odim(path: Path, raw: np.ndarray, quantity: str, what: dict, root_time=True):
    crs = "+proj=laea +lat_0=55 +lon_0=10 +ellps=WGS84 +units=m"
    proj = pyproj.Proj(crs)
    h, w = raw.shape
    # outer corners of a grid of 1 km cells whose upper-left edge is (-2000 m, 3000 m)
    edges = {
        "LL": (-2000, 3000 - h * 1000),
        "UL": (-2000, 3000),
        "UR": (-2000 + w * 1000, 3000),
        "LR": (-2000 + w * 1000, 3000 - h * 1000),
    }
    with h5py.File(path, "w") as f:
        f.attrs["Conventions"] = np.bytes_("ODIM_H5/V2_2")
        root = f.create_group("what")
        root.attrs["object"] = np.bytes_("COMP")
        if root_time:
            root.attrs["date"], root.attrs["time"] = (
                np.bytes_("20200101"),
                np.bytes_("120000"),
            )
        where = f.create_group("where")
        where.attrs["projdef"] = np.bytes_(crs)
        for c, (x, y) in edges.items():
            lon, lat = proj(x, y, inverse=True)
            where.attrs[f"{c}_lon"], where.attrs[f"{c}_lat"] = lon, lat
        where.attrs["xscale"] = where.attrs["yscale"] = 1000.0
        where.attrs["xsize"], where.attrs["ysize"] = w, h
        ds_what = f.create_group("dataset1/what")
        for k, v in what.items():
            ds_what.attrs[k] = np.bytes_(v) if isinstance(v, str) else v
        data = f.create_group("dataset1/data1")
        data.create_dataset("data", data=raw)
        data.create_group("what").attrs["quantity"] = np.bytes_(quantity)
    return path


def test_odim_uint8_reflectivity_nodata_undetect_and_end_time(tmp_path):
    raw = np.array([[0, 100, 255], [64, 1, 200]], dtype=np.uint8)
    what = {
        "gain": 0.5,
        "offset": -32.0,
        "nodata": 255.0,
        "undetect": 0.0,
        "enddate": "20200101",
        "endtime": "120500",
    }
    path = _write_odim(tmp_path / "x.h5", raw, "DBZH", what, root_time=False)
    ds = imp.read_frames(path, "odim", quantity="DBZH", progress=False)
    # 0.5 * raw - 32; undetect (0) -> undetect_dbz = -32; nodata (255) -> NaN
    np.testing.assert_array_equal(
        ds["intensity"].values[0], [[-32.0, 18.0, np.nan], [0.0, -31.5, 68.0]]
    )
    assert ds["intensity"].attrs["units"] == "dBZ"
    assert ds["time"].values[0] == np.datetime64("2020-01-01T12:05")  # enddate/endtime
    np.testing.assert_allclose(ds["x"].values, [-1500.0, -500.0, 500.0], atol=1e-3)
    np.testing.assert_allclose(ds["y"].values, [2500.0, 1500.0], atol=1e-3)


def test_odim_accumulation_to_rate_and_missing_quantity(tmp_path):
    raw = np.array([[3.0, 0.0]], dtype=np.float64)
    what = {
        "gain": 1.0,
        "offset": 0.0,
        "nodata": -1.0,
        "undetect": -2.0,
        "startdate": "20200101",
        "starttime": "114500",
        "enddate": "20200101",
        "endtime": "120000",
    }
    path = _write_odim(tmp_path / "acc.h5", raw, "ACRR", what)
    ds = imp.read_frames(path, "odim", quantity="ACRR", progress=False)
    # 3 mm in 15 minutes = 12 mm/h
    np.testing.assert_allclose(ds["intensity"].values[0], [[12.0, 0.0]])
    assert ds["intensity"].attrs["units"] == "mm/h"
    assert ds["time"].values[0] == np.datetime64("2020-01-01T12:00")  # root what
    with pytest.raises(ValueError, match=r"acc.h5 holds no 'RATE' data .*\['ACRR'\]"):
        imp.read_frames(path, "odim", progress=False)
    with pytest.raises(ValueError, match="quantity 'XYZ' is not supported"):
        imp.read_frames(path, "odim", quantity="XYZ", progress=False)


# ----------------------------------------------------------------------------- KNMI
_KNMI_PROJ = (
    "+proj=stere +lat_0=90 +lon_0=0 +lat_ts=60 +a=6378.137 +b=6356.752 +x_0=0 +y_0=0"
)


def _write_knmi(path, pv, formula, parameter, start, end):
    h, w = pv.shape
    proj = pyproj.Proj(metre_proj4(_KNMI_PROJ))
    x0, y0 = 0.0, -3_650_000.0  # upper-left outer corner (m), 1 km cells
    corners = []
    for x, y in (
        (x0, y0 - h * 1000),
        (x0, y0),
        (x0 + w * 1000, y0),
        (x0 + w * 1000, y0 - h * 1000),
    ):
        corners.extend(proj(x, y, inverse=True))  # LL, UL, UR, LR as (lon, lat)
    with h5py.File(path, "w") as f:
        img = f.create_group("image1")
        img.create_dataset("image_data", data=pv)
        img.attrs["image_geo_parameter"] = np.bytes_(parameter)
        cal = img.create_group("calibration")
        cal.attrs["calibration_formulas"] = np.bytes_(formula)
        cal.attrs["calibration_missing_data"] = np.array([65535])
        cal.attrs["calibration_out_of_image"] = np.array([65534])
        ov = f.create_group("overview")
        ov.attrs["product_datetime_start"] = np.bytes_(start)
        ov.attrs["product_datetime_end"] = np.bytes_(end)
        geo = f.create_group("geographic")
        geo.attrs["geo_number_columns"], geo.attrs["geo_number_rows"] = (
            np.array([w]),
            np.array([h]),
        )
        geo.attrs["geo_product_corners"] = np.array(corners)
        geo.create_group("map_projection").attrs["projection_proj4_params"] = np.bytes_(
            _KNMI_PROJ
        )
    return path


def test_knmi_accumulation_to_rate_nodata_time_grid(tmp_path):
    pv = np.array([[0, 120, 65535], [65534, 5, 1000]], dtype=np.uint16)
    path = _write_knmi(
        tmp_path / "RAD_NL25_RAC_MFBS_5min_201008260005.h5",
        pv,
        "GEO=0.010000*PV+0.000000",
        "PRECIP_[MM]",
        "26-AUG-2010;00:00:00.000",
        "26-AUG-2010;00:05:00.000",
    )
    ds = imp.read_frames(path, "knmi", progress=False)
    # 0.01 mm per count over 5 minutes -> * 12 mm/h; 65535 missing, 65534 out of image
    np.testing.assert_allclose(
        ds["intensity"].values[0],
        [[0.0, 14.4, np.nan], [np.nan, 0.6, 120.0]],
        rtol=1e-6,
    )
    assert ds["intensity"].attrs["units"] == "mm/h"
    assert ds["time"].values[0] == np.datetime64(
        "2010-08-26T00:05"
    )  # end of the interval
    np.testing.assert_allclose(ds["x"].values, [500.0, 1500.0, 2500.0], atol=0.01)
    np.testing.assert_allclose(ds["y"].values, [-3_650_500.0, -3_651_500.0], atol=0.01)
    assert "+a=6378137" in ds["crs"].attrs["proj4"]  # km radii converted to m
    assert ds.attrs["product"] == "RAD_NL25_RAC_MFBS_5min"


def test_knmi_reflectivity_and_formula_parsing(tmp_path):
    assert parse_calibration("GEO = 0.500000 * PV + -32.000000") == (0.5, -32.0)
    assert parse_calibration("GEO=0.010000*PV+0.000000") == (0.01, 0.0)
    with pytest.raises(ValueError, match="not of the form"):
        parse_calibration("PV to dBZ")
    pv = np.array([[100, 64]], dtype=np.uint8)
    path = _write_knmi(
        tmp_path / "RAD_NL25_PCP_NA_201008260000.h5",
        pv,
        "GEO = 0.500000 * PV + -32.000000",
        "REFLECTIVITY_[DBZ]",
        "26-AUG-2010;00:00:00.000",
        "26-AUG-2010;00:00:00.000",
    )
    ds = imp.read_frames(path, "knmi", progress=False)
    np.testing.assert_array_equal(ds["intensity"].values[0], [[18.0, 0.0]])
    assert ds["intensity"].attrs["units"] == "dBZ"
    with h5py.File(path, "a") as f:
        del f["image1/calibration"]
    with pytest.raises(
        ValueError, match=r"RAD_NL25_PCP_NA_201008260000.h5 is not a KNMI"
    ):
        imp.read_frames(path, "knmi", progress=False)


# ---------------------------------------------------------------------------- MeteoSwiss
def _aqc_mm(i: int) -> float:
    """AQC/CPC index -> mm per 5 minutes (MeteoSwiss table, as in pysteps)."""
    return (10.0 ** ((i - 71.5) / 20.0) / 316.0) ** (1.0 / 1.5)


def test_mch_real_gifs(tmp_path):
    ds = imp.read_frames(MCH_FILES[::-1], "mch", progress=False)
    assert ds["intensity"].shape == (3, 640, 710)
    # AQC yy=16, day 193 (2016-07-11), 20:45 / 20:50 / 20:55
    np.testing.assert_array_equal(
        ds["time"].values,
        np.array(
            ["2016-07-11T20:45", "2016-07-11T20:50", "2016-07-11T20:55"], "M8[ns]"
        ),
    )
    frame = ds["intensity"].values[0]
    # indices read with PIL: 148 at (477, 356), 100 at (65, 594); 5-minute amounts * 12
    assert frame[477, 356] == pytest.approx(_aqc_mm(148) * 12, rel=1e-6)
    assert frame[65, 594] == pytest.approx(_aqc_mm(100) * 12, rel=1e-6)
    assert np.isnan(frame).sum() == 134628  # index 255: outside the radar coverage
    assert (frame == 0).sum() == 271663 + 465  # indices 0 and 1: no precipitation
    assert ds["x"].values[0] == 255_500.0 and ds["y"].values[0] == 479_500.0
    assert ds["crs"].attrs["crs_wkt"].find("CH1903") >= 0
    assert ds.attrs["product"] == "AQC" and ds.attrs["accumulation_minutes"] == 5.0


def test_mch_synthetic_palette_gif_and_errors(tmp_path):
    index = np.zeros((640, 710), dtype=np.uint8)
    index[0, :6] = [0, 1, 2, 72, 252, 255]
    im = Image.fromarray(index, mode="P")
    im.putpalette([v for i in range(256) for v in (255, 255 - i, (7 * i) % 256)])
    path = tmp_path / "CPC170010005V_00005.801.gif"
    im.save(path)
    ds = imp.read_frames(path, "mch", progress=False)
    expected = [0.0, 0.0, _aqc_mm(2) * 12, _aqc_mm(72) * 12, 0.0, np.nan]
    np.testing.assert_allclose(ds["intensity"].values[0, 0, :6], expected, rtol=1e-6)
    assert ds["time"].values[0] == np.datetime64("2017-01-01T00:05")
    ten = imp.read_frames(path, "mch", accumulation_minutes=10, progress=False)
    assert ten["intensity"].values[0, 0, 3] == pytest.approx(_aqc_mm(72) * 6, rel=1e-6)
    bad = tmp_path / "RZC170010005V_00005.801.gif"
    im.save(bad)
    with pytest.raises(ValueError, match=r"RZC170010005V_00005.801.gif: product 'RZC'"):
        imp.read_frames(bad, "mch", progress=False)


# ----------------------------------------------------------------------------- MRMS
def test_mrms_bbox_values_missing_times():
    pytest.importorskip("pygrib")
    bbox = [-118.0, -117.0, 54.0, 55.0]
    ds = imp.read_frames(MRMS_FILES, "mrms", bbox=bbox, progress=False)
    assert (
        ds["intensity"].shape == (2, 100, 100)
        and ds["intensity"].attrs["units"] == "mm/h"
    )
    np.testing.assert_array_equal(
        ds["time"].values, np.array(["2019-06-10T00:00", "2019-06-10T00:02"], "M8[ns]")
    )
    # grid: first cell centre 54.995 N, 230.005 E = -129.995; 0.01 degree steps
    np.testing.assert_allclose(ds["y"].values[[0, -1]], [54.995, 54.005])
    np.testing.assert_allclose(ds["x"].values[[0, -1]], [-117.995, -117.005])
    assert ds["x"].attrs["units"] == "degrees_east"
    # read with pygrib from the first file's message, rows 0:100, columns 1200:1300:
    # 3414 cells of -3 (no coverage), 5904 of 0, maximum 8.2 mm/h at (12, 82)
    frame = ds["intensity"].values[0]
    assert np.isnan(frame).sum() == 3414 and np.isnan(frame[0, 0])
    assert (frame == 0).sum() == 5904
    assert frame[12, 82] == pytest.approx(8.2) and np.nanmax(frame) == frame[12, 82]
    assert frame[8, 97] == pytest.approx(1.1)
    with pytest.raises(ValueError, match="holds no grid cell"):
        imp.read_frames(MRMS_FILES[0], "mrms", bbox=[0, 1, 0, 1], progress=False)


# ----------------------------------------------------------------------------- SEVIR
_CATALOG_HEAD = (
    "id,file_name,file_index,img_type,time_utc,minute_offsets,episode_id,event_id,"
    "event_type,llcrnrlat,llcrnrlon,urcrnrlat,urcrnrlon,proj,size_x,size_y,height_m,"
    "width_m,data_min,data_max,pct_missing\n"
)
_SEVIR_PROJ = "+proj=laea +lat_0=38 +lon_0=-98 +units=m +a=6370997.0 +ellps=sphere"


def _write_sevir(folder: Path, starts: list[str]) -> Path:
    """A SEVIR VIL file of len(starts) 4 x 4 events with 3 frames 5 minutes apart."""
    proj = pyproj.Proj(_SEVIR_PROJ)
    (lon0, lat0), (lon1, lat1) = (
        proj(0, 0, inverse=True),
        proj(4000, 4000, inverse=True),
    )
    vil = np.zeros((len(starts), 4, 4, 3), dtype=np.uint8)
    vil[0, 0, :, 0] = [5, 6, 18, 19]
    vil[0, 1, :, 0] = [100, 255, 0, 84]
    vil[:, 3, 3, :] = 200 + np.arange(len(starts))[:, None]
    rows = []
    for k, start in enumerate(starts):
        rows.append(
            f"S{k},vil/2019/SEVIR_VIL_TEST.h5,{k},vil,{start},-5:0:5,1,{k},Hail,"
            f"{lat0},{lon0},{lat1},{lon1},{_SEVIR_PROJ},4,4,4000,4000,0,255,0\n"
        )
    rows.append(
        "S0,vis/2019/SEVIR_VIS.h5,0,vis,2019-01-01 00:00:00,0,1,0,Hail,0,0,0,0,x,4,4,1,1,0,1,0\n"
    )
    (folder / "CATALOG.csv").write_text(_CATALOG_HEAD + "".join(rows))
    path = folder / "data" / "vil" / "2019" / "SEVIR_VIL_TEST.h5"
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:
        f["id"] = np.array([f"S{k}".encode() for k in range(len(starts))])
        f["vil"] = vil
    return path


def test_sevir_vil_decoding_matches_the_documented_formula():
    x = np.array([0, 5, 6, 18, 19, 100, 255])
    expected = [
        0,
        0,
        4 / 90.66,
        16 / 90.66,
        np.exp((19 - 83.9) / 38.9),
        np.exp((100 - 83.9) / 38.9),
        np.exp((255 - 83.9) / 38.9),
    ]
    np.testing.assert_allclose(imp.sevir_vil_to_kgm2(x), expected, rtol=1e-6)


def test_sevir_events_times_values_and_grid(tmp_path):
    path = _write_sevir(tmp_path, ["2019-06-01 12:00:00", "2019-06-02 00:00:00"])
    ds = imp.read_frames(
        path, "sevir", progress=False
    )  # CATALOG.csv found above the file
    assert (
        ds["intensity"].shape == (6, 4, 4)
        and ds["intensity"].attrs["units"] == "kg m-2"
    )
    np.testing.assert_array_equal(
        ds["time"].values,
        np.array(  # time_utc + minute_offsets (-5, 0, 5) of each event
            [
                "2019-06-01T11:55",
                "2019-06-01T12:00",
                "2019-06-01T12:05",
                "2019-06-01T23:55",
                "2019-06-02T00:00",
                "2019-06-02T00:05",
            ],
            "M8[ns]",
        ),
    )
    np.testing.assert_array_equal(ds["event_id"].values, ["S0"] * 3 + ["S1"] * 3)
    first = ds["intensity"].values[0]
    np.testing.assert_allclose(
        first[0], [0.0, 4 / 90.66, 16 / 90.66, np.exp(-64.9 / 38.9)], rtol=1e-6
    )
    assert ds["intensity"].values[4, 3, 3] == pytest.approx(
        np.exp((201 - 83.9) / 38.9), rel=1e-6
    )
    assert "crs" not in ds  # two events, two grids: not georeferenced
    one = imp.read_frames(path, "sevir", event_ids=["S1"], progress=False)
    assert one.sizes["time"] == 3
    np.testing.assert_allclose(one["x"].values, [500, 1500, 2500, 3500], atol=0.01)
    np.testing.assert_allclose(one["y"].values, [3500, 2500, 1500, 500], atol=0.01)


def test_sevir_overlapping_events_and_missing_catalog(tmp_path):
    path = _write_sevir(tmp_path, ["2019-06-01 12:00:00", "2019-06-01 12:05:00"])
    with pytest.raises(ValueError, match="events S0 and S1 overlap in time"):
        imp.read_frames(path, "sevir", progress=False)
    with pytest.raises(
        ValueError, match="lists no VIL event of SEVIR_VIL_TEST.h5 among"
    ):
        imp.read_frames(path, "sevir", event_ids=["S9"], progress=False)
    (tmp_path / "CATALOG.csv").unlink()
    with pytest.raises(FileNotFoundError, match="no CATALOG.csv next to"):
        imp.read_frames(path, "sevir", progress=False)
