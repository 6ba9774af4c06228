"""Convolutional recurrent cells: ConvLSTM (Shi et al., 2015) and ConvGRU.

Both cells map one frame ``x_t`` of shape ``(B, C_in, H, W)`` and the previous state to
the new state, keeping the spatial size with zero ("the outside world has zero state")
padding. Kernels must therefore be odd.

Hidden-state structure
----------------------
* ConvLSTM: a tuple ``(h, c)`` of two tensors ``(B, C_hid, H, W)``.
* ConvGRU: a single tensor ``h`` of shape ``(B, C_hid, H, W)``.

A stack (:class:`nowcast.models.convrnn.ConvRNN`) carries a ``list`` with one such
state per layer. Every state is made only of tensors, so it can be detached, moved and
fed back (truncated BPTT, streaming inference) without any wrapper class.

Convolutions
------------
When the input-to-state and state-to-state kernels are equal (or the cell has no input,
``in_channels=0``, as the first forecaster layer of the paper), all gates come from a
*single* convolution over the channel concatenation ``[x, h]`` ("fused"). Otherwise the
cell holds one input convolution (carrying the bias) and one state convolution (no bias);
a stack then computes the input convolution for every time step at once, so the time
loop holds one convolution per step. Either way there is exactly one bias per gate and
channel, which is what the paper's parameter counts imply.

Initialisation
--------------
Convolution weights keep PyTorch's default (Kaiming-uniform, fan-in based). Biases start
at zero except the ConvLSTM forget gate, whose bias starts at ``forget_bias`` (1 by
default, Jozefowicz et al. 2015) so that the cell remembers by default early in
training. The peephole weights ``W_ci, W_cf, W_co`` start at zero (the cell then starts
as a plain ConvLSTM). ConvGRU biases start at zero.

Gate normalisation
------------------
``norm="group"`` puts every gate pre-activation (the summed input and state terms and
bias) through its own ``GroupNorm(1 group, eps 1e-6, affine)`` before the nonlinearity:
the widely copied "GroupNorm ConvGRU" (reset, update and candidate normalised) and the
same option for the ConvLSTM gates ``i, f, c~, o``. The ConvGRU then also follows that
variant's update convention, ``H_t = z H_{t-1} + (1 - z) H~`` (``z`` keeps the old
state; the paper's equations have the opposite). With ``norm=None`` (the default) no
normalisation module exists, so state dicts and forecasts are those of the plain cells.
The registry names ``"lstm_gn"`` and ``"gru_gn"`` select the normalised cells.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "ConvLSTMCell",
    "ConvGRUCell",
    "GateGroupNorm",
    "CELLS",
    "CELL_VARIANTS",
    "ZeroStateMixin",
    "get_cell",
    "resolve_cell",
    "lstm_update",
    "LSTMState",
    "CellState",
]

LSTMState = tuple[Tensor, Tensor]
"""State of a ConvLSTM cell: ``(h, c)``, each ``(B, C_hid, H, W)``."""
CellState = LSTMState | Tensor
"""State of any cell: ``(h, c)`` for ConvLSTM, ``h`` for ConvGRU."""


def _kernel_pair(kernel_size: int | tuple[int, int], name: str) -> tuple[int, int]:
    """Return ``(kh, kw)`` from an int or a pair, checking both are positive and odd."""
    if isinstance(kernel_size, int) and not isinstance(kernel_size, bool):
        pair = (kernel_size, kernel_size)
    elif (
        isinstance(kernel_size, tuple | list)
        and len(kernel_size) == 2
        and all(isinstance(k, int) and not isinstance(k, bool) for k in kernel_size)
    ):
        pair = (int(kernel_size[0]), int(kernel_size[1]))
    else:
        raise TypeError(
            f"{name} must be an int or a pair of ints (kh, kw), got {kernel_size!r}"
        )
    if any(k < 1 or k % 2 == 0 for k in pair):
        raise ValueError(
            f"{name} must be positive and odd so that zero 'same' padding keeps the "
            f"frame size, got {kernel_size!r}; use e.g. 3 or 5 instead"
        )
    return pair


def _check_channels(in_channels: int, hidden_channels: int) -> None:
    for name, value, low in (
        ("in_channels", in_channels, 0),
        ("hidden_channels", hidden_channels, 1),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


GATE_NORMS = (None, "group")
"""Accepted values of the cells' ``norm`` argument."""


