"""End-to-end tests of `scripts/forecast.py`: real FMI / BOM frames, checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from forecast_helpers import REAL, moving_blob
from hydra import compose, initialize_config_dir
from support import load_script, tiny_run_overrides

from nowcast.data.georef import set_grid
from nowcast.data.importers import read_image_frames
from nowcast.data.preprocess import Preprocessor, preprocess_archive
from nowcast.data.radar import open_radar, write_radar
from nowcast.training.checkpoint import load_checkpoint
from nowcast.training.trainer import train

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = str(ROOT / "configs")
SHIPPED = ROOT / "checkpoints" / "lagrangian_convlstm_synthetic_long.pt"
FMI_TIMES = np.datetime64("2016-09-28T14:45") + np.arange(3) * np.timedelta64(5, "m")


forecast_script = load_script("scripts/forecast.py")


def _forecast(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="forecast", overrides=list(overrides))
    return forecast_script.run(cfg)


def test_fmi_sample_forecast_opens_with_times_units_and_coordinates(tmp_path):
    out = tmp_path / "fmi.nc"
    result = _forecast(
        "forecaster=persistence",
        "preprocess=hko",
        f"input={REAL / 'fmi'}",
        f"output={out}",
        "input_len=3",
        "n_steps=4",
    )
    with xr.open_dataset(out) as ds:
        five = np.timedelta64(5, "m")
        issue = FMI_TIMES[-1]  # the newest frame, 14:55
        assert ds["forecast_reference_time"].values == issue
        expected = (issue + five * np.arange(1, 5)).astype("datetime64[ns]")
        np.testing.assert_array_equal(ds["time"].values, expected)  # 15:00 .. 15:15
        np.testing.assert_array_equal(
            ds["forecast_period"].values, (five * np.arange(1, 5)).astype("m8[ns]")
        )
        assert ds["intensity"].attrs["units"] == "dBZ"
        assert (
            ds["intensity"].attrs["standard_name"] == "equivalent_reflectivity_factor"
        )
        assert ds.attrs["Conventions"] == "CF-1.8"
        assert ds.attrs["forecaster"] == "Persistence"
        assert ds.attrs["issue_time"] == "2016-09-28T14:55:00Z"
        assert open_radar(out)["intensity"].dims == ("time", "y", "x")  # a radar file
        raw = read_image_frames(REAL / "fmi", "fmi", progress=False)
        # FMI frames are 1226 x 760 (pixel-index coordinates unless georeferenced);
        # preprocess=hko keeps columns 215..544 and rows 448..777 and resizes them to
        # 100 cells of 3.3 pixels whose outer edges are those of the crop
        cells = np.arange(100) + 0.5
        for axis, first in (("x", 215), ("y", 448)):
            coord = raw[axis].values
            pixel = coord[1] - coord[0]
            expected = coord[first] - pixel / 2 + 3.3 * pixel * cells
            np.testing.assert_allclose(ds[axis].values, expected)
        # persistence: every lead is the newest processed frame, back in dBZ (70 P - 10)
        pre = Preprocessor(-10.0, 60.0, 330, 10, 100, noise_mask=False, progress=False)
        last = pre.transform(raw.isel(time=[-1]))["intensity"].values[0] * 70.0 - 10.0
        for lead in range(4):
            np.testing.assert_allclose(ds["intensity"].values[lead], last, atol=1e-4)
    assert result.picture == tmp_path / "fmi.png" and result.picture.stat().st_size > 0


def test_georeferenced_input_keeps_the_grid_mapping(tmp_path):
    raw = read_image_frames(REAL / "fmi", "fmi", progress=False).isel(
        y=slice(400, 480), x=slice(300, 380)
    )
    # 1 km cells of a polar stereographic grid (FMI's SUOMI1 style), centres in metres
    x = 100_500.0 + 1000.0 * np.arange(80)
    y = 7_000_500.0 - 1000.0 * np.arange(80)
    crs = "+proj=stere +lat_0=90 +lat_ts=60 +lon_0=25 +datum=WGS84 +units=m"
    write_radar(set_grid(raw, x, y, crs), tmp_path / "fmi_georef.nc")
    _forecast(
        "forecaster=persistence",
        "preprocess=hko",
        "preprocess.crop_size=60",
        "preprocess.disk_radius=2",
        "preprocess.resize_to=20",
        f"input={tmp_path / 'fmi_georef.nc'}",
        f"output={tmp_path / 'out.nc'}",
        "input_len=2",
        "n_steps=2",
        "plot=false",
    )
    with xr.open_dataset(tmp_path / "out.nc") as ds:
        assert ds["intensity"].attrs["grid_mapping"] == "crs"
        assert ds["crs"].attrs["grid_mapping_name"] == "polar_stereographic"
        assert ds["x"].attrs["standard_name"] == "projection_x_coordinate"
        # crop 60 of 80 starts at cell 10: x edges 110 km .. 170 km, 3 km cells
        np.testing.assert_allclose(
            ds["x"].values, 110_000.0 + 3000.0 * (np.arange(20) + 0.5)
        )
        np.testing.assert_allclose(
            ds["y"].values, 6_991_000.0 - 3000.0 * (np.arange(20) + 0.5)
        )
    assert not (tmp_path / "out.png").exists()


def test_bom_rain_rates_with_rover(tmp_path):
    _forecast(
        "forecaster=rover1",
        "preprocess=bom",
        f"input={REAL / 'bom'}",
        f"output={tmp_path / 'bom.nc'}",
        "input_len=3",
        "n_steps=2",
    )
    with xr.open_dataset(tmp_path / "bom.nc") as ds:
        assert ds["intensity"].attrs["units"] == "mm/h"
        assert ds["intensity"].attrs["standard_name"] == "rainfall_rate"
        assert ds.attrs["forecaster"] == "ROVER1"
        assert ds.attrs["issue_time"] == "2018-06-16T10:12:00Z"
        assert str(ds["time"].values[-1])[:16] == "2018-06-16T10:24"
        values = ds["intensity"].values
        assert (
            np.isfinite(values).all() and 0.0 <= values.min() and values.max() <= 50.0
        )
        assert '"_target_": "nowcast.baselines.Rover"' in ds.attrs["forecaster_config"]
        # BOM's 512 x 512 grid of 0.5 km cells (x, y in km, Albers grid mapping):
        # crop 330 from cell 91, 100 cells of 1.65 km whose outer edges are the crop's
        assert ds["crs"].attrs["grid_mapping_name"] == "albers_conical_equal_area"
        assert ds["x"].attrs["units"] == "km"
        np.testing.assert_allclose(
            ds["x"].values, -128.0 + 91 * 0.5 - 0.25 + 1.65 * (np.arange(100) + 0.5)
        )


def test_cadence_and_forecaster_errors(tmp_path):
    fmi = [f"input={REAL / 'fmi'}", f"output={tmp_path / 'x.nc'}", "preprocess=hko"]
    with pytest.raises(ValueError, match="are 5 min apart .* frame_minutes=5"):
        _forecast("forecaster=persistence", "input_len=3", "frame_minutes=6", *fmi)
    with pytest.raises(ValueError, match="holds 3 frame"):
        _forecast("forecaster=persistence", "input_len=4", *fmi)
    with pytest.raises(ValueError, match="exactly one of ckpt_path"):
        _forecast(*fmi)
    with pytest.raises(ValueError, match=r"unknown forecaster 'rover9'"):
        _forecast("forecaster=rover9", *fmi)
    with pytest.raises(ValueError, match="pass preprocess=<hko|bom|synthetic>"):
        _forecast("forecaster=persistence", f"input={REAL / 'fmi'}")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A one-step training on 60 raw frames preprocessed to 16x16: (last.pt, raw)."""
    root = tmp_path_factory.mktemp("trained")
    raw = write_radar(moving_blob(n_frames=60), root / "raw.nc")
    processed = preprocess_archive(
        raw, root / "processed.nc", fit_on="all", progress=False, crop_size=32,
        disk_radius=2, resize_to=16, noise_mask=False,
    )  # fmt: skip
    overrides = [
        *tiny_run_overrides(processed), "+data.datasets.block_len=10",
        "trainer.max_steps=1", "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1", "logging.progress_bar=false",
        "logging.print_summary=false", "logging.tensorboard=false",
        "evaluate_after_training=false",
    ]  # fmt: skip
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    train(cfg, run_dir=root / "run")
    return root / "run" / "checkpoints" / "last.pt", raw


