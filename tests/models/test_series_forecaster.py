"""SeriesForecaster: shapes for every cell, the residual start, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from nowcast.models.series import SeriesForecaster, get_series_cell

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "model"


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_shapes_for_every_cell(cell):
    model = SeriesForecaster(
        cell, input_size=3, hidden_size=8, num_layers=2, output_len=6, output_size=2
    )
    assert isinstance(model.rnn, get_series_cell(cell))
    out = model(torch.rand(4, 7, 3))
    assert out.shape == (4, 6, 2)
    assert model(torch.rand(4, 7, 3), 6).shape == (4, 6, 2)  # the trainer's call


def test_head_reads_the_last_step_only():
    torch.manual_seed(0)
    model = SeriesForecaster("gru", 2, 5, 1, 3, 1)
    x = torch.rand(2, 6, 2)
    outputs, _ = model.rnn(x)
    expected = model.head(outputs[:, -1]).view(2, 3, 1)
    torch.testing.assert_close(model(x), expected)


def test_residual_model_starts_as_persistence_and_predict_clips_at_zero():
    model = SeriesForecaster("lstm", 2, 8, 1, 4, 1, residual=True)
    x = torch.rand(3, 5, 2)
    torch.testing.assert_close(model(x), x[:, -1:, :1].expand(3, 4, 1))
    with torch.no_grad():
        model.head.bias.fill_(-10.0)
    assert bool((model.predict(x) == 0).all()) and model.training


def test_errors_name_the_problem():
    model = SeriesForecaster("lstm", 2, 8, 1, 4, 1)
    with pytest.raises(ValueError, match=r"\(batch, input_len, 2\), got \(3, 5, 3\)"):
        model(torch.rand(3, 5, 3))
    with pytest.raises(ValueError, match="output_len=4 leads, asked for 6"):
        model(torch.rand(3, 5, 2), 6)
    with pytest.raises(
        ValueError, match="unknown series cell 'tcn'; available: gru, lstm, rnn"
    ):
        SeriesForecaster("tcn")
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        SeriesForecaster(hidden_size=0)


def test_series_lstm_config():
    cfg = OmegaConf.load(CONFIGS / "series_lstm.yaml")
    cfg = OmegaConf.merge({"data": {"output_len": 10}}, {"model": cfg}).model
    model = instantiate(cfg)
    # LSTM 2 -> 32: 4*32*(2+32) + 2*4*32 biases = 4,608; head 32 -> 10: 330
    assert sum(p.numel() for p in model.parameters()) == 4_608 + 330
    assert model(torch.rand(2, 5, 2)).shape == (2, 10, 1)
