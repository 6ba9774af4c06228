"""Block bootstrap: seeded, paired, and over whole blocks."""

import numpy as np
import pytest
import torch

from nowcast.baselines import Persistence
from nowcast.data.physical import GreyScale
from nowcast.evaluation.bootstrap import (
    bootstrap_intervals,
    choose_reference,
    resample_weights,
)
from nowcast.evaluation.evaluate import evaluate_forecasters
from nowcast.evaluation.metrics import MetricAccumulator

MMH = GreyScale("mm/h", 0.0, 50.0)
KW = dict(scale=MMH, thresholds=[0.5, 2], fss_sizes=[1, 3])


def _blocks(n_blocks: int, per_block: int = 2, seed: int = 0):
    """An accumulator fed ``n_blocks`` blocks of noisy forecasts of random rain."""
    g = torch.Generator().manual_seed(seed)
    acc = MetricAccumulator(**KW)
    for blk in range(n_blocks):
        t = torch.rand(per_block, 3, 1, 8, 8, generator=g) * 0.1
        p = (t + 0.03 * torch.randn(t.shape, generator=g)).clamp(0, 1)
        acc.update(p, t, groups=[blk] * per_block)
    return acc


def _width(res, key):
    lo, hi = res["ci"][key]
    return hi - lo


def test_resample_weights_are_seeded_counts():
    w = resample_weights(7, 50, seed=3)
    assert w.shape == (50, 7) and bool((w.sum(1) == 7).all())
    assert torch.equal(w, resample_weights(7, 50, seed=3))
    assert not torch.equal(w, resample_weights(7, 50, seed=4))


def test_intervals_are_reproducible_and_contain_the_estimate():
    acc = _blocks(12)
    one = bootstrap_intervals({"m": acc}, n_resamples=300, seed=5)["m"]
    two = bootstrap_intervals({"m": acc}, n_resamples=300, seed=5)["m"]
    other = bootstrap_intervals({"m": acc}, n_resamples=300, seed=6)["m"]
    assert one["ci"] == two["ci"]
    assert one["ci"]["csi@0.5"] != other["ci"]["csi@0.5"]
    point = acc.compute()
    for key in ("csi@0.5", "hss@2", "rainfall_mse", "correlation", "b_mse", "fss@2/3"):
        lo, hi = one["ci"][key]
        assert lo <= point[key] <= hi, key
        assert hi > lo, key
        band = one["ci_per_lead"][key]
        assert band["lo"].shape == (3,)
        assert np.all(band["lo"] <= point[f"{key}_by_lead"] + 1e-12)
        assert np.all(point[f"{key}_by_lead"] <= band["hi"] + 1e-12)


def test_more_blocks_give_narrower_intervals():
    few = bootstrap_intervals({"m": _blocks(4)}, n_resamples=400)["m"]
    many = bootstrap_intervals({"m": _blocks(64)}, n_resamples=400)["m"]
    # the width scales like 1 / sqrt(blocks): 16x the blocks, about 1/4 the width
    for key in ("csi@0.5", "rainfall_mse", "fss@0.5/3"):
        assert _width(many, key) < 0.6 * _width(few, key), key


def test_paired_difference_with_itself_is_exactly_zero():
    acc = _blocks(6)
    twin = MetricAccumulator(**KW).merge(acc)
    worse = _blocks(6, seed=9)
    out = bootstrap_intervals(
        {"a": acc, "twin": twin, "worse": worse}, reference="a", n_resamples=200
    )
    for name in ("a", "twin"):
        for key, d in out[name]["diff"].items():
            assert (d["mean"], d["lo"], d["hi"]) == (0.0, 0.0, 0.0), (name, key)
            assert d["reference"] == "a"
    d = out["worse"]["diff"]["rainfall_mse"]
    assert d["lo"] <= d["mean"] <= d["hi"] and d["hi"] > d["lo"]


def test_windows_of_one_block_stay_together_across_batches():
    g = torch.Generator().manual_seed(2)
    t = torch.rand(6, 2, 1, 5, 5, generator=g) * 0.2
    p = t.flip(0)
    grouped = MetricAccumulator(**KW)
    block_ids = [10, 10, 10, 10, 20, 20]
    for lo in (0, 3):  # block 10 spans both batches
        grouped.update(p[lo : lo + 3], t[lo : lo + 3], groups=block_ids[lo : lo + 3])
    assert grouped.group_ids == [10, 20]
    alone = MetricAccumulator(**KW)
    alone.update(p[:4], t[:4])  # block 10's windows only
    _, sums = grouped.grouped_sums()
    _, ref = alone.grouped_sums()
    for key, v in sums.items():
        torch.testing.assert_close(v[0], ref[key][0], msg=key)


class _Blocks(torch.utils.data.Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(4)
        self.x = torch.rand(6, 4, 1, 6, 6, generator=g) * 0.2
        self.block_ids = np.array([0, 0, 0, 1, 1, 2])

    def __len__(self):
        return 6

    def __getitem__(self, i):
        return self.x[i, :2], self.x[i, 2:]


def test_evaluation_bootstraps_blocks_and_reports_support():
    ds = _Blocks()
    res = evaluate_forecasters(
        {"Persistence": Persistence(), "Other": Persistence()},
        ds,
        n_steps=2,
        batch_size=4,
        progress=False,
        groups=ds.block_ids,
        accumulator_kwargs=KW,
        bootstrap={"n_resamples": 50, "seed": 1},
    )
    r = res["Persistence"]
    assert r["support"]["windows"] == 6 and r["support"]["blocks"] == 3
    assert r["support"]["event_pixels"]["events@0.5"] > 0
    assert r["bootstrap"] == {
        "n_resamples": 50,
        "seed": 1,
        "level": 0.95,
        "n_groups": 3,
    }
    assert r["reference"] == "Persistence"  # no ROVER: auto falls back to persistence
    assert res["Other"]["diff"]["csi@0.5"]["mean"] == 0.0


def test_choose_reference():
    results = {
        "Persistence": {"csi": 0.3},
        "ROVER1": {"csi": 0.5},
        "ROVER2": {"csi": 0.6},
        "ConvLSTM": {"csi": 0.7},
    }
    assert choose_reference(results) == "ROVER2"
    assert choose_reference({"Persistence": {"csi": 0.3}}) == "Persistence"
    assert choose_reference(results, "ConvLSTM") == "ConvLSTM"
    assert choose_reference(results, None) is None
    with pytest.raises(ValueError, match="not among the forecasters"):
        choose_reference(results, "ROVER9")
