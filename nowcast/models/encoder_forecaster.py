"""The encoding-forecasting ConvLSTM network of Shi et al. (2015), section 3.2.

Frames are folded into patches (``p x p`` pixels -> ``C p^2`` channels) inside the
model. An encoding stack reads the input frames; a forecasting stack with the same
layer sizes starts from the encoder's final states (``H`` and ``C`` of every layer,
copied) and receives no frames; at every forecast step the hidden states of all
forecasting layers are concatenated and mapped by a 1x1 convolution to the ``C p^2``
patch channels, which are un-patchified to frames.

The forecaster's first layer has no input-to-state weights (it has no input), so the
parameter counts equal the published ones exactly (Table 1; see
``tests/models/test_param_counts.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nowcast.forecast import check_n_steps, check_sequence
from nowcast.models.convrnn import ConvRNN, KernelArg, RNNState
from nowcast.patches import patchify, unpatchify

__all__ = ["EncoderForecaster"]


class LogitsForecaster(nn.Module):
    """Base of the models whose ``forward`` gives logits: ``predict`` = sigmoid.

    Subclasses define ``forward(inputs, n_steps) -> logits (B, n_steps, C, H, W)``.
    """

    @torch.no_grad()
    def predict(self, inputs: Tensor, n_steps: int) -> Tensor:
        """Forecast ``(B, n_steps, C, H, W)`` in [0, 1] (``Forecaster`` protocol).

        Runs in eval mode without gradients; the module's train/eval mode is restored
        afterwards.
        """
        was_training = self.training
        self.eval()
        try:
            return torch.sigmoid(self.forward(inputs, n_steps)).to(inputs.dtype)
        finally:
            self.train(was_training)


class EncoderForecaster(LogitsForecaster):
    """Encoder-forecaster of ConvLSTM (or ConvGRU) layers; a ``Forecaster``.

    Parameters
    ----------
    in_channels : int
        Channels of the input frames (1 for radar reflectivity / Moving MNIST).
    patch_size : int
        Patch size ``p``; frame height and width must be multiples of it (the paper:
        4 for 64x64 Moving MNIST, 2 for 100x100 radar).
    hidden_channels : int or list of int
        Hidden channels per layer, shared by encoder and forecaster (the paper: 256,
        [128, 128], [128, 64, 64] on Moving MNIST; [64, 64] on radar).
    input_kernel_size : int or list
        Input-to-state kernel per layer (odd).
    state_kernel_size : int or list
        State-to-state kernel per layer (odd); "ConvLSTM(9x9)-1x1" is 9 / 1.
    cell : {"lstm", "gru"}
        Recurrent cell, see :func:`nowcast.models.cells.get_cell`.
    peephole : bool
        ConvLSTM peephole weights (one per channel); ignored for ConvGRU, which has
        no cell state.
    bias : bool
        Gate biases.
    forget_bias : float
        Initial ConvLSTM forget-gate bias.
    residual : bool
        *Not in the paper* (an option, off by default and in every paper config): the
        output is read as a change of the last input frame. At every lead the 1x1 head's
        output is added to ``logit(x_last)`` (``x_last`` clamped to ``[eps, 1 - eps]``)
        and the head starts at zero, so an untrained model forecasts persistence and
        training learns the motion, growth and decay as corrections to it.
    residual_eps : float
        Clamp of the last frame before its logit (``residual=True`` only); a dry pixel
        (grey 0) starts at ``logit(eps)``.
    copy_gate : bool
        *Not in the paper* (an option, off by default and in every paper config): a
        second 1x1 head over the forecaster's hidden states gives, per lead and patch
        pixel, a gate ``g`` in (0, 1), and the forecast is
        ``g * x_last + (1 - g) * sigmoid(head)``: the network chooses where and for how
        long copying the last input frame beats its own forecast (lead 1 of a slowly
        moving field) and where its learned extrapolation takes over. The forecaster
        still receives no frames and learns the motion itself.
    copy_gate_bias : float
        Initial bias of the gate (``copy_gate=True`` only); 0 starts at an even mix.
    copy_warp : bool
        *Not in the paper* (with ``copy_gate`` only): a third 1x1 head over the
        forecaster's hidden states gives, per lead, a displacement field (pixels of the
        full frame, bilinearly upsampled from the patch grid), and the gate copies the
        last input frame *moved* by it (``grid_sample``, bilinear, border values)
        instead of the frame itself. The head starts at zero, so an untrained model is
        the plain copy gate. The motion is learned by the network from its own states:
        no optical flow is computed.

    Notes
    -----
    :meth:`forward` returns *logits* (train with ``BCEWithLogitsLoss``, the paper's
    per-pixel cross-entropy, or apply ``sigmoid`` before an MSE); :meth:`predict`
    returns probabilities / intensities in [0, 1].
    """

    def __init__(
        self,
        in_channels: int = 1,
        patch_size: int = 2,
        hidden_channels: int | Sequence[int] = (64, 64),
        input_kernel_size: KernelArg = 3,
        state_kernel_size: KernelArg = 3,
        cell: str = "lstm",
        peephole: bool = True,
        bias: bool = True,
        forget_bias: float = 1.0,
        residual: bool = False,
        residual_eps: float = 1e-3,
        copy_gate: bool = False,
        copy_gate_bias: float = 0.0,
        copy_warp: bool = False,
    ) -> None:
        super().__init__()
        if residual and copy_gate:
            raise ValueError("choose one of residual=True and copy_gate=True, not both")
        if copy_warp and not copy_gate:
            raise ValueError(
                "copy_warp=True moves the copy gate's frame: set copy_gate=True"
            )
        if not 0.0 < residual_eps < 0.5:
            raise ValueError(f"residual_eps must be in (0, 0.5), got {residual_eps!r}")
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
        if not isinstance(patch_size, int) or patch_size < 1:
            raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
        if not isinstance(hidden_channels, int):
            hidden_channels = [int(h) for h in hidden_channels]  # hydra ListConfig
        if isinstance(input_kernel_size, Sequence) and not isinstance(
            input_kernel_size, tuple
        ):
            input_kernel_size = list(input_kernel_size)
        if isinstance(state_kernel_size, Sequence) and not isinstance(
            state_kernel_size, tuple
        ):
            state_kernel_size = list(state_kernel_size)
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.cell = cell
        patch_channels = in_channels * patch_size * patch_size
        common = dict(
            cell=cell,
            hidden_channels=hidden_channels,
            kernel_size=input_kernel_size,
            state_kernel_size=state_kernel_size,
            bias=bias,
            peephole=peephole,
            forget_bias=forget_bias,
        )
        self.encoder = ConvRNN(in_channels=patch_channels, **common)
        self.forecaster = ConvRNN(in_channels=0, return_all_layers=True, **common)
        self.hidden_channels = self.encoder.hidden_channels
        self.output = nn.Conv2d(sum(self.hidden_channels), patch_channels, 1)
        self.residual = bool(residual)
        self.residual_eps = float(residual_eps)
        if self.residual:  # untrained = persistence
            nn.init.zeros_(self.output.weight)
            nn.init.zeros_(self.output.bias)
        self.copy_gate = None
        if copy_gate:
            self.copy_gate = nn.Conv2d(sum(self.hidden_channels), patch_channels, 1)
            nn.init.zeros_(self.copy_gate.weight)
            nn.init.constant_(self.copy_gate.bias, float(copy_gate_bias))
        self.warp = None
        if copy_warp:  # zero start: the plain copy gate
            self.warp = nn.Conv2d(sum(self.hidden_channels), 2, 1)
            nn.init.zeros_(self.warp.weight)
            nn.init.zeros_(self.warp.bias)

    def encode(self, patches: Tensor, state: RNNState | None = None) -> RNNState:
        """Run the encoder over patch frames ``(B, T, C p^2, H/p, W/p)``; return the
        final state of every layer (the forecaster's initial state)."""
        _, state = self.encoder(patches, state)
        return state

    def forecast(
        self,
        state: RNNState,
        n_steps: int,
        last: Tensor | None = None,
        last_frame: Tensor | None = None,
    ) -> Tensor:
        """Unroll the forecaster from ``state`` for ``n_steps``; return patch-space
        logits ``(B, n_steps, C p^2, H/p, W/p)``.

        ``last`` (the last input frame in patch space, ``(B, C p^2, H/p, W/p)``) is
        needed by the ``residual`` and ``copy_gate`` options; without it the plain
        head's logits are returned. ``copy_warp`` also needs ``last_frame``, the last
        input frame at full resolution ``(B, C, H, W)``.
        """
        outputs, _ = self.forecaster(None, state, n_steps)
        hidden = torch.cat(outputs, dim=2).flatten(0, 1)  # (B n, sum(hidden), h, w)
        logits = self.output(hidden).unflatten(0, (-1, n_steps))  # 1x1, all steps
        if last is None:
            return logits
        last = last[:, None]
        if self.residual:
            clamped = last.clamp(self.residual_eps, 1.0 - self.residual_eps)
            return logits + torch.logit(clamped)
        if self.copy_gate is not None:
            gate = torch.sigmoid(self.copy_gate(hidden).unflatten(0, (-1, n_steps)))
            if self.warp is not None:
                last = self._moved_last(hidden, last_frame, n_steps)
            mixed = gate * last + (1.0 - gate) * torch.sigmoid(logits)
            return torch.logit(mixed, eps=1e-6)
        return logits

    def _moved_last(self, hidden: Tensor, frame: Tensor | None, n_steps: int) -> Tensor:
        """The last frame moved by the learned displacement of each lead, in patches.

        ``hidden`` is ``(B n, sum(hidden), h, w)``; returns ``(B, n, C p^2, h, w)``.
        """
        if frame is None:
            raise ValueError(
                "copy_warp needs last_frame, the last input frame (B, C, H, W)"
            )
        p = self.patch_size
        disp = F.interpolate(self.warp(hidden), scale_factor=p, mode="bilinear")
        b, c, h, w = frame.shape
        ys = torch.arange(h, device=frame.device, dtype=disp.dtype)
        xs = torch.arange(w, device=frame.device, dtype=disp.dtype)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        # sample the frame at (x - dx, y - dy): content moves by (dx, dy) pixels
        x = (gx - disp[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
        y = (gy - disp[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
        frames = frame.repeat_interleave(n_steps, dim=0)
        moved = F.grid_sample(
            frames,
            torch.stack((x, y), dim=-1),
            mode="bilinear",
            padding_mode="border",
            align_corners=True,
        )
        return patchify(moved.unflatten(0, (b, n_steps)), p)

    def forward(self, inputs: Tensor, n_steps: int) -> Tensor:
        """Forecast logits.

        Parameters
        ----------
        inputs : torch.Tensor
            ``(B, T_in, C, H, W)`` float in [0, 1]; ``H`` and ``W`` multiples of
            ``patch_size``.
        n_steps : int
            Number of frames to forecast (may differ from the training length).

        Returns
        -------
        torch.Tensor
            Pre-sigmoid logits ``(B, n_steps, C, H, W)``.
        """
        # in training the value scan would sync the device every step: the trainer
        # checks the loss for NaN/inf instead; predict() and eval forwards scan
        check_sequence(inputs, "inputs", check_finite=not self.training)
        n_steps = check_n_steps(n_steps)
        if inputs.shape[2] != self.in_channels:
            raise ValueError(
                f"inputs must have {self.in_channels} channel(s), i.e. (B, T, "
                f"{self.in_channels}, H, W), got {tuple(inputs.shape)}"
            )
        patches = patchify(inputs, self.patch_size)
        logits = self.forecast(
            self.encode(patches), n_steps, patches[:, -1], inputs[:, -1]
        )
        return unpatchify(logits, self.patch_size)
