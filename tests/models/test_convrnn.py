"""The stateful ConvRNN stack."""

from __future__ import annotations

import pytest
import torch

from nowcast.models.convrnn import ConvRNN


def _manual_unroll(rnn, x):
    """Reference: call each cell's checked forward step by step (layer by layer)."""
    seq = x
    states = []
    for cell in rnn.cells:
        s = cell.init_state(x.shape[0], x.shape[-2], x.shape[-1])
        hs = []
        for t in range(x.shape[1]):
            h, s = cell(seq[:, t], s)
            hs.append(h)
        seq = torch.stack(hs, 1)
        states.append(s)
    return seq, states


@pytest.mark.parametrize(
    ("cell", "k", "sk"), [("lstm", 3, 3), ("lstm", 5, 1), ("gru", 3, 3), ("gru", 3, 1)]
)
def test_stateful_split_equals_full_run(cell, k, sk):
    torch.manual_seed(0)
    rnn = ConvRNN(cell, 2, [6, 4], k, state_kernel_size=sk)
    x = torch.rand(2, 7, 2, 8, 8)
    (full,), s_full = rnn(x)
    (a,), s_a = rnn(x[:, :3])
    (b,), s_b = rnn(x[:, 3:], s_a)
    torch.testing.assert_close(torch.cat((a, b), 1), full, atol=1e-6, rtol=0)

    def flat(s):
        return list(s) if isinstance(s, tuple) else [s]

    for sf, sb in zip(s_full, s_b, strict=True):
        for tf, tb in zip(flat(sf), flat(sb), strict=True):
            torch.testing.assert_close(tf, tb, atol=1e-6, rtol=0)
    # ... and equals stepping the cells by hand (precomputed input convs included).
    ref, _ = _manual_unroll(rnn, x)
    torch.testing.assert_close(full, ref, atol=1e-6, rtol=0)


def test_outputs_layers_and_layout():
    torch.manual_seed(0)
    rnn = ConvRNN("lstm", 1, [4, 3], 3, return_all_layers=True)
    x = torch.rand(2, 5, 1, 6, 6)
    outs, state = rnn(x)
    assert [o.shape for o in outs] == [(2, 5, 4, 6, 6), (2, 5, 3, 6, 6)]
    assert len(state) == 2 and state[1][0].shape == (2, 3, 6, 6)
    # the last output frame is the last hidden state
    torch.testing.assert_close(outs[1][:, -1], state[1][0])
    rnn.batch_first = False
    outs_tb, _ = rnn(x.transpose(0, 1))
    torch.testing.assert_close(outs_tb[1].transpose(0, 1), outs[1])


def test_no_input_stack_runs_from_state():
    torch.manual_seed(0)
    rnn = ConvRNN("gru", 0, [3, 2], 3)
    state = [torch.rand(2, 3, 5, 5), torch.rand(2, 2, 5, 5)]
    (out,), new = rnn(None, state, n_steps=4)
    assert out.shape == (2, 4, 2, 5, 5)
    assert not torch.equal(new[0], state[0])


def test_layer_arguments():
    rnn = ConvRNN("lstm", 1, 8, [3, 5], state_kernel_size=[1, 3])
    assert rnn.num_layers == 2
    assert rnn.cells[1].kernel_size == (5, 5) and rnn.cells[0].state_kernel_size == (
        1,
        1,
    )
    assert ConvRNN("lstm", 1, 8, (3, 5), num_layers=3).cells[2].kernel_size == (3, 5)
    assert ConvRNN("gru", 1, (4, 4)).num_layers == 2


def test_errors():
    rnn = ConvRNN("lstm", 2, [4, 4], 3)
    with pytest.raises(
        ValueError, match=r"inputs must be \(B, T, 2, H, W\), got \(1, 3, 5, 5\)"
    ):
        rnn(torch.rand(1, 3, 5, 5))
    with pytest.raises(ValueError, match=r"got \(1, 3, 1, 5, 5\)"):
        rnn(torch.rand(1, 3, 1, 5, 5))
    with pytest.raises(TypeError, match="must be a tensor"):
        rnn([1, 2])
    x = torch.rand(1, 3, 2, 5, 5)
    with pytest.raises(ValueError, match="one entry per layer \\(2\\), got 1"):
        rnn(x, [rnn.cells[0].init_state(1, 5, 5)])
    bad = rnn.init_state(1, 6, 5)
    with pytest.raises(
        ValueError, match=r"\(B, C_hid, H, W\) = \(1, 4, 5, 5\), got \(1, 4, 6, 5\)"
    ):
        rnn(x, bad)
    with pytest.raises(ValueError, match="disagrees with the 3 input frames"):
        rnn(x, n_steps=4)
    with pytest.raises(
        ValueError, match=r"kernel_size must have one entry per layer \(3\), got 2"
    ):
        ConvRNN("lstm", 1, [4, 4, 4], [3, 3])
    with pytest.raises(ValueError, match="available cells"):
        ConvRNN("lstmx", 1, 4)
    no_input = ConvRNN("lstm", 0, 4)
    with pytest.raises(ValueError, match="needs both an initial state and n_steps"):
        no_input(None, n_steps=2)
    with pytest.raises(ValueError, match="takes no inputs"):
        no_input(x)


@pytest.mark.slow
def test_compiles_without_graph_breaks():
    # fullgraph=True raises on any graph break; the "eager" backend traces with
    # dynamo only (no C++ compiler needed), so this checks the time loop is clean.
    torch.manual_seed(0)
    rnn = ConvRNN("lstm", 1, [4, 4], 3)
    x = torch.rand(1, 3, 1, 6, 6)
    compiled = torch.compile(rnn, backend="eager", fullgraph=True)
    (out,), _ = compiled(x)
    torch.testing.assert_close(out, rnn(x)[0][0])
