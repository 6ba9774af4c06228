"""The embedded default data set: synthetic radar reflectivity, no download needed.

:func:`make_synthetic_radar` draws days of radar-like reflectivity (dBZ) that give a
model something to learn and every preprocessing step something to do:

* **Rain cells and bands.** Each day owns periodic Gaussian random fields with a
  power-law spectrum (as in spectral rain generators such as STEPS / pysteps): two
  isotropic fields for cells, one anisotropic field (4:1) for bands, and two
  small-scale fields for convective cores. Rain falls where their mix exceeds a
  threshold; the excess maps to 10-38 dBZ plus up to ~25 dBZ in cores, so most pixels
  are dry and a few per cent of the rain exceeds 40 dBZ.
* **Spatially varying motion.** A stationary, divergence-free affine velocity field per
  day, ``v(p) = t + A (p - c)`` with translation ``t`` (1-3.5 px/step at 480 px),
  rotation and shear in ``A`` (trace 0). The fields are advected exactly: frame ``k``
  samples the Lagrangian fields at ``p0 = Phi_{-k}(p)``, the flow map of ``v`` from the
  matrix exponential of the augmented system, with ``cv2.remap`` (periodic borders).
  The true Eulerian velocity is stored as ``motion_u`` (+x, columns) and ``motion_v``
  (+y, rows) in pixels per 6-minute step.
* **Growth and decay.** The cell fields rotate slowly into each other
  (``cos(a) F1 + sin(a) F2``, a quarter turn in ~5 h; cores in ~1.5 h), so cells appear
  and vanish, and the rain threshold follows a per-day storm life cycle (coverage grows
  to a peak and decays).
* **Radar artefacts.** Fixed ground clutter (small blobs and single pixels of 30-55
  dBZ, present in 70-100 % of frames, the same for all days) that the K-Means
  :class:`~nowcast.data.preprocess.NoiseMask` must find, its truth in
  ``clutter_mask``; random speckle (single pixels, 0-30 dBZ, new each frame) that the
  disk filter removes; no data (NaN) outside the radar's circular range.
* **Time axis.** 6-minute steps from 00:00 UTC, ``frames_per_day`` per day; the days
  are separated by random gaps of 2 to ``max_gap_days`` days (rainy days of a season),
  so the time axis has gaps like a real archive of selected days.

Everything is vectorised (numpy / OpenCV per frame); the whole set is a function of
``seed``. :func:`prepare_synthetic` generates, preprocesses and caches it;
:func:`synthetic_datasets` returns the train / val / test window datasets.
"""

from __future__ import annotations

import hashlib
import json
import os
import time as _time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask.array as dska
import numpy as np
import xarray as xr
from scipy.linalg import expm

from nowcast.data.radar import make_radar_dataset, write_radar
from nowcast.signatures import check_forwarded, forwards_to

__all__ = [
    "SYNTHETIC_VERSION",
    "DEFAULT_PREPROCESS",
    "make_synthetic_radar",
    "prepare_synthetic",
    "synthetic_datasets",
]

SYNTHETIC_VERSION = 2
STEP = np.timedelta64(6, "m")
DRY_DBZ = -10.0  # "no echo": pixel 0 of HKO-7 (dBZ = p / 255 * 70 - 10)

#: Preprocessing of the embedded default. The paper's 480 -> crop 330 -> disk 10 ->
#: resize 100 keeps 69 % of the frame and smooths over ~3 % of the crop; here raw
#: 240 -> crop 165 (the same 69 %) -> disk 5 (the same radius / crop ratio) -> 64x64, the
#: Moving-MNIST frame size, divisible by the patch sizes 2 and 4.
DEFAULT_PREPROCESS: dict = {
    "zmin": -10.0,
    "zmax": 60.0,
    "crop_size": 165,
    "disk_radius": 5,
    "resize_to": 64,
    "noise_mask": {"n_clusters": 6},
    "chunk_time": 64,
}


