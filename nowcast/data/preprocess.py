"""Radar-echo preprocessing of Shi et al. (2015), as pure functions and small classes.

The paper turns each radar frame of reflectivity ``Z`` (dBZ) into grey levels
``P = (Z - Zmin) / (Zmax - Zmin)``, crops the central 330x330 region of the 480x480
frame, applies a disk filter of radius 10, resizes to 100x100 and removes "noisy"
pixels found by K-Means clustering of the monthly pixel averages (Shi et al. 2015,
Sec. 4.2). This module holds each step as a pure function on ``(..., H, W)`` arrays
(:func:`minmax_normalize`, :func:`center_crop`, :func:`disk_filter`, :func:`resize`),
the fitted pieces as small classes with ``fit`` / ``transform`` / ``save`` / ``load``
(:class:`MinMaxNormalizer`, :class:`NoiseMask`), the :class:`Preprocessor` that chains
them over a radar data set chunk by chunk, and :func:`patchify` / :func:`unpatchify`
for the model input.

Order of the steps in :class:`Preprocessor` (per chunk of frames, raw grid first):

1. NaN (no data) -> ``zmin``; min-max normalisation to [0, 1] (clipped).
2. Noise mask (fitted on the raw grid): masked pixels set to 0 (no echo), so that
   clutter is not smeared into its neighbours by the disk filter.
3. Centre crop, disk filter, resize. The disk filter sees the real data around the
   crop (a margin of ``disk_radius`` pixels is read with the crop when the frame has
   it), so the result equals "filter the whole frame, then crop"; only where the raw
   frame itself ends is the border mirrored.

Coverage (no-data pixels). Raw pixels that are NaN (outside radar coverage, missing)
carry no weight in the disk filter or the resize: both are normalised by the covered
fraction of their footprint (normalised convolution, Knutsson and Westin 1993), so the
fill value is never smeared into observed pixels (a plain disk mean would pull the
echo next to the coverage edge towards "dry"). A processed pixel counts as observed
when at least ``min_coverage`` (default 0.5) of its raw crop/resize footprint had data;
unobserved processed pixels hold grey 0. When any processed pixel of any frame is
unobserved, the output keeps a per-frame ``coverage`` variable ``(time, y, x)``
(uint8, 1 = observed) that the datasets serve as ``target_valid`` and that every
score and masked loss uses; otherwise (no NaN, or NaN only in the filter margin
outside the crop) no such variable is written. Frames without NaN take the plain
path, which gives the same values (the normalisation divides by exactly 1 there).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from nowcast.data.physical import normalise_units
from nowcast.data.radar import (
    intensity_name,
    netcdf_encoding,
    open_radar,
    record_step,
    validate_radar,
)

ArrayLike = np.ndarray | torch.Tensor
PathLike = str | os.PathLike
log = logging.getLogger(__name__)

#: Name of the per-frame coverage variable of a processed file (1 = observed).
COVERAGE = "coverage"

__all__ = [
    "minmax_normalize",
    "minmax_denormalize",
    "MinMaxNormalizer",
    "center_crop",
    "disk_kernel",
    "disk_filter",
    "BOUNDARY_MODES",
    "resize",
    "monthly_means",
    "NoiseMask",
    "Preprocessor",
    "FIT_ON",
    "COVERAGE",
    "fit_split_attrs",
    "read_fit_split",
    "preprocess_archive",
    "patchify",
    "unpatchify",
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
        da = _as_frames(data)
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
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, path: PathLike) -> MinMaxNormalizer:
        """Read bounds written by :meth:`save`."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"normaliser file {path} does not exist")
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


