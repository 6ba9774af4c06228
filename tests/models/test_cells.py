"""ConvLSTM / ConvGRU cells against plain references written from the equations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nowcast.models.cells import ConvGRUCell, ConvLSTMCell, get_cell, lstm_update


def _conv(x, w, b=None):
    """'Same' zero-padded convolution with a separate kernel (reference helper)."""
    return F.conv2d(x, w, b, padding=(w.shape[-2] // 2, w.shape[-1] // 2))


def _reference_lstm(cell, x, h, c):
    """Shi et al. (2015) eq. (3), one separate convolution per weight."""
    w = cell.gate_weights()
    peep = {k: (0.0 if w[k] is None else w[k]) for k in ("W_ci", "W_cf", "W_co")}

    def pre(g):
        out = _conv(h, w[f"W_h{g}"])
        if x is not None:
            out = out + _conv(x, w[f"W_x{g}"])
        if w[f"b_{g}"] is not None:
            out = out + w[f"b_{g}"][:, None, None]
        return out

    i = torch.sigmoid(pre("i") + peep["W_ci"] * c)
    f = torch.sigmoid(pre("f") + peep["W_cf"] * c)
    c_new = f * c + i * torch.tanh(pre("c"))
    o = torch.sigmoid(pre("o") + peep["W_co"] * c_new)
    return o * torch.tanh(c_new), c_new


def _reference_gru(cell, x, h):
    """ConvGRU equations (PAPER.md), reset gate applied to H before U_h."""
    w = cell.gate_weights()

    def xin(g):
        return _conv(x, w[f"W_{g}"]) if x is not None else 0.0

    def b(g):
        return w[f"b_{g}"][:, None, None] if w[f"b_{g}"] is not None else 0.0

    z = torch.sigmoid(xin("z") + _conv(h, w["U_z"]) + b("z"))
    r = torch.sigmoid(xin("r") + _conv(h, w["U_r"]) + b("r"))
    cand = torch.tanh(xin("h") + _conv(r * h, w["U_h"]) + b("h"))
    return (1 - z) * h + z * cand


def _randomise(cell):
    """Random weights everywhere, incl. biases and peepholes (not only the init)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in cell.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


LSTM_CASES = [
    # (in, hidden, kernel, state kernel, peephole): fused 3x3, the paper's 9x9-1x1,
    # a non-square kernel, no input (first forecaster layer), no peepholes.
    (3, 5, 3, 3, True),
    (3, 5, 9, 1, True),
    (2, 4, (3, 5), (1, 3), True),
    (0, 5, 5, 5, True),
    (3, 5, 5, 3, False),
]


