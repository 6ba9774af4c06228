"""Tests of nowcast.data.preprocess: every step against hand-computed values."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import xarray as xr
from support import SAME_GEOMETRY

from nowcast.data.preprocess import (
    MinMaxNormalizer,
    NoiseMask,
    Preprocessor,
    center_crop,
    disk_filter,
    disk_kernel,
    minmax_denormalize,
    minmax_normalize,
    monthly_means,
    patchify,
    preprocess_archive,
    resize,
    unpatchify,
)
from nowcast.data.radar import make_radar_dataset, processing_steps, write_radar
from nowcast.data.synthetic import make_synthetic_radar

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- fixtures (local)
@pytest.fixture(scope="module")
def small_synthetic() -> xr.Dataset:
    """2 days x 80 frames of 96x96 synthetic radar (loaded, ~0.5 s)."""
    return make_synthetic_radar(2, frames_per_day=80, size=96, seed=3).load()


def _to_grey(v: np.ndarray) -> np.ndarray:
    return minmax_normalize(np.nan_to_num(v, nan=-10.0), -10.0, 60.0)


def _constant_radar(value: float = 25.0, n: int = 4, size: int = 20) -> xr.Dataset:
    times = np.datetime64("2013-06-01T00:00") + np.arange(n) * np.timedelta64(6, "m")
    return make_radar_dataset(
        np.full((n, size, size), value, dtype=np.float32), times, units="dBZ"
    )


# ---------------------------------------------------------------- normalisation
def test_minmax_normalize_known_values():
    z = np.array([-20.0, -10.0, 25.0, 60.0, 80.0])
    # (Z + 10) / 70, clipped: -20 -> 0, -10 -> 0, 25 -> 35/70, 60 -> 1, 80 -> 1
    np.testing.assert_allclose(minmax_normalize(z, -10, 60), [0.0, 0.0, 0.5, 1.0, 1.0])
    # HKO-7 pixel 51: dBZ = 51 / 255 * 70 - 10 = 4; P = 14 / 70 = 0.2 = 51 / 255
    dbz = 51 / 255 * 70 - 10
    assert minmax_normalize(np.float64(dbz), -10, 60) == pytest.approx(51 / 255)
    # torch tensors keep their type
    t = minmax_normalize(torch.tensor([25.0]), -10, 60)
    assert isinstance(t, torch.Tensor) and t.item() == pytest.approx(0.5)


def test_minmax_denormalize_round_trip_and_bad_range():
    z = np.linspace(-10, 60, 15)
    np.testing.assert_allclose(
        minmax_denormalize(minmax_normalize(z, -10, 60), -10, 60), z, atol=1e-12
    )
    assert minmax_denormalize(0.5, -10, 60) == pytest.approx(25.0)
    with pytest.raises(ValueError, match="zmin < zmax"):
        minmax_normalize(z, 60, -10)


def test_minmax_normalizer_fit_save_load(tmp_path):
    train = np.array([[[-5.0, 3.0], [7.0, np.nan]]])
    norm = MinMaxNormalizer().fit(train)
    # nan-min / nan-max of the training data: -5 and 7
    assert (norm.zmin, norm.zmax) == (-5.0, 7.0)
    assert norm.transform(np.array(1.0)) == pytest.approx(0.5)  # (1 + 5) / 12
    assert norm.inverse_transform(np.array(0.25)) == pytest.approx(-2.0)
    half = MinMaxNormalizer(zmin=0.0).fit(train)  # only zmax fitted
    assert (half.zmin, half.zmax) == (0.0, 7.0)
    loaded = MinMaxNormalizer.load(norm.save(tmp_path / "norm.json"))
    assert loaded.to_dict() == norm.to_dict()
    with pytest.raises(RuntimeError, match="not fitted"):
        MinMaxNormalizer().transform(train)


# ---------------------------------------------------------------- crop
def test_center_crop_indices_paper_geometry():
    frames = np.arange(480 * 480, dtype=np.int64).reshape(1, 480, 480)
    out = center_crop(frames, 330)
    # (480 - 330) // 2 = 75: rows / columns 75..404 are kept
    assert out.shape == (1, 330, 330)
    assert out[0, 0, 0] == 75 * 480 + 75
    assert out[0, -1, -1] == 404 * 480 + 404
    # odd margin: 5 -> 2 starts at (5 - 2) // 2 = 1; non-square size (h, w)
    small = np.arange(25).reshape(5, 5)
    np.testing.assert_array_equal(center_crop(small, (2, 3)), [[6, 7, 8], [11, 12, 13]])
    with pytest.raises(ValueError, match="larger than the frame"):
        center_crop(small, 6)


# ---------------------------------------------------------------- disk filter
def test_disk_kernel_known_values():
    k1 = disk_kernel(1)
    # radius 1: the centre and its 4 neighbours, 1/5 each
    np.testing.assert_allclose(k1, np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]]) / 5)
    k10 = disk_kernel(10)
    # Gauss circle problem: 317 lattice points with x^2 + y^2 <= 100
    assert k10.shape == (21, 21)
    assert np.count_nonzero(k10) == 317
    assert k10.sum() == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="non-negative integer"):
        disk_kernel(2.5)


@pytest.mark.parametrize("boundary", ["reflect", "nearest", "constant"])
def test_disk_filter_impulse_and_constant(boundary):
    frames = np.zeros((2, 21, 21), dtype=np.float32)
    frames[0, 10, 10] = 1.0
    out = disk_filter(frames, radius=2, boundary=boundary)
    # an impulse spreads into the (symmetric) kernel: 1/13 on the 13 disk pixels
    np.testing.assert_allclose(out[0, 8:13, 8:13], disk_kernel(2), atol=1e-7)
    assert out[0].sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(out[1], 0.0)  # frames are filtered independently
    const = disk_filter(np.full((3, 15, 17), 0.3, np.float32), 10, boundary)
    if boundary == "constant":
        # zeros outside: a corner pixel with r=1 keeps 3 of its 5 disk pixels
        corner = disk_filter(np.ones((4, 4), np.float32), 1, boundary)[0, 0]
        assert corner == pytest.approx(3 / 5)
    else:
        np.testing.assert_allclose(const, 0.3, atol=1e-6)


def test_disk_filter_bad_boundary_lists_names():
    with pytest.raises(ValueError, match=r"available: \['constant', 'nearest'"):
        disk_filter(np.zeros((4, 4)), 1, boundary="wrap")


# ---------------------------------------------------------------- resize
def test_resize_block_means_and_constants():
    x = np.tile(np.arange(12.0), (6, 1))  # linear along x
    # factor 3 along x: means of [0, 1, 2], [3, 4, 5], ... = 1, 4, 7, 10; factor 2 in y
    np.testing.assert_allclose(
        resize(x, (3, 4)), np.tile([1.0, 4.0, 7.0, 10.0], (3, 1))
    )
    out = resize(np.full((2, 5, 330, 330), 0.7, np.float32), 100)  # paper: 330 -> 100
    assert out.shape == (2, 5, 100, 100) and out.dtype == np.float32
    np.testing.assert_allclose(out, 0.7, atol=1e-6)


def test_resize_matches_opencv_area_and_upsamples_linearly():
    rng = np.random.default_rng(0)
    x = rng.random((3, 330, 330)).astype(np.float32)
    ref = np.stack([cv2.resize(f, (100, 100), interpolation=cv2.INTER_AREA) for f in x])
    np.testing.assert_allclose(resize(x, 100), ref, atol=1e-5)
    # upsampling 2 -> 4: half-pixel centres at -0.25, 0.25, 0.75, 1.25 (clamped)
    np.testing.assert_allclose(
        resize(np.array([[0.0, 1.0]]), (1, 4))[0], [0, 0.25, 0.75, 1]
    )


# ---------------------------------------------------------------- noise mask
def test_monthly_means_known_values():
    times = np.array(
        ["2013-05-31T23:54", "2013-06-01T00:00", "2013-06-01T00:06"],
        dtype="datetime64[ns]",
    )
    frames = np.array([[[1.0]], [[2.0]], [[np.nan]]])
    means, months = monthly_means(frames, times)
    # May: 1; June: mean of 2 and (no data) = 2
    np.testing.assert_array_equal(months, np.array(["2013-05", "2013-06"], "M8[M]"))
    np.testing.assert_allclose(means[:, 0, 0], [1.0, 2.0])


def test_noise_mask_finds_synthetic_clutter(small_synthetic, tmp_path):
    ds = small_synthetic
    truth = ds["clutter_mask"].values
    nm = NoiseMask().fit(ds, transform=_to_grey)
    tp = np.sum(nm.mask & truth)
    precision, recall = tp / nm.mask.sum(), tp / truth.sum()
    assert truth.sum() >= 20  # enough clutter for the scores to mean something
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)
    # apply zeroes exactly the masked pixels
    frames = np.ones((2, 96, 96), np.float32)
    applied = nm.apply(frames)
    assert applied[:, nm.mask].max() == 0 and applied[:, ~nm.mask].min() == 1
    loaded = NoiseMask.load(nm.save(tmp_path / "mask.nc"))
    np.testing.assert_array_equal(loaded.mask, nm.mask)
    assert loaded.params() == nm.params()
    with pytest.raises(ValueError, match="do not match the mask"):
        nm.apply(np.ones((2, 10, 10)))


def test_noise_mask_masks_nothing_without_clutter():
    ds = make_synthetic_radar(2, 80, 96, seed=3, clutter_fraction=0.0)
    assert not ds["clutter_mask"].values.any()
    nm = NoiseMask().fit(ds, transform=_to_grey)
    # heavy-rain pixels form a continuum of levels, not a separate cluster
    assert nm.mask.sum() == 0 and nm.noise_clusters == []


def test_noise_mask_input_checks():
    with pytest.raises(ValueError, match="n_clusters must be an integer >= 2"):
        NoiseMask(n_clusters=1)
    with pytest.raises(RuntimeError, match="not fitted"):
        NoiseMask().apply(np.ones((3, 3)))
    with pytest.raises(ValueError, match="times are required"):
        NoiseMask().fit(np.ones((2, 3, 3)))


# ---------------------------------------------------------------- Preprocessor
def test_preprocessor_constant_field_and_nan_fill():
    ds = _constant_radar(25.0, size=20)
    ds["intensity"][:, 10, 10] = np.nan
    pre = Preprocessor(
        crop_size=10, disk_radius=1, resize_to=None, noise_mask=False, progress=False
    )
    out = pre.fit_transform(ds)
    p = out["intensity"].values
    assert p.dtype == np.float32 and p.shape == (4, 10, 10)
    # 25 dBZ -> (25 + 10) / 70 = 0.5. The NaN pixel (crop index (5, 5)) carries no
    # weight in the disk mean: its 4 neighbours stay 0.5 (a plain disk mean of the
    # zmin fill would give them (4 * 0.5 + 0) / 5 = 0.4); it is itself unobserved
    # (grey 0, coverage 0) in every frame.
    assert p[:, 4, 5] == pytest.approx(0.5)
    assert p[0, 0, 0] == pytest.approx(0.5)
    assert (p[:, 5, 5] == 0).all()
    assert not np.isnan(p).any()
    cov = out["coverage"].values
    assert cov.dtype == np.uint8 and cov.shape == p.shape
    assert (cov[:, 5, 5] == 0).all() and cov.sum() == cov.size - 4
    steps = processing_steps(out)
    assert steps[0] == {"step": "fill_nan", "value": -10.0, "n_filled": 4}
    assert steps[-1]["step"] == "coverage"
    assert steps[-1]["n_unobserved_processed"] == 4
    assert out["noise_mask"].values.sum() == 0  # masking disabled: all zeros
    assert out["noise_mask"].dims == ("y", "x")


def test_preprocessor_output_contract_and_provenance(small_synthetic):
    pre = Preprocessor(crop_size=66, disk_radius=3, resize_to=32, progress=False)
    out = pre.fit_transform(small_synthetic)
    da = out["intensity"]
    assert da.dims == ("time", "y", "x") and da.shape == (160, 32, 32)
    assert da.attrs["units"] == "1" and da.attrs["source_units"] == "dBZ"
    assert (da.attrs["zmin"], da.attrs["zmax"]) == (-10.0, 60.0)
    assert 0.0 <= float(da.min()) and float(da.max()) <= 1.0
    names = [s["step"] for s in processing_steps(out)]
    assert names[:6] == [
        "fill_nan",
        "minmax_normalize",
        "noise_mask",
        "center_crop",
        "disk_filter",
        "resize",
    ]
    crop = next(s for s in processing_steps(out) if s["step"] == "center_crop")
    assert crop["offset"] == [15, 15]  # (96 - 66) // 2
    assert out["noise_mask"].values.sum() > 0  # clutter blobs reach the output grid
    np.testing.assert_array_equal(out["time"].values, small_synthetic["time"].values)


def test_preprocessor_rescales_motion():
    ds = _constant_radar(0.0, n=3, size=80)
    ds["motion_u"] = (("time", "y", "x"), np.full((3, 80, 80), 2.0, np.float32))
    ds["motion_v"] = (("y", "x"), np.full((80, 80), -1.0, np.float32))
    pre = Preprocessor(
        crop_size=60,
        disk_radius=2,
        resize_to=(30, 20),
        noise_mask=False,
        progress=False,
    )
    out = pre.fit_transform(ds)
    # 2 raw px/step over a 60-px crop shown on 20 columns: 2 * 20 / 60 = 2/3
    np.testing.assert_allclose(out["motion_u"].values, 2 / 3, rtol=1e-6)
    # -1 raw px/step, 60 rows -> 30 rows: -0.5
    assert out["motion_v"].dims == ("y", "x")
    np.testing.assert_allclose(out["motion_v"].values, -0.5, rtol=1e-6)


def test_preprocessor_save_load_and_errors(small_synthetic, tmp_path):
    pre = Preprocessor(crop_size=66, disk_radius=3, resize_to=32, progress=False)
    with pytest.raises(RuntimeError, match="not fitted"):
        pre.transform(small_synthetic)
    pre.fit(small_synthetic.isel(time=slice(0, 80)))
    path = pre.save(tmp_path / "pre.json")
    assert (tmp_path / "pre_noise_mask.nc").exists()
    loaded = Preprocessor.load(path)
    loaded.progress = False
    a = pre.transform(small_synthetic.isel(time=slice(0, 10)))
    b = loaded.transform(small_synthetic.isel(time=slice(0, 10)))
    np.testing.assert_array_equal(a["intensity"].values, b["intensity"].values)
    with pytest.raises(ValueError, match="fitted on 96x96"):
        pre.transform(_constant_radar(size=80))
    with pytest.raises(ValueError, match="unknown disk_boundary"):
        Preprocessor(disk_boundary="mirror")


def test_transform_to_file_equals_transform_then_write(small_synthetic, tmp_path):
    pre = Preprocessor(
        crop_size=66, disk_radius=3, resize_to=32, chunk_time=7, progress=False
    )
    pre.fit(small_synthetic.isel(time=slice(0, 80)))
    raw = small_synthetic.isel(time=slice(0, 30)).copy(deep=True)
    before = processing_steps(pre.transform(raw))[0]["n_filled"]
    raw["intensity"][3, 40:44, 40:44] = np.nan  # 16 more no-data pixels in the crop
    lazy = xr.open_dataset(write_radar(raw, tmp_path / "raw.nc"), chunks={"time": 16})
    in_memory = pre.transform(raw)
    written = pre.transform_to_file(lazy, tmp_path / "out" / "proc.nc", chunk_time=4)
    lazy.close()
    assert written == tmp_path / "out" / "proc.nc"
    assert [p.name for p in written.parent.iterdir()] == ["proc.nc"]  # no temp left
    with xr.open_dataset(written) as got:
        assert set(got.data_vars) == set(in_memory.data_vars)
        for var in in_memory.data_vars:
            np.testing.assert_array_equal(got[var].values, in_memory[var].values)
            for k, v in in_memory[var].attrs.items():
                assert got[var].attrs[k] == v, (var, k)
        np.testing.assert_array_equal(got["time"].values, in_memory["time"].values)
        np.testing.assert_allclose(got["x"].values, in_memory["x"].values)
        assert processing_steps(got) == processing_steps(in_memory)
        fill = processing_steps(got)[0]
        assert fill["step"] == "fill_nan" and fill["n_filled"] == before + 16
        assert got["intensity"].encoding["chunksizes"] == (4, 32, 32)


def test_transform_to_file_is_atomic(small_synthetic, tmp_path, monkeypatch):
    pre = Preprocessor(
        crop_size=66, disk_radius=3, resize_to=32, chunk_time=5, progress=False
    )
    pre.fit(small_synthetic.isel(time=slice(0, 80)))
    calls = []
    real = Preprocessor._transform_frames

    def fail_on_third_chunk(self, v, g, mask):
        calls.append(len(v))
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated kill")
        return real(self, v, g, mask)

    monkeypatch.setattr(Preprocessor, "_transform_frames", fail_on_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        pre.transform_to_file(
            small_synthetic.isel(time=slice(0, 30)), tmp_path / "p.nc"
        )
    assert calls == [5, 5, 5]  # chunk by chunk, not all frames at once
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary


def test_preprocessor_fits_missing_bounds():
    ds = _constant_radar(5.0)
    ds["intensity"][0, 0, 0] = 1.0
    pre = Preprocessor(zmin=None, zmax=None, noise_mask=False, **SAME_GEOMETRY)
    out = pre.fit_transform(ds)
    # fitted bounds 1 and 5: the minimum maps to 0, the rest to 1
    assert (out.attrs["zmin"], out.attrs["zmax"]) == (1.0, 5.0)
    assert out["intensity"].values[0, 0, 0] == 0.0
    assert out["intensity"].values[1].min() == 1.0


# ---------------------------------------------------------------- archive + script
def test_preprocess_archive_and_hydra_script(tmp_path, small_synthetic):
    from hydra import compose, initialize_config_dir

    raw = write_radar(small_synthetic, tmp_path / "raw.nc")
    with initialize_config_dir(str(REPO / "configs"), version_base=None):
        hko = compose("preprocess", overrides=["input=x", "output=y"])
        cfg = compose(
            "preprocess",
            overrides=[
                "preprocess=synthetic",
                f"input={raw}",
                f"output={tmp_path / 'proc.nc'}",
                "preprocess.crop_size=66",
                "preprocess.disk_radius=3",
                "preprocess.resize_to=32",
                "progress=false",
            ],
        )
    # the paper's parameters (Shi et al. 2015, Sec. 4.2; HKO-7 range -10..60 dBZ)
    p = hko.preprocess
    assert (p.zmin, p.zmax, p.crop_size, p.disk_radius, p.resize_to) == (
        -10.0,
        60.0,
        330,
        10,
        100,
    )
    assert p.noise_mask.n_clusters >= 2
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "preprocess_script", REPO / "scripts" / "preprocess.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out_path = script.run(cfg)
    with xr.open_dataset(out_path) as out:
        assert out["intensity"].shape == (160, 32, 32)
        assert out.attrs["preprocess_fitted_on"] == "train"
        assert set(out.data_vars) >= {"intensity", "noise_mask", "motion_u", "motion_v"}
    state = json.loads((tmp_path / "proc_preprocessor.json").read_text())
    assert state["noise_mask_file"] == "proc_preprocessor_noise_mask.nc"
    with pytest.raises(ValueError, match="available: \\['train', 'all'\\]"):
        preprocess_archive(raw, tmp_path / "x.nc", fit_on="val")


def test_synthetic_config_matches_library_default():
    import yaml

    from nowcast.data.synthetic import DEFAULT_PREPROCESS

    cfg = yaml.safe_load((REPO / "configs/preprocess/synthetic.yaml").read_text())
    assert cfg == DEFAULT_PREPROCESS


# ---------------------------------------------------------------- patchify
@pytest.mark.parametrize(
    ("shape", "p", "expected"),
    [
        ((2, 3, 1, 100, 100), 2, (2, 3, 4, 50, 50)),  # HKO: 100x100x1 -> 50x50x4
        ((2, 3, 1, 64, 64), 4, (2, 3, 16, 16, 16)),  # Moving MNIST: 64x64 -> 16x16x16
    ],
)
def test_patchify_paper_shapes_and_round_trip(shape, p, expected):
    x = torch.rand(shape)
    y = patchify(x, p)
    assert tuple(y.shape) == expected
    assert torch.equal(unpatchify(y, p), x)
    xn = x.numpy()
    np.testing.assert_array_equal(unpatchify(patchify(xn, p), p), xn)


def test_patchify_channel_layout_and_errors():
    x = torch.arange(16.0).reshape(1, 1, 1, 4, 4)
    y = patchify(x, 2)
    # channel i * 2 + j holds offset (i, j): channel 1 = offset (0, 1) = columns 1, 3
    assert y[0, 0, 1].tolist() == [[1.0, 3.0], [9.0, 11.0]]
    with pytest.raises(ValueError, match="not divisible by patch size 3"):
        patchify(x, 3)
    with pytest.raises(ValueError, match=r"must be \(B, T, C, H, W\)"):
        patchify(torch.zeros(4, 4), 2)
