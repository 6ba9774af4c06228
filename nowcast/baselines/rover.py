"""ROVER-style nowcast: variational optical flow, then semi-Lagrangian advection.

ROVER (Real-time Optical flow by Variational methods for Echoes of Radar) is the Hong
Kong Observatory's operational extrapolation nowcast, the baseline of Shi et al. (2015,
Sec. 4.2): a variational optical flow is estimated from the latest radar frames and
the last frame is advected along it, the flow held constant over the forecast. The
paper tries three initialisations of the flow (ROVER1-3) without detailing them; here
the three variants differ in how the input frames feed the flow estimate:

* ``variant=1``: the flow of the last two frames, from a zero initial flow (as the
  HKO-7 benchmark's ROVER, Shi et al. 2017);
* ``variant=2``: the flow of the last pair *initialised* by the flow of the earlier
  pairs, chained through the input sequence oldest first (a warm start that keeps
  large, persistent motion the last pair alone may miss);
* ``variant=3``: the chained flows of all consecutive input pairs *averaged* (a
  temporally smoothed, noise-robust motion).

See :func:`nowcast.baselines.optical_flow.estimate_flow` (``temporal="last"``,
``"chain"``, ``"mean"``) and :func:`nowcast.baselines.advection.semi_lagrangian`.
"""

from __future__ import annotations

import torch

from nowcast.baselines.advection import INTERPOLATIONS, semi_lagrangian
from nowcast.baselines.optical_flow import estimate_flow, get_method
from nowcast.forecast import check_n_steps, check_sequence

__all__ = ["Rover", "VARIANT_TEMPORAL"]

#: ROVER variant -> how the input pairs are combined in ``estimate_flow``.
VARIANT_TEMPORAL = {1: "last", 2: "chain", 3: "mean"}


class Rover:
    """Optical-flow extrapolation nowcast (the paper's ROVER1-3 baselines).

    Parameters
    ----------
    variant : {1, 2, 3}
        Flow initialisation / combination over the inputs (module docstring).
    method : str
        Flow method of :func:`~nowcast.baselines.optical_flow.get_method`
        (``"dis"``: variational, default; ``"dis_fast"``; ``"farneback"``).
    n_flow_frames : int, optional
        Use only the last ``n_flow_frames`` inputs for the flow (>= 2); all inputs by
        default (variant 1 always uses the last two).
    fill_value : float
        Grey level entering through the upwind boundary (0 = no rain).
    interpolation : {"bilinear", "nearest", "bicubic"}
        Interpolation of the advected frame.
    **flow_params
        Parameters of the flow method (e.g. ``alpha``, ``patch_size`` for ``"dis"``),
        and :func:`~nowcast.baselines.optical_flow.estimate_flow`'s ``warm_params``
        (variants 2 and 3: cheaper settings for the earlier pairs, by default
        :func:`~nowcast.baselines.optical_flow.default_warm_params`; ``{}`` runs
        every pair at full cost) and
        ``workers`` (threads over the batch).
    """

    def __init__(
        self,
        variant: int = 1,
        method: str = "dis",
        n_flow_frames: int | None = None,
        fill_value: float = 0.0,
        interpolation: str = "bilinear",
        **flow_params: object,
    ) -> None:
        if variant not in VARIANT_TEMPORAL:
            raise ValueError(
                f"variant must be one of {sorted(VARIANT_TEMPORAL)}, got {variant!r}"
            )
        get_method(method)  # fail early on an unknown name
        if n_flow_frames is not None and int(n_flow_frames) < 2:
            raise ValueError(f"n_flow_frames must be >= 2, got {n_flow_frames!r}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}"
            )
        self.variant = int(variant)
        self.method = method
        self.n_flow_frames = None if n_flow_frames is None else int(n_flow_frames)
        self.fill_value = float(fill_value)
        self.interpolation = interpolation
        self.flow_params = dict(flow_params)

    def flow(self, inputs: torch.Tensor) -> torch.Tensor:
        """The motion field used by :meth:`predict`.

        Parameters
        ----------
        inputs : torch.Tensor, shape (B, T_in, C, H, W), T_in >= 2

        Returns
        -------
        torch.Tensor, shape (B, 2, H, W)
            ``(u, v)`` in pixels per time step (x right, y down), on ``inputs``' device.
        """
        check_sequence(inputs, "inputs", min_time=2)
        frames = inputs
        if self.variant == 1:
            frames = inputs[:, -2:]
        elif self.n_flow_frames is not None:
            frames = inputs[:, -self.n_flow_frames :]
        return estimate_flow(
            frames, self.method, VARIANT_TEMPORAL[self.variant], **self.flow_params
        )

    def predict(self, inputs: torch.Tensor, n_steps: int) -> torch.Tensor:
        """Advect the last input frame along the flow of the inputs.

        Parameters
        ----------
        inputs : torch.Tensor, shape (B, T_in, C, H, W), T_in >= 2
            Observed grey levels in [0, 1], oldest first.
        n_steps : int
            Number of lead times.

        Returns
        -------
        torch.Tensor, shape (B, n_steps, C, H, W)
            Forecast grey levels in [0, 1], on ``inputs``' device.
        """
        n_steps = check_n_steps(n_steps)
        flow = self.flow(inputs)
        out = semi_lagrangian(
            inputs[:, -1], flow, n_steps, self.fill_value, self.interpolation
        )
        return out.clamp_(0.0, 1.0)

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.flow_params.items())
        return f"Rover(variant={self.variant}, method={self.method!r}{extra})"
