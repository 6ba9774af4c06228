import math

import numpy as np
import pytest
import torch

from nowcast.evaluation.metrics import (
    MetricAccumulator,
    dbz_to_grey,
    dbz_to_rainrate,
    grey_to_dbz,
    grey_to_rainrate,
    rainrate_to_dbz,
)


def grey(rain_mmh) -> torch.Tensor:
    """Grey levels (HKO-7 scaling) whose rain rate is ``rain_mmh`` (HKO-7 Z-R)."""
    r = torch.as_tensor(rain_mmh, dtype=torch.float64)
    return dbz_to_grey(rainrate_to_dbz(r)).float()


# ---- conversions ------------------------------------------------------------------


def test_grey_dbz_rain_by_hand():
    # HKO-7: dBZ = P * 70 - 10, so P = 0.5 -> 25 dBZ -> Z = 10**2.5 = 316.23
    # -> R = (316.23 / 58.53) ** (1 / 1.56) = 2.94869 mm/h
    assert grey_to_dbz(0.5) == pytest.approx(25.0)
    assert grey_to_rainrate(0.5) == pytest.approx(2.94869, rel=1e-5)
    # R = 1 mm/h exactly at dBZ = 10 log10(a) (Z = a R^b with R = 1)
    assert dbz_to_rainrate(10 * math.log10(58.53)) == pytest.approx(1.0)
    assert dbz_to_rainrate(10 * math.log10(200.0), a=200, b=1.6) == pytest.approx(1.0)
    # R = 10 mm/h: dBZ = 10 log10(58.53) + 10 * 1.56 * log10(10) = 17.674 + 15.6
    assert rainrate_to_dbz(10.0) == pytest.approx(17.67378 + 15.6, abs=1e-4)
    # grey 0 (-10 dBZ): Z = 0.1 -> R = (0.1 / 58.53) ** (1 / 1.56) = 0.01684 mm/h
    assert grey_to_rainrate(0.0) == pytest.approx(0.016845, rel=1e-3)


def test_conversions_round_trip_on_tensors_and_arrays():
    p = torch.linspace(0, 1, 11)
    torch.testing.assert_close(dbz_to_grey(grey_to_dbz(p)), p)
    r = grey_to_rainrate(p)
    assert isinstance(r, torch.Tensor) and bool((r[1:] > r[:-1]).all())
    torch.testing.assert_close(dbz_to_grey(rainrate_to_dbz(r)), p, atol=1e-5, rtol=0)
    a = np.linspace(0, 1, 11)
    np.testing.assert_allclose(grey_to_rainrate(a), r.double().numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match="a and b must be > 0"):
        dbz_to_rainrate(20.0, a=-1.0)


# ---- a hand-computed contingency table ----------------------------------------------

# lead 1, 8 pixels (mm/h); "0.1" is dry. Lead 2: everything dry.
T1 = [1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 3.0, 7.0]
P1 = [1.0, 0.1, 3.0, 1.0, 0.1, 0.1, 0.1, 40.0]


def _hand_batch():
    t = torch.stack([grey(T1), grey([0.1] * 8)]).view(1, 2, 1, 2, 4)
    p = torch.stack([grey(P1), grey([0.1] * 8)]).view(1, 2, 1, 2, 4)
    return p, t


