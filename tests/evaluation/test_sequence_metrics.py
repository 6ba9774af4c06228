"""Tests of the Moving MNIST scores: cross-entropy per sequence, MSE/MAE, SSIM, report."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from nowcast.baselines.persistence import Persistence
from nowcast.data.moving_mnist import MovingMNISTDataset
from nowcast.evaluation.sequence_metrics import (
    CE_EPS,
    PAPER_TABLE1,
    SequenceMetricAccumulator,
    binary_cross_entropy_sum,
    evaluate_sequences,
    gaussian_window,
    ssim,
)


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ cross-entropy


def test_cross_entropy_of_half_is_ln2_per_pixel():
    # -(y ln 0.5 + (1 - y) ln 0.5) = ln 2 for any y: per sequence T * C * H * W * ln 2
    pred = torch.full((3, 10, 1, 16, 16), 0.5)
    target = _rand(3, 10, 1, 16, 16)
    acc = SequenceMetricAccumulator()
    acc.update(pred, target)
    res = acc.compute()
    assert res["cross_entropy"] == pytest.approx(10 * 256 * math.log(2), rel=1e-6)
    np.testing.assert_allclose(
        res["cross_entropy_by_lead"], 256 * math.log(2), rtol=1e-6
    )
    assert res["cross_entropy_per_pixel"] == pytest.approx(math.log(2), rel=1e-6)
    assert (res["n_sequences"], res["n_leads"], res["pixels_per_frame"]) == (3, 10, 256)


def test_cross_entropy_hand_computed_frame():
    pred = torch.tensor([[0.9, 0.2], [0.5, 1.0]]).view(1, 1, 1, 2, 2)
    target = torch.tensor([[1.0, 0.0], [1.0, 1.0]]).view(1, 1, 1, 2, 2)
    # -(ln 0.9 + ln 0.8 + ln 0.5 + ln 1): a certain right answer costs exactly 0
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.5))
    got = binary_cross_entropy_sum(pred, target)
    assert got.shape == (1, 1)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_cross_entropy_clamps_certain_mistakes_to_minus_log_eps():
    # p = 0 where y = 1 and p = 1 where y = 0: each pixel costs -ln(eps) = 16.118...
    assert CE_EPS == 1e-7
    pred = torch.tensor([0.0, 1.0]).view(1, 1, 1, 1, 2)
    target = torch.tensor([1.0, 0.0]).view(1, 1, 1, 1, 2)
    got = float(binary_cross_entropy_sum(pred, target))
    assert got == pytest.approx(-2 * math.log(1e-7), rel=1e-6)
    assert math.isfinite(got)
    with pytest.raises(ValueError, match="eps must be in"):
        binary_cross_entropy_sum(pred, target, eps=0.0)


# ------------------------------------------------------------------ MSE / MAE


def test_mse_and_mae_are_summed_over_the_frame():
    # error 0.25 on each of 16 x 16 pixels: SE 0.0625 * 256 = 16, AE 0.25 * 256 = 64
    pred = torch.full((2, 4, 1, 16, 16), 0.25)
    target = torch.zeros(2, 4, 1, 16, 16)
    acc = SequenceMetricAccumulator()
    acc.update(pred, target)
    res = acc.compute()
    np.testing.assert_allclose(res["mse_by_lead"], 16.0, rtol=1e-12)
    np.testing.assert_allclose(res["mae_by_lead"], 64.0, rtol=1e-12)
    assert res["mse"] == pytest.approx(16.0) and res["mae"] == pytest.approx(64.0)


# ------------------------------------------------------------------ SSIM


def test_gaussian_window_is_normalised_and_symmetric():
    g = gaussian_window(11, 1.5, dtype=torch.float64)
    assert g.shape == (11,) and float(g.sum()) == pytest.approx(1.0)
    torch.testing.assert_close(g, g.flip(0))
    # ratio of the centre to its neighbour: exp(1 / (2 * 1.5^2))
    assert float(g[5] / g[4]) == pytest.approx(math.exp(1 / 4.5))
    with pytest.raises(ValueError, match="positive odd"):
        gaussian_window(10)


def test_ssim_of_identical_images_is_one():
    x = _rand(2, 3, 1, 32, 32)
    s = ssim(x, x)
    assert s.shape == (2, 3, 1)
    torch.testing.assert_close(s, torch.ones(2, 3, 1))


def test_ssim_of_constant_images_by_hand():
    # constant a vs b: variances and covariance vanish, so
    # SSIM = (2ab + C1) / (a^2 + b^2 + C1) * C2 / C2, C1 = (0.01)^2
    a, b = 0.2, 0.6
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)  # 0.600100...
    x = torch.full((1, 1, 20, 24), a, dtype=torch.float64)
    y = torch.full((1, 1, 20, 24), b, dtype=torch.float64)
    assert float(ssim(x, y)) == pytest.approx(expected, rel=1e-12)


def test_ssim_matches_skimage():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(1)
    x = rng.random((40, 56))
    y = np.clip(x + 0.2 * rng.standard_normal(x.shape), 0, 1)
    blob = np.zeros((40, 56))
    blob[10:25, 20:40] = 1.0  # structured pair: a square vs a shifted square
    shifted = np.roll(blob, (2, 3), axis=(0, 1))
    for a, b in ((x, y), (blob, shifted), (x, x**2)):
        expected = metrics.structural_similarity(
            a,
            b,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
        )
        got = float(ssim(torch.from_numpy(a), torch.from_numpy(b)))
        assert got == pytest.approx(expected, abs=1e-10)
        got32 = float(ssim(torch.from_numpy(a).float(), torch.from_numpy(b).float()))
        assert got32 == pytest.approx(expected, abs=1e-5)


def test_ssim_rejects_small_or_mismatched_images():
    with pytest.raises(ValueError, match="win_size=11"):
        ssim(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="same shape"):
        ssim(torch.zeros(1, 16, 16), torch.zeros(1, 16, 17))


# ------------------------------------------------------------------ accumulation


def test_batch_by_batch_equals_one_go_equals_merged_halves():
    pred, target = _rand(6, 5, 1, 16, 16, seed=1), _rand(6, 5, 1, 16, 16, seed=2)
    whole = SequenceMetricAccumulator()
    whole.update(pred, target)
    batched = SequenceMetricAccumulator()
    for i in range(0, 6, 2):
        batched.update(pred[i : i + 2], target[i : i + 2])
    first, second = SequenceMetricAccumulator(), SequenceMetricAccumulator()
    first.update(pred[:4], target[:4])
    second.update(pred[4:], target[4:])
    merged = first.merge(second)
    ref = whole.compute()
    for other in (batched.compute(), merged.compute()):
        for key in ("cross_entropy", "mse", "mae", "ssim"):
            np.testing.assert_allclose(other[f"{key}_by_lead"], ref[f"{key}_by_lead"])
            assert other[key] == pytest.approx(ref[key], rel=1e-12)
        assert other["n_sequences"] == 6
    # merging into an empty accumulator copies; all_reduce is a no-op without a group
    empty = SequenceMetricAccumulator().merge(whole).all_reduce()
    assert empty.compute()["cross_entropy"] == pytest.approx(ref["cross_entropy"])


def test_accumulator_input_errors():
    acc = SequenceMetricAccumulator()
    with pytest.raises(RuntimeError, match="before any update"):
        acc.compute()
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        acc.update(torch.zeros(2, 16, 16), torch.zeros(2, 16, 16))
    with pytest.raises(ValueError, match="same shape"):
        acc.update(torch.zeros(1, 2, 1, 16, 16), torch.zeros(1, 3, 1, 16, 16))
    with pytest.raises(ValueError, match="apply sigmoid"):
        acc.update(torch.full((1, 2, 1, 16, 16), 2.0), torch.zeros(1, 2, 1, 16, 16))
    acc.update(torch.zeros(1, 2, 1, 16, 16), torch.zeros(1, 2, 1, 16, 16))
    with pytest.raises(ValueError, match="same lead times"):
        acc.update(torch.zeros(1, 3, 1, 16, 16), torch.zeros(1, 3, 1, 16, 16))
    with pytest.raises(TypeError, match="SequenceMetricAccumulator"):
        acc.merge(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="different settings"):
        acc.merge(SequenceMetricAccumulator(eps=1e-6))


# ------------------------------------------------------------------ evaluation report


class _Blur(nn.Module):
    """A tiny learned-looking forecaster: the last frame times a learnable gain."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor([0.5, 0.0]))  # 2 parameters

    def predict(self, inputs: torch.Tensor, n_steps: int) -> torch.Tensor:
        last = inputs[:, -1:] * self.gain[0]
        return last.expand(-1, n_steps, -1, -1, -1).clamp(0, 1)


