"""Normalisation and image operations of Shi et al. (2015) on ``(..., H, W)`` arrays.

The paper turns each radar frame of reflectivity ``Z`` (dBZ) into grey levels
``P = (Z - Zmin) / (Zmax - Zmin)`` (:func:`minmax_normalize`, fitted bounds in
:class:`MinMaxNormalizer`), crops the central 330x330 region of the 480x480 frame
(:func:`center_crop`), applies a disk filter of radius 10 (:func:`disk_filter`) and
resizes to 100x100 (:func:`resize`, area averaging) (Shi et al. 2015, Sec. 4.2). Each
step is a pure function; :class:`nowcast.data.preprocess.Preprocessor` chains them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from nowcast.data.preprocess._files import PathLike, existing_file, write_json
from nowcast.data.radar import intensity_name

__all__ = [
    "minmax_normalize",
    "minmax_denormalize",
    "MinMaxNormalizer",
    "center_crop",
    "crop_offsets",
    "disk_kernel",
    "disk_filter",
    "BOUNDARY_MODES",
    "area_weights",
    "linear_weights",
    "resize",
    "as_frames",
]


# --------------------------------------------------------------------------------------
# min-max normalisation
# --------------------------------------------------------------------------------------
def _check_range(zmin: float, zmax: float) -> tuple[float, float]:
    zmin, zmax = float(zmin), float(zmax)
    if not (np.isfinite(zmin) and np.isfinite(zmax)) or zmax <= zmin:
        raise ValueError(
            f"need finite zmin < zmax, got zmin={zmin}, zmax={zmax}; use the physical "
            "range of the archive (HKO-7: zmin=-10, zmax=60 dBZ)"
        )
    return zmin, zmax


def minmax_normalize(z, zmin: float, zmax: float):
    """Grey level ``P = (Z - Zmin) / (Zmax - Zmin)``, clipped to [0, 1].

    Shi et al. (2015), Sec. 4.2: radar intensities are transformed to grey levels with
    the range of the archive (HKO-7: -10 to 60 dBZ).

    Parameters
    ----------
    z : numpy.ndarray, xarray.DataArray or torch.Tensor, any shape
        Intensities (e.g. dBZ). NaN stays NaN: fill no-data pixels first.
    zmin, zmax : float
        Range mapped to 0 and 1, in the units of ``z``.

    Returns
    -------
    Same type and shape as ``z``, values in [0, 1].
    """
    zmin, zmax = _check_range(zmin, zmax)
    p = (z - zmin) / (zmax - zmin)
    if not hasattr(p, "clip"):
        p = np.asarray(p)
    return p.clip(0.0, 1.0)


def minmax_denormalize(p, zmin: float, zmax: float):
    """Inverse of :func:`minmax_normalize`: ``Z = Zmin + P (Zmax - Zmin)``.

    Values clipped by the normalisation come back as ``zmin`` / ``zmax``.
    """
    zmin, zmax = _check_range(zmin, zmax)
    return p * (zmax - zmin) + zmin


class MinMaxNormalizer:
    """Min-max normalisation with bounds given or fitted on the training split.

    Parameters
    ----------
    zmin, zmax : float, optional
        Fixed bounds (the physical range). Leave one or both out to fit it with
        :meth:`fit` (nan-min / nan-max of the training data).
    """

    def __init__(self, zmin: float | None = None, zmax: float | None = None):
        self.zmin = None if zmin is None else float(zmin)
        self.zmax = None if zmax is None else float(zmax)
        self.fitted_bounds = [
            k for k, v in (("zmin", zmin), ("zmax", zmax)) if v is None
        ]

    @property
    def is_fitted(self) -> bool:
        """Whether both bounds are known."""
        return self.zmin is not None and self.zmax is not None

    def fit(self, data, chunk_time: int = 256) -> MinMaxNormalizer:
        """Fit the missing bounds on training data.

        Parameters
        ----------
        data : numpy.ndarray, xarray.DataArray or xarray.Dataset, shape (T, H, W)
            Training frames; streamed ``chunk_time`` frames at a time (dask-friendly).
        """
        da = as_frames(data)
        lo, hi = np.inf, -np.inf
        for a in range(0, da.shape[0], chunk_time):
            v = np.asarray(da[a : a + chunk_time], dtype=np.float64)
            if np.isfinite(v).any():
                lo = min(lo, float(np.nanmin(v)))
                hi = max(hi, float(np.nanmax(v)))
        if not np.isfinite(lo):
            raise ValueError(
                "cannot fit zmin/zmax: the training data hold no finite value"
            )
        if "zmin" in self.fitted_bounds:
            self.zmin = lo
        if "zmax" in self.fitted_bounds:
            self.zmax = hi
        _check_range(self.zmin, self.zmax)
        return self

    def _bounds(self) -> tuple[float, float]:
        if not self.is_fitted:
            raise RuntimeError(
                f"MinMaxNormalizer bounds {self.fitted_bounds} are not fitted; call "
                "fit(training_frames) or pass zmin and zmax"
            )
        return self.zmin, self.zmax  # type: ignore[return-value]

    def transform(self, z):
        """:func:`minmax_normalize` with the fitted bounds."""
        return minmax_normalize(z, *self._bounds())

    def inverse_transform(self, p):
        """:func:`minmax_denormalize` with the fitted bounds."""
        return minmax_denormalize(p, *self._bounds())

    def to_dict(self) -> dict:
        """Bounds and which of them were fitted (JSON-serialisable)."""
        return {"zmin": self.zmin, "zmax": self.zmax, "fitted": self.fitted_bounds}

    def save(self, path: PathLike) -> Path:
        """Write the bounds as JSON."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: PathLike) -> MinMaxNormalizer:
        """Read bounds written by :meth:`save`."""
        path = existing_file(path, "normaliser")
        return cls.from_dict(json.loads(path.read_text()))

    @classmethod
    def from_dict(cls, d: dict) -> MinMaxNormalizer:
        """Inverse of :meth:`to_dict`."""
        obj = cls(d["zmin"], d["zmax"])
        obj.fitted_bounds = list(d.get("fitted", []))
        return obj


