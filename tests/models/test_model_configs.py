"""Every model config instantiates, has the published parameter count, and runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from nowcast.models import FCLSTM, EncoderForecaster
from nowcast.models.lagrangian import LagrangianForecaster

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "model"

# Shi et al. (2015), Table 1 (copied in ../shared/PAPER.md): published parameter
# counts of the Moving-MNIST models.
PUBLISHED_COUNTS = {
    "convlstm_mnist_256": 13_524_496,  # ConvLSTM(5x5)-5x5-256
    "convlstm_mnist_128_128": 10_042_896,  # ConvLSTM(5x5)-5x5-128-5x5-128
    "convlstm_mnist_128_64_64": 7_585_296,  # ConvLSTM(5x5)-5x5-128-5x5-64-5x5-64
    "convlstm_mnist_9x9_1x1_128_128": 11_550_224,  # ConvLSTM(9x9)-1x1-128-1x1-128
    "convlstm_mnist_9x9_1x1_128_64_64": 8_830_480,  # ConvLSTM(9x9)-1x1-128-1x1-64-1x1-64
    "fclstm_mnist_2048": 142_667_776,  # FC-LSTM-2048-2048
}
# Input frame size each config is meant for: 64x64 Moving MNIST, 100x100 radar.
FRAME = {name: 64 for name in PUBLISHED_COUNTS} | {
    "convlstm_radar": 100,
    "convgru_radar": 100,
    "convgru_gn_radar": 100,
    "convlstm_small": 64,
    "convlstm_small_residual": 64,
    "convgru_small": 64,
    "convlstm_small_gated": 64,
    "convlstm_small_warp": 64,
    "lagrangian_convlstm": 64,
    "lagrangian_convgru": 64,
    "fclstm_radar_2000": 100,
}
# The field forecasters; the classifier_* and series_* models of the other tasks
# (issue 14) are tested with them (tests/models/test_classifier.py, test_series.py).
ALL_CONFIGS = sorted(
    p.stem
    for p in CONFIG_DIR.glob("*.yaml")
    if not p.stem.startswith(("classifier_", "series_"))
)


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_config_list_is_complete():
    assert set(ALL_CONFIGS) == set(FRAME)


@pytest.mark.parametrize("name", [n for n in ALL_CONFIGS if "fclstm" not in n])
def test_convrnn_config_counts_and_shapes(name):
    # Built for real once (the largest has 13.5M parameters, ~54 MB) and run on one
    # short sequence.
    torch.manual_seed(0)
    model = instantiate(OmegaConf.load(CONFIG_DIR / f"{name}.yaml"))
    assert isinstance(model, EncoderForecaster | LagrangianForecaster)
    if name in PUBLISHED_COUNTS:
        assert _n_params(model) == PUBLISHED_COUNTS[name]
    size = FRAME[name]
    out = model.predict(torch.rand(1, 2, 1, size, size), 2)
    assert out.shape == (1, 2, 1, size, size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", [n for n in ALL_CONFIGS if "fclstm" in n])
def test_fclstm_config_counts_and_shapes(name):
    cfg = OmegaConf.load(CONFIG_DIR / f"{name}.yaml")
    with torch.device("meta"):  # 143M / 196M parameters: count without allocating
        model = instantiate(cfg)
    assert isinstance(model, FCLSTM)
    if name in PUBLISHED_COUNTS:
        assert _n_params(model) == PUBLISHED_COUNTS[name]
    size = FRAME[name]
    assert model.frame_size == (size, size)
    assert model.output.out_features == size * size
    # The same architecture with small layers runs and keeps the frame shape.
    small = instantiate(cfg, hidden_units=[8, 8])
    out = small.predict(torch.rand(1, 2, 1, size, size), 3)
    assert out.shape == (1, 3, 1, size, size)


def test_radar_fclstm_count_by_hand():
    # 100x100 frames, p=2 -> 10,000 features; two 2000-unit layers (PAPER.md).
    # Encoder 4*2000*(10000+2000)+8000 and 4*2000*(2000+2000)+8000; forecaster
    # 4*2000*2000+8000 and 4*2000*4000+8000; peepholes 4*3*2000; output 2000*10000+10000.
    expected = (
        4 * 2000 * 12000 + 8000
        + 4 * 2000 * 4000 + 8000
        + 4 * 2000 * 2000 + 8000
        + 4 * 2000 * 4000 + 8000
        + 4 * 3 * 2000
        + 2000 * 10000 + 10000
    )  # fmt: skip
    with torch.device("meta"):
        model = instantiate(OmegaConf.load(CONFIG_DIR / "fclstm_radar_2000.yaml"))
    assert _n_params(model) == expected == 196_066_000
