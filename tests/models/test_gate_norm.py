"""The GroupNorm option of the cells (``norm="group"``) against references written
from the equations of issue 14 (the "GroupNorm ConvGRU")."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from nowcast.models.cells import ConvGRUCell, ConvLSTMCell, get_cell, resolve_cell
from nowcast.models.convrnn import ConvRNN
from nowcast.models.encoder_forecaster import EncoderForecaster


class ReferenceGroupNormConvGRU(nn.Module):
    """The GroupNorm ConvGRU as the issue states it, with its own weights.

    One convolution over ``[x, h]`` gives the reset and update pre-activations (in that
    order), each through ``GroupNorm(1, hid, eps=1e-6)`` before the sigmoid; the
    candidate is a convolution over ``[x, r h]`` through its own GroupNorm before the
    tanh; ``h' = u h + (1 - u) candidate``.
    """

    def __init__(self, cin: int, hid: int, k: int) -> None:
        super().__init__()
        self.gates = nn.Conv2d(cin + hid, 2 * hid, k, padding=k // 2)
        self.candidate = nn.Conv2d(cin + hid, hid, k, padding=k // 2)
        self.norm_reset = nn.GroupNorm(1, hid, eps=1e-6)
        self.norm_update = nn.GroupNorm(1, hid, eps=1e-6)
        self.norm_candidate = nn.GroupNorm(1, hid, eps=1e-6)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        reset_pre, update_pre = self.gates(torch.cat((x, h), 1)).chunk(2, 1)
        r = torch.sigmoid(self.norm_reset(reset_pre))
        u = torch.sigmoid(self.norm_update(update_pre))
        c = torch.tanh(self.norm_candidate(self.candidate(torch.cat((x, r * h), 1))))
        return u * h + (1 - u) * c


def _randomise(module: nn.Module, seed: int = 3) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def _load_reference_into_cell(ref: ReferenceGroupNormConvGRU, cell: ConvGRUCell):
    """Copy the reference's weights into the cell (its gate order is z = u, r)."""
    hid = cell.hidden_channels
    w, b = ref.gates.weight, ref.gates.bias
    with torch.no_grad():
        cell.gate_conv.weight.copy_(torch.cat((w[hid:], w[:hid])))
        cell.gate_conv.bias.copy_(torch.cat((b[hid:], b[:hid])))
        cell.cand_conv.weight.copy_(ref.candidate.weight)
        cell.cand_conv.bias.copy_(ref.candidate.bias)
        pairs = (
            (cell.gate_norm.norms[0], ref.norm_update),
            (cell.gate_norm.norms[1], ref.norm_reset),
            (cell.cand_norm.norms[0], ref.norm_candidate),
        )
        for ours, theirs in pairs:
            ours.weight.copy_(theirs.weight)
            ours.bias.copy_(theirs.bias)


def test_group_norm_convgru_parameter_count_equals_the_reference():
    # issue 14: 4 input, 64 hidden channels, 3x3, a bias on each convolution and
    # affine GroupNorms: (68*128*9 + 128) + (68*64*9 + 64) + 3 * 2 * 64 = 118,080
    cell = ConvGRUCell(4, 64, 3, norm="group")
    ref = ReferenceGroupNormConvGRU(4, 64, 3)
    n_cell = sum(p.numel() for p in cell.parameters())
    assert n_cell == sum(p.numel() for p in ref.parameters()) == 118_080
    # the plain cell lacks exactly the three norms' scales and shifts
    plain = sum(p.numel() for p in ConvGRUCell(4, 64, 3).parameters())
    assert n_cell - plain == 3 * 2 * 64


def test_group_norm_convgru_matches_the_reference_over_steps():
    torch.manual_seed(0)
    ref = ReferenceGroupNormConvGRU(2, 6, 3)
    _randomise(ref)
    cell = ConvGRUCell(2, 6, 3, norm="group")
    _load_reference_into_cell(ref, cell)
    x = torch.randn(4, 3, 2, 7, 9)
    h_ref = torch.randn(3, 6, 7, 9)
    h = h_ref.clone()
    for t in range(4):
        h_ref = ref(x[t], h_ref)
        _, h = cell(x[t], h)
        torch.testing.assert_close(h, h_ref, rtol=1e-5, atol=1e-6)
    # and through a stack, from the zero state
    rnn = ConvRNN("gru_gn", in_channels=2, hidden_channels=6, kernel_size=3)
    _load_reference_into_cell(ref, rnn.cells[0])
    out, _ = rnn(x.transpose(0, 1))
    h_ref = torch.zeros(3, 6, 7, 9)
    for t in range(4):
        h_ref = ref(x[t], h_ref)
    torch.testing.assert_close(out[0][:, -1], h_ref, rtol=1e-5, atol=1e-6)