def test_trained_checkpoint_carries_its_preprocessing(trained, tmp_path):
    ckpt_path, raw = trained
    state = load_checkpoint(ckpt_path)["preprocessing"]
    assert state["params"]["crop_size"] == [32, 32] and state["frame_minutes"] == 6.0
    assert "processed_preprocessor.json" in state["origin"]
    result = _forecast(
        f"ckpt_path={ckpt_path}", f"input={raw}", f"output={tmp_path / 'f.nc'}"
    )
    ds = result.dataset
    assert ds.sizes == {"time": 3, "y": 16, "x": 16}  # data.output_len, 16x16 frames
    assert ds.attrs["preprocessing"].startswith("the checkpoint (from the fitted")
    assert ds.attrs["forecaster"] == "EncoderForecaster"
    assert len(ds.attrs["checkpoint_sha256"]) == 64
    last = np.datetime64("2015-06-01T05:54")  # frame 60 of the day
    assert ds["forecast_reference_time"].values == last
    # raw x = 0..39, crop 32 from column 4, 2-pixel cells: centres 4.5, 6.5, ...
    np.testing.assert_allclose(ds["x"].values, 4.5 + 2.0 * np.arange(16))
    assert ds["intensity"].attrs["units"] == "dBZ"
    assert -10.0 <= float(ds["intensity"].min()) <= float(ds["intensity"].max()) <= 60.0


