"""Smoke tests of the benchmark scripts (tiny sizes; never a timing assertion)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from support import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    """Import benchmarks/<name>.py as a module (benchmarks/ is not a package)."""
    sys.path.insert(0, str(BENCH))
    return load_script(BENCH / f"{name}.py", f"bench_{name}")


def _main(module, argv: list[str]):
    """Run a benchmark's ``main(argv)``, restoring torch's thread count after it."""
    threads = torch.get_num_threads()
    try:
        return module.main(argv)
    finally:
        torch.set_num_threads(threads)


def _read(path: Path) -> dict:
    data = json.loads(path.read_text())
    for key in ("date", "torch", "device", "cpu_count", "torch_threads"):
        assert key in data["machine"], key
    return data


@pytest.mark.slow
def test_train_step_tiny(tmp_path):
    ts = _load("train_step")
    rows = _main(ts, ["--tiny", "--out", str(tmp_path)])
    data = _read(tmp_path / "train_step_cpu.json")
    assert data["results"] == json.loads(json.dumps(rows))
    variants = {
        "reference (naive eager fp32)",
        "ours eager fp32",
        "ours channels_last",
        "ours AMP bfloat16",
        "ours torch.compile",
    }
    for config in ("radar", "mnist"):
        got = {r["variant"]: r for r in rows if r["config"] == config}
        assert set(got) == variants
        assert "skipped" in got["ours torch.compile"]["note"]  # --tiny skips compile
        ref = got["reference (naive eager fp32)"]
        assert ref["speedup_vs_ref"] == 1.0  # ratio of the same timings
        for v in variants - {"ours torch.compile", "ours AMP bfloat16"}:
            r = got[v]
            assert r["seq_per_s"] > 0 and r["peak_step_MiB"] > 0
            assert r["params"] == ref["params"]


def test_naive_reference_is_the_same_model():
    ts = _load("train_step")
    # Published count of ConvLSTM(5x5)-5x5-128-5x5-64-5x5-64 (Shi et al. 2015, Table 1)
    naive = ts.NaiveEncoderForecaster(4, [128, 64, 64], 5)
    assert ts.n_params(naive) == 7_585_296
    # loaded with our weights, the 8-conv reference computes our model's logits
    from nowcast.models import EncoderForecaster

    torch.manual_seed(0)
    ours = EncoderForecaster(1, 2, [6, 5], 3, 3)
    with torch.no_grad():
        for p in ours.parameters():  # non-zero peepholes so that they are tested
            p.add_(0.1 * torch.randn_like(p))
    naive = ts.NaiveEncoderForecaster(2, [6, 5], 3)
    ts.load_from_ours(naive, ours)
    x = torch.rand(2, 3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(naive(x, 4), ours(x, 4), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_baselines_tiny(tmp_path):
    bl = _load("baselines")
    rows = _main(bl, ["--tiny", "--out", str(tmp_path)])
    _read(tmp_path / "baselines_cpu.json")
    from nowcast.baselines import available_methods

    what = {r["what"]: r for r in rows}
    for m in available_methods():
        assert f"flow {m} (1 pair)" in what
    assert "semi_lagrangian (15 leads)" in what
    assert "persistence (15 leads)" in what
    ref = what["forecast reference LK + SL (pysteps-like)"]
    assert ref["speedup_vs_ref"] == 1.0
    for k in (
        "forecast ROVER1 (dis)",
        "forecast ROVER2 (dis)",
        "forecast ROVER3 (dis)",
    ):
        assert {"time_ms", "cpu_ms", "epe_wet", "mae", "speedup_vs_ref"} <= set(what[k])
        assert what[k]["time_vs_rover1"] > 0
    assert what["forecast ROVER1 (dis)"]["time_vs_rover1"] == 1.0
    # the synthetic truth and both flows share one convention: errors well under the
    # true speed (about 1.2 px/step at 48x48), whereas a sign error would give ~2x it
    assert what["flow dis (1 pair)"]["epe_wet"] < 0.3
    assert ref["epe_wet"] < 0.6


def test_reference_extrapolation_uniform_shift():
    bl = _load("baselines")
    frame = np.zeros((9, 9), np.float32)
    frame[4, 2] = 1.0
    flow = np.zeros((2, 9, 9), np.float32)
    flow[0] = 1.0  # one pixel per step to the right
    out = bl.reference_extrapolate(frame, flow, 3)
    for k in range(3):  # lead k + 1: the pixel moved k + 1 columns
        assert out[k, 4, 3 + k] == pytest.approx(1.0)
        assert out[k].sum() == pytest.approx(1.0)


def test_synthetic_truth_displacement():
    bl = _load("baselines")
    frames, disp = bl.synthetic_sequence(40, 3)
    assert frames.shape == (3, 40, 40) and disp.shape == (2, 40, 40)
    assert 0.0 <= frames.min() and frames.max() <= 1.0
    # at the centre (19.5, 19.5) the rotation adds nothing to the velocity: it is the
    # translation (2.0, -1.5) px/step at 100 px scaled by 40 / 100 (affine_motion);
    # the one-step displacement bends by about omega * |t| / 2 = 0.005 px only. The
    # displacement is affine in p, so the mean of the 4 centre pixels is its value there.
    centre = disp[:, 19:21, 19:21].mean(axis=(1, 2))
    np.testing.assert_allclose(centre, [0.8, -0.6], atol=0.01)
    # frame 1 is frame 0 moved by that displacement (cubic resampling, smooth field)
    shifted = bl.cv2.remap(
        frames[0],
        *(np.mgrid[0:40, 0:40][::-1].astype(np.float32) - disp),
        bl.cv2.INTER_LINEAR,
    )
    # (up to linear-interpolation error of a field with 1-px features: compared with
    # not moving it at all, the error must drop by far)
    inner = (slice(5, -5), slice(5, -5))
    moved = np.abs(shifted[inner] - frames[1][inner]).mean()
    still = np.abs(frames[0][inner] - frames[1][inner]).mean()
    assert moved < 0.25 * still


@pytest.mark.slow
def test_data_loading_tiny(tmp_path):
    dl = _load("data_loading")
    rows = dl.main(["--tiny", "--out", str(tmp_path)])
    _read(tmp_path / "data_loading_cpu.json")
    got = {(r["source"], r["workers"]) for r in rows}
    assert got == {(s, w) for s in ("netCDF (disk)", "memory") for w in (0, 2)}
    assert all(r["windows_per_s"] > 0 for r in rows)


def test_winograd_matches_direct_convolution():
    ce = _load("conv_efficiency")
    torch.manual_seed(0)
    # odd sizes: the last row/column of 4x4 output tiles is partial
    x = torch.rand(2, 3, 9, 7, dtype=torch.float32)
    w = torch.randn(5, 3, 3, 3)
    b = torch.randn(5)
    got = ce.winograd_conv3x3(x, w, b)
    want = torch.nn.functional.conv2d(x, w, b, padding=1)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_conv_efficiency_tiny(tmp_path):
    ce = _load("conv_efficiency")
    rows = _main(ce, ["--tiny", "--out", str(tmp_path)])
    _read(tmp_path / "conv_efficiency_cpu.json")
    what = {r["what"]: r for r in rows}
    assert what["sgemm (torch.mm)"]["gflops"] > 0
    assert what["winograd F(4x4,3x3) radar fused [x,h]->4h, layer 2"]["rel_err"] < 1e-4
    share = what["radar train step: convolution share of CPU time"]
    assert 0 < share["conv_share"] < 1


@pytest.mark.slow
def test_preprocess_memory_tiny(tmp_path):
    pm = _load("preprocess_memory")
    rows = pm.main(["--tiny", "--out", str(tmp_path)])
    _read(tmp_path / "preprocess_memory_cpu.json")
    assert {r["method"] for r in rows} == {
        "transform + write_radar",
        "transform_to_file",
    }
    assert all(r["frames"] == 40 and r["peak_growth_MiB"] >= 0 for r in rows)
