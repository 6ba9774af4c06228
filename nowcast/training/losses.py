"""Training losses on the logits of a forecaster, chosen by name.

Every loss is a callable ``loss(logits, targets, mask=None) -> 0-d tensor`` where

* ``logits`` is the raw model output ``(B, T, C, H, W)`` (``EncoderForecaster.forward``;
  the forecast itself is ``sigmoid(logits)``, grey levels in [0, 1]);
* ``targets`` are the observed grey levels ``(B, T, C, H, W)`` in [0, 1];
* ``mask`` is an optional boolean map broadcastable to ``(B, T, C, H, W)``, True where
  a pixel counts: the data set's clutter mask ``valid_mask`` ``(H, W)`` and, for
  archives with no-data pixels, the per-frame ``target_valid`` ``(B, T, 1, H, W)``,
  combined by :func:`combine_masks`.

Losses are means over the counted pixels, computed in float32 even under autocast.

Available (see :func:`get_loss`):

``bce``
    Per-pixel binary cross-entropy of the predicted grey level, the training loss of
    Shi et al. (2015) for both the Moving-MNIST and the radar experiments. The paper
    reports it summed over the predicted frames of a sequence; here it is the mean per
    pixel (multiply by ``T * C * H * W`` for the per-sequence figure).
``mse`` / ``mae``
    Mean squared / absolute error of ``sigmoid(logits)`` against the targets.
``balanced_mse`` / ``balanced_mae``
    The HKO-7 balanced losses B-MSE / B-MAE (Shi et al. 2017): each pixel's error is
    weighted by the observed rain rate, weights 1, 2, 5, 10, 30 from 0, 2, 5, 10,
    30 mm/h up, so that rare heavy rain is not drowned by the many dry pixels. Grey
    levels become rain rates with the training set's
    :class:`~nowcast.data.physical.GreyScale` (``dataset.scale``): dBZ archives through
    their range and Z-R relation, rain-rate archives linearly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nowcast.data.physical import GreyScale

__all__ = [
    "LOSSES",
    "get_loss",
    "available_losses",
    "masked_mean",
    "combine_masks",
    "balanced_weights",
    "PixelLoss",
    "BalancedLoss",
    "HKO7_BALANCE_THRESHOLDS",
    "HKO7_BALANCE_WEIGHTS",
]

#: Rain-rate edges (mm/h) above which the balanced-loss weight steps up (HKO-7).
HKO7_BALANCE_THRESHOLDS = (2.0, 5.0, 10.0, 30.0)
#: Weight of a pixel whose rain rate lies below the first edge, between edges, ...
HKO7_BALANCE_WEIGHTS = (1.0, 2.0, 5.0, 10.0, 30.0)


def _check_pair(logits: torch.Tensor, targets: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise TypeError(
            "logits and targets must be torch.Tensors, got "
            f"{type(logits).__name__} and {type(targets).__name__}"
        )
    if logits.ndim != 5 or logits.shape != targets.shape:
        raise ValueError(
            "logits and targets must both be (B, T, C, H, W) of the same shape, got "
            f"{tuple(logits.shape)} and {tuple(targets.shape)}"
        )


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` over the pixels where ``mask`` is True.

    Parameters
    ----------
    values : torch.Tensor, shape (B, T, C, H, W)
        Per-pixel loss terms.
    mask : torch.Tensor of bool, broadcastable to ``values`` (usually (H, W)), or None
        Pixels that count; ``None`` counts every pixel.

    Returns
    -------
    torch.Tensor, 0-d
        ``sum(values * mask) / count(mask)`` (the plain mean without a mask).
    """
    if mask is None:
        return values.mean()
    per_frame = mask.ndim > 2
    mask = mask.to(device=values.device, dtype=values.dtype)
    mask = torch.broadcast_to(mask, values.shape)
    count = mask.sum()
    if float(count) == 0:
        if per_frame:  # a batch wholly outside coverage: it contributes nothing
            return (values * mask).sum()
        raise ValueError("the loss mask excludes every pixel; check valid_mask")
    # where() rather than a product: a masked pixel's value (even inf / NaN) is dropped
    return torch.where(mask > 0, values, torch.zeros_like(values)).sum() / count


def combine_masks(
    valid_mask: torch.Tensor | None, target_valid: torch.Tensor | None
) -> torch.Tensor | None:
    """The pixels a masked loss counts: not clutter and observed.

    Parameters
    ----------
    valid_mask : torch.Tensor of bool, shape (H, W), or None
        The data set's clutter mask (True = scored).
    target_valid : torch.Tensor of bool, shape (B, T, 1, H, W), or None
        Per-frame coverage of the targets (True = observed), from the batch.

    Returns
    -------
    torch.Tensor of bool or None
        ``valid_mask & target_valid`` broadcast to ``(B, T, 1, H, W)``, whichever is
        given, or None when neither is.
    """
    if target_valid is None:
        return valid_mask
    target_valid = target_valid.to(torch.bool)
    if valid_mask is None:
        return target_valid
    return target_valid & valid_mask.to(device=target_valid.device, dtype=torch.bool)


