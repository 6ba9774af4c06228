"""The one forecasting interface shared by learned models and baselines.

Every forecaster, learned (``EncoderForecaster``, ``FCLSTM``) or not (``Persistence``,
``Rover``), answers ``predict(inputs, n_steps) -> forecast`` on tensors laid out as
``(batch, time, channel, height, width)`` holding normalised intensities in [0, 1].
Evaluation, plots and notebooks only ever call this method, so they never need to know
which kind of forecaster they hold.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

__all__ = ["Forecaster", "check_sequence", "check_n_steps"]


@runtime_checkable
class Forecaster(Protocol):
    """Anything that extrapolates a radar sequence.

    Methods
    -------
    predict(inputs, n_steps)
        ``inputs`` is a float tensor ``(B, T_in, C, H, W)`` of normalised intensities in
        [0, 1]; the result is ``(B, n_steps, C, H, W)`` in [0, 1] on the same device, the
        forecast for lead times ``1 .. n_steps`` frames after the last input frame.
    """

    def predict(
        self, inputs: torch.Tensor, n_steps: int
    ) -> torch.Tensor:  # pragma: no cover
        ...


def check_sequence(
    x: torch.Tensor, name: str = "inputs", min_time: int = 1, check_finite: bool = True
) -> None:
    """Validate a ``(B, T, C, H, W)`` sequence tensor, raising a clear error if not.

    Parameters
    ----------
    x : torch.Tensor
        The tensor to check.
    name : str
        Name used in error messages.
    min_time : int
        Minimum number of time steps required.
    check_finite : bool
        Also scan the values for NaN/inf. The scan synchronises with the device, so
        training loops (which check their loss instead) switch it off; it is skipped
        while ``torch.compile`` traces.

    Raises
    ------
    TypeError
        If ``x`` is not a tensor.
    ValueError
        If ``x`` is not 5-D, has fewer than ``min_time`` frames, or holds NaN/inf.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 5:
        raise ValueError(
            f"{name} must be (B, T, C, H, W), got shape {tuple(x.shape)}; "
            "add missing axes with x[:, :, None] (channel) or x[None] (batch)"
        )
    if x.shape[1] < min_time:
        raise ValueError(
            f"{name} needs at least {min_time} time step(s), got shape {tuple(x.shape)}"
        )
    if not check_finite or torch.compiler.is_compiling():
        return  # the value scan is a host sync (and a graph break under compile)
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(
            f"{name} contains NaN or inf; fill missing pixels (e.g. with 0) before "
            "forecasting"
        )


def check_n_steps(n_steps: int) -> int:
    """Return ``n_steps`` as an int, raising ``ValueError`` unless it is >= 1."""
    if int(n_steps) != n_steps or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    return int(n_steps)
