"""The fully connected LSTM encoder-forecaster baseline of Shi et al. (2015).

Each frame is folded into ``p x p`` patches (as for the ConvLSTM) and flattened to a
vector of ``C H W`` features. An encoding stack of (peephole) LSTM layers reads the
input vectors; a forecasting stack of the same sizes starts from the encoder's final
states and receives no input; a linear layer maps the *last* forecasting layer's hidden
state to the next frame's features. With 2048-2048 units on 64x64 Moving MNIST
(p=4, 4096 features) this has exactly the published 142,667,776 parameters:

* encoder: ``4*2048*(4096+2048) + 8192`` and ``4*2048*(2048+2048) + 8192``
* forecaster: ``4*2048*2048 + 8192`` (no input) and ``4*2048*(2048+2048) + 8192``
* peepholes: ``4 layers * 3 * 2048``; output: ``2048*4096 + 4096``.

Initialisation as for the ConvLSTM: PyTorch's default linear weights, zero biases
except the forget gate (``forget_bias``, 1 by default), zero peepholes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nowcast.forecast import check_n_steps, check_sequence
from nowcast.models.cells import LSTMState, lstm_update
from nowcast.models.encoder_forecaster import LogitsForecaster
from nowcast.patches import patchify, unpatchify

__all__ = ["FCLSTM", "FCLSTMCell"]


class FCLSTMCell(nn.Module):
    """Fully connected LSTM cell with per-unit peepholes (Graves 2013, eq. 7-11).

    Parameters
    ----------
    in_features : int
        Input size; 0 for a cell that receives no input (no input weights).
    hidden_units : int
        Size of ``h`` and ``c``.
    bias, peephole, forget_bias
        As for :class:`nowcast.models.cells.ConvLSTMCell` (peepholes ``(hidden,)``).

    Notes
    -----
    The input projection (which carries the bias) is separate from the state
    projection so that a stack computes it for all time steps in one matrix product.
    The state is ``(h, c)``, each ``(B, hidden_units)``.
    """

    def __init__(
        self,
        in_features: int,
        hidden_units: int,
        bias: bool = True,
        peephole: bool = True,
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__()
        for name, value, low in (
            ("in_features", in_features, 0),
            ("hidden_units", hidden_units, 1),
        ):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.in_features = in_features
        self.hidden_units = hidden_units
        g = 4 * hidden_units
        self.input_proj = nn.Linear(in_features, g, bias=bias) if in_features else None
        self.state_proj = nn.Linear(hidden_units, g, bias=bias and not in_features)
        self.peephole = peephole
        if peephole:
            self.w_ci = nn.Parameter(torch.zeros(hidden_units))
            self.w_cf = nn.Parameter(torch.zeros(hidden_units))
            self.w_co = nn.Parameter(torch.zeros(hidden_units))
        else:
            self.register_parameter("w_ci", None)
            self.register_parameter("w_cf", None)
            self.register_parameter("w_co", None)
        b = self.state_proj.bias if self.input_proj is None else self.input_proj.bias
        if b is not None:
            with torch.no_grad():
                b.zero_()
                b[hidden_units : 2 * hidden_units].fill_(forget_bias)

    def init_state(
        self,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> LSTMState:
        """Zero state ``(h, c)``, each ``(batch_size, hidden_units)``."""
        w = self.state_proj.weight
        z = torch.zeros(
            (batch_size, self.hidden_units),
            device=device or w.device,
            dtype=dtype or w.dtype,
        )
        return z, z.clone()

    def step(
        self, x_gates: Tensor | None, state: LSTMState
    ) -> tuple[Tensor, LSTMState]:
        """One step from precomputed input gates ``input_proj(x)`` (or None)."""
        h, c = state
        gates = self.state_proj(h)
        if x_gates is not None:
            gates = gates + x_gates
        h, c = lstm_update(gates, c, self.w_ci, self.w_cf, self.w_co)
        return h, (h, c)


def _run_stack(
    cells: nn.ModuleList, x: Tensor | None, state: list[LSTMState], steps: int
) -> tuple[Tensor, list[LSTMState]]:
    """Run a stack of :class:`FCLSTMCell` over ``x`` ``(B, T, F)`` (or no input)."""
    new_state = []
    for cell, s in zip(cells, state, strict=True):
        xg = None if x is None else cell.input_proj(x)  # all time steps at once
        hs = []
        for t in range(steps):
            h, s = cell.step(None if xg is None else xg[:, t], s)
            hs.append(h)
        x = torch.stack(hs, dim=1)
        new_state.append(s)
    return x, new_state


class FCLSTM(LogitsForecaster):
    """FC-LSTM encoder-forecaster on flattened patch frames; a ``Forecaster``.

    Parameters
    ----------
    in_channels : int
        Channels of the input frames.
    frame_size : (int, int)
        ``(H, W)`` of the frames; fixed, since the layers are fully connected.
    patch_size : int
        Patch size ``p`` (4 on Moving MNIST, 2 on radar in the paper).
    hidden_units : int or list of int
        Units per LSTM layer, shared by encoder and forecaster (2048-2048 on Moving
        MNIST, 2000-2000 on radar).
    peephole, bias, forget_bias
        As for :class:`FCLSTMCell`.
    """

    def __init__(
        self,
        in_channels: int = 1,
        frame_size: Sequence[int] = (64, 64),
        patch_size: int = 4,
        hidden_units: int | Sequence[int] = (2048, 2048),
        peephole: bool = True,
        bias: bool = True,
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__()
        frame = tuple(int(v) for v in frame_size)
        if len(frame) != 2 or min(frame) < 1:
            raise ValueError(f"frame_size must be (H, W), got {frame_size!r}")
        if not isinstance(patch_size, int) or patch_size < 1:
            raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
        if frame[0] % patch_size or frame[1] % patch_size:
            raise ValueError(
                f"frame_size {frame} is not divisible by patch_size {patch_size}"
            )
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
        units = (
            [hidden_units]
            if isinstance(hidden_units, int)
            else [int(u) for u in hidden_units]
        )
        if not units:
            raise ValueError("hidden_units must name at least one layer")
        self.in_channels = in_channels
        self.frame_size = frame
        self.patch_size = patch_size
        self.hidden_units = units
        p = patch_size
        self.patch_shape = (in_channels * p * p, frame[0] // p, frame[1] // p)
        self.features = in_channels * frame[0] * frame[1]
        kw = dict(bias=bias, peephole=peephole, forget_bias=forget_bias)
        ins = [self.features, *units[:-1]]
        self.encoder = nn.ModuleList(
            FCLSTMCell(i, u, **kw) for i, u in zip(ins, units, strict=True)
        )
        self.forecaster = nn.ModuleList(
            FCLSTMCell(0 if k == 0 else units[k - 1], u, **kw)
            for k, u in enumerate(units)
        )
        self.output = nn.Linear(units[-1], self.features)

    def forward(self, inputs: Tensor, n_steps: int) -> Tensor:
        """Forecast logits ``(B, n_steps, C, H, W)`` from ``inputs`` ``(B, T, C, H, W)``
        in [0, 1] (``(C, H, W)`` must match ``in_channels`` and ``frame_size``)."""
        # in training the value scan would sync the device every step: the trainer
        # checks the loss for NaN/inf instead; predict() and eval forwards scan
        check_sequence(inputs, "inputs", check_finite=not self.training)
        n_steps = check_n_steps(n_steps)
        want = (self.in_channels, *self.frame_size)
        if tuple(inputs.shape[2:]) != want:
            raise ValueError(
                f"inputs must be (B, T, {want[0]}, {want[1]}, {want[2]}) for this "
                f"FC-LSTM, got {tuple(inputs.shape)}; build it with matching "
                "in_channels and frame_size"
            )
        b, t = inputs.shape[:2]
        x = patchify(inputs, self.patch_size).reshape(b, t, self.features)
        state = [
            c.init_state(b, device=inputs.device, dtype=inputs.dtype)
            for c in self.encoder
        ]
        _, state = _run_stack(self.encoder, x, state, t)
        hidden, _ = _run_stack(self.forecaster, None, state, n_steps)
        logits = self.output(hidden).reshape(b, n_steps, *self.patch_shape)
        return unpatchify(logits, self.patch_size)
