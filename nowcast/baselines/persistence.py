"""Persistence (the "last frame" baseline): tomorrow looks like now."""

from __future__ import annotations

import torch

from nowcast.forecast import check_n_steps, check_sequence

__all__ = ["Persistence"]


class Persistence:
    """Forecast the last observed frame unchanged for every lead time.

    The zero-skill floor every nowcast must beat (the "last frame" row of the HKO-7
    benchmark, Shi et al. 2017).
    """

    def predict(self, inputs: torch.Tensor, n_steps: int) -> torch.Tensor:
        """Repeat the last input frame.

        Parameters
        ----------
        inputs : torch.Tensor, shape (B, T_in, C, H, W)
            Observed grey levels in [0, 1].
        n_steps : int
            Number of lead times.

        Returns
        -------
        torch.Tensor, shape (B, n_steps, C, H, W)
            ``inputs[:, -1]`` clipped to [0, 1] at every lead, on ``inputs``' device
            (a real copy, safe to modify).
        """
        check_sequence(inputs, "inputs")
        n_steps = check_n_steps(n_steps)
        last = inputs[:, -1:].clamp(0.0, 1.0)
        return last.expand(-1, n_steps, -1, -1, -1).contiguous()

    def __repr__(self) -> str:
        return "Persistence()"