def test_trained_checkpoint_refuses_what_it_cannot_forecast(trained, tmp_path):
    ckpt_path, raw = trained
    out = f"output={tmp_path / 'f.nc'}"
    with pytest.raises(
        ValueError, match="in mm/h but the forecaster was trained on dBZ"
    ):
        _forecast(f"ckpt_path={ckpt_path}", f"input={REAL / 'bom'}", out)
    odd = Preprocessor(-10.0, 60.0, 30, 0, 15, noise_mask=False, progress=False)
    odd.save(tmp_path / "odd_preprocessor.json")  # 15 x 15 frames, patch size 4
    with pytest.raises(ValueError, match=r"1x15x15 .* divisible by its patch size 4"):
        _forecast(
            f"ckpt_path={ckpt_path}",
            f"input={raw}",
            out,
            f"preprocessor={tmp_path / 'odd_preprocessor.json'}",
        )


def test_shipped_checkpoint_without_state_uses_the_synthetic_preprocessing(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # its training data (data_cache/...) are not here
    assert torch.load(SHIPPED, weights_only=False).get("preprocessing") is None
    raw = moving_blob(n_frames=5, size=180)
    write_radar(raw, tmp_path / "raw.nc")
    result = _forecast(
        f"ckpt_path={SHIPPED}", "input=raw.nc", "output=shipped.nc", "n_steps=2"
    )
    ds = result.dataset
    assert ds.sizes == {"time": 2, "y": 64, "x": 64}  # crop 165 -> 64 (synthetic)
    assert "DEFAULT_PREPROCESS" in ds.attrs["preprocessing"]
    assert "noise mask not applied" in ds.attrs["preprocessing_notes"]
    assert (
        ds.attrs["training_command"]
        == "python scripts/train.py +experiment=synthetic_long"
    )
    assert (tmp_path / "shipped.nc").is_file() and (tmp_path / "shipped.png").is_file()