# --------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------
def _spectral_noise(
    rng: np.random.Generator,
    n: int,
    scale: float,
    beta: float = 3.0,
    anisotropy: float = 1.0,
    angle: float = 0.0,
) -> np.ndarray:
    """Periodic Gaussian random field, shape (n, n), mean 0, std 1, float32.

    Power spectrum ``(1 + (k scale)^2)^(-beta / 2)`` (flat below wavenumber 1/scale,
    power law above); ``anisotropy`` > 1 stretches structures along ``angle``.
    """
    k = np.fft.fftfreq(n)
    ky, kx = np.meshgrid(k, k, indexing="ij")
    ca, sa = np.cos(angle), np.sin(angle)
    k_along = kx * ca + ky * sa
    k_across = -kx * sa + ky * ca
    k2 = (k_along / anisotropy) ** 2 + (k_across * anisotropy) ** 2
    amplitude = (1.0 + k2 * (2 * np.pi * scale) ** 2) ** (-beta / 4.0)
    amplitude[0, 0] = 0.0
    white = np.fft.fft2(rng.standard_normal((n, n)))
    field = np.fft.ifft2(white * amplitude).real
    field -= field.mean()
    return (field / field.std()).astype(np.float32)


def _flow_maps(t: np.ndarray, a: np.ndarray, n_steps: int) -> np.ndarray:
    """Back-trajectory maps of ``dp/dt = t + A p`` (p relative to the centre).

    Returns (n_steps, 2, 3): ``p0 = M_k[:, :2] @ p + M_k[:, 2]`` is where the parcel
    found at ``p`` at step ``k`` was at step 0 (exact: matrix exponential of the
    augmented 3x3 system).
    """
    b = np.zeros((3, 3))
    b[:2, :2] = a
    b[:2, 2] = t
    step_back = expm(-b)
    maps = np.empty((n_steps, 3, 3))
    maps[0] = np.eye(3)
    for k in range(1, n_steps):
        maps[k] = step_back @ maps[k - 1]
    return maps[:, :2, :]


