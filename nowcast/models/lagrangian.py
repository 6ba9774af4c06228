"""A Lagrangian ConvLSTM / ConvGRU: the network learns growth and decay, ROVER the motion.

Not the 2015 paper's model: the advection-free idea of Ritvanen et al. (2023,
"Advection-free convolutional neural network for convective rainfall nowcasting"),
built from this package's parts.

1. The motion field ``V`` (pixels per step, held constant) is estimated from the input
   frames by a :class:`~nowcast.baselines.rover.Rover` (no gradient flows through it).
2. The inputs are moved into the frame of the motion: frame ``T - k`` (``k`` steps
   before the last one) is carried ``k`` steps forward along ``V``, so every input sits
   where the echoes are at the last observation time and what is left to learn is how
   the echoes grow, decay and change shape.
3. An :class:`~nowcast.models.encoder_forecaster.EncoderForecaster` with the residual
   head reads those frames and forecasts, in the same frame, a correction of the last
   input ("nothing changes"); its head starts at zero.
4. The forecast for lead ``j`` is carried ``j`` steps forward along ``V``.

So an untrained model forecasts the last frame advected along the ROVER flow, which is
ROVER itself up to the residual head's clamp of the last frame (``residual_eps``, 1e-3
in grey levels by default), and training only has to learn what advection misses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from nowcast.baselines.advection import advect_fields, departure_grid
from nowcast.baselines.rover import Rover
from nowcast.forecast import check_n_steps, check_sequence
from nowcast.models.encoder_forecaster import EncoderForecaster
from nowcast.signatures import check_forwarded, forwards_to

__all__ = ["LagrangianForecaster"]

#: Probabilities are clamped to [PROB_EPS, 1 - PROB_EPS] before the logit of forward().
PROB_EPS = 1e-6


@forwards_to(EncoderForecaster, sets=("residual", "copy_gate"))
class LagrangianForecaster(nn.Module):
    """ConvLSTM (or ConvGRU) encoder-forecaster in the frame of the ROVER motion.

    Parameters
    ----------
    in_channels, patch_size, hidden_channels
        Of the inner :class:`~nowcast.models.encoder_forecaster.EncoderForecaster`
        (always with ``residual=True``).
    rover : mapping, optional
        Keyword arguments of the :class:`~nowcast.baselines.rover.Rover` that estimates
        the motion (``variant``, ``method``, flow parameters such as ``alpha``,
        ``patch_size``); default ROVER2 with the package's built-in flow parameters.
    fill_value : float
        Grey level entering through the upwind boundary (0 = no rain), as in ROVER.
    **core
        The inner model's other parameters (``input_kernel_size``,
        ``state_kernel_size``, ``cell``, ``peephole``, ``bias``, ``forget_bias``,
        ``residual_eps``; see :class:`EncoderForecaster`).

    Notes
    -----
    :meth:`forward` returns logits (``BCEWithLogitsLoss``, like the plain model), made
    from the advected probabilities clamped to ``[1e-6, 1 - 1e-6]``; :meth:`predict`
    returns the advected probabilities themselves.
    """

    def __init__(
        self,
        in_channels: int = 1,
        patch_size: int = 4,
        hidden_channels: int | Sequence[int] = (32, 32),
        rover: Mapping[str, Any] | None = None,
        fill_value: float = 0.0,
        **core: Any,
    ) -> None:
        super().__init__()
        check_forwarded(LagrangianForecaster, core)  # residual, copy_gate: fixed
        self.core = EncoderForecaster(
            in_channels=in_channels,
            patch_size=patch_size,
            hidden_channels=hidden_channels,
            residual=True,
            **core,
        )
        cell = self.core.cell
        rover_kwargs = {"variant": 2, **dict(rover or {})}
        rover_kwargs.pop("_target_", None)
        self.rover = Rover(**rover_kwargs)
        self.fill_value = float(fill_value)
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.cell = cell

    def motion(self, inputs: Tensor) -> Tensor:
        """The ROVER motion field ``(B, 2, H, W)`` of ``inputs``, pixels per step."""
        with torch.no_grad():
            return self.rover.flow(inputs.detach()).to(inputs.device, torch.float32)

    def to_lagrangian(self, inputs: Tensor, grid: Tensor) -> Tensor:
        """Carry input frame ``T - k`` forward ``k`` steps (the last frame stays)."""
        n_in = inputs.shape[1]
        if n_in == 1:
            return inputs
        earlier = inputs[:, :-1].flip(1)  # frames T-1, T-2, ..., 1 (1-based)
        moved = advect_fields(earlier, grid, self.fill_value, self.rover.interpolation)
        return torch.cat((moved.flip(1), inputs[:, -1:]), dim=1)

    def forecast_probabilities(self, inputs: Tensor, n_steps: int) -> Tensor:
        """Forecast grey levels ``(B, n_steps, C, H, W)``, differentiable in the weights.

        Parameters
        ----------
        inputs : torch.Tensor
            ``(B, T_in, C, H, W)`` grey levels in [0, 1], ``T_in >= 2``.
        n_steps : int
            Lead times.
        """
        check_sequence(inputs, "inputs", min_time=2, check_finite=not self.training)
        n_steps = check_n_steps(n_steps)
        grid = departure_grid(
            self.motion(inputs), max(n_steps, inputs.shape[1] - 1)
        ).to(inputs.dtype)
        lagrangian = self.to_lagrangian(inputs, grid)
        logits = self.core(lagrangian.clamp(0.0, 1.0), n_steps)
        moved = advect_fields(
            torch.sigmoid(logits), grid, self.fill_value, self.rover.interpolation
        )
        return moved.clamp(0.0, 1.0)

    def forward(self, inputs: Tensor, n_steps: int) -> Tensor:
        """Forecast logits ``(B, n_steps, C, H, W)`` (see the class notes)."""
        probs = self.forecast_probabilities(inputs, n_steps)
        return torch.logit(probs, eps=PROB_EPS)

    @torch.no_grad()
    def predict(self, inputs: Tensor, n_steps: int) -> Tensor:
        """Forecast ``(B, n_steps, C, H, W)`` in [0, 1] (``Forecaster`` protocol)."""
        was_training = self.training
        self.eval()
        try:
            return self.forecast_probabilities(inputs, n_steps).to(inputs.dtype)
        finally:
            self.train(was_training)