def _grey_scale(scale: GreyScale | None) -> GreyScale:
    """``scale``, HKO-7's when ``None``; a ``TypeError`` for anything else."""
    scale = GreyScale.hko7() if scale is None else scale
    if not isinstance(scale, GreyScale):
        raise TypeError(
            f"scale must be a nowcast.data.physical.GreyScale, got {type(scale).__name__}"
        )
    return scale


class _MaskedPixelLoss(nn.Module):
    """Base of the losses: per-pixel terms of float32 logits, masked mean.

    Subclasses give :meth:`terms`; :meth:`forward` checks the pair, computes in
    float32 (also under autocast) and averages over the pixels ``mask`` keeps.
    """

    def terms(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-pixel loss terms, the shape of ``targets``."""
        raise NotImplementedError

    def forward(
        self,
        logits: torch.Tensor,
        targets: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        _check_pair(logits, targets)
        return masked_mean(self.terms(logits.float(), targets.float()), mask)


class PixelLoss(_MaskedPixelLoss):
    """An unweighted per-pixel loss (``bce``, ``mse`` or ``mae``) on logits.

    Parameters
    ----------
    kind : {"bce", "mse", "mae"}
        ``bce`` is the binary cross-entropy of ``sigmoid(logits)`` against the grey
        levels (computed stably from the logits); ``mse`` / ``mae`` compare
        ``sigmoid(logits)`` with the targets.
    """

    def __init__(self, kind: str = "bce") -> None:
        super().__init__()
        if kind not in ("bce", "mse", "mae"):
            raise ValueError(f"kind must be 'bce', 'mse' or 'mae', got {kind!r}")
        self.kind = kind

    def terms(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.kind == "bce":
            return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        if self.kind == "mse":
            return (torch.sigmoid(logits) - targets) ** 2
        return (torch.sigmoid(logits) - targets).abs()

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


def balanced_weights(
    rainrate: torch.Tensor,
    thresholds: Sequence[float] = HKO7_BALANCE_THRESHOLDS,
    weights: Sequence[float] = HKO7_BALANCE_WEIGHTS,
) -> torch.Tensor:
    """Per-pixel weights of the HKO-7 balanced losses from the observed rain rate.

    Parameters
    ----------
    rainrate : torch.Tensor, any shape, mm/h
        Observed rain rate.
    thresholds : sequence of float, increasing, mm/h
        Edges ``t_1 < ... < t_k``.
    weights : sequence of float, length k + 1
        Weight below ``t_1``, in ``[t_1, t_2)``, ..., at or above ``t_k``.

    Returns
    -------
    torch.Tensor, same shape as ``rainrate``
        With the defaults (Shi et al. 2017): 1 below 2 mm/h, 2 in [2, 5), 5 in [5, 10),
        10 in [10, 30) and 30 from 30 mm/h up.
    """
    if len(weights) != len(thresholds) + 1:
        raise ValueError(
            f"need one weight more than thresholds, got {len(weights)} weights for "
            f"{len(thresholds)} thresholds"
        )
    if any(b <= a for a, b in zip(thresholds[:-1], thresholds[1:], strict=True)):
        raise ValueError(f"thresholds must increase, got {list(thresholds)}")
    edges = torch.as_tensor(thresholds, dtype=rainrate.dtype, device=rainrate.device)
    table = torch.as_tensor(weights, dtype=rainrate.dtype, device=rainrate.device)
    return table[torch.bucketize(rainrate, edges, right=True)]


class BalancedLoss(_MaskedPixelLoss):
    """HKO-7 balanced MSE / MAE (B-MSE / B-MAE) of ``sigmoid(logits)``.

    Parameters
    ----------
    p : {1, 2}
        1 for B-MAE, 2 for B-MSE.
    scale : nowcast.data.physical.GreyScale, optional
        What the grey levels mean (the training set's ``scale``); default HKO-7
        (dBZ -10..60, ``Z = 58.53 R^1.56``).
    thresholds, weights : sequences of float
        See :func:`balanced_weights`; thresholds are in ``scale.score_units`` (mm/h
        for dBZ and rain-rate archives).

    Notes
    -----
    The error is measured in grey levels and weighted by the *observed* rain rate, as in
    the HKO-7 benchmark; here it is averaged over pixels (the benchmark sums over
    pixels and averages over frames, a constant factor ``H * W`` apart). The observed
    grey levels become rain rates with ``scale.to_score``, so a rain-rate archive's
    10 mm/h is 10 mm/h, not a reflectivity put through a Z-R relation.
    """

    def __init__(
        self,
        p: int = 2,
        scale: GreyScale | None = None,
        thresholds: Sequence[float] = HKO7_BALANCE_THRESHOLDS,
        weights: Sequence[float] = HKO7_BALANCE_WEIGHTS,
    ) -> None:
        super().__init__()
        if p not in (1, 2):
            raise ValueError(f"p must be 1 (B-MAE) or 2 (B-MSE), got {p!r}")
        scale = _grey_scale(scale)
        balanced_weights(torch.zeros(1), thresholds, weights)  # validate early
        self.p = int(p)
        self.scale = scale
        self.thresholds = tuple(float(t) for t in thresholds)
        self.weights = tuple(float(w) for w in weights)

    def terms(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            rain = self.scale.to_score(targets)
            w = balanced_weights(rain, self.thresholds, self.weights)
        return w * (torch.sigmoid(logits) - targets).abs() ** self.p

    def extra_repr(self) -> str:
        return f"p={self.p}, scale={self.scale.describe()!r}"


class RainMSELoss(_MaskedPixelLoss):
    """Grey-level MSE plus the MSE of the rain rate itself (the Rainfall-MSE score).

    ``loss = mean((P - P_obs)^2) + rain_weight * mean((R(P) - R(P_obs))^2)`` with
    ``P = sigmoid(logits)`` and ``R = scale.to_score`` (mm/h for dBZ and rain-rate
    archives).

    Parameters
    ----------
    scale : nowcast.data.physical.GreyScale, optional
        What the grey levels mean (the training set's ``scale``); default HKO-7.
    rain_weight : float, (mm/h)^-2
        Weight of the rain-rate term. The default 2e-4 makes the two terms about equal
        for the synthetic data (grey MSE ~1e-3, Rainfall-MSE ~5 (mm/h)^2).

    Notes
    -----
    Not in the paper. A loss on grey levels is minimised by the conditional mean of the
    grey level, which, put through the convex Z-R map, underestimates the mean rain
    rate of uncertain heavy cores (Jensen's inequality); the Rainfall-MSE score is
    minimised by the conditional mean of the rain rate, which the second term targets.
    The grey term keeps the light rain (a 0.5 mm/h error weighs nothing in mm/h^2).
    """

    def __init__(
        self, scale: GreyScale | None = None, rain_weight: float = 2e-4
    ) -> None:
        super().__init__()
        self.scale = _grey_scale(scale)
        if not rain_weight > 0:
            raise ValueError(f"rain_weight must be > 0 (mm/h)^-2, got {rain_weight!r}")
        self.rain_weight = float(rain_weight)

    def terms(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-pixel grey-level plus weighted rain-rate squared errors."""
        pred = torch.sigmoid(logits)
        rain_err = self.scale.to_score(pred) - self.scale.to_score(targets)
        return (pred - targets) ** 2 + self.rain_weight * rain_err**2

    def extra_repr(self) -> str:
        return f"rain_weight={self.rain_weight}, scale={self.scale.describe()!r}"


def _balanced(p: int) -> Callable[..., BalancedLoss]:
    def make(**kwargs: object) -> BalancedLoss:
        return BalancedLoss(p=p, **kwargs)

    return make


#: Loss name -> factory taking the loss's keyword arguments.
LOSSES: dict[str, Callable[..., nn.Module]] = {
    "bce": lambda: PixelLoss("bce"),
    "mse": lambda: PixelLoss("mse"),
    "mae": lambda: PixelLoss("mae"),
    "balanced_mse": _balanced(2),
    "balanced_mae": _balanced(1),
    "rain_mse": RainMSELoss,
}


def available_losses() -> list[str]:
    """Names accepted by :func:`get_loss`."""
    return sorted(LOSSES)


def get_loss(name: str, **kwargs: object) -> nn.Module:
    """Build a training loss by name.

    Parameters
    ----------
    name : str
        One of :func:`available_losses` (``bce``, ``mse``, ``mae``, ``balanced_mse``,
        ``balanced_mae``).
    **kwargs
        Passed to the loss (the balanced losses take ``scale`` (a
        :class:`~nowcast.data.physical.GreyScale`), ``thresholds``, ``weights``; the
        others take none).

    Returns
    -------
    torch.nn.Module
        Called as ``loss(logits, targets, mask=None)``.
    """
    if name not in LOSSES:
        raise ValueError(
            f"unknown loss {name!r}; available: {', '.join(available_losses())}"
        )
    try:
        return LOSSES[name](**kwargs)
    except TypeError as err:
        raise TypeError(
            f"bad arguments {sorted(kwargs)} for loss {name!r}: {err}"
        ) from err
