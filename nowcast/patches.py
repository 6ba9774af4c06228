"""Space-to-depth patches of Shi et al. (2015): frames folded into channels and back.

The models fold each ``p x p`` patch of a frame into channels before the recurrent
layers (:func:`patchify`) and unfold the prediction afterwards (:func:`unpatchify`).
Both work on numpy arrays and torch tensors alike and live here, outside the data layer,
so that the models import them without the preprocessing (xarray, OpenCV) and the data
layer without the models (``nowcast.data.preprocess`` re-exports them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is not imported here: data workers start faster without it
    import torch


__all__ = ["patchify", "unpatchify"]


def _check_5d(x: np.ndarray | torch.Tensor, name: str) -> None:
    if x.ndim != 5:
        raise ValueError(f"{name} must be (B, T, C, H, W), got shape {tuple(x.shape)}")


def _permute(
    x: np.ndarray | torch.Tensor, axes: tuple[int, ...]
) -> np.ndarray | torch.Tensor:
    """Reorder the axes of a tensor (``permute``) or an array (``transpose``)."""
    if isinstance(x, np.ndarray):
        return x.transpose(axes)
    return x.permute(*axes)


def patchify(x: np.ndarray | torch.Tensor, p: int) -> np.ndarray | torch.Tensor:
    """Fold each non-overlapping ``p x p`` patch into channels.

    Shi et al. (2015) turn a 64x64 frame into a 16x16x16 tensor (p=4) and a 100x100
    radar frame into 50x50x4 (p=2). Channel ``c * p * p + i * p + j`` of the output
    holds input channel ``c`` at offset ``(i, j)`` inside the patch.

    Parameters
    ----------
    x : numpy.ndarray or torch.Tensor, shape (B, T, C, H, W)
    p : int
        Patch size; must divide H and W.

    Returns
    -------
    Same type as ``x``, shape (B, T, C * p * p, H // p, W // p).
    """
    _check_5d(x, "x")
    if int(p) != p or p < 1:
        raise ValueError(f"patch size must be a positive integer, got {p!r}")
    b, t, c, h, w = x.shape
    if h % p or w % p:
        raise ValueError(
            f"frame size {h}x{w} is not divisible by patch size {p}; crop or resize "
            f"to a multiple of {p} first"
        )
    y = x.reshape(b, t, c, h // p, p, w // p, p)
    y = _permute(y, (0, 1, 2, 4, 6, 3, 5))
    return y.reshape(b, t, c * p * p, h // p, w // p)


def unpatchify(x: np.ndarray | torch.Tensor, p: int) -> np.ndarray | torch.Tensor:
    """Inverse of :func:`patchify`: ``(B, T, C*p*p, H/p, W/p) -> (B, T, C, H, W)``."""
    _check_5d(x, "x")
    if int(p) != p or p < 1:
        raise ValueError(f"patch size must be a positive integer, got {p!r}")
    b, t, cpp, hp, wp = x.shape
    if cpp % (p * p):
        raise ValueError(
            f"channel count {cpp} is not a multiple of p*p={p * p}; was the tensor "
            f"patchified with p={p}?"
        )
    c = cpp // (p * p)
    y = x.reshape(b, t, c, p, p, hp, wp)
    y = _permute(y, (0, 1, 2, 5, 3, 6, 4))
    return y.reshape(b, t, c, hp * p, wp * p)
