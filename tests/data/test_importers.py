"""Tests of nowcast.data.importers on real FMI / BOM frames and synthetic HKO-7 PNGs.

The real frames in tests/data/real/ are copies from the pysteps example data (see
tests/data/real/ATTRIBUTION.md). Expected pixel values were read independently of the
importer: FMI grey levels with ``zcat FILE | od -An -tu1 -j OFFSET -N1`` (the PGM header
is 686 bytes, OFFSET = 686 + row * 760 + col), BOM accumulations with netCDF4 and
auto-scaling off (value = raw int16 * scale_factor 0.05).
"""

from __future__ import annotations

import gzip
import random
import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pytest
from PIL import Image

from nowcast.data import importers as imp
from nowcast.data.radar import open_radar, processing_steps, write_radar

REAL = Path(__file__).parent / "real"
FMI_FILES = sorted((REAL / "fmi").glob("*.pgm.gz"))
BOM_FILES = sorted((REAL / "bom").glob("*.nc"))
FMI_TIMES = np.array(
    ["2016-09-28T14:45", "2016-09-28T14:50", "2016-09-28T14:55"], dtype="datetime64[ns]"
)  # from the file names 201609281445_fmi..., 201609281450_..., 201609281455_...
BOM_TIMES = np.array(
    ["2018-06-16T10:00", "2018-06-16T10:06", "2018-06-16T10:12"], dtype="datetime64[ns]"
)  # from the file names 2_20180616_100000, _100600, _101200 (= valid_time)


def _shuffled(paths: list[Path]) -> list[Path]:
    out = list(paths)
    random.Random(1).shuffle(out)
    assert out != sorted(out)  # the test really gives them out of order
    return out


def _pgm_pixels(path: Path) -> np.ndarray:
    """Grey levels of a gzipped binary PGM parsed by hand (no PIL)."""
    raw = gzip.decompress(path.read_bytes())
    tail = b"\n760 1226\n255\n"
    start = raw.index(tail) + len(tail)
    return np.frombuffer(raw[start:], dtype=np.uint8).reshape(1226, 760)


@pytest.fixture(scope="module")
def fmi():
    return imp.read_image_frames(_shuffled(FMI_FILES), "fmi", progress=False)


@pytest.fixture(scope="module")
def bom():
    return imp.read_netcdf_frames(_shuffled(BOM_FILES), "bom", progress=False)


# ----------------------------------------------------------------------------- FMI
def test_real_samples_present_and_small():
    assert len(FMI_FILES) == 3 and len(BOM_FILES) == 3
    total = sum(p.stat().st_size for p in REAL.rglob("*") if p.is_file())
    assert total < 6 * 1024**2  # all formats' samples together, well under 10 MB


def test_fmi_shape_times_units(fmi):
    da = fmi[fmi.attrs["intensity_variable"]]
    assert da.dims == ("time", "y", "x")
    assert da.shape == (3, 1226, 760)  # 760 wide x 1226 high (PGM header)
    assert da.dtype == np.float32
    assert da.attrs["units"] == "dBZ"
    np.testing.assert_array_equal(fmi["time"].values, FMI_TIMES)  # sorted
    assert fmi.attrs["institution"] == "Finnish Meteorological Institute"
    assert "licence" in fmi.attrs
    # header comments parsed into attributes
    assert fmi.attrs["pgm_projection_name"] == "SUOMI1"
    assert fmi.attrs["pgm_type"] == "stereographic"
    assert fmi.attrs["pgm_radar"].count(";") == 9  # ten radars listed
    assert processing_steps(fmi)[-1]["step"] == "import_image_frames"


def test_fmi_hand_checked_pixels(fmi):
    frame = fmi["intensity"].values[0]  # 2016-09-28 14:45
    # grey levels read with od (see module docstring); dBZ = 0.5 p - 32
    assert frame[600, 400] == 0.5 * 110 - 32 == 23.0
    assert frame[55, 382] == 0.5 * 100 - 32 == 18.0
    assert frame[0, 395] == 0.5 * 0 - 32 == -32.0
    assert frame[817, 268] == 0.5 * 162 - 32 == 49.0  # the frame's maximum, p = 162
    assert np.isnan(frame[0, 0])  # p = 255: no data
    assert np.nanmax(frame) == 49.0 and np.nanmin(frame) == -32.0


@pytest.mark.parametrize("k", [0, 2])
def test_fmi_whole_frame_equals_linear_map(fmi, k):
    p = _pgm_pixels(FMI_FILES[k]).astype(np.float64)
    expected = np.where(p == 255, np.nan, 0.5 * p - 32)
    np.testing.assert_array_equal(fmi["intensity"].values[k], expected)
    # no-data pixels are exactly the p = 255 ones (226,844 of them in frame 0)
    assert np.isnan(fmi["intensity"].values[k]).sum() == (p == 255).sum() > 0


