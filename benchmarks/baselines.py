"""Speed and flow error of the extrapolation baselines against a pysteps-like reference.

Run: ``python benchmarks/baselines.py`` (``--tiny`` for the smoke test, ``--sizes``,
``--repeats``).

Measured on a synthetic truth made here: a smooth random rain field (two Gaussian-
filtered noise scales, thresholded: about half the domain wet) carried by a known
steady motion ``v(p) = t + A (p - c)``, a translation plus a solid rotation, advected
exactly (matrix exponential of the affine system, cubic resampling of a larger field,
so nothing enters through the borders); speeds scale with the frame size (2.5 px/step
translation and 0.5 px/step of rotation at the edge of a 100x100 frame).

Rows:

* ``flow <method>``: :func:`nowcast.baselines.estimate_flow` on one pair, for every
  method of the registry; frames/s = pairs/s; end-point error (EPE, px/step) against
  the true one-step displacement, on wet pixels and on all pixels;
* ``semi_lagrangian``: :func:`nowcast.baselines.semi_lagrangian`, 15 leads, non-uniform
  (true) flow; frames/s = 15 / time;
* ``persistence``: :class:`nowcast.baselines.Persistence`, 15 leads (the floor);
* ``ROVER<v> (dis)``: a full :class:`nowcast.baselines.Rover` forecast (v = 1, 2, 3) from 5 inputs, 15
  leads, against ``reference LK + SL``: the common toolchain written here the way
  pysteps does it (not installed): Shi-Tomasi corners (``cv2.goodFeaturesToTrack``)
  tracked by pyramidal Lucas-Kanade (``cv2.calcOpticalFlowPyrLK``) on every input pair,
  vectors pooled, outliers (> 3 std from their 30 neighbours) dropped, declustered on a
  20-px grid, interpolated to a dense field by inverse-distance weighting of the 20
  nearest vectors (weights ``(d + 0.5) ** -0.5``), then backward semi-Lagrangian extrapolation step by step with
  ``scipy.ndimage.map_coordinates`` (displacement accumulated with the velocity
  interpolated at the midpoint, every lead sampled from the last frame). ROVER's
  speed-up is the median of per-round time ratios, measured alternately, as is
  ``time_vs_rover1`` (a variant's time per forecast over ROVER1's in the same round);
  MAE is the forecast's mean absolute error against the true frames over the 15 leads.

Times: ``time_ms`` is the fastest wall time, ``cpu_ms`` the fastest process CPU time
(robust on a busy shared machine as long as everything runs on one thread, the default
``--threads 1``: torch and OpenCV are set to one thread, as the numpy / scipy reference
uses).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy import ndimage
from scipy.linalg import expm
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_info, write_results  # noqa: E402

from nowcast.baselines import (  # noqa: E402
    Persistence,
    Rover,
    available_methods,
    estimate_flow,
    semi_lagrangian,
)

N_IN, N_OUT = 5, 15


# ---------------------------------------------------------------- synthetic truth
def affine_motion(size: int) -> np.ndarray:
    """3x3 augmented matrix ``B`` of ``dp/dt = A p + b`` (pixels, (x, y), per step)."""
    scale = size / 100.0
    omega = 0.5 / 50.0  # rad/step: 0.5 px/step at 50 px from the centre
    a = np.array([[0.0, -omega], [omega, 0.0]])
    t = np.array([2.0, -1.5]) * scale
    c = np.array([(size - 1) / 2.0] * 2)
    b = np.zeros((3, 3))
    b[:2, :2] = a
    b[:2, 2] = t - a @ c
    return b


def synthetic_sequence(
    size: int, n_frames: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``(n_frames, size, size)`` in [0, 1] and the true one-step displacement.

    Returns
    -------
    frames : numpy.ndarray, float32, (T, H, W)
    disp : numpy.ndarray, float32, (2, H, W)
        Forward displacement ``Phi_1(p) - p`` (x, y) over one step at every pixel, in
        pixels: where a feature at ``p`` goes in the next frame.
    """
    rng = np.random.default_rng(seed)
    b = affine_motion(size)
    margin = int(np.ceil(n_frames * (np.abs(b[:2, 2]).max() + 0.5 * size * 0.01))) + 8
    n = size + 2 * margin
    noise = rng.standard_normal((n, n))
    field = (
        ndimage.gaussian_filter(noise, size / 40) * 2.0
        + ndimage.gaussian_filter(noise, size / 12) * 6.0
    )
    field = (field - field.mean()) / field.std()
    field = np.clip(field, 0.0, None)  # about half wet
    field = (field / np.percentile(field, 99.5)).clip(0, 1).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    pts = np.stack([xx.ravel(), yy.ravel(), np.ones(xx.size)])
    frames = np.empty((n_frames, size, size), np.float32)
    for k in range(n_frames):
        src = expm(-k * b) @ pts  # where the parcel at p now was at step 0
        mx = (src[0] + margin).reshape(size, size).astype(np.float32)
        my = (src[1] + margin).reshape(size, size).astype(np.float32)
        frames[k] = cv2.remap(field, mx, my, cv2.INTER_CUBIC)
    np.clip(frames, 0.0, 1.0, out=frames)
    dst = expm(b) @ pts
    disp = (dst[:2] - pts[:2]).reshape(2, size, size).astype(np.float32)
    return frames, disp