def test_contingency_scores_by_hand():
    p, t = _hand_batch()
    acc = MetricAccumulator()
    acc.update(p, t)
    with pytest.warns(RuntimeWarning, match="undefined"):
        r = acc.compute()
    c = acc.counts()
    # >= 0.5 mm/h: observed at pixels 0,1,2,6,7; forecast at 0,2,3,7
    # hits {0,2,7} = 3, misses {1,6} = 2, false alarms {3} = 1, correct negatives 2
    k05 = r["thresholds"].index(0.5)
    assert c["hits"][k05, 0] == 3 and c["misses"][k05, 0] == 2
    assert c["false_alarms"][k05, 0] == 1 and c["correct_negatives"][k05, 0] == 2
    assert r["csi_by_lead"][0] == pytest.approx(3 / 6)
    assert r["far_by_lead"][0] == pytest.approx(1 / 4)
    assert r["pod_by_lead"][0] == pytest.approx(3 / 5)
    # >= 2: observed {6,7}, forecast {2,7}: hits 1, misses 1, false alarms 1
    assert r["csi@2_by_lead"][0] == pytest.approx(1 / 3)
    assert r["far@2_by_lead"][0] == pytest.approx(1 / 2)
    assert r["pod@2_by_lead"][0] == pytest.approx(1 / 2)
    # >= 5: observed {7}, forecast {7}: a perfect score
    assert (r["csi@5_by_lead"][0], r["far@5_by_lead"][0]) == (1.0, 0.0)
    # >= 10: nothing observed, one false alarm: CSI 0, FAR 1, POD undefined
    assert (r["csi@10_by_lead"][0], r["far@10_by_lead"][0]) == (0.0, 1.0)
    assert math.isnan(r["pod@10_by_lead"][0])
    # lead 2 is dry everywhere: every categorical score undefined (NaN, not 0) ...
    assert np.isnan(r["csi_by_lead"][1]) and np.isnan(r["pod_by_lead"][1])
    # ... and the lead average skips it
    assert r["csi"] == pytest.approx(0.5) and r["csi@0.5"] == r["csi"]
    assert any("csi@0.5," in n and "[2]" in n for n in r["notes"])
    # errors of lead 1, by hand: differences 0,-0.9,2,0.9,0,0,-2.9,33
    assert r["rainfall_mse_by_lead"][0] == pytest.approx(1103.03 / 8, rel=1e-4)
    assert r["rainfall_mae_by_lead"][0] == pytest.approx(39.7 / 8, rel=1e-4)
    assert r["bias_by_lead"][0] == pytest.approx(32.1 / 8, rel=1e-4)
    assert r["rainfall_mse_by_lead"][1] == pytest.approx(0.0, abs=1e-9)
    # the paper's correlation: sum PT = 284.52, sum P^2 = 1611.04, sum T^2 = 61.03
    expected = 284.52 / math.sqrt(1611.04 * 61.03 + 1e-9)  # = 0.90738
    assert r["correlation_by_lead"][0] == pytest.approx(expected, rel=1e-4)
    assert r["n_leads"] == 2 and r["n_frames"] == 1 and r["n_pixels"] == 8


def test_worked_correlation_example():
    # T = (1, 2), P = (2, 1) mm/h: sum PT = 4, sum P^2 = sum T^2 = 5
    # -> 4 / sqrt(25 + 1e-9) = 0.8 (a Pearson correlation would give -1)
    t = grey([1.0, 2.0]).view(1, 1, 1, 1, 2)
    p = grey([2.0, 1.0]).view(1, 1, 1, 1, 2)
    acc = MetricAccumulator(thresholds=[0.5])
    acc.update(p, t)
    r = acc.compute()
    assert r["correlation"] == pytest.approx(0.8, rel=1e-5)
    assert acc.compute("per_frame")["correlation"] == pytest.approx(0.8, rel=1e-5)


def test_mask_excludes_pixels():
    p, t = _hand_batch()
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[1, 3] = False  # pixel 7 (a hit at 0.5 mm/h)
    acc = MetricAccumulator()
    acc.update(p, t, mask=mask)
    with pytest.warns(RuntimeWarning):
        r = acc.compute()
    # hits 2, misses 2, false alarms 1 -> CSI 2/5; MSE without the 33 mm/h error
    assert r["csi_by_lead"][0] == pytest.approx(2 / 5)
    assert r["rainfall_mse_by_lead"][0] == pytest.approx((1103.03 - 1089) / 7, rel=1e-4)
    assert r["n_pixels"] == 7
    with pytest.raises(ValueError, match="mask must be"):
        acc.update(p, t, mask=torch.ones(3, 3, dtype=torch.bool))


def test_pooled_versus_per_frame_by_hand():
    # frame A: 1 hit -> CSI 1; frame B: 1 hit, 1 miss, 2 false alarms -> CSI 1/4
    t = torch.stack([grey([1.0, 0.1, 0.1, 0.1]), grey([1.0, 1.0, 0.1, 0.1])])
    p = torch.stack([grey([1.0, 0.1, 0.1, 0.1]), grey([1.0, 0.1, 1.0, 1.0])])
    acc = MetricAccumulator(thresholds=[0.5], aggregation="per_frame")
    acc.update(p.view(2, 1, 1, 1, 4), t.view(2, 1, 1, 1, 4))
    # per frame: (1 + 1/4) / 2; pooled: hits 2 / (2 + 1 + 2)
    assert acc.compute()["csi"] == pytest.approx(0.625)
    assert acc.compute("pooled")["csi"] == pytest.approx(0.4)


def _random_batch(seed: int, b: int = 6):
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(b, 4, 1, 12, 10, generator=g) * 0.8
    p = (t + 0.15 * torch.randn(b, 4, 1, 12, 10, generator=g)).clamp(0, 1)
    return p, t


