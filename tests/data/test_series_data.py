"""Area-mean series of a region through a radar archive's field windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from nowcast.data.physical import GreyScale
from nowcast.data.radar import make_radar_dataset, write_radar
from nowcast.data.series import area_series, radar_series_datasets, region_mask

RATE = GreyScale("mm/h", 0.0, 100.0)  # grey P -> 100 P mm/h, no Z-R relation


def test_region_from_box_mask_or_whole_frame(tmp_path):
    box = region_mask((4, 5), box=(1, 3, 0, 2))
    assert box.sum() == 4 and box[1:3, 0:2].all()
    assert region_mask((4, 5)).all()
    mask = np.zeros((4, 5), bool)
    mask[0, 4] = True
    np.save(tmp_path / "m.npy", mask)
    assert np.array_equal(region_mask((4, 5), mask=tmp_path / "m.npy"), mask)
    with pytest.raises(
        ValueError, match=r"box \(0, 5, 0, 2\) must satisfy .* 4x5 frame"
    ):
        region_mask((4, 5), box=(0, 5, 0, 2))
    with pytest.raises(ValueError, match=r"must be \(H, W\) = \(4, 5\), got \(5, 4\)"):
        region_mask((4, 5), mask=np.ones((5, 4), bool))
    with pytest.raises(ValueError, match="selects no pixel"):
        region_mask((4, 5), mask=np.zeros((4, 5), bool))


def test_area_series_by_hand():
    grey = np.zeros((1, 2, 3), np.float32)
    grey[0, 0] = [0.001, 0.004, 0.02]  # 0.1, 0.4, 2 mm/h
    grey[0, 1, 0] = 0.5  # 50 mm/h (outside the region below)
    region = np.array([[True, True, True], [False, False, False]])
    out = area_series(grey, region, RATE, wet_pixel_threshold=0.5)
    # mean (0.1 + 0.4 + 2) / 3 = 0.8333 mm/h; one of three pixels >= 0.5 mm/h
    np.testing.assert_allclose(out, [[2.5 / 3, 1 / 3]], rtol=1e-6)
    as_tensor = area_series(torch.from_numpy(grey), torch.from_numpy(region), RATE)
    torch.testing.assert_close(as_tensor, torch.from_numpy(out))


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """One day (240 frames, 6 min) of 8x8 rain-rate fields: frame t is uniform t/1000."""
    t = np.arange(240, dtype=np.float32)
    frames = np.broadcast_to((t / 1000)[:, None, None], (240, 8, 8)).copy()
    frames[:, 0, 0] = 1.0  # a clutter pixel, masked out below
    times = np.datetime64("2015-06-01T00:00") + np.arange(240) * np.timedelta64(6, "m")
    ds = make_radar_dataset(frames, times, units="1")
    noise = np.zeros((8, 8), np.uint8)
    noise[0, 0] = 1
    ds["noise_mask"] = xr.DataArray(noise, dims=("y", "x"))
    ds.attrs.update(zmin=0.0, zmax=100.0, source_units="mm/h")
    return write_radar(ds, tmp_path_factory.mktemp("series") / "processed.nc")


def test_series_windows_are_the_field_windows(archive):
    sets = radar_series_datasets(archive, input_len=3, output_len=4, box=(0, 4, 0, 4))
    train = sets["train"]
    assert train.region.sum() == 15  # the 4x4 box less the clutter pixel
    inputs, targets = train[5]
    start = int(train.starts[5])
    # uniform frame t: t / 1000 grey = t / 10 mm/h everywhere; wet (>= 0.5) from t = 5
    want = (start + np.arange(7)) / 10
    np.testing.assert_allclose(inputs[:, 0], want[:3], rtol=1e-5)
    np.testing.assert_allclose(targets[:, 0], want[3:], rtol=1e-5)
    np.testing.assert_array_equal(inputs[:, 1], (want[:3] >= 0.5).astype(np.float32))
    # the same numbers as the area mean of the field window itself
    field_in, field_out = train.field[5]
    means = area_series(
        field_out[:, 0], torch.from_numpy(train.region), train.field.scale
    )
    torch.testing.assert_close(means[:, 0], targets[:, 0])
    # the splits of one file share one series: the file is read once, not per split
    assert sets["val"].series is train.series and sets["test"].series is train.series


def test_extra_series_are_appended_to_the_inputs(archive):
    extra = np.arange(240, dtype=np.float32)[:, None] * 2  # e.g. a gauge, one per frame
    sets = radar_series_datasets(archive, input_len=3, output_len=4, extra=extra)
    train = sets["train"]
    inputs, targets = train[0]
    start = int(train.starts[0])
    assert train.n_features == 3 and inputs.shape == (3, 3) and targets.shape == (4, 1)
    np.testing.assert_array_equal(inputs[:, 2], 2 * (start + np.arange(3)))
    with pytest.raises(ValueError, match="extra series must have one row per frame"):
        radar_series_datasets(archive, input_len=3, output_len=4, extra=extra[:10])