def _crop_offsets(shape: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
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
    top, left = _crop_offsets(tuple(frames.shape[-2:]), (h, w))
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


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) resampling matrix whose rows sum to 1.

    Downsampling: output pixel ``i`` averages the input over ``[i s, (i + 1) s)`` with
    ``s = n_in / n_out`` (exact area weights, as OpenCV's INTER_AREA), which is the
    anti-aliasing box prefilter. Upsampling: linear interpolation between pixel centres
    (half-pixel convention, edges clamped).
    """
    if n_out <= n_in:
        s = n_in / n_out
        lo = np.arange(n_out)[:, None] * s
        k = np.arange(n_in)[None, :]
        w = np.clip(np.minimum(lo + s, k + 1) - np.maximum(lo, k), 0.0, None) / s
    else:
        pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        i0 = np.floor(pos).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        f = pos - i0
        w = np.zeros((n_out, n_in))
        np.add.at(w, (np.arange(n_out), i0), 1 - f)
        np.add.at(w, (np.arange(n_out), i1), f)
    return w


def resize(frames: np.ndarray, size: int | Sequence[int]) -> np.ndarray:
    """Anti-aliased resize of each frame to ``size`` (area averaging).

    Separable: ``out = Ry @ frame @ Rx.T`` with the area-weight matrices of
    :func:`_area_weights`, batched over all leading axes by one matrix product. When
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
    ry = _area_weights(hh, h).astype(np.float32)
    rx = _area_weights(ww, w).astype(np.float32)
    lead = x.shape[:-2]
    n = int(np.prod(lead))
    # two large 2-D GEMMs (batched matmul with a broadcast operand is much slower)
    cols = x.reshape(n * hh, ww) @ rx.T  # (n*H, w)
    cols = cols.reshape(n, hh, w).transpose(0, 2, 1).reshape(n * w, hh)
    out = (cols @ ry.T).reshape(n, w, h).transpose(0, 2, 1)
    return np.ascontiguousarray(out).reshape(*lead, h, w)


# --------------------------------------------------------------------------------------
# K-Means noise mask
# --------------------------------------------------------------------------------------
def _as_frames(data) -> xr.DataArray | np.ndarray:
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


def _months(times) -> np.ndarray:
    return np.asarray(times, dtype="datetime64[ns]").astype("datetime64[M]")


def monthly_means(
    data,
    times: np.ndarray | None = None,
    chunk_time: int = 256,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-month, per-pixel mean intensity, streamed over time.

    Parameters
    ----------
    data : xarray.Dataset, xarray.DataArray or numpy.ndarray, shape (T, H, W)
        Frames; NaN (no data) is left out of the means.
    times : numpy.ndarray of datetime64, shape (T,), optional
        Frame times; taken from the ``time`` coordinate when omitted.
    chunk_time : int
        Frames read at a time.
    transform : callable, optional
        Applied to each chunk ``(t, H, W)`` before averaging (e.g. normalisation).
    progress : bool
        Show a progress bar.

    Returns
    -------
    means : numpy.ndarray of float64, shape (M, H, W)
        NaN where a pixel has no data in a month.
    months : numpy.ndarray of datetime64[M], shape (M,)
    """
    da = _as_frames(data)
    if times is None:
        if not isinstance(da, xr.DataArray):
            raise ValueError("times are required when frames are a numpy array")
        times = da["time"].values
    months = _months(times)
    if months.shape[0] != da.shape[0]:
        raise ValueError(f"got {months.shape[0]} times for {da.shape[0]} frames")
    uniq, inverse = np.unique(months, return_inverse=True)
    sums = np.zeros((uniq.size, *da.shape[1:]))
    counts = np.zeros((uniq.size, *da.shape[1:]))
    starts = range(0, da.shape[0], chunk_time)
    for a in tqdm(starts, desc="monthly means", disable=not progress, leave=False):
        v = np.asarray(da[a : a + chunk_time], dtype=np.float32)
        if transform is not None:
            v = transform(v)
        ok = np.isfinite(v)
        v = np.where(ok, v, 0.0)
        lab = inverse[a : a + chunk_time]
        for m in np.unique(lab):
            sel = lab == m
            sums[m] += v[sel].sum(axis=0, dtype=np.float64)
            counts[m] += ok[sel].sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    return means, uniq


def _noise_clusters(
    levels: np.ndarray,
    fractions: np.ndarray,
    threshold: float,
    gap_ratio: float,
    max_fraction: float,
) -> list[int]:
    """Clusters above the widest gap between sorted cluster levels, if they stand out.

    ``levels`` are the centroids' weakest monthly means. The candidates are the
    clusters above the widest gap between consecutive sorted levels; they are noise
    when that gap is at least ``gap_ratio`` times every gap below it (rain levels form
    a continuum, clutter lies beyond a gap), their lowest level exceeds ``threshold``
    and together they hold at most ``max_fraction`` of the pixels. Otherwise none is.
    """
    order = np.argsort(levels)
    gaps = np.diff(levels[order])
    if gaps.size == 0:
        return []
    cut = int(np.argmax(gaps))
    upper = order[cut + 1 :]
    below = float(gaps[:cut].max()) if cut > 0 else 0.0
    if (
        gaps[cut] >= gap_ratio * below
        and levels[upper].min() > threshold
        and fractions[upper].sum() <= max_fraction
    ):
        return sorted(int(c) for c in upper)
    return []


class NoiseMask:
    """Persistent noisy pixels (ground clutter) found by K-Means on monthly means.

    Shi et al. (2015) remove "noisy pixels" found by K-Means clustering of the
    monthly pixel averages. Each pixel is described by its mean intensity in each
    month (a vector of length M); K-Means (scikit-learn) groups the pixels into
    ``n_clusters`` clusters, each summarised by its weakest month (clutter is bright
    in every month, rain comes and goes). Sorted by that level, the clusters above the
    widest gap are noise when they stand apart: the gap is at least ``gap_ratio``
    times every gap below it, their level exceeds the median pixel by ``z_threshold``
    robust standard deviations (1.4826 * MAD of the pixels' mean over months) and
    together they hold at most ``max_fraction`` of the pixels. Otherwise nothing is
    masked. The gap rule keeps the heavy-rain tail of a short archive (clusters of
    often-rained-on pixels) out of the mask: rain levels form a continuum, persistent
    clutter lies beyond a gap.

    Parameters
    ----------
    n_clusters : int
        K-Means clusters (>= 2).
    z_threshold : float
        Robust z-score above the median that the noise clusters' level must exceed.
    gap_ratio : float
        How many times wider than every gap below it the gap under the noise clusters
        must be.
    max_fraction : float
        Largest fraction of the pixels the noise clusters may hold together.
    max_samples : int
        K-Means is fitted on at most this many randomly drawn pixels, then every pixel
        is assigned to its nearest centroid.
    seed : int
        Seed of K-Means and of the subsample.

    Attributes
    ----------
    mask : numpy.ndarray of bool, shape (H, W)
        True where a pixel is noisy and must be excluded (after :meth:`fit`).
    """

    def __init__(
        self,
        n_clusters: int = 6,
        z_threshold: float = 5.0,
        gap_ratio: float = 2.5,
        max_fraction: float = 0.2,
        max_samples: int = 200_000,
        seed: int = 0,
    ):
        if int(n_clusters) != n_clusters or n_clusters < 2:
            raise ValueError(f"n_clusters must be an integer >= 2, got {n_clusters!r}")
        if not 0 < max_fraction <= 1:
            raise ValueError(f"max_fraction must be in (0, 1], got {max_fraction}")
        self.n_clusters = int(n_clusters)
        self.z_threshold = float(z_threshold)
        self.gap_ratio = float(gap_ratio)
        self.max_fraction = float(max_fraction)
        self.max_samples = int(max_samples)
        self.seed = int(seed)
        self.mask: np.ndarray | None = None
        self.centroids: np.ndarray | None = None
        self.noise_clusters: list[int] = []
        self.months: np.ndarray | None = None
        self.threshold: float | None = None

    def params(self) -> dict:
        """Constructor parameters (JSON-serialisable)."""
        return {
            "n_clusters": self.n_clusters,
            "z_threshold": self.z_threshold,
            "gap_ratio": self.gap_ratio,
            "max_fraction": self.max_fraction,
            "max_samples": self.max_samples,
            "seed": self.seed,
        }

    def fit(
        self,
        data,
        times: np.ndarray | None = None,
        chunk_time: int = 256,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        progress: bool = False,
    ) -> NoiseMask:
        """Fit the mask on (training) frames.

        Parameters
        ----------
        data : xarray.Dataset, xarray.DataArray or numpy.ndarray, shape (T, H, W)
            Frames, streamed over time (see :func:`monthly_means`).
        times : numpy.ndarray of datetime64, shape (T,), optional
            Required for numpy input.
        chunk_time, transform, progress
            As in :func:`monthly_means`.

        Returns
        -------
        NoiseMask
            ``self``, with :attr:`mask` set.
        """
        from sklearn.cluster import KMeans
        from threadpoolctl import threadpool_limits

        means, months = monthly_means(data, times, chunk_time, transform, progress)
        m, h, w = means.shape
        x = means.reshape(m, h * w).T
        col_min = np.nanmin(np.where(np.isfinite(x), x, np.nan), axis=0)
        col_min = np.where(np.isfinite(col_min), col_min, 0.0)
        x = np.where(np.isfinite(x), x, col_min[None, :])
        rng = np.random.default_rng(self.seed)
        sample = x
        if x.shape[0] > self.max_samples:
            sample = x[rng.choice(x.shape[0], self.max_samples, replace=False)]
        km = KMeans(n_clusters=self.n_clusters, n_init=4, random_state=self.seed)
        # one thread: the problem is small (pixels x months), and OpenMP threads
        # only add synchronisation cost (10-20x slower on a busy 2-core machine)
        with threadpool_limits(1):
            km.fit(sample)
            labels = km.predict(x)
        pixel_mean = x.mean(axis=1)
        center = float(np.median(pixel_mean))
        spread = 1.4826 * float(np.median(np.abs(pixel_mean - center)))
        spread = max(spread, 1e-3 * float(np.ptp(pixel_mean)), 1e-12)
        self.threshold = center + self.z_threshold * spread
        fractions = np.bincount(labels, minlength=self.n_clusters) / labels.size
        self.centroids = km.cluster_centers_
        self.noise_clusters = _noise_clusters(
            self.centroids.min(axis=1),
            fractions,
            self.threshold,
            self.gap_ratio,
            self.max_fraction,
        )
        self.mask = np.isin(labels, self.noise_clusters).reshape(h, w)
        self.months = months
        return self

    def _mask(self) -> np.ndarray:
        if self.mask is None:
            raise RuntimeError("NoiseMask is not fitted; call fit(frames, times) first")
        return self.mask

    def apply(self, frames, fill: float = 0.0):
        """Set the noisy pixels of each frame to ``fill``.

        Parameters
        ----------
        frames : numpy.ndarray, shape (..., H, W)
        fill : float
            Value written at masked pixels (0 = no echo after normalisation).

        Returns
        -------
        numpy.ndarray, same shape (a copy).
        """
        mask = self._mask()
        frames = np.asarray(frames)
        if frames.shape[-2:] != mask.shape:
            raise ValueError(
                f"frames of size {frames.shape[-2:]} do not match the mask "
                f"{mask.shape}; fit the mask on the same grid"
            )
        return np.where(mask, np.asarray(fill, dtype=frames.dtype), frames)

    def save(self, path: PathLike) -> Path:
        """Write the mask and the fitted clusters as netCDF (``mask`` (y, x), 1 = noisy)."""
        mask = self._mask()
        ds = xr.Dataset(
            {
                "mask": (
                    ("y", "x"),
                    mask.astype(np.uint8),
                    {"flag_values": "0 1", "flag_meanings": "valid noisy"},
                ),
                "centroids": (("cluster", "month"), self.centroids),
            },
            coords={"month": self.months.astype("datetime64[ns]")},
            attrs={
                "params": json.dumps(self.params()),
                "noise_clusters": json.dumps(self.noise_clusters),
                "threshold": float(self.threshold),
                "method": "K-Means on per-pixel monthly mean intensities "
                "(Shi et al. 2015)",
            },
        )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.to_netcdf(path, engine="netcdf4")
        return path

    @classmethod
    def load(cls, path: PathLike) -> NoiseMask:
        """Read a mask written by :meth:`save`."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"noise-mask file {path} does not exist")
        with xr.open_dataset(path, engine="netcdf4") as ds:
            obj = cls(**json.loads(ds.attrs["params"]))
            obj.mask = ds["mask"].values.astype(bool)
            obj.centroids = ds["centroids"].values
            obj.months = ds["month"].values.astype("datetime64[M]")
            obj.noise_clusters = list(json.loads(ds.attrs["noise_clusters"]))
            obj.threshold = float(ds.attrs["threshold"])
        return obj


# --------------------------------------------------------------------------------------
# the chained preprocessing
# --------------------------------------------------------------------------------------
MOTION_VARIABLES = ("motion_u", "motion_v")


class Preprocessor:
    """The paper's preprocessing chain over a radar data set, chunk by chunk.

    Steps (each optional, recorded with its parameters in the output's attributes by
    :func:`nowcast.data.radar.record_step`): fill NaN with ``zmin``, min-max
    normalisation, noise mask (raw grid), centre crop, disk filter, resize. See the
    module docstring for the order and the boundary handling.

    Parameters
    ----------
    zmin, zmax : float or None
        Normalisation range in the input's units (HKO-7: -10 and 60 dBZ). ``None``
        fits that bound on the data given to :meth:`fit` (the training split).
    crop_size : int, (h, w) or None
        Centre crop (330 in the paper); ``None`` keeps the whole frame.
    disk_radius : int or None
        Disk-filter radius in raw pixels (10 in the paper); 0 or ``None`` skips it.
    resize_to : int, (h, w) or None
        Output frame size (100 in the paper); ``None`` keeps the crop size.
    noise_mask : bool or dict
        ``True`` fits a :class:`NoiseMask` with default parameters, a dict passes its
        parameters, ``False`` disables masking (the output mask is then all zeros).
    chunk_time : int
        Frames processed at a time (memory ~ ``chunk_time`` raw frames).
    disk_boundary : str
        Border mode of :func:`disk_filter` where the raw frame ends.
    mask_coverage : float
        A processed pixel is marked noisy when at least this fraction of its raw
        footprint (after crop and resize) is masked; 0 marks any overlap. Masked raw
        pixels are zeroed before the disk filter, so a pixel with a small share of
        clutter keeps a usable value.
    min_coverage : float in (0, 1]
        A processed pixel counts as observed when at least this fraction of its raw
        footprint (after crop and resize) had data (was not NaN); 1 requires all of
        it. See the module docstring, "Coverage".
    zr_a, zr_b : float, optional
        Z-R relation ``Z = a R^b`` of a reflectivity archive, recorded in the output
        attributes (``zr_a`` / ``zr_b``) so that the scores use it. Ignored (with a
        warning) for rain-rate archives, whose grey levels need no Z-R relation.
    progress : bool
        Show tqdm progress bars.
    """

    def __init__(
        self,
        zmin: float | None = -10.0,
        zmax: float | None = 60.0,
        crop_size: int | Sequence[int] | None = 330,
        disk_radius: int | None = 10,
        resize_to: int | Sequence[int] | None = 100,
        noise_mask: bool | dict = True,
        chunk_time: int = 64,
        disk_boundary: str = "reflect",
        mask_coverage: float = 0.25,
        min_coverage: float = 0.5,
        zr_a: float | None = None,
        zr_b: float | None = None,
        progress: bool = True,
    ):
        if int(chunk_time) != chunk_time or chunk_time < 1:
            raise ValueError(
                f"chunk_time must be a positive integer, got {chunk_time!r}"
            )
        if disk_boundary not in BOUNDARY_MODES:
            raise ValueError(
                f"unknown disk_boundary {disk_boundary!r}; available: "
                f"{sorted(BOUNDARY_MODES)}"
            )
        if not isinstance(noise_mask, (bool, dict)) and noise_mask is not None:
            try:  # omegaconf DictConfig and other mappings
                noise_mask = dict(noise_mask)
            except (TypeError, ValueError) as err:
                raise TypeError(
                    f"noise_mask must be a bool or a dict of NoiseMask parameters, got "
                    f"{type(noise_mask).__name__}"
                ) from err
        self.normalizer = MinMaxNormalizer(zmin, zmax)
        self.crop_size = None if crop_size is None else _pair(crop_size, "crop_size")
        self.disk_radius = int(disk_radius or 0)
        disk_kernel(self.disk_radius)  # validates the radius
        self.resize_to = None if resize_to is None else _pair(resize_to, "resize_to")
        self.noise_mask_params = (
            {} if noise_mask is True else dict(noise_mask) if noise_mask else None
        )
        self.noise_mask: NoiseMask | None = (
            NoiseMask(**self.noise_mask_params)
            if self.noise_mask_params is not None
            else None
        )
        self.chunk_time = int(chunk_time)
        self.disk_boundary = disk_boundary
        if not 0 <= mask_coverage <= 1:
            raise ValueError(f"mask_coverage must be in [0, 1], got {mask_coverage}")
        self.mask_coverage = float(mask_coverage)
        if not 0 < min_coverage <= 1:
            raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}")
        self.min_coverage = float(min_coverage)
        if (zr_a is None) != (zr_b is None):
            raise ValueError(
                f"give both zr_a and zr_b (Z = a R^b) or neither, got zr_a={zr_a}, "
                f"zr_b={zr_b}"
            )
        self.zr = None if zr_a is None else (float(zr_a), float(zr_b))
        self.progress = bool(progress)
        #: Which frames :meth:`fit` used (see :meth:`fit`); None when not recorded.
        self.fit_split: dict | None = None

    # ---- configuration ------------------------------------------------------------
    def params(self) -> dict:
        """Constructor parameters (JSON-serialisable; fitted values excluded)."""
        zmin = None if "zmin" in self.normalizer.fitted_bounds else self.normalizer.zmin
        zmax = None if "zmax" in self.normalizer.fitted_bounds else self.normalizer.zmax
        return {
            "zmin": zmin,
            "zmax": zmax,
            "crop_size": None if self.crop_size is None else list(self.crop_size),
            "disk_radius": self.disk_radius,
            "resize_to": None if self.resize_to is None else list(self.resize_to),
            "noise_mask": False
            if self.noise_mask_params is None
            else self.noise_mask_params or True,
            "chunk_time": self.chunk_time,
            "disk_boundary": self.disk_boundary,
            "mask_coverage": self.mask_coverage,
            "min_coverage": self.min_coverage,
            "zr_a": None if self.zr is None else self.zr[0],
            "zr_b": None if self.zr is None else self.zr[1],
        }

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`transform` can run (bounds known, mask fitted if enabled)."""
        return self.normalizer.is_fitted and (
            self.noise_mask is None or self.noise_mask.mask is not None
        )

    def _normalize(self, v: np.ndarray) -> np.ndarray:
        zmin, zmax = self.normalizer._bounds()
        v = np.where(np.isnan(v), np.float32(zmin), v)
        return minmax_normalize(v, zmin, zmax).astype(np.float32, copy=False)

    # ---- fitting ------------------------------------------------------------------
    def fit(self, ds: xr.Dataset, split: dict | None = None) -> Preprocessor:
        """Fit the missing normalisation bounds and the noise mask.

        Parameters
        ----------
        ds : xarray.Dataset
            Radar data set (the training split: select its frames first, e.g. with
            ``ds.isel(time=train_index)``). Streamed chunk by chunk.
        split : dict, optional
            Which frames ``ds`` holds, recorded in the processed file so that the
            datasets can refuse a split that evaluates on fitting frames:
            ``{"fit_on": "train", "block_len": 40, "counts": [4, 1, 1], "seed": 0}``
            (the training blocks of :func:`nowcast.data.split.block_split`) or
            ``{"fit_on": "all"}``. See :func:`fit_split_attrs`.
        """
        self.fit_split = None if split is None else _check_fit_split(split)
        validate_radar(ds, allow_nan=True, check_values=False)
        frames = _as_frames(ds)
        if not self.normalizer.is_fitted:
            self.normalizer.fit(frames, chunk_time=self.chunk_time)
        if self.noise_mask is not None:
            self.noise_mask.fit(
                frames,
                chunk_time=self.chunk_time,
                transform=self._normalize,
                progress=self.progress,
            )
        return self

    # ---- geometry -----------------------------------------------------------------
    def _geometry(self, shape: tuple[int, int]) -> dict:
        hh, ww = shape
        ch, cw = self.crop_size or (hh, ww)
        top, left = _crop_offsets((hh, ww), (ch, cw))
        r = self.disk_radius
        # margin of real data read around the crop for the disk filter
        mt, ml = min(r, top), min(r, left)
        mb, mr = min(r, hh - top - ch), min(r, ww - left - cw)
        return {
            "crop": (ch, cw),
            "offset": (top, left),
            "window": (
                slice(top - mt, top + ch + mb),
                slice(left - ml, left + cw + mr),
            ),
            "inner": (slice(mt, mt + ch), slice(ml, ml + cw)),
            "out": self.resize_to or (ch, cw),
        }

    def processed_mask(self, shape: tuple[int, int]) -> np.ndarray:
        """Noise mask on the output grid: a processed pixel is noisy when at least
        ``mask_coverage`` of its raw footprint is masked (any overlap when 0).

        Parameters
        ----------
        shape : (H, W)
            Raw frame size.

        Returns
        -------
        numpy.ndarray of uint8, shape of the output frames (all zeros without mask).
        """
        g = self._geometry(shape)
        if self.noise_mask is None:
            return np.zeros(g["out"], dtype=np.uint8)
        raw = self.noise_mask._mask()
        if raw.shape != tuple(shape):
            raise ValueError(
                f"the noise mask was fitted on {raw.shape[0]}x{raw.shape[1]} frames but "
                f"the data have {shape[0]}x{shape[1]}; fit on the same archive"
            )
        cropped = center_crop(raw.astype(np.float32), g["crop"])
        coverage = resize(cropped, g["out"])
        return (coverage >= max(self.mask_coverage, 1e-6)).astype(np.uint8)

    def _transform_frames(
        self, v: np.ndarray, g: dict, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(t, window) raw chunk -> (t, out) processed chunk and its coverage.

        The coverage (bool, (t, out), True = observed) is None when every processed
        pixel of the chunk is observed. With NaN, the disk filter and the resize are normalised by the covered
        fraction (the NaN pixels are filled with grey 0 and given weight 0), see the
        module docstring.
        """
        ok = ~np.isnan(v)
        p = self._normalize(v)
        if mask is not None:
            p = np.where(mask, np.float32(0.0), p)
        if ok.all():
            if self.disk_radius:
                p = disk_filter(p, self.disk_radius, self.disk_boundary)
            p = p[:, g["inner"][0], g["inner"][1]]
            return resize(p, g["out"]), None
        w = ok.astype(np.float32)
        if self.disk_radius:
            # normalised convolution: p is 0 where w is 0, so filter(p) = filter(p w)
            num = disk_filter(p, self.disk_radius, self.disk_boundary)
            den = disk_filter(w, self.disk_radius, self.disk_boundary)
            p = np.where(den > 1e-6, num / np.maximum(den, 1e-6), np.float32(0.0))
        inner = (slice(None), g["inner"][0], g["inner"][1])
        p, w = p[inner] * w[inner], w[inner]
        num, den = resize(p, g["out"]), resize(w, g["out"])
        covered = den >= np.float32(self.min_coverage) - 1e-6
        out = np.where(covered, num / np.maximum(den, 1e-6), np.float32(0.0))
        out = np.clip(out, 0.0, 1.0).astype(np.float32)
        return out, (None if covered.all() else covered)

    # ---- transform ----------------------------------------------------------------
    def transform(self, ds: xr.Dataset) -> xr.Dataset:
        """Preprocess a radar data set into memory.

        Parameters
        ----------
        ds : xarray.Dataset
            Radar data set in the convention (lazy or in memory); only the crop window
            (plus the disk-filter margin) is read, ``chunk_time`` frames at a time.

        Returns
        -------
        xarray.Dataset
            In memory: ``intensity`` (time, y, x) float32 in [0, 1] (units "1", attrs
            ``zmin``, ``zmax``, ``source_units``), ``noise_mask`` (y, x) uint8 (1 =
            noisy, exclude), ``motion_u`` / ``motion_v`` rescaled to processed pixels
            per step when the input has them; provenance in the attributes.

        See Also
        --------
        transform_to_file : the same output streamed to netCDF, for archives larger
            than memory (``float32`` output of ``T x H x W`` frames takes ``4 T H W``
            bytes: about 0.9 GB for 97 days of 100x100 frames at 6 minutes).
        """
        da, g, mask_window = self._prepare(ds)
        out = np.empty((da.shape[0], *g["out"]), dtype=np.float32)
        coverage: np.ndarray | None = None
        n_nan = 0
        for sl, chunk, nans, covered in self._processed_chunks(da, g, mask_window):
            out[sl] = chunk
            n_nan += nans
            if covered is not None:
                if coverage is None:
                    coverage = np.ones(out.shape, dtype=np.uint8)
                coverage[sl] = covered
        result = self._result(ds, da, g)
        result["intensity"] = (("time", "y", "x"), out, self._intensity_attrs(da))
        if coverage is not None:
            result[COVERAGE] = (("time", "y", "x"), coverage, self._coverage_attrs())
        result = result[
            ["intensity", *(v for v in result.data_vars if v != "intensity")]
        ]
        n_uncovered = 0 if coverage is None else int(coverage.size - coverage.sum())
        self._record(result, g, da.shape[1:], n_nan, da.attrs.get("units"), n_uncovered)
        return result

    def transform_to_file(
        self,
        ds: xr.Dataset,
        path: PathLike,
        chunk_time: int = 16,
        complevel: int = 4,
    ) -> Path:
        """Preprocess a radar data set straight into a netCDF file, chunk by chunk.

        Memory stays at about ``chunk_time`` (of the preprocessor) raw frames whatever
        the archive's length: the processed frames are written as they are made,
        never held together. The file equals what :meth:`transform` followed by
        :func:`nowcast.data.radar.write_radar` writes (same variables, attributes and
        encoding), and appears atomically: it is written next to ``path`` and renamed
        when complete, so an interrupted run leaves no partial file.

        Parameters
        ----------
        ds : xarray.Dataset
            Radar data set in the convention, typically lazy
            (:func:`nowcast.data.radar.open_radar` over many files).
        path : path
            Destination ``.nc`` file; parent directories are created.
        chunk_time : int
            Frames per netCDF chunk of the output.
        complevel : int
            zlib compression level, 0-9.

        Returns
        -------
        pathlib.Path
            The written file.

        Notes
        -----
        The true motion of synthetic data sets (``motion_u`` / ``motion_v``), when
        present, is preprocessed in memory.
        """
        import netCDF4

        da, g, mask_window = self._prepare(ds)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        result = self._result(ds, da, g)  # everything but the frames
        n_t = da.shape[0]
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        encoding = netcdf_encoding(result, chunk_time, complevel)
        try:
            result.to_netcdf(tmp, format="NETCDF4", engine="netcdf4", encoding=encoding)
            n_nan = 0
            with netCDF4.Dataset(tmp, "a") as nc:
                var = nc.createVariable(
                    "intensity",
                    "f4",
                    ("time", "y", "x"),
                    zlib=complevel > 0,
                    complevel=complevel,
                    chunksizes=(min(chunk_time, n_t), *g["out"]),
                    fill_value=np.float32(np.nan),
                )
                var.setncatts(self._intensity_attrs(da))
                cov_var, n_uncovered = None, 0
                for sl, chunk, nans, covered in self._processed_chunks(
                    da, g, mask_window
                ):
                    var[sl] = chunk
                    n_nan += nans
                    if covered is not None and cov_var is None:
                        # created at the first chunk with no-data pixels; the frames
                        # before it were fully observed
                        cov_var = self._coverage_variable(
                            nc, n_t, g, chunk_time, complevel
                        )
                        cov_var[: sl.start] = np.uint8(1)
                    if cov_var is not None:
                        cov = np.ones(chunk.shape, bool) if covered is None else covered
                        cov_var[sl] = cov.astype(np.uint8)
                        n_uncovered += int(cov.size - cov.sum())
                self._record(
                    result,
                    g,
                    da.shape[1:],
                    n_nan,
                    da.attrs.get("units"),
                    n_uncovered,
                )
                nc.setncatts({k: v for k, v in result.attrs.items() if v is not None})
            with xr.open_dataset(tmp, engine="netcdf4") as written:
                validate_radar(written, allow_nan=False, check_values=False)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path

    def _prepare(self, ds: xr.Dataset) -> tuple[xr.DataArray, dict, np.ndarray | None]:
        """Check the input; return the frames (time, y, x), geometry, raw mask window."""
        if not self.is_fitted:
            raise RuntimeError(
                "Preprocessor is not fitted; call fit(training_data) first (needed for "
                "the noise mask or for zmin/zmax left as None)"
            )
        validate_radar(ds, allow_nan=True, check_values=False)
        da = ds[intensity_name(ds)].transpose("time", "y", "x")
        g = self._geometry(tuple(da.shape[1:]))
        mask_window = None
        if self.noise_mask is not None:
            self.processed_mask(tuple(da.shape[1:]))  # checks the grid
            mask_window = self.noise_mask.mask[g["window"]]
        return da, g, mask_window

    def _processed_chunks(self, da: xr.DataArray, g: dict, mask: np.ndarray | None):
        """Yield ``(time slice, processed frames, NaN count, coverage or None)``,
        ``chunk_time`` frames at a time, reading only the crop window (plus the filter
        margin)."""
        starts = range(0, da.shape[0], self.chunk_time)
        for a in tqdm(
            starts, desc="preprocess", unit="chunk", disable=not self.progress
        ):
            sl = slice(a, min(a + self.chunk_time, da.shape[0]))
            v = np.asarray(
                da.isel(time=sl, y=g["window"][0], x=g["window"][1]).values,
                dtype=np.float32,
            )
            frames, covered = self._transform_frames(v, g, mask)
            yield sl, frames, int(np.isnan(v).sum()), covered

    def _coverage_attrs(self) -> dict:
        return {
            "long_name": "observed pixels (data before the NaN fill)",
            "flag_values": "0 1",
            "flag_meanings": "no_data observed",
            "min_coverage": self.min_coverage,
        }

    def _coverage_variable(self, nc, n_t: int, g: dict, chunk_time: int, complevel):
        """Create the ``coverage`` variable (time, y, x) uint8 in an open netCDF."""
        var = nc.createVariable(
            COVERAGE,
            "u1",
            ("time", "y", "x"),
            zlib=complevel > 0,
            complevel=complevel,
            chunksizes=(min(chunk_time, n_t), *g["out"]),
        )
        var.setncatts(self._coverage_attrs())
        return var

    def _zr_attrs(self, source_units: object) -> dict:
        """``zr_a`` / ``zr_b`` for a dBZ archive when given; none otherwise."""
        if self.zr is None:
            return {}
        if normalise_units(source_units) != "dBZ":
            log.warning(
                "zr_a/zr_b ignored: the archive is in %s, not dBZ (no Z-R relation "
                "applies to it)",
                source_units,
            )
            return {}
        return {"zr_a": self.zr[0], "zr_b": self.zr[1]}

    def _intensity_attrs(self, da: xr.DataArray) -> dict:
        zmin, zmax = self.normalizer._bounds()
        return {
            "units": "1",
            "long_name": "normalised radar intensity (grey level)",
            "zmin": zmin,
            "zmax": zmax,
            "source_units": str(da.attrs.get("units")),
        }

    def _result(self, ds: xr.Dataset, da: xr.DataArray, g: dict) -> xr.Dataset:
        """The output data set without its frames: coordinates, noise mask, motion,
        attributes (the provenance is added by :meth:`_record`)."""
        zmin, zmax = self.normalizer._bounds()
        hh, ww = da.shape[1:]
        top, left = g["offset"]
        (ch, cw), (oh, ow) = g["crop"], g["out"]
        y = _area_weights(ch, oh) @ np.asarray(
            ds["y"].values[top : top + ch], dtype=np.float64
        )
        x = _area_weights(cw, ow) @ np.asarray(
            ds["x"].values[left : left + cw], dtype=np.float64
        )
        attrs = {k: v for k, v in ds.attrs.items() if k not in ("intensity_variable",)}
        result = xr.Dataset(
            {
                "noise_mask": (
                    ("y", "x"),
                    self.processed_mask((hh, ww)),
                    {
                        "long_name": "noisy pixels to exclude (K-Means noise mask)",
                        "flag_values": "0 1",
                        "flag_meanings": "valid noisy",
                        "enabled": int(self.noise_mask is not None),
                    },
                ),
            },
            coords={"time": ds["time"].values, "y": y, "x": x},
            attrs=attrs,
        )
        result.attrs["intensity_variable"] = "intensity"
        result.attrs["zmin"] = zmin
        result.attrs["zmax"] = zmax
        result.attrs["source_units"] = str(da.attrs.get("units"))
        result.attrs.update(self._zr_attrs(da.attrs.get("units")))
        result.attrs.update(fit_split_attrs(self.fit_split, self._fits_data()))
        self._carry_motion(ds, result, g)
        return result

    def _fits_data(self) -> bool:
        """Whether anything (noise mask, a bound) was fitted on data."""
        return self.noise_mask is not None or bool(self.normalizer.fitted_bounds)

    def _carry_motion(self, ds: xr.Dataset, result: xr.Dataset, g: dict) -> None:
        """Crop + resize the true motion and rescale it to processed pixels per step."""
        (ch, cw), (oh, ow) = g["crop"], g["out"]
        scale = {"motion_u": ow / cw, "motion_v": oh / ch}
        for var in MOTION_VARIABLES:
            if var not in ds.data_vars:
                continue
            m = ds[var]
            if set(m.dims) == {"y", "x"}:
                m = m.transpose("y", "x")
                vals = resize(
                    center_crop(np.asarray(m.values, np.float32), (ch, cw)), (oh, ow)
                )
                dims: tuple = ("y", "x")
            elif set(m.dims) == {"time", "y", "x"}:
                m = m.transpose("time", "y", "x")
                vals = np.empty((m.shape[0], oh, ow), dtype=np.float32)
                for a in range(0, m.shape[0], self.chunk_time):
                    chunk = np.asarray(m[a : a + self.chunk_time].values, np.float32)
                    vals[a : a + self.chunk_time] = resize(
                        center_crop(chunk, (ch, cw)), (oh, ow)
                    )
                dims = ("time", "y", "x")
            else:
                raise ValueError(
                    f"{var} must have dims (time, y, x) or (y, x), got {m.dims}"
                )
            attrs = dict(m.attrs)
            attrs["units"] = "processed pixels per step"
            attrs["rescaled_by"] = scale[var]
            result[var] = (dims, vals * np.float32(scale[var]), attrs)

    def _record(
        self, result, g, raw_shape, n_nan, source_units, n_uncovered: int = 0
    ) -> None:
        zmin, zmax = self.normalizer._bounds()
        record_step(result, "fill_nan", value=zmin, n_filled=n_nan)
        record_step(
            result,
            "minmax_normalize",
            zmin=zmin,
            zmax=zmax,
            source_units=source_units,
            fitted=self.normalizer.fitted_bounds,
        )
        if self.noise_mask is not None:
            nm = self.noise_mask
            record_step(
                result,
                "noise_mask",
                **nm.params(),
                threshold=nm.threshold,
                mask_coverage=self.mask_coverage,
                noise_clusters=nm.noise_clusters,
                n_masked_raw=int(nm.mask.sum()),
                n_masked_processed=int(result["noise_mask"].values.sum()),
                fill=0.0,
            )
        else:
            record_step(result, "noise_mask", enabled=False)
        record_step(
            result, "center_crop", size=g["crop"], offset=g["offset"], raw=raw_shape
        )
        record_step(
            result,
            "disk_filter",
            radius=self.disk_radius,
            boundary=f"real data around the crop, else {self.disk_boundary}",
        )
        record_step(result, "resize", size=g["out"], method="area")
        if n_nan:
            record_step(
                result,
                "coverage",
                variable=COVERAGE if n_uncovered else None,
                min_coverage=self.min_coverage,
                n_unobserved_processed=n_uncovered,
                method="no-data pixels carry no weight in the disk filter and the "
                "resize (normalised convolution); unobserved processed pixels = 0",
            )
        for var in MOTION_VARIABLES:
            if var in result:
                record_step(
                    result, f"rescale_{var}", factor=result[var].attrs["rescaled_by"]
                )

    def fit_transform(self, ds: xr.Dataset) -> xr.Dataset:
        """:meth:`fit` then :meth:`transform` on the same data."""
        return self.fit(ds).transform(ds)

    # ---- persistence --------------------------------------------------------------
    def save(self, path: PathLike) -> Path:
        """Write the configuration and fitted bounds as JSON; the fitted noise mask
        goes next to it as ``<stem>_noise_mask.nc``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "params": self.params(),
            "normalizer": self.normalizer.to_dict(),
            "fit_split": self.fit_split,
        }
        if self.noise_mask is not None and self.noise_mask.mask is not None:
            mask_path = path.with_name(f"{path.stem}_noise_mask.nc")
            self.noise_mask.save(mask_path)
            state["noise_mask_file"] = mask_path.name
        path.write_text(json.dumps(state, indent=2))
        return path

    @classmethod
    def load(cls, path: PathLike) -> Preprocessor:
        """Read a preprocessor written by :meth:`save`."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"preprocessor file {path} does not exist")
        state = json.loads(path.read_text())
        obj = cls(**state["params"])
        obj.normalizer = MinMaxNormalizer.from_dict(state["normalizer"])
        obj.fit_split = state.get("fit_split")
        if "noise_mask_file" in state:
            obj.noise_mask = NoiseMask.load(path.with_name(state["noise_mask_file"]))
        return obj


FIT_ON = ("train", "all")
_FIT_PREFIX = "noise_mask_fit_"


def _check_fit_split(split: Mapping) -> dict:
    """Validate a fit-split description (see :meth:`Preprocessor.fit`)."""
    fit_on = split.get("fit_on")
    if fit_on == "all":
        return {"fit_on": "all"}
    if fit_on != "train":
        raise ValueError(
            f"fit split must say fit_on='train' or 'all', got {dict(split)!r}"
        )
    counts = [int(c) for c in split.get("counts", (4, 1, 1))]
    if len(counts) != 3:
        raise ValueError(f"fit split counts must be (train, val, test), got {counts}")
    return {
        "fit_on": "train",
        "block_len": int(split.get("block_len", 40)),
        "counts": counts,
        "seed": int(split.get("seed", 0)),
    }


def fit_split_attrs(split: Mapping | None, fitted: bool = True) -> dict:
    """Global attributes recording which frames the noise mask was fitted on.

    Parameters
    ----------
    split : mapping or None
        ``{"fit_on": "train", "block_len", "counts", "seed"}`` or ``{"fit_on": "all"}``;
        None records nothing (unknown).
    fitted : bool
        Whether anything was fitted on data; if not, ``noise_mask_fit_on = "none"``
        (nothing to leak, whatever the split).

    Returns
    -------
    dict
        ``noise_mask_fit_on`` and, for ``"train"``, ``noise_mask_fit_block_len``,
        ``noise_mask_fit_counts`` (3 ints), ``noise_mask_fit_seed``.
    """
    if split is None:
        return {}
    if not fitted:
        return {f"{_FIT_PREFIX}on": "none"}
    split = _check_fit_split(split)
    out = {f"{_FIT_PREFIX}on": split["fit_on"]}
    if split["fit_on"] == "train":
        out[f"{_FIT_PREFIX}block_len"] = split["block_len"]
        out[f"{_FIT_PREFIX}counts"] = np.asarray(split["counts"], dtype=np.int32)
        out[f"{_FIT_PREFIX}seed"] = split["seed"]
    return out


def read_fit_split(attrs: Mapping) -> dict | None:
    """Inverse of :func:`fit_split_attrs`: the recorded fit split, or None.

    Returns ``{"fit_on": "train", "block_len", "counts", "seed"}``,
    ``{"fit_on": "all"}``, ``{"fit_on": "none"}`` or None when the file records none.
    """
    fit_on = attrs.get(f"{_FIT_PREFIX}on")
    if fit_on is None:
        return None
    if str(fit_on) != "train":
        return {"fit_on": str(fit_on)}
    counts = np.atleast_1d(np.asarray(attrs[f"{_FIT_PREFIX}counts"])).tolist()
    return {
        "fit_on": "train",
        "block_len": int(attrs[f"{_FIT_PREFIX}block_len"]),
        "counts": [int(c) for c in counts],
        "seed": int(attrs[f"{_FIT_PREFIX}seed"]),
    }


def preprocess_archive(
    input: PathLike | Sequence[PathLike],
    output: PathLike,
    fit_on: str = "train",
    split_seed: int = 0,
    progress: bool = True,
    fit_block_len: int = 40,
    fit_counts: Sequence[int] = (4, 1, 1),
    **params,
) -> Path:
    """Raw radar archive -> processed netCDF + fitted preprocessor (JSON + mask).

    Parameters
    ----------
    input : path, glob, directory or list
        Raw radar files in the convention (as written by the importers); opened lazily
        with :func:`nowcast.data.radar.open_radar`.
    output : path
        Processed netCDF, streamed by :meth:`Preprocessor.transform_to_file`; the
        fitted preprocessor goes to ``<output stem>_preprocessor.json`` and its noise
        mask to ``<output stem>_preprocessor_noise_mask.nc``.
    fit_on : {"train", "all"}
        Fit the noise mask (and bounds left as ``None``) on the training blocks of
        :func:`nowcast.data.split.block_split` (``block_len=fit_block_len``,
        ``counts=fit_counts``, ``seed=split_seed``: the split the datasets will
        serve) or on all frames (an evaluation-only archive). The choice is recorded
        in the output (:func:`fit_split_attrs`), and
        :func:`nowcast.data.dataset.radar_datasets` refuses a split whose validation
        or test frames were fitted on.
    split_seed : int
        Seed of the block split.
    progress : bool
        Progress bars.
    fit_block_len, fit_counts
        Block length and (train, val, test) blocks per day of the fitting split.
    **params
        :class:`Preprocessor` parameters.

    Returns
    -------
    pathlib.Path
        The processed file.
    """
    from nowcast.data.split import block_split

    if fit_on not in FIT_ON:
        raise ValueError(f"unknown fit_on {fit_on!r}; available: {list(FIT_ON)}")
    ds = open_radar(input)
    pre = Preprocessor(progress=progress, **params)
    fit_ds = ds
    split: dict = {"fit_on": "all"}
    if fit_on == "train":
        split = _check_fit_split(
            {
                "fit_on": "train",
                "block_len": fit_block_len,
                "counts": list(fit_counts),
                "seed": split_seed,
            }
        )
        train = block_split(
            ds["time"].values,
            block_len=split["block_len"],
            counts=split["counts"],
            seed=split["seed"],
        )["train"]
        if not train:
            raise ValueError(
                f"the archive ({ds.sizes['time']} frames) holds no training block "
                f"(block_len={split['block_len']}, counts={split['counts']}) to fit "
                "on; use fit_on=all for an evaluation-only archive"
            )
        fit_ds = ds.isel(time=np.concatenate([np.arange(a, b) for a, b in train]))
    pre.fit(fit_ds, split=split)
    ds = ds.assign_attrs(preprocess_fitted_on=fit_on)
    output = Path(output)
    pre.transform_to_file(ds, output)
    pre.save(output.with_name(f"{output.stem}_preprocessor.json"))
    return output


def _check_5d(x: ArrayLike, name: str) -> None:
    if x.ndim != 5:
        raise ValueError(f"{name} must be (B, T, C, H, W), got shape {tuple(x.shape)}")


def patchify(x: ArrayLike, p: int) -> ArrayLike:
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
    if isinstance(y, torch.Tensor):
        y = y.permute(0, 1, 2, 4, 6, 3, 5)
    else:
        y = y.transpose(0, 1, 2, 4, 6, 3, 5)
    return y.reshape(b, t, c * p * p, h // p, w // p)


def unpatchify(x: ArrayLike, p: int) -> ArrayLike:
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
    if isinstance(y, torch.Tensor):
        y = y.permute(0, 1, 2, 5, 3, 6, 4)
    else:
        y = y.transpose(0, 1, 2, 5, 3, 6, 4)
    return y.reshape(b, t, c, hp * p, wp * p)