def test_fmi_round_trip(fmi, tmp_path):
    path = write_radar(fmi, tmp_path / "fmi.nc")
    back = open_radar(path, chunk_time=None)
    np.testing.assert_array_equal(back["intensity"].values, fmi["intensity"].values)
    np.testing.assert_array_equal(back["time"].values, FMI_TIMES)
    assert back["intensity"].attrs["units"] == "dBZ"
    assert back.attrs["pgm_projection_name"] == "SUOMI1"
    assert processing_steps(back) == processing_steps(fmi)


# ----------------------------------------------------------------------------- BOM
def test_bom_shape_times_coords(bom):
    da = bom["intensity"]
    assert da.shape == (3, 512, 512)
    assert da.attrs["units"] == "mm/h"
    np.testing.assert_array_equal(bom["time"].values, BOM_TIMES)
    with netCDF4.Dataset(BOM_FILES[0]) as src:
        np.testing.assert_array_equal(bom["y"].values, src["y"][:])
        np.testing.assert_array_equal(bom["x"].values, src["x"][:])
        assert bom["y"].attrs["units"] == src["y"].units == "km"
        # the file's CF grid mapping `proj` becomes the data set's `crs`
        assert src["proj"].grid_mapping_name == "albers_conical_equal_area"
    assert bom["crs"].attrs["grid_mapping_name"] == "albers_conical_equal_area"
    assert bom["y"].values[0] == 128.0 and bom["x"].values[0] == -128.0  # kept as is
    assert da.attrs["grid_mapping"] == "crs"
    assert bom.attrs["licence"] == "http://www.bom.gov.au/other/copyright.shtml"


def test_bom_rate_is_ten_times_accumulation(bom):
    with netCDF4.Dataset(BOM_FILES[1]) as src:  # 10:06, accumulated 10:00-10:06
        var = src["precipitation"]
        var.set_auto_maskandscale(False)
        raw = var[:].astype(np.float64)
        scale = float(var.scale_factor)
        assert int(src["valid_time"][:]) - int(src["start_time"][:]) == 360  # 6 min
    rate = bom["intensity"].values[1]
    # raw 106 at (193, 238), the file's maximum: 106 * 0.05 = 5.3 mm in 6 min = 53 mm/h
    assert raw[193, 238] == 106
    assert rate[193, 238] == pytest.approx(53.0, abs=1e-5)
    np.testing.assert_allclose(rate, raw * scale * 10, rtol=1e-6, atol=1e-6)


def test_bom_configured_interval(tmp_path):
    # 6 minutes given explicitly: same as derived from start_time / valid_time
    fixed = imp.read_netcdf_frames(
        BOM_FILES[:1], "bom", accumulation_minutes=6, progress=False
    )
    auto = imp.read_netcdf_frames(BOM_FILES[:1], "bom", progress=False)
    np.testing.assert_array_equal(fixed["intensity"].values, auto["intensity"].values)
    # a 12-minute interval halves the rate
    twelve = imp.read_netcdf_frames(
        BOM_FILES[:1], "bom", accumulation_minutes=12, progress=False
    )
    np.testing.assert_allclose(
        twelve["intensity"].values, auto["intensity"].values / 2, rtol=1e-6
    )


def test_netcdf_rename_and_plain_variable(tmp_path):
    # a custom archive: dims (lat, lon), a length-1 time dim, reflectivity in dBZ
    import xarray as xr

    for i, minute in enumerate((10, 0)):
        values = np.full((1, 4, 5), 10.0 + i, dtype=np.float32)
        xr.Dataset(
            {"DBZH": (("t", "lat", "lon"), values, {"units": "dBZ"})},
            coords={
                "t": [np.datetime64(f"2020-01-01T00:{minute:02d}", "ns")],
                "lat": np.linspace(50, 51, 4),
                "lon": np.linspace(5, 6, 5),
            },
        ).to_netcdf(tmp_path / f"f{i}.nc")
    ds = imp.read_netcdf_frames(
        tmp_path,
        variable="DBZH",
        rename={"t": "time", "lat": "y", "lon": "x"},
        time_variable="t",
        progress=False,
    )
    assert ds["intensity"].shape == (2, 4, 5)
    assert ds["intensity"].attrs["units"] == "dBZ"
    # f1 (00:00, value 11) sorts before f0 (00:10, value 10)
    np.testing.assert_array_equal(ds["intensity"].values[:, 0, 0], [11.0, 10.0])
    np.testing.assert_allclose(ds["y"].values, np.linspace(50, 51, 4))