@pytest.mark.parametrize(("cin", "hid", "k", "sk", "peep"), LSTM_CASES)
def test_convlstm_matches_equations(cin, hid, k, sk, peep):
    torch.manual_seed(0)
    cell = ConvLSTMCell(cin, hid, k, sk, peephole=peep)
    _randomise(cell)
    x = torch.randn(2, cin, 7, 9) if cin else None
    h, c = torch.randn(2, hid, 7, 9), torch.randn(2, hid, 7, 9)
    out, (h1, c1) = cell(x, (h, c))
    h_ref, c_ref = _reference_lstm(cell, x, h, c)
    assert out.shape == (2, hid, 7, 9)
    torch.testing.assert_close(h1, h_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(c1, c_ref, atol=1e-5, rtol=0)
    assert out is h1


@pytest.mark.parametrize(
    ("cin", "hid", "k", "sk"), [(3, 5, 3, 3), (3, 5, 9, 1), (0, 4, 3, 3)]
)
def test_convgru_matches_equations(cin, hid, k, sk):
    torch.manual_seed(0)
    cell = ConvGRUCell(cin, hid, k, sk)
    _randomise(cell)
    x = torch.randn(2, cin, 6, 8) if cin else None
    h = torch.randn(2, hid, 6, 8)
    out, h1 = cell(x, h)
    torch.testing.assert_close(h1, _reference_gru(cell, x, h), atol=1e-5, rtol=0)
    assert out.shape == (2, hid, 6, 8)


def test_convlstm_parameters_match_paper_layout():
    # Fused cell: one conv (in+hid -> 4 hid), one bias per gate channel, peepholes of
    # one value per channel, all registered (state_dict, .to()).
    cell = ConvLSTMCell(16, 128, 5)
    n = sum(p.numel() for p in cell.parameters())
    # (16 + 128) * 512 * 25 + 512 + 3 * 128, the first term of PAPER.md's example
    assert n == (16 + 128) * 512 * 25 + 512 + 3 * 128
    keys = set(cell.state_dict())
    assert {"w_ci", "w_cf", "w_co"} <= keys
    assert cell.w_ci.shape == (128, 1, 1)
    assert "w_ci" not in ConvLSTMCell(16, 8, 5, peephole=False).state_dict()
    # Non-fused 9x9-1x1: 16*512*81 + 128*512*1 + 512 (+ peepholes) as in the paper.
    cell = ConvLSTMCell(16, 128, 9, 1)
    n = sum(p.numel() for p in cell.parameters())
    assert n == 16 * 512 * 81 + 128 * 512 + 512 + 3 * 128


def test_initialisation_forget_bias_and_zero_peepholes():
    # With every kernel zeroed, only the initial biases act: i = o = sigmoid(0) = 1/2,
    # f = sigmoid(1), candidate tanh(0) = 0, so C_t = sigmoid(1) * C_{t-1} and
    # H_t = 1/2 * tanh(C_t) (peepholes start at zero).
    cell = ConvLSTMCell(2, 3, 3)
    with torch.no_grad():
        cell.conv.weight.zero_()
    c = torch.randn(1, 3, 4, 4)
    _, (h1, c1) = cell(torch.randn(1, 2, 4, 4), (torch.randn(1, 3, 4, 4), c))
    expected_c = torch.sigmoid(torch.tensor(1.0)) * c
    torch.testing.assert_close(c1, expected_c)
    torch.testing.assert_close(h1, 0.5 * torch.tanh(expected_c))


def test_lstm_update_plain_lstm_values():
    # Hand computation: all pre-activations 0, c = 2: c' = 0.5 * 2 + 0.5 * 0 = 1,
    # h' = 0.5 * tanh(1).
    c = torch.full((1, 1), 2.0)
    h, c1 = lstm_update(torch.zeros(1, 4), c)
    assert c1.item() == pytest.approx(1.0)
    assert h.item() == pytest.approx(0.5 * 0.7615941559557649)


def test_zero_state_default_and_gru_forward():
    cell = get_cell("gru")(1, 4, 3)
    out, h = cell(torch.rand(2, 1, 5, 5))
    # zero previous state: H_1 = z * tanh(W_h * x + b_h), bounded by 1
    assert out.shape == (2, 4, 5, 5) and bool((out.abs() < 1).all())


def test_registry():
    assert get_cell("lstm") is ConvLSTMCell
    assert get_cell("GRU") is ConvGRUCell
    with pytest.raises(
        ValueError, match="available cells: gru, lstm .and gru_gn, lstm_gn"
    ):
        get_cell("rnn")


@pytest.mark.parametrize("cls", [ConvLSTMCell, ConvGRUCell])
def test_errors(cls):
    with pytest.raises(ValueError, match="odd"):
        cls(1, 4, 4)
    with pytest.raises(ValueError, match="odd"):
        cls(1, 4, 3, state_kernel_size=2)
    with pytest.raises(TypeError, match="int or a pair"):
        cls(1, 4, 3.0)
    with pytest.raises(ValueError, match="hidden_channels must be an integer >= 1"):
        cls(1, 0, 3)
    cell = cls(2, 4, 3)
    state = cell.init_state(1, 5, 5)
    with pytest.raises(
        ValueError, match=r"x must be \(B, 2, H, W\), got \(1, 3, 5, 5\)"
    ):
        cell(torch.rand(1, 3, 5, 5), state)
    with pytest.raises(ValueError, match="share batch size and frame size"):
        cell(torch.rand(1, 2, 6, 5), state)
    bad = torch.rand(1, 5, 5, 5)
    bad_state = (bad, bad) if cls is ConvLSTMCell else bad
    with pytest.raises(ValueError, match=r"hidden state must be \(B, 4, H, W\)"):
        cell(torch.rand(1, 2, 5, 5), bad_state)
    no_input = cls(0, 4, 3)
    with pytest.raises(ValueError, match="pass x=None"):
        no_input(torch.rand(1, 2, 5, 5), no_input.init_state(1, 5, 5))
    with pytest.raises(ValueError, match="state is required"):
        no_input(None)