def epe(flow: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean end-point error ``|flow - truth|`` (px/step) over ``mask`` (or all)."""
    err = np.hypot(flow[0] - truth[0], flow[1] - truth[1])
    return float(err[mask].mean() if mask is not None else err.mean())


# ---------------------------------------------------------------- reference toolchain
def _u8(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    s = 255.0 / max(hi - lo, 1e-9)
    return (
        np.round((a - lo) * s).astype(np.uint8),
        np.round((b - lo) * s).astype(np.uint8),
    )


def reference_lk_flow(frames: np.ndarray) -> np.ndarray:
    """pysteps-style dense Lucas-Kanade: ``(T, H, W)`` -> flow ``(2, H, W)`` (x, y)."""
    h, w = frames.shape[-2:]
    xy, uv = [], []
    for k in range(frames.shape[0] - 1):
        prev, nxt = _u8(frames[k], frames[k + 1])
        prev = cv2.morphologyEx(prev, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        pts = cv2.goodFeaturesToTrack(
            prev, maxCorners=1000, qualityLevel=0.01, minDistance=10, blockSize=5
        )
        if pts is None:
            continue
        new, status, _ = cv2.calcOpticalFlowPyrLK(
            prev,
            nxt,
            pts,
            None,
            winSize=(50, 50),
            maxLevel=3,
            criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 10, 0),
            flags=0,
            minEigThreshold=1e-4,
        )
        ok = status.ravel() == 1
        xy.append(pts[ok, 0])
        uv.append(new[ok, 0] - pts[ok, 0])
    if not xy:
        return np.zeros((2, h, w), np.float32)
    xy, uv = (
        np.concatenate(xy).astype(np.float64),
        np.concatenate(uv).astype(np.float64),
    )
    # outliers: > 3 std from the mean of their 30 nearest neighbours
    if len(xy) > 31:
        _, idx = cKDTree(xy).query(xy, k=31)
        nb = uv[idx[:, 1:]]
        dev = np.linalg.norm(uv - nb.mean(1), axis=1)
        spread = np.linalg.norm(nb.std(1), axis=1)
        keep = dev <= 3 * spread + 1e-6
        xy, uv = xy[keep], uv[keep]
    # decluster: mean vector per 20-px cell with >= 2 samples
    cell = np.floor(xy / 20.0).astype(np.int64)
    key = cell[:, 0] * 100_000 + cell[:, 1]
    uniq, inv, count = np.unique(key, return_inverse=True, return_counts=True)
    sums = np.zeros((uniq.size, 4))
    np.add.at(sums, inv, np.hstack([xy, uv]))
    good = count >= 2
    if good.sum() >= 3:
        means = sums[good] / count[good, None]
        xy, uv = means[:, :2], means[:, 2:]
    # inverse-distance interpolation (pysteps' idwinterp2d defaults: the 20 nearest
    # vectors, weights 1 / (d + 0.5) ** 0.5)
    k = min(20, len(xy))
    gy, gx = np.mgrid[0:h, 0:w]
    grid = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float64)
    d, idx = cKDTree(xy).query(grid, k=k)
    if k == 1:
        d, idx = d[:, None], idx[:, None]
    wgt = 1.0 / np.sqrt(d + 0.5)
    dense = (wgt[..., None] * uv[idx]).sum(1) / wgt.sum(1, keepdims=True)
    return dense.T.reshape(2, h, w).astype(np.float32)


def reference_extrapolate(
    frame: np.ndarray, flow: np.ndarray, n_steps: int
) -> np.ndarray:
    """pysteps-style backward semi-Lagrangian extrapolation, one step at a time."""
    h, w = frame.shape
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float64)
    back = -flow.astype(np.float64)  # backward in time
    disp = np.zeros((2, h, w))
    out = np.empty((n_steps, h, w), np.float32)
    for t in range(n_steps):
        if t == 0:
            vel = back
        else:  # velocity at the midpoint of the step's back-trajectory
            pos_y = gy + disp[1] + vel[1] / 2
            pos_x = gx + disp[0] + vel[0] / 2
            vel = np.stack(
                [
                    ndimage.map_coordinates(
                        back[i], [pos_y, pos_x], order=1, mode="nearest"
                    )
                    for i in range(2)
                ]
            )
        disp += vel
        out[t] = ndimage.map_coordinates(
            frame,
            [gy + disp[1], gx + disp[0]],
            order=1,
            mode="constant",
            cval=0.0,
            prefilter=False,
        )
    return out


def reference_forecast(
    frames: np.ndarray, n_steps: int
) -> tuple[np.ndarray, np.ndarray]:
    flow = reference_lk_flow(frames)
    return reference_extrapolate(frames[-1], flow, n_steps), flow


# ---------------------------------------------------------------- benchmark
def timed(fn) -> tuple[float, float]:
    """Wall and process CPU time (s) of one call of ``fn``."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def best(fn, repeats: int) -> tuple[float, float]:
    """Fastest wall and CPU time over ``repeats`` calls (after one warm-up call)."""
    fn()
    walls, cpus = zip(*(timed(fn) for _ in range(repeats)), strict=True)
    return min(walls), min(cpus)


def bench_size(size: int, repeats: int) -> list[dict]:
    frames, truth = synthetic_sequence(size, N_IN + N_OUT)
    inputs_np, target = frames[:N_IN], frames[N_IN:]
    inputs = torch.from_numpy(inputs_np)[None, :, None]  # (1, 5, 1, H, W)
    wet = inputs_np[-2] > 0
    res = f"{size}x{size}"
    rows = []
    for m in available_methods():
        pair = inputs[:, -2:]
        flow = estimate_flow(pair, m)[0].numpy()
        t, c = best(lambda m=m, pair=pair: estimate_flow(pair, m), repeats)
        rows.append(
            {
                "size": res,
                "what": f"flow {m} (1 pair)",
                "time_ms": 1e3 * t,
                "cpu_ms": 1e3 * c,
                "frames_per_s": 1.0 / t,
                "epe_wet": epe(flow, truth, wet),
                "epe_all": epe(flow, truth),
            }
        )
    frame = inputs[:, -1]
    tflow = torch.from_numpy(truth)[None]
    t, c = best(lambda: semi_lagrangian(frame, tflow, N_OUT), repeats)
    rows.append(
        {
            "size": res,
            "what": f"semi_lagrangian ({N_OUT} leads)",
            "time_ms": 1e3 * t,
            "cpu_ms": 1e3 * c,
            "frames_per_s": N_OUT / t,
        }
    )
    pers = Persistence()
    t, c = best(lambda: pers.predict(inputs, N_OUT), repeats)
    rows.append(
        {
            "size": res,
            "what": f"persistence ({N_OUT} leads)",
            "time_ms": 1e3 * t,
            "cpu_ms": 1e3 * c,
            "frames_per_s": N_OUT / t,
            "mae": float(np.abs(inputs_np[-1][None] - target).mean()),
        }
    )

    # full forecasts, alternately: reference vs ROVER1 / ROVER2 / ROVER3
    rovers = {v: Rover(v) for v in (1, 2, 3)}
    contenders = {
        "reference LK + SL (pysteps-like)": lambda: reference_forecast(
            inputs_np, N_OUT
        ),
        **{
            f"ROVER{v} (dis)": lambda v=v: rovers[v].predict(inputs, N_OUT)
            for v in (1, 2, 3)
        },
    }
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in contenders}
    for fn in contenders.values():
        fn()  # warm-up
    for _ in range(repeats):
        for k, fn in contenders.items():
            times[k].append(timed(fn))
    ref_key = next(iter(contenders))
    ref_fc, ref_flow = reference_forecast(inputs_np, N_OUT)
    results = {
        ref_key: (ref_fc, ref_flow),
        **{
            f"ROVER{v} (dis)": (
                r.predict(inputs, N_OUT)[0, :, 0].numpy(),
                r.flow(inputs)[0].numpy(),
            )
            for v, r in rovers.items()
        },
    }
    rover1 = times["ROVER1 (dis)"]
    for k, ts in times.items():
        fc, flow = results[k]
        wall, cpu = (min(x) for x in zip(*ts, strict=True))
        pairs = list(zip(times[ref_key], ts, strict=True))
        rows.append(
            {
                "size": res,
                "what": f"forecast {k}",
                "time_ms": 1e3 * wall,
                "cpu_ms": 1e3 * cpu,
                "frames_per_s": N_OUT / wall,
                "speedup_vs_ref": statistics.median(a[0] / b[0] for a, b in pairs),
                "cpu_speedup_vs_ref": statistics.median(a[1] / b[1] for a, b in pairs),
                # time per forecast / ROVER1's, median of the per-round ratios
                "time_vs_rover1": statistics.median(
                    b[0] / a[0] for a, b in zip(rover1, ts, strict=True)
                ),
                "epe_wet": epe(flow, truth, wet),
                "epe_all": epe(flow, truth),
                "mae": float(np.abs(fc - target).mean()),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="smoke-test size")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--sizes", default=None, help="comma list (default 100,480)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and OpenCV threads (default 1: the reference is "
        "single-threaded numpy/scipy; 0 keeps the libraries' default)",
    )
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    sizes = [
        int(s) for s in (args.sizes or ("48" if args.tiny else "100,480")).split(",")
    ]
    repeats = args.repeats or (1 if args.tiny else 5)
    rows = []
    for size in sizes:
        rows += bench_size(size, repeats)
    info = machine_info("cpu")
    info["cv2"] = cv2.__version__
    info["cv2_threads"] = cv2.getNumThreads()
    write_results("baselines", info, rows, args.out)
    return rows


if __name__ == "__main__":
    main()
