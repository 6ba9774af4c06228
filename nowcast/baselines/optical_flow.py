"""Dense optical flow between radar frames, behind a small registry of methods.

ROVER ("Real-time Optical flow by Variational methods for Echoes of Radar", the Hong
Kong Observatory's operational nowcast used as baseline by Shi et al. 2015) estimates a
dense motion field with a variational, multigrid optical-flow method. This module offers
OpenCV methods in that spirit:

* ``"dis"`` (default, the ROVER-like variational method): coarse-to-fine Dense Inverse
  Search (Kroeger et al. 2016), each pyramid level refined by OpenCV's variational
  refinement (a data term with brightness and gradient constancy plus a smoothness
  term, the energy of Brox et al. 2004), i.e. a variational multigrid flow;
* ``"dis_fast"``: DIS with the ultrafast preset and no variational refinement (fast);
* ``"farneback"``: Farneback's polynomial-expansion flow (Farneback 2003).

``cv2.optflow`` (TV-L1, DeepFlow) is not part of ``opencv-python-headless``, so it is
not offered. Add a method with :func:`register_method`.

Conventions. Flow is in **pixels per time step** (per frame interval), shape
``(B, 2, H, W)``: channel 0 is ``u``, the displacement along x (columns, positive to
the right), channel 1 is ``v``, along y (rows, positive downwards); a feature at
``(x, y)`` in frame ``t`` is at ``(x + u, y + v)`` in frame ``t + 1``. Frames are
quantised to 8 bits (``round(255 P)``) for OpenCV; the flow is computed on the CPU
and returned on the frames' device.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch

from nowcast.registry import Registry

__all__ = [
    "estimate_flow",
    "get_method",
    "register_method",
    "available_methods",
    "TEMPORAL_MODES",
    "WARM_PARAMS",
    "default_warm_params",
]

#: How the flows of consecutive input pairs are combined (see :func:`estimate_flow`).
TEMPORAL_MODES = ("last", "chain", "mean")

# A flow method maps (prev uint8 (H, W), next uint8 (H, W), **params) -> flow (H, W, 2)
# float32 in pixels per step. Initial flows are handled by estimate_flow (pre-warping).
FlowMethod = Callable[..., np.ndarray]
_METHODS: Registry[FlowMethod] = Registry("optical-flow method")

_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


# The registry's public face (as the importers' presets and the training tasks):
# register_method(name) decorates (prev, next, **params) -> flow; get_method(name)
# raises a ValueError listing available_methods() for an unknown name.
register_method = _METHODS.register
available_methods = _METHODS.names
get_method = _METHODS.lookup


_LOCAL = threading.local()


def _dis(*key: object) -> cv2.DISOpticalFlow:
    """A DIS object for these settings, cached per thread.

    A DIS object keeps per-call buffers, so threads (``estimate_flow``'s
    ``workers``) must not share one.
    """
    cache = getattr(_LOCAL, "dis", None)
    if cache is None:
        cache = _LOCAL.dis = {}
    if key not in cache:
        if len(cache) >= 32:
            cache.clear()
        cache[key] = _new_dis(*key)
    return cache[key]


def _new_dis(
    preset: str,
    finest_scale: int | None,
    patch_size: int | None,
    patch_stride: int | None,
    grad_descent_iterations: int | None,
    variational_refinement_iterations: int | None,
    alpha: float | None,
    delta: float | None,
    gamma: float | None,
) -> cv2.DISOpticalFlow:
    if preset not in _DIS_PRESETS:
        raise ValueError(
            f"DIS preset must be one of {list(_DIS_PRESETS)}, got {preset!r}"
        )
    dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[preset])
    setters = (
        (finest_scale, dis.setFinestScale),
        (patch_size, dis.setPatchSize),
        (patch_stride, dis.setPatchStride),
        (grad_descent_iterations, dis.setGradientDescentIterations),
        (variational_refinement_iterations, dis.setVariationalRefinementIterations),
        (alpha, dis.setVariationalRefinementAlpha),
        (delta, dis.setVariationalRefinementDelta),
        (gamma, dis.setVariationalRefinementGamma),
    )
    for value, setter in setters:
        if value is not None:
            setter(value)
    return dis


def _auto_finest_scale(shape: tuple[int, ...], target: int = 64) -> int:
    """Smallest pyramid level whose larger side is <= ``target`` pixels."""
    return max(0, math.ceil(math.log2(max(shape) / target)))


def _coarsest_scale(shape: tuple[int, ...], patch_size: int) -> int:
    """OpenCV DIS's coarsest pyramid level for frames of ``shape`` (H, W).

    The formula of ``DISOpticalFlowImpl::calc`` (opencv/modules/video/src/
    dis_flow.cpp): search motion up to a quarter of the frame, and no level smaller
    than a patch. When the finest scale asked for is coarser than this, OpenCV calls
    ``autoSelectPatchSizeAndScales``, which *overwrites* the object's patch size and
    finest scale (then a full-resolution, much slower flow on every later call of the
    cached object); :func:`dis_variational` clamps to this level so that never happens.
    """
    big, small = max(shape), min(shape)
    return min(
        int(math.log(big / (4.0 * patch_size)) / math.log(2.0) + 0.5),
        int(math.log(small / patch_size) / math.log(2.0)),
    )


#: OpenCV's (finest scale, patch size) of each DIS preset.
_PRESET_SCALE_PATCH = {"ultrafast": (2, 8), "fast": (2, 8), "medium": (1, 8)}


def _clamped_finest_scale(
    shape: tuple[int, ...],
    preset: str,
    finest_scale: int | None,
    patch_size: int | None,
) -> int:
    """The finest scale to set: as asked (or the preset's), at most the coarsest."""
    fs, ps = _PRESET_SCALE_PATCH.get(preset, (1, 8))
    fs = fs if finest_scale is None else int(finest_scale)
    ps = ps if patch_size is None else int(patch_size)
    return max(0, min(fs, _coarsest_scale(shape, ps)))


def _downsample(frame: np.ndarray, factor: int) -> np.ndarray:
    """uint8 (H, W) -> (ceil(H / factor), ceil(W / factor)) by area averaging."""
    h, w = frame.shape
    size = (-(-w // factor), -(-h // factor))  # cv2 sizes are (width, height)
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _upsample_flow(flow: np.ndarray, shape: tuple[int, int], factor: int) -> np.ndarray:
    """Flow (h, w, 2) of frames downsampled by ``factor`` -> (H, W, 2) in full pixels."""
    h, w = shape
    up = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
    up *= float(factor)
    return up


@register_method("dis")
def dis_variational(
    prev: np.ndarray,
    nxt: np.ndarray,
    *,
    preset: str = "medium",
    finest_scale: int | str | None = "auto",
    patch_size: int | None = 8,
    patch_stride: int | None = 3,
    grad_descent_iterations: int | None = 25,
    variational_refinement_iterations: int | None = 10,
    alpha: float | None = 20.0,
    delta: float | None = 5.0,
    gamma: float | None = 10.0,
    coarser: int = 0,
) -> np.ndarray:
    """DIS + variational refinement at every scale (the ROVER-like method).

    Parameters
    ----------
    prev, nxt : numpy.ndarray of uint8, shape (H, W)
        Consecutive frames.
    preset : {"ultrafast", "fast", "medium"}
        OpenCV's DIS preset, then overridden by the explicit parameters below.
    finest_scale : int or "auto"
        Finest pyramid level computed (0 = full resolution, ``s``: 1 / 2**s of it,
        then upsampled). ``"auto"`` picks the smallest ``s`` with
        ``max(H, W) / 2**s <= 64``: radar motion is smooth, and at 480x480 the flow
        at 1/4 resolution is both about 10x faster and more accurate than at full
        resolution on the synthetic tests.
    patch_size, patch_stride : int
        Size and stride (pixels) of the patches matched by inverse search; on frames
        smaller than twice the patch size, the patch shrinks to half the frame.
    grad_descent_iterations : int
        Gradient-descent iterations of each patch match.
    variational_refinement_iterations : int
        Fixed-point iterations of the variational refinement at each level (0: off).
    alpha, delta, gamma : float
        Weights of the smoothness, brightness-constancy and gradient-constancy terms of
        the variational energy.
    coarser : int
        Estimate the flow ``coarser`` pyramid levels coarser than asked (a cheap
        warm start, see :func:`estimate_flow`'s ``warm_params``): the frames are
        downsampled by ``2**coarser`` (area averaging), DIS runs on them with the
        ``finest_scale`` resolved for the full-size frames (patches are then
        ``2**coarser`` times larger in full-size pixels), and the flow is upsampled
        bilinearly and scaled back to full-size pixels. About ``4**coarser`` times
        cheaper.

    Returns
    -------
    numpy.ndarray of float32, shape (H, W, 2)
        Flow ``(u, v)`` in pixels per step.

    Notes
    -----
    The finest scale is clamped to OpenCV's coarsest pyramid level for the frame
    and patch size (:func:`_coarsest_scale`): beyond it OpenCV would silently reset
    the cached DIS object's patch size and finest scale for all later calls.
    """
    shape = prev.shape
    if finest_scale == "auto":
        finest_scale = _auto_finest_scale(shape)
    prev, nxt, factor = _coarser_frames(prev, nxt, coarser)
    patch_size, patch_stride = _fit_patch(prev.shape, patch_size, patch_stride)
    finest_scale = _clamped_finest_scale(prev.shape, preset, finest_scale, patch_size)
    dis = _dis(
        preset,
        finest_scale,
        patch_size,
        patch_stride,
        grad_descent_iterations,
        variational_refinement_iterations,
        alpha,
        delta,
        gamma,
    )
    flow = dis.calc(prev, nxt, None)
    return _upsample_flow(flow, shape, factor) if factor > 1 else flow


def _coarser_frames(
    prev: np.ndarray, nxt: np.ndarray, coarser: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Both frames downsampled ``2**coarser`` times (area averaging), and that factor."""
    coarser = int(coarser)
    if coarser < 0:
        raise ValueError(f"coarser must be >= 0, got {coarser}")
    if not coarser:
        return prev, nxt, 1
    factor = 2**coarser
    return _downsample(prev, factor), _downsample(nxt, factor), factor


def _fit_patch(
    shape: tuple[int, int], patch_size: int | None, patch_stride: int | None
) -> tuple[int | None, int | None]:
    """DIS patch size and stride, shrunk to half the frame on small frames.

    DIS cannot match patches larger than half the frame (``shape`` = (h, w), pixels).
    """
    if patch_size is not None and patch_size > min(shape) // 2:
        patch_size = max(4, min(shape) // 2)
        patch_stride = None if patch_stride is None else min(patch_stride, patch_size)
    return patch_size, patch_stride


@register_method("dis_fast")
def dis_fast(
    prev: np.ndarray,
    nxt: np.ndarray,
    *,
    preset: str = "ultrafast",
    finest_scale: int | None = None,
    patch_size: int | None = None,
    patch_stride: int | None = None,
    grad_descent_iterations: int | None = None,
    variational_refinement_iterations: int | None = 0,
) -> np.ndarray:
    """DIS with OpenCV's ultrafast preset and no variational refinement (fast).

    Same inputs and output as :func:`dis_variational`; parameters left ``None`` keep
    the preset's values (the finest scale clamped as there).
    """
    dis = _dis(
        preset,
        _clamped_finest_scale(prev.shape, preset, finest_scale, patch_size),
        patch_size,
        patch_stride,
        grad_descent_iterations,
        variational_refinement_iterations,
        None,
        None,
        None,
    )
    return dis.calc(prev, nxt, None)


@register_method("farneback")
def farneback(
    prev: np.ndarray,
    nxt: np.ndarray,
    *,
    pyr_scale: float = 0.5,
    levels: int = 4,
    winsize: int = 15,
    iterations: int = 3,
    poly_n: int = 5,
    poly_sigma: float = 1.1,
    gaussian: bool = True,
) -> np.ndarray:
    """Farneback polynomial-expansion flow (``cv2.calcOpticalFlowFarneback``).

    Same inputs and output as :func:`dis_variational`; the parameters are OpenCV's
    (``winsize`` is the averaging window in pixels, ``levels`` the pyramid depth).
    """
    flags = cv2.OPTFLOW_FARNEBACK_GAUSSIAN if gaussian else 0
    return cv2.calcOpticalFlowFarneback(
        prev,
        nxt,
        None,
        pyr_scale,
        levels,
        winsize,
        iterations,
        poly_n,
        poly_sigma,
        flags,
    )


def _to_uint8(frames: torch.Tensor | np.ndarray) -> np.ndarray:
    """(B, T, H, W) or (B, T, C, H, W) grey levels in [0, 1] -> uint8 (B, T, H, W)."""
    x = frames if isinstance(frames, torch.Tensor) else torch.as_tensor(frames)
    if x.ndim == 5:
        x = x.mean(dim=2) if x.shape[2] > 1 else x[:, :, 0]
    elif x.ndim != 4:
        raise ValueError(
            "frames must be (B, T, H, W) or (B, T, C, H, W), got shape "
            f"{tuple(x.shape)}"
        )
    if x.shape[1] < 2:
        raise ValueError(
            f"flow needs at least 2 frames along axis 1, got shape {tuple(x.shape)}"
        )
    if x.dtype == torch.uint8:
        return np.ascontiguousarray(x.cpu().numpy())
    x = (x.detach().float() * 255.0).round_().clamp_(0, 255).to(torch.uint8)
    return np.ascontiguousarray(x.cpu().numpy())


#: Default :func:`estimate_flow` ``warm_params`` per method (see
#: :func:`default_warm_params`).
WARM_PARAMS: dict[str, dict[str, object]] = {
    "dis": {
        "patch_stride": 8,
        "grad_descent_iterations": 12,
        "variational_refinement_iterations": 2,
    }
}


def default_warm_params(method: str) -> dict[str, object]:
    """Parameter overrides of ``method`` for the earlier pairs of a chained flow.

    ``"dis"``: sparser patches (stride 8 px), 12 gradient-descent iterations and 2
    variational iterations, 5-7x cheaper than the defaults, so ROVER2 / ROVER3 cost
    at most 1.5x ROVER1 while their CSI on the synthetic validation split moves by
    less than 0.005 (benchmarks/README.md; a coarser pyramid level, ``coarser=1``,
    is as cheap but costs ROVER3 0.02 CSI there). Other methods: ``{}`` (every pair
    at full cost).
    """
    return dict(WARM_PARAMS.get(method, {}))


def _prewarp(frame: np.ndarray, flow: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """``frame`` (H, W) advected forward by ``flow`` (H, W, 2): sampled at p - flow."""
    return cv2.remap(
        frame,
        grid[0] - flow[..., 0],
        grid[1] - flow[..., 1],
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def _sequence_flow(
    seq: np.ndarray,
    fn: FlowMethod,
    temporal: str,
    params: Mapping[str, object],
    warm: Mapping[str, object],
) -> np.ndarray:
    """Flow (H, W, 2) of one uint8 sequence (T, H, W) (see :func:`estimate_flow`)."""
    t, h, w = seq.shape
    if temporal == "last":
        return fn(seq[t - 2], seq[t - 1], **params)
    grid = np.mgrid[0:h, 0:w][::-1].astype(np.float32)  # (x, y)
    flow, total = None, None
    for j in range(t - 1):
        kw = params if j == t - 2 else {**params, **warm}  # the last pair: full cost
        if flow is None:
            flow = fn(seq[j], seq[j + 1], **kw)
        else:  # initial guess: pre-warp, then estimate the residual
            flow = flow + fn(_prewarp(seq[j], flow, grid), seq[j + 1], **kw)
        total = flow.copy() if total is None else total + flow
    return total / (t - 1) if temporal == "mean" else flow


def estimate_flow(
    frames: torch.Tensor | np.ndarray,
    method: str = "dis",
    temporal: str = "last",
    warm_params: Mapping[str, object] | None = None,
    workers: int | None = None,
    **params: object,
) -> torch.Tensor:
    """Dense motion of the latest radar frames, in pixels per time step.

    Parameters
    ----------
    frames : torch.Tensor or numpy.ndarray, shape (B, T, H, W) or (B, T, C, H, W)
        Consecutive frames (oldest first), grey levels in [0, 1] (float) or uint8 in
        [0, 255]; several channels are averaged. ``T >= 2``.
    method : str
        Registered flow method (:func:`available_methods`): ``"dis"`` (variational,
        default), ``"dis_fast"``, ``"farneback"``.
    temporal : {"last", "chain", "mean"}
        How the ``T - 1`` consecutive pairs are used:

        * ``"last"``: the last pair only, from a zero initial flow (ROVER1);
        * ``"chain"``: every pair in time order, each initialised with the previous
          pair's flow; the last pair's flow is returned (ROVER2). The initial guess
          ``F0`` is applied by pre-warping: the earlier frame is advected by ``F0``,
          the method estimates the residual ``R`` against the later frame, and the
          flow is ``F0 + R`` (valid for smooth ``F0``), so any method accepts it;
        * ``"mean"``: as ``"chain"``, then the mean of all pairs' flows, a temporally
          smoothed motion (ROVER3).
    warm_params : mapping, optional
        Overrides of ``params`` for every pair but the last in ``"chain"`` and
        ``"mean"``: those pairs only warm-start (or smooth) the last one, so they can
        be estimated more cheaply. None: :func:`default_warm_params` of ``method``;
        ``{}``: every pair with ``params``.
    workers : int, optional
        Threads over the batch (OpenCV releases the GIL). None: up to
        ``cv2.getNumThreads()``; 1: serial. Results do not depend on it.
    **params
        Keyword parameters of the method (see its docstring, e.g.
        :func:`dis_variational`).

    Returns
    -------
    torch.Tensor, float32, shape (B, 2, H, W)
        Flow ``(u, v)``: channel 0 along x (columns, positive right), channel 1 along y
        (rows, positive down), in pixels per frame interval, on ``frames``' device
        (computed on the CPU by OpenCV).
    """
    fn = get_method(method)
    if temporal not in TEMPORAL_MODES:
        raise ValueError(f"temporal must be one of {TEMPORAL_MODES}, got {temporal!r}")
    warm = default_warm_params(method) if warm_params is None else dict(warm_params)
    device = frames.device if isinstance(frames, torch.Tensor) else torch.device("cpu")
    u8 = _to_uint8(frames)
    b = u8.shape[0]
    n = max(1, min(b, cv2.getNumThreads() if workers is None else int(workers)))

    def one(i: int) -> np.ndarray:
        return _sequence_flow(u8[i], fn, temporal, params, warm)

    if n == 1:
        flows = [one(i) for i in range(b)]
    else:
        with ThreadPoolExecutor(max_workers=n) as pool:
            flows = list(pool.map(one, range(b)))
    out = np.stack(flows).astype(np.float32, copy=False)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous().to(device)
