"""HKO-7 scores (HSS, GSS, B-MSE, B-MAE), FSS, physical scales and masks, by hand."""

import math

import numpy as np
import pytest
import torch

from nowcast.data.physical import GreyScale
from nowcast.evaluation.evaluate import evaluate_forecasters
from nowcast.evaluation.metrics import MetricAccumulator, box_mean

MMH = GreyScale("mm/h", 0.0, 50.0)  # grey P -> R = 50 P mm/h, no Z-R


def _events_frame(fc: np.ndarray, ob: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """0/1 event arrays -> grey frames of 1 mm/h (event) or 0 mm/h on the mm/h scale."""
    to = lambda e: torch.as_tensor(e * 1.0 / 50.0, dtype=torch.float32)  # noqa: E731
    return to(fc).view(1, 1, 1, 1, -1), to(ob).view(1, 1, 1, 1, -1)


def test_hss_gss_on_finleys_tornado_table():
    # Finley (1884) tornado forecasts, the textbook 2x2 table (Wilks, Statistical
    # Methods in the Atmospheric Sciences, Ch. 8): a=28 hits, b=72 false alarms,
    # c=23 misses, d=2680 correct negatives, n=2803.
    a, b, c, d = 28, 72, 23, 2680
    fc = np.array([1] * a + [1] * b + [0] * c + [0] * d)
    ob = np.array([1] * a + [0] * b + [1] * c + [0] * d)
    pred, target = _events_frame(fc, ob)
    acc = MetricAccumulator(thresholds=[0.5], scale=MMH, fss_sizes=[1])
    acc.update(pred, target)
    r = acc.compute()
    # HSS = 2 (28*2680 - 72*23) / (51*2703 + 100*2752) = 146768 / 413053 = 0.35532
    assert r["hss@0.5"] == pytest.approx(146768 / 413053, rel=1e-9)
    # a_r = 100*51/2803 = 1.81948; GSS = (28 - a_r) / (123 - a_r) = 0.21604
    a_r = 100 * 51 / 2803
    assert r["gss@0.5"] == pytest.approx((28 - a_r) / (123 - a_r), rel=1e-9)
    assert r["gss@0.5"] == pytest.approx(0.2160, abs=1e-4)
    assert r["csi@0.5"] == pytest.approx(28 / 123)
    # a single frame: the per-frame scores are the same numbers
    pf = acc.compute("per_frame")
    assert pf["hss@0.5"] == pytest.approx(r["hss@0.5"], rel=1e-9)
    assert pf["gss@0.5"] == pytest.approx(r["gss@0.5"], rel=1e-9)


def test_hss_of_a_random_and_a_perfect_forecast():
    # a forecast independent of the observation has HSS = GSS = 0 when the table is
    # exactly the product of its margins: a=1, b=3, c=3, d=9 (rates 1/4 and 1/4)
    fc = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    ob = np.array([1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    pred, target = _events_frame(fc, ob)
    acc = MetricAccumulator(thresholds=[0.5], scale=MMH, fss_sizes=[1])
    acc.update(pred, target)
    r = acc.compute()
    assert r["hss@0.5"] == pytest.approx(0.0, abs=1e-12)
    assert r["gss@0.5"] == pytest.approx(0.0, abs=1e-12)
    acc = MetricAccumulator(thresholds=[0.5], scale=MMH, fss_sizes=[1])
    acc.update(target, target)
    r = acc.compute()
    assert r["hss@0.5"] == 1.0 and r["gss@0.5"] == 1.0


def test_balanced_mse_and_mae_by_hand():
    # observed 0, 1, 6, 40 mm/h (grey R / 50) -> HKO-7 weights 1, 1, 5, 30
    obs = torch.tensor([0.0, 1.0, 6.0, 40.0]) / 50.0
    err = torch.tensor([0.1, 0.1, 0.2, -0.5])  # grey-level errors
    target = torch.stack([obs, torch.zeros(4)]).view(2, 1, 1, 1, 4)
    pred = torch.stack([obs + err, torch.zeros(4)]).view(2, 1, 1, 1, 4)
    acc = MetricAccumulator(scale=MMH, fss_sizes=[1])
    acc.update(pred, target)
    with pytest.warns(RuntimeWarning):
        r = acc.compute()
    # frame 1: 0.01 + 0.01 + 5 * 0.04 + 30 * 0.25 = 7.72; frame 2: 0 -> mean 3.86
    assert r["b_mse"] == pytest.approx(7.72 / 2, rel=1e-5)
    # frame 1: 0.1 + 0.1 + 5 * 0.2 + 30 * 0.5 = 16.2 -> mean 8.1
    assert r["b_mae"] == pytest.approx(16.2 / 2, rel=1e-5)
    with pytest.warns(RuntimeWarning):
        assert acc.compute("per_frame")["b_mse"] == pytest.approx(r["b_mse"])


def _single_events(shape, obs_at, fc_at):
    ob, fc = np.zeros(shape), np.zeros(shape)
    ob[obs_at], fc[fc_at] = 1, 1
    f = lambda e: torch.as_tensor(e / 50.0, dtype=torch.float32)[None, None, None]  # noqa: E731
    return f(fc), f(ob)


def test_fss_of_a_one_pixel_shift_by_hand():
    # obs event at (2, 2), forecast at (2, 3) on a 5x5 grid. Size 1: no overlap,
    # FSS = 1 - 2/2 = 0. Size 3: fractions 1/9 on two 3x3 squares overlapping in 6
    # pixels: sum (Pf - Po)^2 = 6/81, sum Pf^2 + Po^2 = 18/81 -> FSS = 1 - 1/3 = 2/3.
    pred, target = _single_events((5, 5), (2, 2), (2, 3))
    acc = MetricAccumulator(thresholds=[0.5], scale=MMH, fss_sizes=[1, 3])
    acc.update(pred, target)
    r = acc.compute()
    assert r["fss@0.5/1"] == pytest.approx(0.0, abs=1e-12)
    assert r["fss@0.5/3"] == pytest.approx(2 / 3, rel=1e-6)


def test_fss_pads_with_zeros_at_the_edge():
    # obs at the corner (0, 0), forecast at (0, 1); size 3. Inside the domain Po = 1/9
    # on 4 pixels, Pf = 1/9 on 6 (zero padding outside): num 2/81, den 10/81 -> 0.8.
    pred, target = _single_events((5, 5), (0, 0), (0, 1))
    acc = MetricAccumulator(thresholds=[0.5], scale=MMH, fss_sizes=[3])
    acc.update(pred, target)
    assert acc.compute()["fss@0.5/3"] == pytest.approx(0.8, rel=1e-6)
    x = torch.zeros(1, 5, 5)
    x[0, 0, 0] = 1.0
    m = box_mean(x, 3)
    assert m[0, :2, :2].eq(1 / 9).all() and m[0, 2:].eq(0).all()
    with pytest.raises(ValueError, match="odd positive"):
        box_mean(x, 4)


def test_mm_per_hour_and_dbz_scales_put_thresholds_in_the_right_place():
    # grey 0.005, 0.02, 0.2 on a 0-50 mm/h archive are 0.25, 1 and 10 mm/h
    g = torch.tensor([0.005, 0.02, 0.2]).view(1, 1, 1, 1, 3)
    mmh = MetricAccumulator(thresholds=[0.5, 5], scale=MMH, fss_sizes=[1])
    mmh.update(g, g)
    c = mmh.counts()
    assert mmh.thresholds == (0.5, 5.0)
    assert c["hits"][:, 0].tolist() == [2, 1]  # >= 0.5: 1 and 10; >= 5: 10
    # the old bug: the same grey levels read as dBZ 0..50 with Z = 58.53 R^1.56 give
    # at most 10 dBZ -> (10 / 58.53) ** (1 / 1.56) = 0.322 mm/h: no event at all
    dbz = MetricAccumulator(thresholds=[0.5, 5], a=58.53, b=1.56, dbz_min=0, dbz_max=50)
    dbz.update(g, g)
    assert dbz.counts()["hits"][:, 0].tolist() == [0, 0]
    assert float(dbz.scale.to_score(torch.tensor(0.2))) == pytest.approx(
        0.3221, abs=1e-4
    )
    # rainfall MSE in mm/h: a 0.1 grey error is 5 mm/h on the mm/h archive
    acc = MetricAccumulator(scale=MMH, fss_sizes=[1])
    acc.update(g + 0.1, g)
    with pytest.warns(RuntimeWarning):
        r = acc.compute()
    assert r["rainfall_mse"] == pytest.approx(25.0, rel=1e-5)
    assert r["score_units"] == "mm/h" and "no Z-R" in r["conversion"]


def _with_outlier(p, t, where):
    p2, t2 = p.clone(), t.clone()
    p2[where], t2[where] = 1.0, 0.0  # a 50 mm/h error
    return p2, t2


def _assert_same_scores(a: dict, b: dict):
    for key, val in a.items():
        if key.endswith("_by_lead"):
            np.testing.assert_allclose(b[key], val, rtol=1e-9, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("per_frame", [False, True])
def test_a_masked_pixel_with_a_huge_error_changes_no_score(per_frame):
    g = torch.Generator().manual_seed(0)
    t = torch.rand(2, 3, 1, 9, 9, generator=g) * 0.4
    p = (t + 0.05 * torch.randn(2, 3, 1, 9, 9, generator=g)).clamp(0, 1)
    if per_frame:  # a different pixel out of coverage in every frame
        mask = torch.ones(2, 3, 1, 9, 9, dtype=torch.bool)
        where = (0, 1, 0, 4, 4)
        mask[where] = False
        mask[1, 2, 0, 0, 0] = False
    else:  # static clutter mask
        mask = torch.ones(9, 9, dtype=torch.bool)
        mask[4, 4] = False
        where = (slice(None), slice(None), 0, 4, 4)
    kw = dict(scale=MMH, thresholds=[0.5, 2, 5], fss_sizes=[1, 3, 5])
    results = []
    for pp, tt in ((p, t), _with_outlier(p, t, where)):
        acc = MetricAccumulator(**kw)
        acc.update(pp, tt, mask)
        results.append(acc.compute())
    _assert_same_scores(*results)
    # without the mask the outlier does change the scores
    acc = MetricAccumulator(**kw)
    acc.update(*_with_outlier(p, t, where))
    assert acc.compute()["rainfall_mse"] > results[0]["rainfall_mse"] + 5.0


class _CoverageWindows(torch.utils.data.Dataset):
    """(inputs, targets, target_valid): the last column is out of coverage at lead 2."""

    def __init__(self, outlier: bool):
        g = torch.Generator().manual_seed(1)
        self.frames = torch.rand(4, 5, 1, 6, 6, generator=g) * 0.3
        self.valid = torch.ones(4, 3, 1, 6, 6, dtype=torch.bool)
        self.valid[:, 1, :, :, 5] = False
        if outlier:  # huge observed value where there is no observation
            self.frames[:, 3, :, :, 5] = 1.0

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return self.frames[i, :2], self.frames[i, 2:], self.valid[i]


def test_evaluation_combines_coverage_with_the_clutter_mask():
    from nowcast.baselines import Persistence

    clutter = torch.ones(6, 6, dtype=torch.bool)
    clutter[0, 0] = False
    out = [
        evaluate_forecasters(
            {"p": Persistence()},
            _CoverageWindows(outlier),
            n_steps=3,
            batch_size=3,
            progress=False,
            mask=clutter,
            accumulator_kwargs={"scale": MMH, "fss_sizes": [1, 3]},
            bootstrap={"n_resamples": 0},
        )["p"]
        for outlier in (False, True)
    ]
    _assert_same_scores(out[0], out[1])
    mc = out[0]["mask_counts"]
    # 4 windows x 3 leads x 36 pixels; clutter 1 pixel x 12 frames; coverage 6 pixels
    # x 4 windows at lead 2, none of them the clutter pixel
    assert mc == {
        "pixel_frames": 4 * 3 * 36,
        "clutter": 12,
        "no_coverage": 24,
        "no_coverage_only": 24,
        "with_coverage": 4 * 3 * 36,
    }
    assert out[0]["n_pixels"] == 4 * 35  # lead 1: only the clutter pixel is masked
    assert math.isfinite(out[0]["fss@0.5/3"])
