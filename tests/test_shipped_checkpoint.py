"""The checkpoint shipped in checkpoints/: it loads, reproduces its recorded scores on
the embedded test split, and beats ROVER and persistence there."""

from __future__ import annotations

from pathlib import Path

import pytest

from nowcast.training.checkpoint import load_checkpoint
from nowcast.training.shipped import score_on_embedded_test

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"
CKPT = SHIPPED / "lagrangian_convlstm_synthetic_long.pt"
# CPU differences (oneDNN kernels, thread counts) move forecasts by ~1e-6; the scores
# are counts over ~2.6 M pixels, so a few pixels may flip at a threshold
TOL = 2e-3


@pytest.fixture(scope="module")
def shipped_and_rescored(tmp_path_factory):
    ckpt = load_checkpoint(CKPT)
    root = tmp_path_factory.mktemp("synthetic")  # the embedded default, made afresh
    return ckpt, score_on_embedded_test(ckpt, root)


def test_shipped_checkpoint_records_how_it_was_made():
    ckpt = load_checkpoint(CKPT)
    assert ckpt["optimizer"] is None  # slim: for inference
    assert "synthetic_long" in ckpt["shipped"]["command"]
    assert ckpt["config"]["model"]["_target_"].endswith("LagrangianForecaster")
    assert CKPT.stat().st_size < 5e6


def test_shipped_checkpoint_reproduces_its_scores(shipped_and_rescored):
    ckpt, scores = shipped_and_rescored
    recorded = ckpt["shipped"]["embedded_test"]
    assert set(scores) == set(recorded)
    for name, rec in recorded.items():
        assert scores[name]["n_windows"] == rec["n_windows"] == 63
        for key in ("csi", "rainfall_mse", "hss", "correlation"):
            assert scores[name][key] == pytest.approx(rec[key], rel=TOL, abs=TOL), (
                name,
                key,
            )


def test_shipped_checkpoint_beats_rover_and_persistence(shipped_and_rescored):
    _, scores = shipped_and_rescored
    model = scores["Lagrangian ConvLSTM"]
    others = {k: v for k, v in scores.items() if k != "Lagrangian ConvLSTM"}
    best_rover = max(
        (k for k in others if k.startswith("ROVER")), key=lambda k: others[k]["csi"]
    )
    assert model["csi"] > others[best_rover]["csi"]
    assert model["rainfall_mse"] < min(v["rainfall_mse"] for v in others.values())
    assert all(
        m > p
        for m, p in zip(
            model["csi_by_lead"], others["Persistence"]["csi_by_lead"], strict=True
        )
    )
