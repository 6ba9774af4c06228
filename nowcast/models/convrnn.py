"""A stack of convolutional recurrent cells run over a sequence, with carried state.

The stack is *stateful*: it takes an optional initial state and returns the final one,
so running ``T`` steps at once equals running ``T1`` steps and then ``T - T1`` steps
with the state carried over. The state is a ``list`` with one entry per layer, each
``(h, c)`` for ConvLSTM or ``h`` for ConvGRU (see :mod:`nowcast.models.cells`).

All input checks happen once, before the time loop; the loop body only calls
:meth:`ConvLSTMCell.step` / :meth:`ConvGRUCell.step`, so ``torch.compile`` traces it
without graph breaks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from nowcast.models.cells import (
    CellState,
    ConvGRUCell,
    ConvLSTMCell,
    ZeroStateMixin,
    resolve_cell,
)

__all__ = ["ConvRNN", "RNNState"]

RNNState = list[CellState]
"""State of a stack: one ``(h, c)`` (ConvLSTM) or ``h`` (ConvGRU) per layer."""

KernelArg = int | tuple[int, int] | Sequence[int | tuple[int, int]]


def _per_layer(value: object, n: int, name: str, kernel: bool = False) -> list:
    """Broadcast a scalar (or a ``(kh, kw)`` tuple for kernels) to ``n`` layers."""
    is_single = isinstance(value, int) or (kernel and isinstance(value, tuple))
    if is_single or value is None:
        return [value] * n
    if isinstance(value, Sequence) and not isinstance(value, str):
        values = list(value)
        if len(values) != n:
            raise ValueError(
                f"{name} must have one entry per layer ({n}), got {len(values)}: "
                f"{value!r}"
            )
        return values
    raise TypeError(f"{name} must be an int or a list of {n} values, got {value!r}")


def _n_layers(
    num_layers: int | None, hidden: object, kernel: object, state_kernel: object
) -> int:
    """Number of layers: given, or the length of the first per-layer list."""
    if num_layers is not None:
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
        return num_layers
    if isinstance(hidden, Sequence):
        return len(hidden)
    for k in (kernel, state_kernel):  # a tuple is one (kh, kw) kernel, a list per layer
        if isinstance(k, list):
            return len(k)
    return 1


class ConvRNN(ZeroStateMixin, nn.Module):
    """A stack of ConvLSTM or ConvGRU layers over a sequence ``(B, T, C, H, W)``.

    Layer ``l`` reads the hidden states of layer ``l - 1`` (layer 0 reads the input).

    Parameters
    ----------
    cell : {"lstm", "gru", "lstm_gn", "gru_gn"}
        Cell type, through :func:`nowcast.models.cells.resolve_cell` (``*_gn``: the
        cell with ``norm="group"``).
    in_channels : int
        Channels of the input frames; 0 for a stack that receives no input (the
        paper's forecasting network), which then needs ``state`` and ``n_steps``.
    hidden_channels : int or list of int
        Hidden channels per layer.
    kernel_size : int, (kh, kw) or list of those
        Input-to-state kernel per layer (odd).
    num_layers : int, optional
        Number of layers; inferred from the list arguments when omitted, else 1.
    batch_first : bool
        Sequences are ``(B, T, C, H, W)`` if True, ``(T, B, C, H, W)`` otherwise.
    return_all_layers : bool
        Return every layer's hidden-state sequence instead of only the last layer's.
    state_kernel_size : int, (kh, kw) or list of those, optional
        State-to-state kernel per layer; defaults to ``kernel_size``.
    bias, peephole, forget_bias
        Passed to the cells (``peephole`` and ``forget_bias`` only to ConvLSTM cells;
        a ConvGRU has no cell state to peep at).
    norm : {None, "group"}, optional
        Gate normalisation of every cell (see :mod:`nowcast.models.cells`); omitted:
        the cell name's (``"group"`` for ``*_gn``, else none).
    """

    def __init__(
        self,
        cell: str = "lstm",
        in_channels: int = 1,
        hidden_channels: int | Sequence[int] = 64,
        kernel_size: KernelArg = 3,
        num_layers: int | None = None,
        batch_first: bool = True,
        return_all_layers: bool = False,
        *,
        state_kernel_size: KernelArg | None = None,
        bias: bool = True,
        peephole: bool = True,
        forget_bias: float = 1.0,
        norm: str | None = None,
    ) -> None:
        super().__init__()
        cell_cls, options = resolve_cell(cell)
        if norm is not None:
            options["norm"] = norm
        n = _n_layers(num_layers, hidden_channels, kernel_size, state_kernel_size)
        hidden = _per_layer(hidden_channels, n, "hidden_channels")
        kernels = _per_layer(kernel_size, n, "kernel_size", kernel=True)
        state_kernels = _per_layer(state_kernel_size, n, "state_kernel_size", True)
        self.cell_name = cell
        self.in_channels = in_channels
        self.hidden_channels = hidden
        self.num_layers = n
        self.batch_first = batch_first
        self.return_all_layers = return_all_layers
        extra = (
            {"peephole": peephole, "forget_bias": forget_bias}
            if issubclass(cell_cls, ConvLSTMCell)
            else {}
        )
        extra.update(options)
        cells = []
        for i in range(n):
            cells.append(
                cell_cls(
                    in_channels if i == 0 else hidden[i - 1],
                    hidden[i],
                    kernels[i],
                    state_kernels[i],
                    bias=bias,
                    **extra,
                )
            )
        self.cells = nn.ModuleList(cells)

    def _zero_state(self, size: tuple[int, int, int], **options: Any) -> RNNState:
        return [c.init_state(*size, **options) for c in self.cells]

    def _check_state(
        self, state: object, batch: int | None, size: tuple[int, int] | None
    ) -> tuple[int, tuple[int, int]]:
        """Validate a carried state; return its batch size and frame size."""
        if not isinstance(state, list | tuple) or len(state) != self.num_layers:
            got = len(state) if isinstance(state, list | tuple) else type(state)
            raise ValueError(
                f"state must be a list with one entry per layer ({self.num_layers}), "
                f"got {got}"
            )
        for i, (cell, s) in enumerate(zip(self.cells, state, strict=True)):
            is_lstm = isinstance(cell, ConvLSTMCell)
            tensors = tuple(s) if is_lstm and isinstance(s, tuple | list) else (s,)
            if is_lstm and len(tensors) != 2:
                raise TypeError(f"state[{i}] of a ConvLSTM layer must be (h, c)")
            for t in tensors:
                if not isinstance(t, Tensor):
                    raise TypeError(
                        f"state[{i}] must hold tensors, got {type(t).__name__}; "
                        "ConvLSTM layers carry (h, c), ConvGRU layers carry h"
                    )
                want_b = batch if batch is not None else t.shape[0]
                want_hw = size if size is not None else tuple(t.shape[-2:])
                want = (want_b, cell.hidden_channels, *want_hw)
                if t.ndim != 4 or tuple(t.shape) != want:
                    raise ValueError(
                        f"state[{i}] tensors must be (B, C_hid, H, W) = {want}, got "
                        f"{tuple(t.shape)}"
                    )
                batch, size = want_b, want_hw
        return batch, size  # type: ignore[return-value]

    def forward(
        self,
        inputs: Tensor | None = None,
        state: RNNState | None = None,
        n_steps: int | None = None,
    ) -> tuple[list[Tensor], RNNState]:
        """Run the stack over a sequence.

        Parameters
        ----------
        inputs : torch.Tensor or None
            ``(B, T, C_in, H, W)`` (``(T, B, ...)`` if not ``batch_first``); ``None``
            for a stack with ``in_channels=0``.
        state : list, optional
            Initial state, one entry per layer (zeros when omitted).
        n_steps : int, optional
            Number of steps to run when there is no input; must equal ``T`` (or be
            omitted) otherwise.

        Returns
        -------
        outputs : list of torch.Tensor
            Hidden-state sequences ``(B, T, C_hid_l, H, W)`` of the last layer (or of
            every layer if ``return_all_layers``).
        state : list
            Final state of every layer, ready to be passed back in.
        """
        batch: int | None = None
        size: tuple[int, int] | None = None
        if self.in_channels == 0:
            if inputs is not None:
                raise ValueError(
                    "this stack has in_channels=0 and takes no inputs; pass "
                    "inputs=None with state and n_steps"
                )
            if state is None or n_steps is None:
                raise ValueError(
                    "a stack without inputs needs both an initial state and n_steps"
                )
            if int(n_steps) != n_steps or n_steps < 1:
                raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
            steps = int(n_steps)
            x = None
        else:
            if not isinstance(inputs, Tensor):
                raise TypeError(
                    f"inputs must be a tensor (B, T, {self.in_channels}, H, W), got "
                    f"{type(inputs).__name__}"
                )
            if inputs.ndim != 5 or inputs.shape[2] != self.in_channels:
                layout = "B, T" if self.batch_first else "T, B"
                raise ValueError(
                    f"inputs must be ({layout}, {self.in_channels}, H, W), got "
                    f"{tuple(inputs.shape)}"
                )
            x = inputs if self.batch_first else inputs.transpose(0, 1)
            steps = x.shape[1]
            if n_steps is not None and n_steps != steps:
                raise ValueError(
                    f"n_steps={n_steps} disagrees with the {steps} input frames; omit "
                    "n_steps when passing inputs"
                )
            batch, size = x.shape[0], (x.shape[-2], x.shape[-1])
        if state is None:  # only reachable with inputs (checked above)
            b, _, _, hgt, wid = x.shape
            state = self.init_state(b, hgt, wid, device=x.device, dtype=x.dtype)
        else:
            self._check_state(state, batch, size)
            state = list(state)

        layer_outputs: list[Tensor] = []
        new_state: RNNState = []
        for cell, s in zip(self.cells, state, strict=True):
            x, s = self._run_layer(cell, x, s, steps)
            layer_outputs.append(x)
            new_state.append(s)
        outputs = layer_outputs if self.return_all_layers else layer_outputs[-1:]
        if not self.batch_first:
            outputs = [o.transpose(0, 1) for o in outputs]
        return outputs, new_state

    @staticmethod
    def _run_layer(
        cell: ConvLSTMCell | ConvGRUCell,
        x: Tensor | None,
        s: CellState,
        steps: int,
    ) -> tuple[Tensor, CellState]:
        """The time loop of one layer: ``x`` is ``(B, T, C, H, W)`` or None."""
        hs: list[Tensor] = []
        if x is not None and not cell.fused:
            # Input-to-state convolution for all time steps in one batched call.
            xg = cell.input_gates(x.flatten(0, 1)).unflatten(0, (x.shape[0], steps))
            for t in range(steps):
                h, s = cell.step(None, s, xg[:, t])
                hs.append(h)
        else:
            for t in range(steps):
                h, s = cell.step(None if x is None else x[:, t], s)
                hs.append(h)
        return torch.stack(hs, dim=1), s