def test_import_archive_batches_round_trip(bom, tmp_path):
    written = imp.import_archive(
        BOM_FILES, "bom", tmp_path / "bom.nc", batch_size=2, progress=False
    )
    assert [p.name for p in written] == ["bom_00000.nc", "bom_00001.nc"]
    back = open_radar(tmp_path / "bom_*.nc", chunk_time=None)
    np.testing.assert_array_equal(back["time"].values, BOM_TIMES)
    np.testing.assert_array_equal(back["intensity"].values, bom["intensity"].values)
    assert back["intensity"].attrs["units"] == "mm/h"


# -------------------------------------------------------------------------- HKO-7
def _write_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(path)
    return path


def test_hko7_synthetic_pngs(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(3, 480, 480), dtype=np.uint8)
    frames[0, 0, 0], frames[0, 0, 1] = 0, 255
    # HKO-7 layout: YYYY/MM/DD/RADyymmddHHMMSS.png, written out of order
    for k in (2, 0, 1):
        minute = 6 * k
        _write_png(
            tmp_path / "2016" / "01" / "01" / f"RAD16010100{minute:02d}00.png",
            frames[k],
        )
    ds = imp.read_image_frames(tmp_path, "hko7", progress=False)
    np.testing.assert_array_equal(
        ds["time"].values,
        np.array(
            ["2016-01-01T00:00", "2016-01-01T00:06", "2016-01-01T00:12"], "M8[ns]"
        ),
    )
    assert ds["intensity"].shape == (3, 480, 480)
    # HKO-7 (Shi et al. 2017): dBZ = p / 255 * 70 - 10
    np.testing.assert_allclose(
        ds["intensity"].values, frames / 255.0 * 70.0 - 10.0, rtol=0, atol=1e-5
    )
    assert ds["intensity"].values[0, 0, 0] == pytest.approx(-10.0)  # p = 0
    assert ds["intensity"].values[0, 0, 1] == pytest.approx(60.0)  # p = 255, no NaN
    assert not np.isnan(ds["intensity"].values).any()
    assert ds.attrs["institution"] == "Hong Kong Observatory"


def test_hko7_custom_naming(tmp_path):
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    for name in ("201601010006.png", "201601010000.png"):
        _write_png(tmp_path / name, pixels)
    ds = imp.read_image_frames(
        sorted(tmp_path.glob("*.png")),
        "hko7",
        pattern="%Y%m%d%H%M.png",
        shape=(8, 8),
        progress=False,
    )
    assert ds["time"].values[1] == np.datetime64("2016-01-01T00:06")
    # p = 4 * 10 = 40 at (1, 2): 40 / 255 * 70 - 10 = 0.98039...
    assert ds["intensity"].values[0, 1, 2] == pytest.approx(40 / 255 * 70 - 10, 1e-6)


# ------------------------------------------------------------------------- patterns
@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("%Y%m%d%H%M_fmi", "201609281445_fmi.radar.pgm.gz", "2016-09-28T14:45"),
        ("RAD%y%m%d%H%M%S", "RAD090101123600.png", "2009-01-01T12:36"),
        ("%Y%j_%H%M", "radar_2016060_0130.png", "2016-02-29T01:30"),  # leap year
        (
            r"(?P<year>\d{4})-(?P<month>\d\d)-(?P<day>\d\d)T(?P<hour>\d\d)",
            "x_2020-05-06T07.png",
            "2020-05-06T07:00",
        ),  # noqa: E501
        ("2_%Y%m%d_%H%M%S", "2_20180616_100600.prcp-cscn.nc", "2018-06-16T10:06"),
    ],
)
def test_parse_time(pattern, name, expected):
    assert imp.parse_time(name, pattern) == np.datetime64(expected)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("radar.png", "neither strptime directives"),
        ("%Y%m%d", "lacks hour"),
        ("%Y%m%d%H%Q", "unsupported directive %Q"),
        (r"(?P<year>\d{4}", "not a valid regex"),
    ],
)
def test_bad_patterns_rejected(pattern, message):
    with pytest.raises(ValueError, match=message):
        imp.compile_time_pattern(pattern)


# --------------------------------------------------------------------------- errors
def test_unknown_preset_lists_names():
    with pytest.raises(ValueError, match=r"unknown importer preset 'nexrad'.*'bom'"):
        imp.get_preset("nexrad")
    assert set(imp.available_presets()) == {
        "hko7",
        "fmi",
        "bom",
        "odim",
        "knmi",
        "mch",
        "mrms",
        "sevir",
    }


def test_wrong_kind_of_preset():
    with pytest.raises(ValueError, match="needs a ImagePreset"):
        imp.read_image_frames(BOM_FILES, "bom", progress=False)
    with pytest.raises(TypeError, match="unknown ImagePreset option"):
        imp.import_archive(FMI_FILES, "fmi", "x.nc", variable="x")