def test_evaluate_sequences_writes_report_with_every_column(tmp_path):
    # static binary sequences: persistence is exact (CE = 0: certain right answers
    # cost nothing; MSE = MAE = 0, SSIM = 1)
    rng = np.random.default_rng(0)
    frame = (rng.random((6, 1, 16, 16)) > 0.7).astype(np.float32)
    seqs = np.repeat(frame, 8, axis=1)  # (N=6, T=8, 16, 16)
    ds = MovingMNISTDataset(seqs, input_len=4, output_len=4)
    out = evaluate_sequences(
        {"Persistence": Persistence(), "ConvLSTM": _Blur()},
        ds,
        tmp_path / "report",
        n_steps=4,
        batch_size=4,
        progress=False,
        model_rows={"ConvLSTM": "ConvLSTM(5x5)-5x5-128-5x5-64-5x5-64"},
    )
    pers, model = out["results"]["Persistence"], out["results"]["ConvLSTM"]
    assert pers["n_sequences"] == 6 and pers["n_leads"] == 4
    assert pers["cross_entropy"] == 0.0
    assert pers["mse"] == 0.0 and pers["mae"] == 0.0
    assert pers["ssim"] == pytest.approx(1.0)
    assert pers["parameters"] is None and model["parameters"] == 2
    # half-intensity digits: per frame AE = 0.5 * ink, SE = 0.25 * ink
    ink = float(frame.sum()) / 6
    assert model["mae"] == pytest.approx(0.5 * ink) and model["mse"] == pytest.approx(
        0.25 * ink
    )

    md = out["files"]["markdown"].read_text()
    header = md.splitlines()[2]
    for column in (
        "parameters",
        "cross-entropy / sequence",
        "paper row",
        "paper cross-entropy",
        "MSE / frame",
        "MAE / frame",
        "SSIM",
    ):
        assert column in header
    model_line = next(line for line in md.splitlines() if line.startswith("| ConvLSTM"))
    assert "3,670.85" in model_line and "7,585,296" in model_line
    for row in PAPER_TABLE1:  # the published table follows
        assert row in md

    with out["files"]["csv"].open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 4
    assert set(rows[0]) == {"forecaster", "lead", "cross_entropy", "mse", "mae", "ssim"}
    data = json.loads(out["files"]["json"].read_text())
    assert data["paper_rows"] == {"ConvLSTM": "ConvLSTM(5x5)-5x5-128-5x5-64-5x5-64"}
    assert len(data["results"]["ConvLSTM"]["ssim_by_lead"]) == 4
    assert out["files"]["plot"].stat().st_size > 0


def test_evaluate_sequences_rejects_unknown_paper_row(tmp_path):
    ds = MovingMNISTDataset(np.zeros((2, 4, 16, 16), np.float32), 2, 2)
    with pytest.raises(ValueError, match="unknown Table 1 rows"):
        evaluate_sequences(
            {"P": Persistence()}, ds, tmp_path, n_steps=2, model_rows={"P": "LSTM"}
        )
    with pytest.raises(ValueError, match="forecasters is empty"):
        evaluate_sequences({}, ds, tmp_path, n_steps=2)
