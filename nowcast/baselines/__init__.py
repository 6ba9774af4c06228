"""Non-learned nowcasts: persistence and ROVER-style optical-flow extrapolation.

All answer the :class:`nowcast.forecast.Forecaster` protocol
(``predict(inputs, n_steps)`` on ``(B, T, C, H, W)`` tensors in [0, 1]).
"""

from nowcast.baselines.advection import semi_lagrangian
from nowcast.baselines.optical_flow import (
    available_methods,
    estimate_flow,
    get_method,
    register_method,
)
from nowcast.baselines.persistence import Persistence
from nowcast.baselines.rover import Rover

__all__ = [
    "Persistence",
    "Rover",
    "estimate_flow",
    "get_method",
    "register_method",
    "available_methods",
    "semi_lagrangian",
]
