"""The fully connected LSTM cell equals a ConvLSTM cell with 1x1 kernels on 1x1 maps."""

from __future__ import annotations

import torch

from nowcast.models.cells import ConvLSTMCell
from nowcast.models.fc_lstm import FCLSTMCell


def test_fc_cell_equals_1x1_convlstm():
    # An FC-LSTM is the ConvLSTM of Shi et al. (2015) with 1x1 kernels on a 1x1 "frame"
    # (Graves' peephole LSTM); with the same weights both give the same h and c.
    torch.manual_seed(0)
    fc = FCLSTMCell(3, 4)
    with torch.no_grad():
        for p in fc.parameters():
            p.normal_(0, 0.5)
    conv = ConvLSTMCell(3, 4, 1)
    with torch.no_grad():
        w = torch.cat((fc.input_proj.weight, fc.state_proj.weight), dim=1)
        conv.conv.weight.copy_(w[:, :, None, None])
        conv.conv.bias.copy_(fc.input_proj.bias)
        for name in ("w_ci", "w_cf", "w_co"):
            getattr(conv, name).copy_(getattr(fc, name)[:, None, None])
    x, h, c = torch.randn(5, 3), torch.randn(5, 4), torch.randn(5, 4)
    h_fc, (_, c_fc) = fc.step(fc.input_proj(x), (h, c))
    h_cv, (_, c_cv) = conv(x[..., None, None], (h[..., None, None], c[..., None, None]))
    torch.testing.assert_close(h_fc, h_cv[..., 0, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(c_fc, c_cv[..., 0, 0], atol=1e-5, rtol=0)


def test_fc_cell_without_input_has_no_input_weights():
    # First forecaster layer: 4*H*H weights + 4*H biases + 3*H peepholes (PAPER.md).
    cell = FCLSTMCell(0, 6)
    assert cell.input_proj is None
    assert sum(p.numel() for p in cell.parameters()) == 4 * 6 * 6 + 4 * 6 + 3 * 6
    assert torch.equal(cell.state_proj.bias.detach()[6:12], torch.ones(6))  # forget
