"""The K-Means noise mask of Shi et al. (2015): persistent clutter found on monthly means.

Shi et al. (2015, Sec. 4.2) remove "noisy pixels" found by K-Means clustering of the
monthly pixel averages. :func:`monthly_means` streams those averages over an archive;
:class:`NoiseMask` clusters them, decides which clusters are clutter and masks them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from nowcast.data.preprocess._files import PathLike, existing_file
from nowcast.data.preprocess.imageops import as_frames

__all__ = [
    "monthly_means",
    "month_labels",
    "chunk_month_sums",
    "add_month_sums",
    "means_from_sums",
    "NoiseMask",
]


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
    da = as_frames(data)
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
        add_month_sums(sums, counts, chunk_month_sums(v, inverse[a : a + chunk_time]))
    return means_from_sums(sums, counts), uniq


def month_labels(times) -> tuple[np.ndarray, np.ndarray]:
    """Months of an archive and each frame's month.

    Returns
    -------
    months : numpy.ndarray of datetime64[M], shape (M,)
        The distinct months, sorted.
    labels : numpy.ndarray of int, shape (T,)
        Index into ``months`` of each frame.
    """
    return np.unique(_months(times), return_inverse=True)


def chunk_month_sums(
    v: np.ndarray, labels: np.ndarray
) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Per-month sums and counts of the finite values of a chunk of frames.

    Parameters
    ----------
    v : numpy.ndarray, shape (t, H, W)
        Frames; NaN / inf are left out.
    labels : numpy.ndarray of int, shape (t,)
        Month index of each frame (:func:`month_labels`).

    Returns
    -------
    list of (month, sums, counts)
        ``sums`` float64 and ``counts`` int, shape (H, W), for each month in the chunk.
    """
    ok = np.isfinite(v)
    complete = bool(ok.all())  # the usual case: nothing to zero, counts = frames
    if not complete:
        v = np.where(ok, v, 0.0)
    parts = []
    for m in np.unique(labels):
        sel = labels == m
        if complete:
            counts = np.full(v.shape[1:], np.count_nonzero(sel), dtype=np.int64)
        else:
            counts = ok[sel].sum(axis=0)
        parts.append((int(m), v[sel].sum(axis=0, dtype=np.float64), counts))
    return parts


def add_month_sums(sums: np.ndarray, counts: np.ndarray, parts) -> None:
    """Add the output of :func:`chunk_month_sums` into ``(M, H, W)`` totals, in place."""
    for m, s, c in parts:
        sums[m] += s
        counts[m] += c


def means_from_sums(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Monthly means from the totals; NaN where a pixel has no data in a month."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


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


_COERCE = {"int": int, "float": float}


@dataclass(eq=False)
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

    n_clusters: int = 6
    z_threshold: float = 5.0
    gap_ratio: float = 2.5
    max_fraction: float = 0.2
    max_samples: int = 200_000
    seed: int = 0
    # set by fit
    mask: np.ndarray | None = field(default=None, init=False, repr=False)
    centroids: np.ndarray | None = field(default=None, init=False, repr=False)
    noise_clusters: list[int] = field(default_factory=list, init=False)
    months: np.ndarray | None = field(default=None, init=False, repr=False)
    threshold: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        n = self.n_clusters
        if int(n) != n or n < 2:
            raise ValueError(f"n_clusters must be an integer >= 2, got {n!r}")
        if not 0 < self.max_fraction <= 1:
            raise ValueError(f"max_fraction must be in (0, 1], got {self.max_fraction}")
        for f in fields(self):
            if f.init:  # the annotated type, also from YAML floats and numpy scalars
                setattr(self, f.name, _COERCE[f.type](getattr(self, f.name)))

    def params(self) -> dict:
        """Constructor parameters (JSON-serialisable)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

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
        means, months = monthly_means(data, times, chunk_time, transform, progress)
        return self.fit_means(means, months)

    def fit_means(self, means: np.ndarray, months: np.ndarray) -> NoiseMask:
        """Fit the mask on monthly means already computed (:func:`monthly_means`).

        Parameters
        ----------
        means : numpy.ndarray, shape (M, H, W)
            Per-month, per-pixel mean intensity (NaN: no data that month).
        months : numpy.ndarray of datetime64[M], shape (M,)

        Returns
        -------
        NoiseMask
            ``self``, with :attr:`mask` set.
        """
        from sklearn.cluster import KMeans
        from threadpoolctl import threadpool_limits

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

    def provenance(self) -> dict:
        """What the fitted mask is: its parameters, the threshold, the noise clusters
        and the number of masked pixels (for :func:`nowcast.data.radar.record_step`)."""
        return {
            **self.params(),
            "threshold": self.threshold,
            "noise_clusters": self.noise_clusters,
            "n_masked_raw": int(self._mask().sum()),
        }

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
        path = existing_file(path, "noise-mask")
        with xr.open_dataset(path, engine="netcdf4") as ds:
            obj = cls(**json.loads(ds.attrs["params"]))
            obj.mask = ds["mask"].values.astype(bool)
            obj.centroids = ds["centroids"].values
            obj.months = ds["month"].values.astype("datetime64[M]")
            obj.noise_clusters = list(json.loads(ds.attrs["noise_clusters"]))
            obj.threshold = float(ds.attrs["threshold"])
        return obj