def _check_norm(norm: str | None) -> str | None:
    """Return ``norm`` if it is one of :data:`GATE_NORMS`, else raise naming the fix."""
    if norm not in GATE_NORMS:
        raise ValueError(
            f"norm must be None (no gate normalisation) or 'group' (GroupNorm of every "
            f"gate pre-activation), got {norm!r}"
        )
    return norm


class GateGroupNorm(nn.Module):
    """One ``GroupNorm(1, C_hid, eps, affine)`` per gate of a gate-stacked tensor.

    Parameters
    ----------
    n_gates : int
        Number of gates stacked along dim 1.
    hidden_channels : int
        Channels ``C_hid`` of each gate.
    eps : float
        GroupNorm epsilon (1e-6 in the GroupNorm ConvGRU).

    Notes
    -----
    ``forward`` takes ``(B, n_gates C_hid, H, W)`` and normalises each gate's
    ``(C_hid, H, W)`` block over all its channels and pixels (one group), then applies
    that gate's per-channel scale and shift.
    """

    def __init__(self, n_gates: int, hidden_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norms = nn.ModuleList(
            nn.GroupNorm(1, hidden_channels, eps=eps) for _ in range(n_gates)
        )

    def forward(self, gates: Tensor) -> Tensor:
        """Normalise ``(B, n_gates C_hid, H, W)`` gate by gate; same shape out.

        One ``group_norm`` call with a group per gate (the gates' scales and shifts
        concatenated) instead of one GroupNorm per chunk and a concatenation.
        """
        norms = self.norms
        if len(norms) == 1:
            return norms[0](gates)
        weight = torch.cat([n.weight for n in norms])
        bias = torch.cat([n.bias for n in norms])
        return F.group_norm(gates, len(norms), weight, bias, norms[0].eps)


class ZeroStateMixin:
    """``init_state`` for cells and stacks: zeros on the module's device and dtype.

    A subclass implements ``_zero_state(batch_size, height, width, device, dtype)``.
    """

    def init_state(
        self,
        batch_size: int,
        height: int,
        width: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> CellState | list[CellState]:
        """Zero state for ``batch_size`` frames of ``height x width`` pixels.

        A ConvLSTM cell gives ``(h, c)``, a ConvGRU cell ``h``, each ``(batch_size,
        C_hid, height, width)``; a stack gives a list with one entry per layer.
        ``device`` and ``dtype`` default to those of the module's parameters.
        """
        weight = next(self.parameters())  # type: ignore[attr-defined]
        size = (batch_size, height, width)
        return self._zero_state(
            size, device=device or weight.device, dtype=dtype or weight.dtype
        )

    def _zero_state(self, size: tuple[int, int, int], **options: Any) -> Any:
        """Zeros for ``size = (batch, height, width)``; ``options``: device, dtype."""
        raise NotImplementedError


def _check_step_input(
    cell: ConvLSTMCell | ConvGRUCell, x: Tensor | None, h: Tensor
) -> None:
    """Validate one step's input frame and hidden state (outside any time loop)."""
    if not isinstance(h, Tensor) or h.ndim != 4 or h.shape[1] != cell.hidden_channels:
        got = tuple(h.shape) if isinstance(h, Tensor) else type(h).__name__
        raise ValueError(
            f"hidden state must be (B, {cell.hidden_channels}, H, W), got {got}"
        )
    if cell.in_channels == 0:
        if x is not None:
            raise ValueError(
                "this cell has in_channels=0 (no input frames); pass x=None"
            )
        return
    if not isinstance(x, Tensor):
        raise TypeError(
            f"x must be a tensor (B, {cell.in_channels}, H, W), got {type(x).__name__}"
        )
    if x.ndim != 4 or x.shape[1] != cell.in_channels:
        raise ValueError(
            f"x must be (B, {cell.in_channels}, H, W), got {tuple(x.shape)}"
        )
    if x.shape[0] != h.shape[0] or x.shape[-2:] != h.shape[-2:]:
        raise ValueError(
            f"x {tuple(x.shape)} and hidden state {tuple(h.shape)} must share batch "
            "size and frame size"
        )


def lstm_update(
    gates: Tensor,
    c: Tensor,
    w_ci: Tensor | None = None,
    w_cf: Tensor | None = None,
    w_co: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The LSTM state update of Shi et al. (2015), eq. (3), from gate pre-activations.

    Parameters
    ----------
    gates : torch.Tensor
        ``(B, 4 C_hid, ...)``: the summed input-to-state and state-to-state terms plus
        biases of the gates ``i, f, c~, o``, in that order along dim 1.
    c : torch.Tensor
        Previous cell state ``C_{t-1}``, ``(B, C_hid, ...)``.
    w_ci, w_cf, w_co : torch.Tensor, optional
        Peephole weights broadcastable to ``c`` (``None``: no peepholes).

    Returns
    -------
    h, c : torch.Tensor
        ``H_t`` and ``C_t``, each shaped like ``c``. Shared by :class:`ConvLSTMCell`
        and the fully connected LSTM of :mod:`nowcast.models.fc_lstm`.
    """
    i, f, g, o = gates.chunk(4, dim=1)
    if w_ci is not None:
        i = i + w_ci * c
    if w_cf is not None:
        f = f + w_cf * c
    c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    if w_co is not None:
        o = o + w_co * c_next
    h_next = torch.sigmoid(o) * torch.tanh(c_next)
    return h_next, c_next


class _ConvCellBase(ZeroStateMixin, nn.Module):
    """Shared construction of the gate convolutions (``n_gates`` gates) and states.

    ``n_state_tensors`` is 2 for a state ``(h, c)``, 1 for a state ``h``.
    """

    n_gates: int
    n_state_tensors: int

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        kernel_size: int | tuple[int, int],
        state_kernel_size: int | tuple[int, int] | None,
        bias: bool,
        norm: str | None = None,
    ) -> None:
        super().__init__()
        _check_channels(in_channels, hidden_channels)
        self.norm = _check_norm(norm)
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.kernel_size = _kernel_pair(kernel_size, "kernel_size")
        self.state_kernel_size = (
            self.kernel_size
            if state_kernel_size is None
            else _kernel_pair(state_kernel_size, "state_kernel_size")
        )
        self.use_bias = bias
        # One convolution over [x, h] when possible (see the module docstring).
        self.fused = in_channels == 0 or self.kernel_size == self.state_kernel_size

    @staticmethod
    def _conv(cin: int, cout: int, k: tuple[int, int], bias: bool) -> nn.Conv2d:
        return nn.Conv2d(cin, cout, k, padding=(k[0] // 2, k[1] // 2), bias=bias)

    def _gate_norm(self, n_gates: int) -> GateGroupNorm | None:
        """The normalisation of ``n_gates`` gates (``None`` without ``norm``)."""
        return (
            None if self.norm is None else GateGroupNorm(n_gates, self.hidden_channels)
        )

    def _zero_state(self, size: tuple[int, int, int], **options: Any) -> CellState:
        batch_size, height, width = size
        shape = (batch_size, self.hidden_channels, height, width)
        h = torch.zeros(shape, **options)
        return (h, torch.zeros_like(h)) if self.n_state_tensors == 2 else h

    def _state_or_zeros(self, x: Tensor | None, state: CellState | None) -> CellState:
        """``state``, or the zero state shaped after ``x`` when it is omitted."""
        if state is not None:
            return state
        if x is None:
            raise ValueError("state is required when there is no input x")
        return self.init_state(
            x.shape[0], x.shape[-2], x.shape[-1], device=x.device, dtype=x.dtype
        )

    def input_gates(self, x: Tensor) -> Tensor:
        """Input-to-state part of every gate, ``W_x * X + b``, for a non-fused cell.

        ``x`` is ``(N, C_in, H, W)``; returns ``(N, n_gates C_hid, H, W)`` (ConvLSTM:
        ``i, f, c~, o``; ConvGRU: ``z, r, h~``). A stack calls it once on all time
        steps folded into the batch.
        """
        if self.input_conv is None:
            raise RuntimeError(
                "input_gates is only defined for cells with different input and "
                "state kernels (fused=False)"
            )
        return self.input_conv(x)


class ConvLSTMCell(_ConvCellBase):
    r"""ConvLSTM cell with Hadamard peepholes, Shi et al. (2015), eq. (3).

    .. math::
        i_t &= \sigma(W_{xi} * X_t + W_{hi} * H_{t-1} + W_{ci} \circ C_{t-1} + b_i) \\
        f_t &= \sigma(W_{xf} * X_t + W_{hf} * H_{t-1} + W_{cf} \circ C_{t-1} + b_f) \\
        C_t &= f_t \circ C_{t-1} + i_t \circ \tanh(W_{xc} * X_t + W_{hc} * H_{t-1}
               + b_c) \\
        o_t &= \sigma(W_{xo} * X_t + W_{ho} * H_{t-1} + W_{co} \circ C_t + b_o) \\
        H_t &= o_t \circ \tanh(C_t)

    Parameters
    ----------
    in_channels : int
        Channels of the input frame ``X_t``; 0 for a cell that receives no input (the
        first forecasting layer of the paper), which then has no input-to-state weights.
    hidden_channels : int
        Channels of ``H`` and ``C``.
    kernel_size : int or (int, int)
        Input-to-state kernel (odd), e.g. 5 for the paper's Moving-MNIST models, 9 for
        its "ConvLSTM(9x9)" variants.
    state_kernel_size : int or (int, int), optional
        State-to-state kernel (odd); defaults to ``kernel_size``.
    bias : bool
        One learned bias per gate and channel.
    peephole : bool
        Learn the peephole weights ``W_ci, W_cf, W_co``, one value per channel
        (broadcast over space, as the paper's parameter counts imply), registered as
        the parameters ``w_ci, w_cf, w_co`` of shape ``(C_hid, 1, 1)``. ``False`` gives
        the common variant without peepholes.
    forget_bias : float
        Initial value of the forget-gate bias ``b_f`` (with ``norm="group"``: of the
        forget gate's GroupNorm shift, which is what the sigmoid then sees).
    norm : {None, "group"}
        ``"group"``: each gate's pre-activation through its own GroupNorm (see the
        module docstring), before the peephole terms are added.

    Notes
    -----
    Gate channels are ordered ``i, f, c~ (candidate), o`` in the convolution output.
    The state is ``(h, c)``; see :mod:`nowcast.models.cells`.
    """

    n_gates = 4
    n_state_tensors = 2

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        state_kernel_size: int | tuple[int, int] | None = None,
        bias: bool = True,
        peephole: bool = True,
        forget_bias: float = 1.0,
        norm: str | None = None,
    ) -> None:
        super().__init__(
            in_channels, hidden_channels, kernel_size, state_kernel_size, bias, norm
        )
        hid, g = hidden_channels, 4 * hidden_channels
        if self.fused:
            self.conv = self._conv(in_channels + hid, g, self.state_kernel_size, bias)
            self.input_conv = None
        else:
            self.input_conv = self._conv(in_channels, g, self.kernel_size, bias)
            self.conv = self._conv(hid, g, self.state_kernel_size, False)
        self.peephole = peephole
        if peephole:
            self.w_ci = nn.Parameter(torch.zeros(hid, 1, 1))
            self.w_cf = nn.Parameter(torch.zeros(hid, 1, 1))
            self.w_co = nn.Parameter(torch.zeros(hid, 1, 1))
        else:
            self.register_parameter("w_ci", None)
            self.register_parameter("w_cf", None)
            self.register_parameter("w_co", None)
        self.gate_norm = self._gate_norm(4)
        self.forget_bias = forget_bias
        self.reset_bias()

    def reset_bias(self) -> None:
        """Zero all biases, set the forget gate's to ``forget_bias``.

        With ``norm="group"`` the forget bias goes to the forget gate's GroupNorm shift
        (a convolution bias before a normalisation is mostly normalised away).
        """
        b = self.conv.bias if self.input_conv is None else self.input_conv.bias
        hid = self.hidden_channels
        with torch.no_grad():
            if b is not None:
                b.zero_()
            if self.gate_norm is not None:
                self.gate_norm.norms[1].bias.fill_(self.forget_bias)
            elif b is not None:
                b[hid : 2 * hid].fill_(self.forget_bias)

    def step(
        self, x: Tensor | None, state: LSTMState, x_gates: Tensor | None = None
    ) -> tuple[Tensor, LSTMState]:
        """One time step without input checks (the body of a stack's time loop).

        ``x_gates`` (non-fused cells only) is the precomputed :meth:`input_gates` of
        ``x``; when given, ``x`` is not used.
        """
        h, c = state
        if self.input_conv is None:
            gates = self.conv(h if x is None else torch.cat((x, h), dim=1))
        else:
            if x_gates is None:
                x_gates = self.input_conv(x)
            gates = x_gates + self.conv(h)
        if self.gate_norm is not None:
            gates = self.gate_norm(gates)
        h_next, c_next = lstm_update(gates, c, self.w_ci, self.w_cf, self.w_co)
        return h_next, (h_next, c_next)

    def forward(
        self, x: Tensor | None, state: LSTMState | None = None
    ) -> tuple[Tensor, LSTMState]:
        """Advance one time step.

        Parameters
        ----------
        x : torch.Tensor or None
            Input frame ``(B, C_in, H, W)``; ``None`` when ``in_channels=0``.
        state : (h, c), optional
            Previous state, each ``(B, C_hid, H, W)``; zeros when omitted (needs ``x``).

        Returns
        -------
        h : torch.Tensor
            New hidden state ``(B, C_hid, H, W)`` (the cell's output).
        state : (h, c)
            New state.
        """
        state = self._state_or_zeros(x, state)
        if not isinstance(state, tuple | list) or len(state) != 2:
            raise TypeError(
                f"ConvLSTM state must be a tuple (h, c), got {type(state).__name__}"
            )
        _check_step_input(self, x, state[0])
        if state[1].shape != state[0].shape:
            raise ValueError(
                f"h and c must have the same shape, got {tuple(state[0].shape)} and "
                f"{tuple(state[1].shape)}"
            )
        return self.step(x, (state[0], state[1]))

    def gate_weights(self) -> dict[str, Tensor | None]:
        """The paper's weights by name (views into the fused parameters).

        Keys ``W_x{i,f,c,o}`` (input-to-state kernels ``(C_hid, C_in, kh, kw)``, or
        ``None`` when ``in_channels=0``), ``W_h{i,f,c,o}`` (state-to-state kernels
        ``(C_hid, C_hid, kh, kw)``), ``b_{i,f,c,o}`` (``(C_hid,)`` or ``None``) and
        ``W_c{i,f,o}`` (peepholes ``(C_hid, 1, 1)`` or ``None``).
        """
        cin = self.in_channels
        if self.input_conv is None:
            wx = self.conv.weight[:, :cin] if cin else None
            wh = self.conv.weight[:, cin:]
            b = self.conv.bias
        else:
            wx, wh, b = self.input_conv.weight, self.conv.weight, self.input_conv.bias
        out: dict[str, Tensor | None] = {}
        for k, name in enumerate("ifco"):
            sl = slice(k * self.hidden_channels, (k + 1) * self.hidden_channels)
            out[f"W_x{name}"] = None if wx is None else wx[sl]
            out[f"W_h{name}"] = wh[sl]
            out[f"b_{name}"] = None if b is None else b[sl]
        out.update(W_ci=self.w_ci, W_cf=self.w_cf, W_co=self.w_co)
        return out

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, hidden_channels={self.hidden_channels}, "
            f"kernel_size={self.kernel_size}, state_kernel_size="
            f"{self.state_kernel_size}, peephole={self.peephole}, fused={self.fused}"
            f", norm={self.norm}"
        )


class ConvGRUCell(_ConvCellBase):
    r"""Convolutional GRU cell (Ballas et al. 2016; Shi et al. 2017).

    .. math::
        z_t &= \sigma(W_z * X_t + U_z * H_{t-1} + b_z) \\
        r_t &= \sigma(W_r * X_t + U_r * H_{t-1} + b_r) \\
        \tilde H_t &= \tanh(W_h * X_t + U_h * (r_t \circ H_{t-1}) + b_h) \\
        H_t &= (1 - z_t) \circ H_{t-1} + z_t \circ \tilde H_t

    Parameters
    ----------
    in_channels, hidden_channels, kernel_size, state_kernel_size, bias
        As for :class:`ConvLSTMCell`.
    norm : {None, "group"}
        ``"group"``: the GroupNorm ConvGRU. The ``z`` and ``r`` pre-activations each
        through their own ``GroupNorm(1, C_hid, eps=1e-6)`` before the sigmoid, the
        candidate's (``W_h * X + U_h * (r H) + b_h``) through a third before the tanh,
        and ``H_t = z H_{t-1} + (1 - z) H~`` (that variant's convention: ``z`` keeps the
        old state). With a bias on each convolution and affine norms, 4 input and 64
        hidden channels with 3x3 kernels make 118,080 parameters.

    Notes
    -----
    The reset gate acts on ``H`` *before* the candidate's state convolution, so a step
    needs two convolutions: one for ``[z, r]`` and one for the candidate (each over
    ``[x, h]`` / ``[x, r h]`` when fused). Gate channels are ordered ``z, r``; the state
    is the tensor ``h``.
    """

    n_gates = 3
    n_state_tensors = 1

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        state_kernel_size: int | tuple[int, int] | None = None,
        bias: bool = True,
        norm: str | None = None,
    ) -> None:
        super().__init__(
            in_channels, hidden_channels, kernel_size, state_kernel_size, bias, norm
        )
        hid, k = hidden_channels, self.state_kernel_size
        if self.fused:
            self.gate_conv = self._conv(in_channels + hid, 2 * hid, k, bias)
            self.cand_conv = self._conv(in_channels + hid, hid, k, bias)
            self.input_conv = None
        else:
            self.input_conv = self._conv(in_channels, 3 * hid, self.kernel_size, bias)
            self.gate_conv = self._conv(hid, 2 * hid, k, False)
            self.cand_conv = self._conv(hid, hid, k, False)
        self.gate_norm = self._gate_norm(2)
        self.cand_norm = self._gate_norm(1)
        self.reset_bias()

    def reset_bias(self) -> None:
        """Zero all biases."""
        with torch.no_grad():
            for conv in (self.input_conv, self.gate_conv, self.cand_conv):
                if conv is not None and conv.bias is not None:
                    conv.bias.zero_()

    def step(
        self, x: Tensor | None, state: Tensor, x_gates: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """One time step without input checks (see :meth:`ConvLSTMCell.step`)."""
        h = state
        hid = self.hidden_channels
        if self.input_conv is None:
            zr = self.gate_conv(h if x is None else torch.cat((x, h), dim=1))
        else:
            if x_gates is None:
                x_gates = self.input_conv(x)
            zr = x_gates[:, : 2 * hid] + self.gate_conv(h)
        if self.gate_norm is not None:
            zr = self.gate_norm(zr)
        z, r = torch.sigmoid(zr).chunk(2, dim=1)
        rh = r * h
        if self.input_conv is None:
            cand = self.cand_conv(rh if x is None else torch.cat((x, rh), dim=1))
        else:
            cand = x_gates[:, 2 * hid :] + self.cand_conv(rh)
        if self.cand_norm is None:
            h_next = h + z * (torch.tanh(cand) - h)  # = (1 - z) h + z h~
        else:  # the GroupNorm variant's convention: z keeps the old state
            h_next = h + (1 - z) * (torch.tanh(self.cand_norm(cand)) - h)
        return h_next, h_next

    def forward(
        self, x: Tensor | None, state: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Advance one time step.

        Parameters
        ----------
        x : torch.Tensor or None
            Input frame ``(B, C_in, H, W)``; ``None`` when ``in_channels=0``.
        state : torch.Tensor, optional
            Previous hidden state ``(B, C_hid, H, W)``; zeros when omitted.

        Returns
        -------
        h, state : torch.Tensor
            The new hidden state (output and state are the same tensor).
        """
        state = self._state_or_zeros(x, state)
        _check_step_input(self, x, state)
        return self.step(x, state)

    def gate_weights(self) -> dict[str, Tensor | None]:
        """The equations' weights by name (views into the parameters).

        Keys ``W_{z,r,h}`` (input kernels or ``None``), ``U_{z,r,h}`` (state kernels),
        ``b_{z,r,h}`` (biases or ``None``).
        """
        cin, hid = self.in_channels, self.hidden_channels
        if self.input_conv is None:
            wx = (
                torch.cat(
                    (self.gate_conv.weight[:, :cin], self.cand_conv.weight[:, :cin])
                )
                if cin
                else None
            )
            uh = torch.cat(
                (self.gate_conv.weight[:, cin:], self.cand_conv.weight[:, cin:])
            )
            b = (
                None
                if self.gate_conv.bias is None
                else torch.cat((self.gate_conv.bias, self.cand_conv.bias))
            )
        else:
            wx = self.input_conv.weight
            uh = torch.cat((self.gate_conv.weight, self.cand_conv.weight))
            b = self.input_conv.bias
        out: dict[str, Tensor | None] = {}
        for k, name in enumerate("zrh"):
            sl = slice(k * hid, (k + 1) * hid)
            out[f"W_{name}"] = None if wx is None else wx[sl]
            out[f"U_{name}"] = uh[sl]
            out[f"b_{name}"] = None if b is None else b[sl]
        return out

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, hidden_channels={self.hidden_channels}, "
            f"kernel_size={self.kernel_size}, state_kernel_size="
            f"{self.state_kernel_size}, fused={self.fused}, norm={self.norm}"
        )


CELLS: dict[str, type[ConvLSTMCell] | type[ConvGRUCell]] = {
    "lstm": ConvLSTMCell,
    "gru": ConvGRUCell,
}
"""Registry of recurrent cell classes by name."""

CELL_VARIANTS: dict[str, tuple[str, dict[str, object]]] = {
    "lstm_gn": ("lstm", {"norm": "group"}),
    "gru_gn": ("gru", {"norm": "group"}),
}
"""Registered names for a cell class with options: name -> (class name, options)."""


def get_cell(name: str) -> type[ConvLSTMCell] | type[ConvGRUCell]:
    """Return the cell class registered as ``name`` (``"lstm"`` or ``"gru"``).

    Raises
    ------
    ValueError
        If ``name`` is not registered; the message lists the available names.
    """
    return resolve_cell(name)[0]


def resolve_cell(
    name: str,
) -> tuple[type[ConvLSTMCell] | type[ConvGRUCell], dict[str, object]]:
    """The cell class and the options that ``name`` stands for.

    ``"lstm"`` and ``"gru"`` are the plain cells (no options); ``"lstm_gn"`` and
    ``"gru_gn"`` the same classes with ``norm="group"``.

    Raises
    ------
    ValueError
        If ``name`` is not registered; the message lists the available names.
    """
    key = name.lower() if isinstance(name, str) else name
    if key in CELL_VARIANTS:
        base, options = CELL_VARIANTS[key]
        return CELLS[base], dict(options)
    if key not in CELLS:
        raise ValueError(
            f"unknown cell {name!r}; available cells: {', '.join(sorted(CELLS))} "
            f"(and {', '.join(sorted(CELL_VARIANTS))}: the same with norm='group')"
        )
    return CELLS[key], {}