# --------------------------------------------------------------------------------------
# crop, disk filter, resize on (..., H, W) arrays
# --------------------------------------------------------------------------------------
def _pair(size: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    elif isinstance(size, Sequence) and len(size) == 2:
        h, w = (int(s) for s in size)
    else:
        raise TypeError(f"{name} must be an int or (height, width), got {size!r}")
    if h < 1 or w < 1:
        raise ValueError(f"{name} must be positive, got {(h, w)}")
    return h, w


def crop_offsets(shape: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner ``(top, left)`` of the centred ``size`` crop of a ``shape`` frame."""
    (hh, ww), (h, w) = shape, size
    if h > hh or w > ww:
        raise ValueError(
            f"crop size {h}x{w} is larger than the frame {hh}x{ww}; choose a crop size "
            "<= the frame size"
        )
    return (hh - h) // 2, (ww - w) // 2


def center_crop(frames, size: int | Sequence[int]):
    """Central ``size`` region of each frame.

    For odd margins the extra row / column is dropped at the bottom / right: the crop
    starts at ``((H - h) // 2, (W - w) // 2)``. 480 -> 330 keeps rows and columns
    75..404 (Shi et al. 2015 crop the central 330x330 region of the 480x480 frame).

    Parameters
    ----------
    frames : numpy.ndarray, torch.Tensor or xarray.DataArray, shape (..., H, W)
    size : int or (h, w)

    Returns
    -------
    Same type, shape (..., h, w) (a view where the type allows).
    """
    if frames.ndim < 2:
        raise ValueError(f"frames must be (..., H, W), got shape {tuple(frames.shape)}")
    h, w = _pair(size, "crop size")
    top, left = crop_offsets(tuple(frames.shape[-2:]), (h, w))
    return frames[..., top : top + h, left : left + w]


BOUNDARY_MODES = {
    "reflect": 4,  # cv2.BORDER_REFLECT_101: ...c b | a b c d | c b...
    "nearest": 1,  # cv2.BORDER_REPLICATE: ...a a | a b c d | d d...
    "constant": 0,  # cv2.BORDER_CONSTANT: zeros outside
}


def disk_kernel(radius: int) -> np.ndarray:
    """Normalised disk kernel: 1 where ``dx^2 + dy^2 <= radius^2``, divided by its sum.

    Parameters
    ----------
    radius : int
        Radius in pixels (10 in Shi et al. 2015).

    Returns
    -------
    numpy.ndarray of float32, shape (2 radius + 1, 2 radius + 1), summing to 1.
    """
    if int(radius) != radius or radius < 0:
        raise ValueError(f"disk radius must be a non-negative integer, got {radius!r}")
    r = int(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    k = (yy**2 + xx**2 <= r * r).astype(np.float64)
    return (k / k.sum()).astype(np.float32)


def disk_filter(
    frames: np.ndarray, radius: int = 10, boundary: str = "reflect"
) -> np.ndarray:
    """Mean over a disk of ``radius`` pixels around each pixel, frame by frame.

    The paper's smoothing step (Shi et al. 2015, Sec. 4.2: "a disk filter with radius
    10"); it removes speckle and smooths the echo before the resize.

    Parameters
    ----------
    frames : numpy.ndarray, shape (..., H, W)
        Float frames without NaN (fill no data first).
    radius : int
        Disk radius in pixels; 0 returns a float32 copy.
    boundary : {"reflect", "nearest", "constant"}
        How the frame is extended beyond its edge: mirrored without repeating the edge
        pixel (default; a constant field stays constant), edge pixel repeated, or
        zeros (the no-echo grey level). :class:`Preprocessor` reads a margin of real
        data around the crop, so this only matters at the raw frame's own edge.

    Returns
    -------
    numpy.ndarray of float32, same shape as ``frames``.
    """
    if boundary not in BOUNDARY_MODES:
        raise ValueError(
            f"unknown boundary {boundary!r}; available: {sorted(BOUNDARY_MODES)}"
        )
    frames = np.asarray(frames)
    if frames.ndim < 2:
        raise ValueError(f"frames must be (..., H, W), got shape {frames.shape}")
    kernel = disk_kernel(radius)
    flat = np.ascontiguousarray(frames, dtype=np.float32).reshape(
        -1, *frames.shape[-2:]
    )
    if radius == 0:
        return flat.reshape(frames.shape).copy()
    import cv2  # local import: only this function needs OpenCV

    out = np.empty_like(flat)
    border = BOUNDARY_MODES[boundary]
    # cv2.filter2D (direct or DFT convolution, chosen by kernel size) is faster per
    # frame than one batched FFT convolution; the loop is over frames, not pixels.
    for i in range(flat.shape[0]):
        out[i] = cv2.filter2D(flat[i], -1, kernel, borderType=border)
    return out.reshape(frames.shape)


def linear_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of 1-D linear interpolation between pixel centres.

    Half-pixel convention (output centre ``i`` sits at input position
    ``(i + 0.5) n_in / n_out - 0.5``), positions beyond the outer centres clamped to
    the edge pixels; rows sum to 1.
    """
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    f = pos - i0
    w = np.zeros((n_out, n_in))
    np.add.at(w, (np.arange(n_out), i0), 1 - f)
    np.add.at(w, (np.arange(n_out), i1), f)
    return w


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) resampling matrix whose rows sum to 1.

    Downsampling: output pixel ``i`` averages the input over ``[i s, (i + 1) s)`` with
    ``s = n_in / n_out`` (exact area weights, as OpenCV's INTER_AREA), which is the
    anti-aliasing box prefilter. Upsampling: :func:`linear_weights`.
    """
    if n_out > n_in:
        return linear_weights(n_in, n_out)
    s = n_in / n_out
    lo = np.arange(n_out)[:, None] * s
    k = np.arange(n_in)[None, :]
    return np.clip(np.minimum(lo + s, k + 1) - np.maximum(lo, k), 0.0, None) / s


def resize(frames: np.ndarray, size: int | Sequence[int]) -> np.ndarray:
    """Anti-aliased resize of each frame to ``size`` (area averaging).

    Separable: ``out = Ry @ frame @ Rx.T`` with the area-weight matrices of
    :func:`area_weights`, batched over all leading axes by one matrix product. When
    the factor is an integer this is the mean of each ``s x s`` block (e.g. 330 -> 110
    averages 3x3 blocks); 330 -> 100 (Shi et al. 2015) uses fractional overlaps.
    A constant field stays constant; a linear field stays linear for integer factors.

    Parameters
    ----------
    frames : numpy.ndarray, shape (..., H, W)
    size : int or (h, w)

    Returns
    -------
    numpy.ndarray of float32, shape (..., h, w).
    """
    frames = np.asarray(frames)
    if frames.ndim < 2:
        raise ValueError(f"frames must be (..., H, W), got shape {frames.shape}")
    h, w = _pair(size, "resize size")
    hh, ww = frames.shape[-2:]
    x = frames.astype(np.float32, copy=False)
    if (h, w) == (hh, ww):
        return x.copy()
    ry = area_weights(hh, h).astype(np.float32)
    rx = area_weights(ww, w).astype(np.float32)
    lead = x.shape[:-2]
    n = int(np.prod(lead))
    # two large 2-D GEMMs (batched matmul with a broadcast operand is much slower)
    cols = x.reshape(n * hh, ww) @ rx.T  # (n*H, w)
    cols = cols.reshape(n, hh, w).transpose(0, 2, 1).reshape(n * w, hh)
    out = (cols @ ry.T).reshape(n, w, h).transpose(0, 2, 1)
    return np.ascontiguousarray(out).reshape(*lead, h, w)


def as_frames(data) -> xr.DataArray | np.ndarray:
    """The (T, H, W) intensity array of a data set, data array or numpy array."""
    if isinstance(data, xr.Dataset):
        return data[intensity_name(data)].transpose("time", "y", "x")
    if isinstance(data, xr.DataArray) or isinstance(data, np.ndarray):
        if data.ndim != 3:
            raise ValueError(f"frames must be (time, y, x), got shape {data.shape}")
        return data
    raise TypeError(
        f"expected a radar xarray.Dataset, a DataArray or a (T, H, W) numpy array, got "
        f"{type(data).__name__}"
    )
