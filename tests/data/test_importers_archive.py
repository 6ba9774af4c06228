"""Tests of import_archive (streamed, parallel, packed) and scripts/import_radar.py over
every preset's sample, plus BOM accumulations of any interval read from the file."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pytest
from PIL import Image

from nowcast.data import importers as imp
from nowcast.data.radar import open_radar, processing_steps

ROOT = Path(__file__).resolve().parents[2]
REAL = Path(__file__).parent / "real"


def _pngs(folder: Path, n: int, shape=(12, 10)) -> tuple[list[Path], np.ndarray]:
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n):  # RADyymmddHHMMSS, 6 minutes apart
        minutes = 6 * k
        name = f"RAD160101{minutes // 60:02d}{minutes % 60:02d}00.png"
        Image.fromarray(frames[k], mode="L").save(folder / name)
        paths.append(folder / name)
    return paths, frames


def test_import_archive_streams_packed_grey_levels(tmp_path):
    paths, frames = _pngs(tmp_path / "png", 37)
    # chunk_time=8: five appended groups (8, 8, 8, 8, 5 frames) into one file
    [out] = imp.import_archive(
        paths[::-1],
        "hko7",
        tmp_path / "hko.nc",
        shape=(12, 10),
        chunk_time=8,
        progress=False,
    )
    back = open_radar(out, chunk_time=None)
    assert back.sizes["time"] == 37
    np.testing.assert_array_equal(
        back["time"].values,
        np.datetime64("2016-01-01T00:00", "ns")
        + np.arange(37) * np.timedelta64(6, "m"),
    )
    assert back["intensity"].dtype == np.float32
    assert back["intensity"].encoding["dtype"] == np.uint8  # grey levels stored as is
    # HKO-7 (Shi et al. 2017): dBZ = p / 255 * 70 - 10, to float32 precision
    np.testing.assert_allclose(
        back["intensity"].values, frames / 255 * 70 - 10, rtol=0, atol=1e-5
    )
    assert back.attrs["institution"] == "Hong Kong Observatory"
    step = processing_steps(back)[-1]
    assert step["step"] == "import_image_frames" and step["n_files"] == 37


def test_import_archive_threads_parts_and_fmi_nodata(tmp_path):
    fmi = sorted((REAL / "fmi").glob("*.pgm.gz"))
    direct = imp.read_frames(fmi, "fmi", progress=False)
    written = imp.import_archive(
        fmi,
        "fmi",
        tmp_path / "fmi.nc",
        batch_size=2,
        workers=2,
        scheduler="threads",
        progress=False,
    )
    assert [p.name for p in written] == ["fmi_00000.nc", "fmi_00001.nc"]
    back = open_radar(tmp_path / "fmi_*.nc", chunk_time=None)
    # 0.5 p - 32 is exact in float32; p = 255 -> NaN (the packed _FillValue)
    np.testing.assert_array_equal(back["intensity"].values, direct["intensity"].values)
    np.testing.assert_allclose(back["x"].values, direct["x"].values)
    assert "stere" in back["crs"].attrs["proj4"]


def test_import_archive_rejects_files_out_of_time_order(tmp_path):
    bom = sorted((REAL / "bom").glob("*.nc"))
    renamed = [
        shutil.copy(bom[0], tmp_path / "b.nc"),
        shutil.copy(bom[1], tmp_path / "a.nc"),
    ]
    # no file-name pattern for bom: files are appended by name, a.nc (10:06) first
    with pytest.raises(
        ValueError, match=r"b.nc holds time 2018-06-16T10:00.*not after"
    ):
        imp.import_archive(
            renamed, "bom", tmp_path / "x.nc", chunk_time=1, progress=False
        )
    assert not list(tmp_path.glob(".x.nc*"))  # the partial file is removed
    # read_frames sorts by the times in the files instead
    ds = imp.read_frames(renamed, "bom", progress=False)
    assert ds["time"].values[0] == np.datetime64("2018-06-16T10:00")


def test_bom_interval_read_from_each_file(tmp_path):
    src = sorted((REAL / "bom").glob("*.nc"))[1]  # 10:06, accumulated 10:00-10:06
    twelve = Path(shutil.copy(src, tmp_path / "2_20180616_100600.prcp-cscn.nc"))
    with netCDF4.Dataset(twelve, "a") as nc:
        nc["start_time"][...] = nc["start_time"][...] - 360  # start 6 minutes earlier
    six = imp.read_frames(src, "bom", progress=False)["intensity"].values
    rate = imp.read_frames(twelve, "bom", progress=False)["intensity"].values
    # the same amount over 12 minutes instead of 6: half the rate
    np.testing.assert_allclose(rate, six / 2, rtol=1e-6)


@pytest.mark.parametrize(
    ("preset", "folder", "overrides", "shape"),
    [
        ("fmi", "fmi", [], (3, 1226, 760)),
        ("bom", "bom", ["+options.name=rain_rate"], (3, 512, 512)),
        ("odim", "odim", [], (2, 2200, 1900)),
        ("mch", "mch", [], (3, 640, 710)),
    ],
)
def test_import_script_every_sample(tmp_path, preset, folder, overrides, shape):
    from hydra import compose, initialize_config_dir

    spec = importlib.util.spec_from_file_location(
        "import_radar", ROOT / "scripts" / "import_radar.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with initialize_config_dir(
        config_dir=str(ROOT / "configs" / "importer"), version_base=None
    ):
        cfg = compose(
            "import_radar",
            overrides=[
                f"preset={preset}",
                f"input={REAL / folder}",
                f"output={tmp_path / 'out.nc'}",
                "progress=false",
                "workers=1",
                *overrides,
            ],
        )
    [written] = module.run(cfg)
    back = open_radar(written, chunk_time=None)
    name = "rain_rate" if overrides else "intensity"  # +options.name renames it
    assert back.attrs["intensity_variable"] == name
    assert back[name].shape == shape
    assert back.attrs["importer_preset"] == preset
    assert "crs" in back  # every sample here is georeferenced


def test_uncompressed_image_import_takes_the_frame_path(tmp_path):
    paths, frames = _pngs(tmp_path / "png", 5)
    [out] = imp.import_archive(
        paths, "hko7", tmp_path / "raw.nc", shape=(12, 10), complevel=0, progress=False
    )
    back = open_radar(out, chunk_time=None)
    assert back["intensity"].encoding["dtype"] == np.float32  # float32, no packing
    assert "scale_factor" not in back["intensity"].encoding
    np.testing.assert_array_equal(
        back["intensity"].values, imp.pixel_lut(70 / 255, -10.0)[frames]
    )