def test_missing_file(tmp_path):
    missing = tmp_path / "201601010000_fmi.pgm.gz"
    with pytest.raises(FileNotFoundError, match="201601010000_fmi.pgm.gz"):
        imp.read_image_frames([FMI_FILES[0], missing], "fmi", progress=False)
    with pytest.raises(FileNotFoundError, match="no file matches"):
        imp.read_netcdf_frames(str(tmp_path / "*.nc"), "bom", progress=False)


def test_name_not_matching_pattern(tmp_path):
    bad = shutil.copy(FMI_FILES[0], tmp_path / "latest_fmi.pgm.gz")
    with pytest.raises(ValueError, match="cannot parse a time from file name 'latest"):
        imp.read_image_frames([FMI_FILES[1], bad], "fmi", progress=False)


def test_mismatched_sizes(tmp_path):
    a = _write_png(tmp_path / "201601010000.png", np.zeros((8, 8), np.uint8))
    b = _write_png(tmp_path / "201601010005.png", np.zeros((8, 6), np.uint8))
    with pytest.raises(ValueError, match=r"201601010005.png is 8 x 6 .* first file"):
        imp.read_image_frames([b, a], pattern="%Y%m%d%H%M", progress=False)
    with pytest.raises(ValueError, match=r"is 8 x 8 .* preset's shape is 480 x 480"):
        imp.read_image_frames(a, "hko7", pattern="%Y%m%d%H%M", progress=False)


def test_duplicate_times(tmp_path):
    a = _write_png(tmp_path / "a_201601010000.png", np.zeros((4, 4), np.uint8))
    b = _write_png(tmp_path / "b_201601010000.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"duplicate time .*a_2016.*b_2016"):
        imp.read_image_frames([a, b], pattern="%Y%m%d%H%M", progress=False)
    bom_copy = shutil.copy(BOM_FILES[0], tmp_path / "copy.nc")
    with pytest.raises(ValueError, match=r"duplicate time .*copy.nc"):
        imp.read_netcdf_frames([BOM_FILES[0], bom_copy], "bom", progress=False)


def test_unreadable_and_non_grey_files(tmp_path):
    junk = tmp_path / "201601010000.png"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(
        ValueError, match="cannot decode radar image .*201601010000.png"
    ):
        imp.read_image_frames(junk, pattern="%Y%m%d%H%M", progress=False)
    rgb = tmp_path / "201601010005.png"
    Image.new("RGB", (4, 4)).save(rgb)
    with pytest.raises(ValueError, match=r"201601010005.png is not an 8-bit grey"):
        imp.read_image_frames(rgb, pattern="%Y%m%d%H%M", progress=False)
    bad_nc = tmp_path / "bad.nc"
    bad_nc.write_bytes(b"junk")
    with pytest.raises(ValueError, match="cannot open netCDF file .*bad.nc"):
        imp.read_netcdf_frames(bad_nc, "bom", progress=False)


def test_missing_variable_lists_available():
    with pytest.raises(ValueError, match=r"no variable 'rain'.*'precipitation'"):
        imp.read_netcdf_frames(BOM_FILES[0], "bom", variable="rain", progress=False)
    with pytest.raises(ValueError, match=r"no time variable 'vt'.*'valid_time'"):
        imp.read_netcdf_frames(BOM_FILES[0], "bom", time_variable="vt", progress=False)


def test_plain_pgm_header_and_obstime_warning(tmp_path):
    # an uncompressed PGM whose header obstime disagrees with its name
    header = b"P5\n# obstime 201601010000\n# projection_name TEST\n3 2\n255\n"
    path = tmp_path / "201601010005_fmi.pgm"
    path.write_bytes(header + bytes([0, 64, 255, 10, 20, 30]))
    with pytest.warns(UserWarning, match="obstime 2016-01-01T00:00 differs"):
        ds = imp.read_image_frames(path, "fmi", grid_from_header=False, progress=False)
    assert ds.attrs["pgm_projection_name"] == "TEST"
    with pytest.raises(ValueError, match=r"201601010005_fmi.pgm: the PGM header lacks"):
        imp.read_image_frames(path, "fmi", progress=False)
    # 0.5 p - 32 for p = 0, 64, 255 (no data), 10, 20, 30
    np.testing.assert_array_equal(
        ds["intensity"].values[0], [[-32.0, 0.0, np.nan], [-27.0, -22.0, -17.0]]
    )
    assert ds["time"].values[0] == np.datetime64("2016-01-01T00:05")


def test_pixel_lut_rejects_bad_nodata():
    with pytest.raises(ValueError, match=r"integers in \[0, 255\], got 300"):
        imp.pixel_lut(1.0, 0.0, 300)
