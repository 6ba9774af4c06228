import csv
import json
import math

import numpy as np
import pytest
import torch

from nowcast.baselines import Persistence, Rover
from nowcast.evaluation import (
    PAPER_TABLE,
    MetricAccumulator,
    evaluate_forecasters,
    markdown_table,
    write_report,
)


class Windows(torch.utils.data.Dataset):
    """(inputs, targets) windows of blobs drifting one pixel right per frame."""

    def __init__(self, n: int = 5, t_in: int = 3, t_out: int = 4, size: int = 24):
        g = torch.Generator().manual_seed(0)
        y, x = torch.meshgrid(
            torch.arange(size * 1.0), torch.arange(size * 1.0), indexing="ij"
        )
        self.items = []
        for _ in range(n):
            cx, cy = torch.rand(2, generator=g) * size * 0.4 + size * 0.2
            frames = [
                0.8 * torch.exp(-((x - cx - k) ** 2 + (y - cy) ** 2) / 18.0)
                for k in range(t_in + t_out)
            ]
            seq = torch.stack(frames)[:, None]  # (T, 1, H, W)
            self.items.append((seq[:t_in], seq[t_in:]))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_evaluate_matches_a_manual_accumulation():
    ds = Windows()
    fcs = {"persistence": Persistence(), "rover1": Rover(variant=1)}
    res = evaluate_forecasters(fcs, ds, n_steps=4, batch_size=2, progress=False)
    assert set(res) == {"persistence", "rover1"}
    manual = MetricAccumulator()
    for inputs, targets in ds:
        manual.update(Persistence().predict(inputs[None], 4), targets[None])
    ref = manual.compute()
    np.testing.assert_allclose(res["persistence"]["csi_by_lead"], ref["csi_by_lead"])
    np.testing.assert_allclose(
        res["persistence"]["rainfall_mse_by_lead"], ref["rainfall_mse_by_lead"]
    )
    assert res["rover1"]["n_sequences"] == 5 and res["rover1"]["n_leads"] == 4
    assert res["rover1"]["csi"] > res["persistence"]["csi"]
    # skill vs persistence: 0 for persistence itself, positive for the better ROVER
    assert res["persistence"]["rainfall_mse_skill"] == pytest.approx(0.0)
    assert res["rover1"]["rainfall_mse_skill"] > 0
    assert res["rover1"]["predict_seconds"] > 0


def test_max_batches_mask_and_kwargs():
    mask = torch.ones(24, 24, dtype=torch.bool)
    mask[:, :4] = False
    res = evaluate_forecasters(
        {"p": Persistence()},
        Windows(),
        n_steps=2,
        batch_size=2,
        progress=False,
        max_batches=1,
        mask=mask,
        accumulator_kwargs={"thresholds": [0.5, 1.0], "aggregation": "per_frame"},
    )["p"]
    assert res["n_sequences"] == 2 and res["n_pixels"] == 2 * 24 * 20
    assert res["thresholds"] == [0.5, 1.0] and res["aggregation"] == "per_frame"
    assert "csi@1_by_lead" in res and res["csi_by_lead"].shape == (2,)


def test_evaluate_errors():
    ds = Windows(t_out=2)
    with pytest.raises(ValueError, match="output_len >= n_steps"):
        evaluate_forecasters({"p": Persistence()}, ds, n_steps=3, progress=False)
    with pytest.raises(TypeError, match="has no predict"):
        evaluate_forecasters({"p": object()}, ds, n_steps=2, progress=False)

    class Bad:
        def predict(self, inputs, n_steps):
            return inputs[:, :1]

    with pytest.raises(ValueError, match="returned shape"):
        evaluate_forecasters({"bad": Bad()}, ds, n_steps=2, progress=False)


def _results():
    return evaluate_forecasters(
        {"persistence": Persistence(), "rover1": Rover(variant=1)},
        Windows(),
        n_steps=4,
        progress=False,
    )


def test_write_report_tables(tmp_path):
    res = _results()
    paths = write_report(res, tmp_path / "report", lead_minutes=6.0, plots=False)
    assert not any(k.startswith("plot_") for k in paths)
    md = paths["markdown"].read_text()
    assert "| forecaster | Rainfall-MSE | CSI | FAR | POD | Correlation |" in md
    lo, hi = res["rover1"]["ci"]["rainfall_mse"]
    assert (
        f"| rover1 | {res['rover1']['rainfall_mse']:.3f} [{lo:.3f}, {hi:.3f}] |" in md
    )
    assert "| ROVER1 | 1.712 | 0.516 | 0.308 | 0.636 | 0.843 |" in md  # published
    assert "CSI 30" in md
    with paths["csv"].open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 4  # forecasters x leads
    assert rows[5]["forecaster"] == "rover1" and rows[5]["lead_minutes"] == "12.0"
    assert float(rows[5]["csi"]) == pytest.approx(res["rover1"]["csi_by_lead"][1])
    loaded = json.loads(paths["json"].read_text())  # strict JSON: NaN written as null
    assert loaded["rover1"]["csi"] == pytest.approx(res["rover1"]["csi"])
    assert len(loaded["persistence"]["far_by_lead"]) == 4


@pytest.mark.slow
def test_write_report_plots(tmp_path):
    pytest.importorskip("nowcast.viz")
    paths = write_report(_results(), tmp_path, lead_minutes=6.0)
    assert {p.name for p in tmp_path.iterdir()} >= {"metrics.md", "metrics_by_lead.png"}
    for key in ("plot_metrics", "plot_csi", "plot_errors"):
        assert paths[key].suffix == ".png" and paths[key].stat().st_size > 1000


def test_markdown_table_nan_and_paper_constant():
    scores = dict(rainfall_mse=math.nan, csi=0.5, far=0.1, pod=0.6, correlation=0.9)
    res = {"m": {**scores, "thresholds": [0.5], "notes": ["a note"]}}
    md = markdown_table(res, paper=False)
    assert "| m | nan | 0.500 | 0.100 | 0.600 | 0.900 |" in md and "a note" in md
    assert "ROVER1" not in md
    assert PAPER_TABLE["ConvLSTM"]["csi"] == 0.577  # Shi et al. 2015, Table 2
