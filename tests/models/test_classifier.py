"""SequenceClassifier: shapes, the pooled feature size and the KTH parameter count."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from nowcast.models.classifier import SequenceClassifier, pooled_size

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "model"


def test_pooled_size_of_the_5x5_stride_2_pool():
    # floor((n + 4 - 5) / 2) + 1: 60 -> 30, 80 -> 40, 31 -> 16, 1 -> 1
    assert pooled_size(60, 80) == (30, 40)
    assert pooled_size(31, 1) == (16, 1)
    assert pooled_size(32, 32) == tuple(
        torch.nn.MaxPool2d(5, 2, 2)(torch.zeros(1, 1, 32, 32)).shape[-2:]
    )


@pytest.mark.parametrize("cell", ["lstm", "gru", "gru_gn"])
def test_logits_shape_and_any_clip_length(cell):
    model = SequenceClassifier(cell, 1, [4, 4], 3, num_classes=5, frame_size=(12, 16))
    for t in (1, 4):
        out = model(torch.rand(3, t, 1, 12, 16))
        assert out.shape == (3, 5) and bool(torch.isfinite(out).all())


def test_features_are_the_pooled_last_hidden_state():
    model = SequenceClassifier("lstm", 1, [3], 3, num_classes=2, frame_size=(8, 8))
    x = torch.rand(2, 4, 1, 8, 8)
    outputs, _ = model.rnn(x)
    expected = torch.nn.functional.max_pool2d(outputs[-1][:, -1], 5, 2, 2).flatten(1)
    torch.testing.assert_close(model.features(x), expected)
    assert model.head.in_features == 3 * 4 * 4


def test_kth_config_parameter_count():
    model = instantiate(OmegaConf.load(CONFIGS / "classifier_convlstm_kth.yaml"))
    # ConvLSTM 1->32, 3x3: (1+32)*128*9 + 128 bias + 3*32 peepholes = 38,240;
    # 32->32: 64*128*9 + 128 + 96 = 73,952; linear 32*30*40 -> 6: 230,406
    assert sum(p.numel() for p in model.parameters()) == 38_240 + 73_952 + 230_406
    assert model(torch.rand(1, 2, 1, 60, 80)).shape == (1, 6)


def test_bad_inputs_are_named():
    model = SequenceClassifier("lstm", 1, 4, 3, num_classes=3, frame_size=(8, 8))
    with pytest.raises(ValueError, match=r"frame_size.*got \(2, 3, 1, 9, 8\)"):
        model(torch.rand(2, 3, 1, 9, 8))
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        SequenceClassifier(num_classes=1)