def _gn(v: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """GroupNorm with one group written out: per sample over (C, H, W), then affine."""
    mean = v.mean(dim=(1, 2, 3), keepdim=True)
    var = v.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
    return (v - mean) / torch.sqrt(var + 1e-6) * norm.weight[:, None, None] + norm.bias[
        :, None, None
    ]


def test_group_norm_convlstm_matches_the_equations():
    cell = ConvLSTMCell(2, 5, 5, state_kernel_size=3, norm="group")  # non-fused
    _randomise(cell, seed=5)
    x, h, c = torch.randn(2, 2, 6, 6), torch.randn(2, 5, 6, 6), torch.randn(2, 5, 6, 6)
    w = cell.gate_weights()
    pre = {}
    for k, g in enumerate("ifco"):
        v = F.conv2d(x, w[f"W_x{g}"], w[f"b_{g}"], padding=2)
        v = v + F.conv2d(h, w[f"W_h{g}"], padding=1)
        pre[g] = _gn(v, cell.gate_norm.norms[k])
    i = torch.sigmoid(pre["i"] + w["W_ci"] * c)
    f = torch.sigmoid(pre["f"] + w["W_cf"] * c)
    c_ref = f * c + i * torch.tanh(pre["c"])
    h_ref = torch.sigmoid(pre["o"] + w["W_co"] * c_ref) * torch.tanh(c_ref)
    out, (h_new, c_new) = cell(x, (h, c))
    torch.testing.assert_close(c_new, c_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h_new, h_ref, rtol=1e-5, atol=1e-5)


def test_group_norm_lstm_forget_bias_goes_to_the_norm_shift():
    cell = ConvLSTMCell(1, 4, 3, norm="group", forget_bias=1.0)
    assert torch.equal(cell.conv.bias, torch.zeros(16))
    assert torch.equal(cell.gate_norm.norms[1].bias, torch.ones(4))
    assert torch.equal(cell.gate_norm.norms[0].bias, torch.zeros(4))


@pytest.mark.parametrize("cls", [ConvLSTMCell, ConvGRUCell])
def test_default_cells_have_no_norm_parameters(cls):
    keys = set(cls(3, 4, 3).state_dict())
    assert not any("norm" in k for k in keys)
    assert cls(3, 4, 3).norm is None


def test_registry_variants_and_bad_norm():
    assert resolve_cell("gru_gn") == (ConvGRUCell, {"norm": "group"})
    assert resolve_cell("LSTM_GN") == (ConvLSTMCell, {"norm": "group"})
    assert get_cell("gru_gn") is ConvGRUCell
    with pytest.raises(ValueError, match="norm must be None .* got 'batch'"):
        ConvGRUCell(1, 4, 3, norm="batch")


def test_encoder_forecaster_with_group_norm_gru_cells():
    model = EncoderForecaster(
        in_channels=1,
        patch_size=2,
        hidden_channels=[8, 8],
        cell="gru_gn",
        peephole=False,
    )
    assert all(c.norm == "group" for c in model.encoder.cells)
    assert all(c.norm == "group" for c in model.forecaster.cells)
    out = model(torch.rand(2, 3, 1, 8, 8), 2)
    assert out.shape == (2, 2, 1, 8, 8) and bool(torch.isfinite(out).all())


def test_convgru_gn_radar_config_parameter_count():
    config = Path(__file__).resolve().parents[2] / "configs/model/convgru_gn_radar.yaml"
    model = instantiate(OmegaConf.load(config))
    # patch 2 -> 4 channels; per layer (conv over [x, h] for z, r) + (candidate conv)
    # + 3 affine GroupNorms of 64: encoder 4->64 is the 118,080, 64->64 is
    # (128*128*9+128) + (128*64*9+64) + 384 = 221,760; forecaster 0->64 is
    # (64*128*9+128) + (64*64*9+64) + 384 = 111,168 and 64->64 again 221,760;
    # the 1x1 head 128->4: 516
    expected = 118_080 + 221_760 + 111_168 + 221_760 + 516
    assert sum(p.numel() for p in model.parameters()) == expected == 673_284