def _clutter(
    rng: np.random.Generator, size: int, fraction: float, inside: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed ground clutter: mask (H, W) bool, level dBZ and presence probability."""
    if fraction <= 0:
        return (
            np.zeros((size, size), bool),
            np.full((size, size), np.nan),
            np.zeros((size, size)),
        )
    n_target = max(1, round(fraction * size * size))
    n_blobs = max(1, n_target // 6)
    centres = rng.uniform(0.1 * size, 0.9 * size, size=(n_blobs, 2))
    # blobs of a few pixels (hills, buildings) scattered around their centres ...
    per_blob = rng.integers(1, 10, size=n_blobs)
    owner = np.repeat(np.arange(n_blobs), per_blob)
    pts = centres[owner] + rng.normal(0.0, 1.2, size=(owner.size, 2))
    # ... plus isolated single pixels (masts, interference)
    singles = rng.uniform(0.05 * size, 0.95 * size, size=(n_target // 3, 2))
    pts = np.rint(np.concatenate([pts, singles])).astype(int).clip(0, size - 1)
    mask = np.zeros((size, size), dtype=bool)
    mask[pts[:, 0], pts[:, 1]] = True
    mask &= inside
    level = np.where(mask, rng.uniform(30.0, 55.0, (size, size)), np.nan)
    presence = np.where(mask, rng.uniform(0.7, 1.0, (size, size)), 0.0)
    return mask, level.astype(np.float32), presence


def _affine_motion(
    rng: np.random.Generator, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float, float]]:
    """A day's velocity ``t + a (x - c)``: translation ``t`` (px/step), trace-free
    ``a`` (rotation and strain per step), the centre ``c`` (px) and the rotation
    and the two strain rates that make ``a``."""
    speed = rng.uniform(1.0, 3.5) * (size / 480.0)
    direction = rng.uniform(0, 2 * np.pi)
    t = speed * np.array([np.cos(direction), np.sin(direction)])
    omega = rng.uniform(-1, 1) * 0.002  # rotation, rad per step
    s1, s2 = rng.uniform(-1, 1, 2) * 0.0008  # shear / strain, trace 0
    a = np.array([[s1, s2 - omega], [s2 + omega, -s1]])
    c = size / 2 + rng.uniform(-0.25, 0.25, 2) * size
    return t, a, c, (omega, s1, s2)


def _rain_dbz(excess: np.ndarray, cores: np.ndarray) -> np.ndarray:
    """A frame's dBZ: rain (10-38 dBZ, cores up to 70) where ``excess`` > 0."""
    wet = excess > 0
    e = excess[wet]
    dbz = (
        10.0
        + 28.0 * (1.0 - np.exp(e * np.float32(-1 / 0.6)))
        + 25.0 * np.clip(cores[wet] - 1.0, 0, None) * np.clip(e * 2.0, 0, 1)
    )
    frame = np.full(excess.shape, DRY_DBZ, dtype=np.float32)
    frame[wet] = np.minimum(dbz, 70.0)
    return frame


def _day(
    rng: np.random.Generator, out: np.ndarray
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Fill ``out`` (n_frames, size, size) with one day of rain in dBZ; return its
    velocity field ``u``, ``v`` (size, size) and parameters."""
    n_frames, size = out.shape[0], out.shape[1]
    t, a, c, (omega, s1, s2) = _affine_motion(rng, size)

    n_base = 2 * size  # periodic base domain, larger than the frame
    cell = size / 12
    band_angle = rng.uniform(0, np.pi)
    layers = np.stack(
        [
            _spectral_noise(rng, n_base, cell),
            _spectral_noise(rng, n_base, cell),
            _spectral_noise(rng, n_base, cell, anisotropy=4.0, angle=band_angle),
            _spectral_noise(rng, n_base, size / 48),
            _spectral_noise(rng, n_base, size / 48),
        ],
        axis=-1,
    )
    w_band = rng.uniform(0.2, 0.8)
    phase = rng.uniform(0, 2 * np.pi, 2)
    k = np.arange(n_frames)
    a_cells = phase[0] + 0.5 * np.pi * k / 50.0  # quarter turn in 50 steps (5 h)
    a_cores = phase[1] + 0.5 * np.pi * k / 15.0  # quarter turn in 15 steps (1.5 h)
    # storm life cycle: threshold low (wide rain) at the peak, high before / after
    peak = rng.uniform(0.3, 0.7) * n_frames
    width = rng.uniform(0.25, 0.5) * n_frames
    thr_peak = rng.uniform(0.4, 0.9)
    thr = thr_peak + (1.9 - thr_peak) * (1 - np.exp(-(((k - peak) / width) ** 2)))

    import cv2

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    px, py = xx - np.float32(c[0]), yy - np.float32(c[1])
    offset = rng.uniform(0, n_base, 2)  # random place in the base domain
    maps = _flow_maps(t, a, n_frames)
    # the fields are periodic: only the constant term needs wrapping into the base
    # domain; the rest of each coordinate stays within a frame or two of it, which
    # cv2.remap's BORDER_WRAP folds back
    maps[:, :, 2] = np.mod(maps[:, :, 2] + offset, n_base)
    maps = maps.astype(np.float32)
    # float32 scalars, so that no step silently promotes the frames to float64
    coef, w_band32 = np.float32(np.sqrt(1 - w_band**2)), np.float32(w_band)
    cos_cells, sin_cells = (
        np.cos(a_cells).astype(np.float32),
        np.sin(a_cells).astype(np.float32),
    )
    cos_cores, sin_cores = (
        np.cos(a_cores).astype(np.float32),
        np.sin(a_cores).astype(np.float32),
    )
    thr = thr.astype(np.float32)
    for i in range(n_frames):
        m = maps[i]
        f = cv2.remap(
            layers,
            m[0, 0] * px + m[0, 1] * py + m[0, 2],
            m[1, 0] * px + m[1, 1] * py + m[1, 2],
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_WRAP,
        )
        cells = cos_cells[i] * f[..., 0] + sin_cells[i] * f[..., 1]
        cores = cos_cores[i] * f[..., 3] + sin_cores[i] * f[..., 4]
        out[i] = _rain_dbz(coef * cells + w_band32 * f[..., 2] - thr[i], cores)
    u = (t[0] + a[0, 0] * px + a[0, 1] * py).astype(np.float32)
    v = (t[1] + a[1, 0] * px + a[1, 1] * py).astype(np.float32)
    params = {
        "translation_px_per_step": t.round(4).tolist(),
        "rotation_rad_per_step": round(float(omega), 6),
        "strain_per_step": [round(float(s1), 6), round(float(s2), 6)],
        "centre_px": c.round(2).tolist(),
        "band_weight": round(float(w_band), 3),
        "peak_step": round(float(peak), 1),
    }
    return u, v, params


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------
def make_synthetic_radar(
    n_days: int = 3,
    frames_per_day: int = 240,
    size: int = 480,
    seed: int = 0,
    start: str = "2013-04-01",
    max_gap_days: int = 15,
    clutter_fraction: float = 0.004,
    speckle_rate: float = 0.002,
) -> xr.Dataset:
    """Synthetic radar reflectivity in the radar-sequence convention.

    See the module docstring for how it is made.

    Parameters
    ----------
    n_days : int
        Rainy days (>= 1).
    frames_per_day : int
        Frames per day, 1-240 (240 = 24 h of 6-minute steps from 00:00 UTC).
    size : int
        Frame size in pixels (480 = HKO-7); speeds and scales grow with it.
    seed : int
        Seed: the same seed gives the same data set.
    start : str
        Date of the first day.
    max_gap_days : int
        Days between two rainy days are drawn from 2..max_gap_days (>= 2).
    clutter_fraction : float
        Fraction of pixels that are ground clutter (roughly).
    speckle_rate : float
        Fraction of pixels hit by speckle in each frame.

    Returns
    -------
    xarray.Dataset
        ``intensity`` (time, y, x) float32 dBZ (NaN outside the radar range);
        ``motion_u`` / ``motion_v`` (time, y, x) float32 true velocity in pixels per
        step along +x / +y (lazy dask arrays, one chunk per day); ``clutter_mask``
        (y, x) bool. Attributes say that it is synthetic and how it was made.
    """
    _check_generator_args(n_days, frames_per_day, size, max_gap_days)
    root = np.random.SeedSequence(seed)
    rng_site, rng_noise, *rng_days = (
        np.random.default_rng(s) for s in root.spawn(2 + n_days)
    )
    times = _rainy_day_times(rng_site, n_days, frames_per_day, start, max_gap_days)

    yy, xx = np.mgrid[0:size, 0:size]
    radius = np.hypot(yy - (size - 1) / 2, xx - (size - 1) / 2)
    inside = radius <= size / 2
    clutter, level, presence = _clutter(rng_site, size, clutter_fraction, inside)

    n_t = n_days * frames_per_day
    data = np.empty((n_t, size, size), dtype=np.float32)
    us, vs, day_params = [], [], []
    for d, rng in enumerate(rng_days):
        u, v, p = _day(rng, data[d * frames_per_day : (d + 1) * frames_per_day])
        us.append(u)
        vs.append(v)
        day_params.append(p)

    _add_speckle_and_clutter(data, rng_noise, speckle_rate, clutter, level, presence)
    data[:, ~inside] = np.nan
    params = {
        "n_days": n_days,
        "frames_per_day": frames_per_day,
        "size": size,
        "seed": seed,
        "start": start,
        "max_gap_days": max_gap_days,
        "clutter_fraction": clutter_fraction,
        "speckle_rate": speckle_rate,
        "version": SYNTHETIC_VERSION,
    }
    return _synthetic_dataset(data, times, params, day_params, us, vs, clutter)


def _check_generator_args(
    n_days: int, frames_per_day: int, size: int, max_gap_days: int
) -> None:
    if int(n_days) != n_days or n_days < 1:
        raise ValueError(f"n_days must be a positive integer, got {n_days!r}")
    if int(frames_per_day) != frames_per_day or not 1 <= frames_per_day <= 240:
        raise ValueError(
            f"frames_per_day must be an integer in 1..240 (6-minute steps within one "
            f"day), got {frames_per_day!r}"
        )
    if int(size) != size or size < 16:
        raise ValueError(f"size must be an integer >= 16, got {size!r}")
    if int(max_gap_days) != max_gap_days or max_gap_days < 2:
        raise ValueError(f"max_gap_days must be an integer >= 2, got {max_gap_days!r}")


def _rainy_day_times(
    rng: np.random.Generator,
    n_days: int,
    frames_per_day: int,
    start: str,
    max_gap_days: int,
) -> np.ndarray:
    """Frame times: rainy days 2..max_gap_days apart, 6-minute steps from 00:00."""
    gaps = rng.integers(2, max_gap_days + 1, size=n_days - 1)
    day0 = np.datetime64(start, "D") + np.concatenate([[0], np.cumsum(gaps)]).astype(
        "timedelta64[D]"
    )
    steps = np.arange(frames_per_day) * STEP
    return (day0[:, None] + steps[None, :]).ravel().astype("datetime64[ns]")


def _add_speckle_and_clutter(
    data: np.ndarray,
    rng: np.random.Generator,
    speckle_rate: float,
    clutter: np.ndarray,
    level: np.ndarray,
    presence: np.ndarray,
) -> None:
    """Speckle (single pixels, new every frame) and flickering ground clutter (the
    same pixels every day, around their level), into ``data`` (T, H, W) dBZ."""
    n_speckle = rng.poisson(speckle_rate * data.size)
    idx = rng.integers(0, data.size, n_speckle)
    flat = data.reshape(-1)
    flat[idx] = np.maximum(flat[idx], rng.uniform(0.0, 30.0, n_speckle))
    cy, cx = np.nonzero(clutter)
    n_t = data.shape[0]
    present = rng.random((n_t, cy.size)) < presence[cy, cx]
    value = level[cy, cx] + rng.normal(0.0, 3.0, (n_t, cy.size))
    data[:, cy, cx] = np.where(
        present, np.maximum(data[:, cy, cx], value), data[:, cy, cx]
    )


def _synthetic_dataset(
    data: np.ndarray,
    times: np.ndarray,
    params: dict[str, Any],
    day_params: list[dict[str, Any]],
    us: list[np.ndarray],
    vs: list[np.ndarray],
    clutter: np.ndarray,
) -> xr.Dataset:
    """The convention's Dataset: intensity, lazy true motion, clutter mask, attrs."""
    frames_per_day, size = params["frames_per_day"], params["size"]
    description = (
        "Synthetic radar reflectivity made by nowcast.data.synthetic."
        "make_synthetic_radar: per day, periodic power-law Gaussian random fields "
        "(cells, 4:1 bands, convective cores) advected exactly by a stationary "
        "divergence-free affine velocity field (translation + rotation + shear), "
        "evolving by rotation between field pairs (growth and decay) under a storm "
        "life-cycle threshold; fixed ground clutter, per-frame speckle, NaN outside "
        "the radar range. Not real weather."
    )
    ds = make_radar_dataset(
        data,
        times,
        units="dBZ",
        attrs={
            "title": "nowcast synthetic radar (embedded default data set)",
            "source": "synthetic",
            "synthetic": 1,
            "description": description,
            "generator_params": json.dumps(params),
            "days": json.dumps(day_params),
            "cadence_minutes": 6,
        },
    )
    chunks = (frames_per_day, size, size)
    for name, fields, axis in (
        ("motion_u", us, "+x (columns)"),
        ("motion_v", vs, "+y (rows)"),
    ):
        lazy = dska.concatenate(
            [dska.broadcast_to(f[None], chunks, chunks=chunks) for f in fields]
        )
        ds[name] = (
            ("time", "y", "x"),
            lazy,
            {
                "units": "pixels per step",
                "long_name": f"true velocity along {axis}",
                "description": "Eulerian velocity of the advecting flow, 6-minute steps",
            },
        )
    ds["clutter_mask"] = (
        ("y", "x"),
        clutter,
        {"long_name": "true ground-clutter pixels (what the noise mask must find)"},
    )
    return ds


def _cache_key(params: dict) -> str:
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def prepare_synthetic(
    root: str | os.PathLike,
    n_days: int = 3,
    frames_per_day: int = 240,
    size: int = 240,
    preprocess: dict | None = None,
    seed: int = 0,
    force: bool = False,
    progress: bool = False,
) -> Path:
    """Generate, preprocess and cache the embedded default data set.

    The preprocessor's noise mask (and any bound left as ``None``) is fitted on the
    training blocks only (``nowcast.data.split.block_split(times, seed=seed)``, the
    split that :func:`synthetic_datasets` serves), or on all frames when a day is too
    short to give a block.

    Parameters
    ----------
    root : path
        Cache directory; receives ``processed.nc``, ``preprocessor.json``,
        ``preprocessor_noise_mask.nc`` and ``prepare.json`` (parameters, cache key,
        timings).
    n_days, frames_per_day, size, seed
        Passed to :func:`make_synthetic_radar` (``seed`` also seeds the split).
    preprocess : dict, optional
        :class:`~nowcast.data.preprocess.Preprocessor` parameters overriding
        :data:`DEFAULT_PREPROCESS`.
    force : bool
        Regenerate even when the cache matches.
    progress : bool
        Progress bars.

    Returns
    -------
    pathlib.Path
        ``root / "processed.nc"``. A second call with the same parameters returns at
        once; changed parameters regenerate.
    """
    root = Path(root)
    pre_params = {**DEFAULT_PREPROCESS, **dict(preprocess or {})}
    params = {
        "n_days": n_days,
        "frames_per_day": frames_per_day,
        "size": size,
        "seed": seed,
        "preprocess": pre_params,
        "version": SYNTHETIC_VERSION,
    }
    key = _cache_key(params)
    out_path = root / "processed.nc"
    meta_path = root / "prepare.json"
    if not force and _cache_matches(out_path, meta_path, key):
        return out_path
    root.mkdir(parents=True, exist_ok=True)
    meta_path.unlink(missing_ok=True)

    t0 = _time.perf_counter()
    raw = make_synthetic_radar(n_days, frames_per_day, size, seed=seed)
    t1 = _time.perf_counter()
    pre, fitted_on = _fit_on_train_blocks(raw, pre_params, seed, progress)
    processed = pre.transform(raw)
    t2 = _time.perf_counter()
    write_radar(processed, out_path, allow_nan=False)
    pre.save(root / "preprocessor.json")
    t3 = _time.perf_counter()
    meta = {
        "key": key,
        "params": params,
        "fitted_on": fitted_on,
        "seconds": {
            "generate": round(t1 - t0, 3),
            "preprocess": round(t2 - t1, 3),
            "write": round(t3 - t2, 3),
        },
    }
    meta_path.write_text(json.dumps(meta, indent=2))
    return out_path


def _cache_matches(out_path: Path, meta_path: Path, key: str) -> bool:
    """Whether ``out_path`` exists and ``meta_path`` records the cache ``key``."""
    if not (out_path.exists() and meta_path.exists()):
        return False
    try:
        return json.loads(meta_path.read_text()).get("key") == key
    except (json.JSONDecodeError, OSError):
        return False


def _fit_on_train_blocks(
    raw: xr.Dataset, pre_params: Mapping[str, Any], seed: int, progress: bool
) -> tuple[Any, str]:
    """A Preprocessor fitted on the training blocks of ``raw`` (all frames when it
    has none), and which of the two it was fitted on."""
    from nowcast.data.preprocess import Preprocessor
    from nowcast.data.preprocess.archive import _train_fit_frames

    split, fit_index = _train_fit_frames(raw, block_len=40, counts=(4, 1, 1), seed=seed)
    pre = Preprocessor(**pre_params, progress=progress)
    if fit_index is None:
        pre.fit(raw, split={"fit_on": "all"})
        return pre, "all frames"
    pre.fit(raw.isel(time=fit_index), split=split)
    return pre, "train blocks"


@forwards_to(prepare_synthetic)
def synthetic_datasets(
    root: str | os.PathLike,
    input_len: int = 5,
    output_len: int = 15,
    seed: int = 0,
    stride: int = 1,
    **prepare_kwargs: Any,
) -> dict:
    """Train / val / test window datasets over the (cached) embedded default.

    Calls :func:`prepare_synthetic` (``seed`` seeds both the data and the split) and
    :func:`nowcast.data.dataset.radar_datasets` (40-frame blocks, 4 / 1 / 1 per day).

    Returns
    -------
    dict
        ``{"train": Dataset, "val": Dataset, "test": Dataset}`` of
        ``(inputs (input_len, 1, H, W), targets (output_len, 1, H, W))`` float32.
    """
    from nowcast.data.dataset import radar_datasets

    check_forwarded(synthetic_datasets, prepare_kwargs)
    path = prepare_synthetic(root, seed=seed, **prepare_kwargs)
    return radar_datasets(
        path, input_len=input_len, output_len=output_len, seed=seed, stride=stride
    )