@pytest.mark.parametrize("aggregation", ["pooled", "per_frame"])
def test_batches_one_go_and_merged_halves_agree(aggregation):
    p, t = _random_batch(0)
    mask = torch.rand(12, 10, generator=torch.Generator().manual_seed(1)) > 0.2
    kw = dict(thresholds=[0.5, 2, 5], aggregation=aggregation)
    whole = MetricAccumulator(**kw)
    whole.update(p, t, mask)
    batched = MetricAccumulator(**kw)
    for i in range(0, 6, 2):
        batched.update(p[i : i + 2], t[i : i + 2], mask)
    first, second = MetricAccumulator(**kw), MetricAccumulator(**kw)
    first.update(p[:3], t[:3], mask)
    second.update(p[3:], t[3:], mask)
    merged = first.merge(second).all_reduce()  # all_reduce: no-op without a group
    ref = whole.compute()
    for other in (batched.compute(), merged.compute()):
        for key, val in ref.items():
            if key.endswith("_by_lead"):
                np.testing.assert_allclose(other[key], val, rtol=1e-10, err_msg=key)
        assert other["n_frames"] == 6 * 1 and other["n_pixels"] == ref["n_pixels"]


def test_perfect_forecast_scores():
    _, t = _random_batch(2)
    acc = MetricAccumulator()
    acc.update(t, t)
    r = acc.compute()
    assert r["rainfall_mse"] == 0.0 and r["far"] == 0.0
    assert r["csi"] == pytest.approx(1.0) and r["pod"] == pytest.approx(1.0)
    assert r["correlation"] == pytest.approx(1.0, rel=1e-6)


def test_no_events_give_nan_with_a_warning():
    dry = torch.zeros(2, 3, 1, 5, 5)  # grey 0 = 0.017 mm/h, below every threshold
    acc = MetricAccumulator()
    acc.update(dry, dry)
    with pytest.warns(RuntimeWarning, match="no observed or forecast events"):
        r = acc.compute()
    for key in ("csi", "far", "pod", "csi@30"):
        assert math.isnan(r[key]) and np.isnan(r[f"{key}_by_lead"]).all()
    assert r["rainfall_mse"] == 0.0 and len(r["notes"]) > 0


def test_input_errors():
    acc = MetricAccumulator()
    x = torch.zeros(1, 3, 1, 4, 4)
    with pytest.raises(ValueError, match=r"pred must be \(B, T, C, H, W\)"):
        acc.update(x[0], x[0])
    with pytest.raises(ValueError, match="same shape"):
        acc.update(x, x[:, :2])
    acc.update(x, x)
    with pytest.raises(ValueError, match="same number of lead times"):
        acc.update(x[:, :2], x[:, :2])
    with pytest.raises(ValueError, match="different settings"):
        acc.merge(MetricAccumulator(thresholds=[1.0]))
    with pytest.raises(RuntimeError, match="before any update"):
        MetricAccumulator().compute()
    with pytest.raises(ValueError, match="aggregation must be"):
        MetricAccumulator(aggregation="mean")
    with pytest.raises(ValueError, match="thresholds must be finite and > 0"):
        MetricAccumulator(thresholds=[0.0])


@pytest.mark.gpu
def test_accumulates_on_the_gpu():
    p, t = _random_batch(3)
    gpu = MetricAccumulator()
    gpu.update(p.cuda(), t.cuda())
    assert gpu._state["hits"].is_cuda
    cpu = MetricAccumulator()
    cpu.update(p, t)
    np.testing.assert_allclose(
        gpu.compute()["csi_by_lead"], cpu.compute()["csi_by_lead"]
    )


def test_merge_refuses_mismatched_accumulators():
    from nowcast.evaluation.sequence_metrics import SequenceMetricAccumulator

    x = torch.rand(2, 3, 1, 8, 8)
    a, b = MetricAccumulator(), MetricAccumulator()
    a.update(x, x)
    b.update(x[:, :2], x[:, :2])  # 2 leads instead of 3
    with pytest.raises(ValueError, match=r"different lead times.*\(3,\) vs \(2,\)"):
        a.merge(b)
    with pytest.raises(ValueError, match="different settings"):
        a.merge(MetricAccumulator(a=200.0, b=1.6))
    with pytest.raises(TypeError, match="can only merge a MetricAccumulator"):
        a.merge(SequenceMetricAccumulator())
    y = torch.rand(2, 3, 1, 16, 16)
    s1, s2 = SequenceMetricAccumulator(), SequenceMetricAccumulator()
    s1.update(y, y)
    s2.update(y[..., :12], y[..., :12])  # another frame size
    with pytest.raises(
        ValueError, match=r"\(3, \(1, 16, 16\)\) vs \(3, \(1, 16, 12\)\)"
    ):
        s1.merge(s2)
    empty = SequenceMetricAccumulator().merge(s1)  # adopts state and frame shape
    assert empty._layout() == s1._layout()
