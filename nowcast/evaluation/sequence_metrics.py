"""Scores of video (sequence) prediction: the Moving MNIST evaluation of Shi et al. 2015.

The paper scores Moving MNIST forecasts (Table 1) by the **cross-entropy per sequence**:
the per-pixel binary cross-entropy of the predicted frames against the observed ones,

    CE = - sum_{t, pixels} [ y log p + (1 - y) log (1 - p) ],

summed over the 10 predicted 64x64 frames (10 x 4,096 pixels) of a sequence and averaged
over the test sequences. The arguments of both logarithms, ``p`` and ``1 - p``, are
floored at :data:`CE_EPS` = 1e-7, so a confidently wrong pixel costs at most
``-ln(1e-7)`` = 16.12 nats instead of infinity and a confidently right one costs 0 (this
matters for forecasters whose output is exactly 0 or 1, such as persistence).

Later papers on the same benchmark (e.g. PredRNN, Wang et al. 2017; E3D-LSTM) report
per lead time the **MSE and MAE per frame**, i.e. squared / absolute errors *summed*
over the frame's pixels (not averaged) and averaged over sequences, and the **SSIM**
(Wang et al. 2004; Gaussian window 11x11, sigma 1.5, data range 1, K1 = 0.01,
K2 = 0.03, the mean over the positions where the window fits inside the frame, as
``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)`` computes it). These are given here too.

:class:`SequenceMetricAccumulator` keeps only per-lead sums on the device of the
forecasts (init / update / merge / all_reduce / compute, like
:class:`~nowcast.evaluation.metrics.MetricAccumulator`); :func:`evaluate_sequences`
runs forecasters over a data set and writes the report, side by side with
:data:`PAPER_TABLE1`.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from nowcast.evaluation.evaluate import (
    _jsonable,
    accumulate_forecasts,
    is_main_process,
)
from nowcast.evaluation.metrics import SumAccumulator, check_pair
from nowcast.forecast import Forecaster

__all__ = [
    "CE_EPS",
    "PAPER_TABLE1",
    "PAPER_OOD_CROSS_ENTROPY",
    "SEQUENCE_METRICS",
    "binary_cross_entropy_sum",
    "gaussian_window",
    "ssim",
    "SequenceMetricAccumulator",
    "evaluate_sequences",
    "sequence_markdown_table",
    "write_sequence_report",
]

#: Floor of ``p`` and ``1 - p`` inside the cross-entropy's logarithms (a certain
#: mistake costs ``-ln(CE_EPS)`` = 16.12 nats per pixel instead of infinity).
CE_EPS = 1e-7

#: Shi et al. (2015), Table 1: Moving MNIST test cross-entropy per sequence (summed
#: over the 10 predicted 64x64 frames, lower is better) and parameter counts.
PAPER_TABLE1: dict[str, dict[str, float]] = {
    "FC-LSTM-2048-2048": {"parameters": 142_667_776, "cross_entropy": 4832.49},
    "ConvLSTM(5x5)-5x5-256": {"parameters": 13_524_496, "cross_entropy": 3887.94},
    "ConvLSTM(5x5)-5x5-128-5x5-128": {
        "parameters": 10_042_896,
        "cross_entropy": 3733.56,
    },
    "ConvLSTM(5x5)-5x5-128-5x5-64-5x5-64": {
        "parameters": 7_585_296,
        "cross_entropy": 3670.85,
    },
    "ConvLSTM(9x9)-1x1-128-1x1-128": {
        "parameters": 11_550_224,
        "cross_entropy": 4782.84,
    },
    "ConvLSTM(9x9)-1x1-128-1x1-64-1x1-64": {
        "parameters": 8_830_480,
        "cross_entropy": 4231.50,
    },
}

#: Shi et al. (2015): the best model (ConvLSTM 5x5-128-64-64) on the out-of-domain
#: test set (three digits per sequence), cross-entropy per sequence.
PAPER_OOD_CROSS_ENTROPY = 6379.42

#: Metric key -> (column title, plot label). Per lead time, all per frame.
SEQUENCE_METRICS: dict[str, tuple[str, str]] = {
    "cross_entropy": ("cross-entropy / sequence", "cross-entropy / frame"),
    "mse": ("MSE / frame", "MSE / frame (sum over pixels)"),
    "mae": ("MAE / frame", "MAE / frame (sum over pixels)"),
    "ssim": ("SSIM", "SSIM"),
}

_STATE_NAMES = ("ce", "se", "ae", "ssim")


def _sum_dtype(device: torch.device) -> torch.dtype:
    # float64 sums stay exact over millions of pixels; MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


# ---------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------


def binary_cross_entropy_sum(
    pred: torch.Tensor, target: torch.Tensor, eps: float = CE_EPS
) -> torch.Tensor:
    """Binary cross-entropy of each frame, summed over its pixels (nats).

    Parameters
    ----------
    pred : torch.Tensor, shape (B, T, C, H, W)
        Predicted probabilities (grey levels) in [0, 1].
    target : torch.Tensor, shape (B, T, C, H, W)
        Observed grey levels in [0, 1] (soft targets are allowed, as in the paper's
        per-pixel cross-entropy on grey-level frames).
    eps : float
        ``p`` and ``1 - p`` are floored at ``eps`` inside the logarithms (see
        :data:`CE_EPS`): at most ``-ln(eps)`` per pixel.

    Returns
    -------
    torch.Tensor, shape (B, T)
        ``-sum_{C,H,W} [y log p + (1 - y) log(1 - p)]`` per frame, in the sum dtype of
        the device (float64 except on MPS). Summing over T gives the paper's
        per-sequence cross-entropy (Shi et al. 2015, Table 1).
    """
    if not 0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps!r}")
    dt = _sum_dtype(pred.device)
    p = pred.float()
    y = target.float()
    # p and 1 - p are each floored at eps: symmetric and exact in float32 (clamping p
    # to 1 - eps would not be: 1 - 1e-7 rounds to 1 - 1.19e-7 in float32)
    ce = -(
        y * torch.log(p.clamp_min(eps))
        + (1.0 - y) * torch.log((1.0 - p).clamp_min(eps))
    )
    return ce.sum(dim=(2, 3, 4), dtype=dt)


def gaussian_window(
    size: int = 11,
    sigma: float = 1.5,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Normalised 1-D Gaussian window ``exp(-x^2 / (2 sigma^2))``, x = -r .. r.

    Parameters
    ----------
    size : int
        Odd window length (11 in Wang et al. 2004).
    sigma : float
        Standard deviation in pixels (1.5).

    Returns
    -------
    torch.Tensor, shape (size,)
        Weights summing to 1.
    """
    if not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd int, got {size!r}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w = torch.exp(-(x**2) / (2.0 * sigma**2))
    return (w / w.sum()).to(dtype=dtype, device=device)


def _valid_filter_matrix(g: torch.Tensor, n: int) -> torch.Tensor:
    """(n - len(g) + 1, n) matrix whose row i holds ``g`` at columns i .. i + len(g) - 1:
    "valid" 1-D filtering of a length-``n`` signal as a matrix product."""
    k = g.numel()
    rows = n - k + 1
    cols = torch.arange(rows, device=g.device)[:, None] + torch.arange(
        k, device=g.device
    )
    m = torch.zeros(rows, n, dtype=g.dtype, device=g.device)
    return m.scatter_(1, cols, g.expand(rows, k))


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) of every image, Gaussian window.

    Local means, variances and covariance are Gaussian-weighted averages (population
    moments, no ``N / (N - 1)`` correction) over the positions where the whole window
    fits in the image ("valid" filtering), and the SSIM map is averaged over those
    positions. This equals
    ``skimage.metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1)``, which filters the whole image and
    then drops a ``(win_size - 1) / 2`` border.

    Parameters
    ----------
    x, y : torch.Tensor, shape (..., H, W)
        Images (any leading dimensions, e.g. (B, T, C)); H, W >= ``win_size``.
    data_range : float
        Range of the values (1 for grey levels in [0, 1]).
    win_size : int
        Odd Gaussian window length (11).
    sigma : float
        Gaussian standard deviation in pixels (1.5).
    k1, k2 : float
        Stabilising constants: ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2``.

    Returns
    -------
    torch.Tensor, shape (...)
        Mean SSIM of each image, in [-1, 1] (1 for identical images), in the dtype of
        ``x`` (float32 for integer input).
    """
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(
            f"x and y must be torch.Tensors, got {type(x).__name__} and "
            f"{type(y).__name__}"
        )
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape, got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    if x.ndim < 2 or x.shape[-2] < win_size or x.shape[-1] < win_size:
        raise ValueError(
            f"images must be (..., H, W) with H, W >= win_size={win_size}, got shape "
            f"{tuple(x.shape)}; use a smaller win_size for small images"
        )
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0, got {data_range!r}")
    dt = x.dtype if x.is_floating_point() else torch.float32
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    xs = x.reshape(-1, h, w).to(dt)
    ys = y.reshape(-1, h, w).to(dt)
    # the five moment maps, each filtered separably as G_h @ map @ G_w^T with banded
    # "valid" filtering matrices (batched matmul: much faster than a depthwise conv)
    maps = torch.stack([xs, ys, xs * xs, ys * ys, xs * ys], dim=1)  # (N, 5, H, W)
    g = gaussian_window(win_size, sigma, dt, x.device)
    maps = _valid_filter_matrix(g, h) @ maps @ _valid_filter_matrix(g, w).T
    mx, my, exx, eyy, exy = maps.unbind(dim=1)
    vx, vy, cxy = exx - mx * mx, eyy - my * my, exy - mx * my
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / (
        (mx * mx + my * my + c1) * (vx + vy + c2)
    )
    return s.mean(dim=(-2, -1)).reshape(lead)


# ---------------------------------------------------------------------------------------
# The accumulator
# ---------------------------------------------------------------------------------------


class SequenceMetricAccumulator(SumAccumulator):
    """Per-lead sums of cross-entropy, squared and absolute errors and SSIM.

    Parameters
    ----------
    eps : float
        Floor of ``p`` and ``1 - p`` in the cross-entropy (:data:`CE_EPS`).
    win_size, sigma : int, float
        SSIM Gaussian window (11, 1.5); frames must be at least ``win_size`` wide.
    data_range : float
        Value range of the frames (1).

    Notes
    -----
    The state is five float64 vectors of length T (the lead times) on the device of
    the first :meth:`update` (GPU included): per lead, the sums over sequences of the
    frame's cross-entropy, squared error and absolute error (each summed over the
    frame's pixels) and of its SSIM (averaged over channels), and the number of
    sequences. Scores are formed once, in :meth:`compute`. Combine accumulators with
    :meth:`merge` or, across processes, :meth:`all_reduce`.

    Examples
    --------
    >>> acc = SequenceMetricAccumulator()
    >>> for inputs, targets in loader:                     # doctest: +SKIP
    ...     acc.update(model.predict(inputs, 10), targets)
    >>> acc.compute()["cross_entropy"]                     # doctest: +SKIP
    """

    def __init__(
        self,
        eps: float = CE_EPS,
        win_size: int = 11,
        sigma: float = 1.5,
        data_range: float = 1.0,
    ) -> None:
        if not 0 < eps < 0.5:
            raise ValueError(f"eps must be in (0, 0.5), got {eps!r}")
        gaussian_window(win_size, sigma)  # validates both
        if not data_range > 0:
            raise ValueError(f"data_range must be > 0, got {data_range!r}")
        self.eps = float(eps)
        self.win_size = int(win_size)
        self.sigma = float(sigma)
        self.data_range = float(data_range)
        self._state: dict[str, torch.Tensor] | None = None
        self._frame_shape: tuple[int, ...] | None = None

    def _config(self) -> tuple:
        return (self.eps, self.win_size, self.sigma, self.data_range)

    def _layout(self) -> tuple:
        return (self.n_leads, self._frame_shape)

    def _adopt_layout(self, other: SumAccumulator) -> None:
        self._frame_shape = other._frame_shape  # type: ignore[attr-defined]

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._state = None
        self._frame_shape = None

    @torch.no_grad()
    def update(self, pred_probs: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of forecasts and observations.

        Parameters
        ----------
        pred_probs : torch.Tensor, shape (B, T, C, H, W)
            Forecast probabilities / grey levels in [0, 1], lead times 1 .. T.
        target : torch.Tensor, shape (B, T, C, H, W)
            Observed frames in [0, 1], same shape and device.
        """
        check_pair(pred_probs, target)
        lo_hi = torch.stack(
            [pred_probs.amin(), pred_probs.amax(), target.amin(), target.amax()]
        ).tolist()  # one host sync per batch
        if not all(math.isfinite(v) for v in lo_hi):
            raise ValueError("pred_probs and target must be finite, got NaN or inf")
        if lo_hi[0] < 0 or lo_hi[1] > 1 or lo_hi[2] < 0 or lo_hi[3] > 1:
            raise ValueError(
                "pred_probs and target must be in [0, 1] (probabilities / grey levels), "
                f"got pred in [{lo_hi[0]:g}, {lo_hi[1]:g}] and target in "
                f"[{lo_hi[2]:g}, {lo_hi[3]:g}]; apply sigmoid to logits first"
            )
        n_leads, frame_shape = pred_probs.shape[1], tuple(pred_probs.shape[2:])
        device = pred_probs.device
        if self._state is None:
            dt = _sum_dtype(device)
            self._state = {
                k: torch.zeros(n_leads, dtype=dt, device=device)
                for k in (*_STATE_NAMES, "n")
            }
            self._frame_shape = frame_shape
        elif (n_leads, frame_shape) != (self.n_leads, self._frame_shape):
            raise ValueError(
                f"every batch must have the same lead times and frame shape; this "
                f"accumulator holds (T, C, H, W) = ({self.n_leads}, "
                f"{', '.join(map(str, self._frame_shape or ()))}), got "
                f"{tuple(pred_probs.shape[1:])}"
            )
        st = self._state
        if st["n"].device != device:
            raise ValueError(
                f"this accumulator lives on {st['n'].device}, got tensors on {device}"
            )
        dt = st["n"].dtype
        p = pred_probs.float()
        t = target.float()
        err = p - t
        dims = (2, 3, 4)
        st["ce"] += binary_cross_entropy_sum(p, t, self.eps).to(dt).sum(0)
        st["se"] += (err * err).sum(dim=dims, dtype=dt).sum(0)
        st["ae"] += err.abs().sum(dim=dims, dtype=dt).sum(0)
        frame_ssim = ssim(p, t, self.data_range, self.win_size, self.sigma)  # (B, T, C)
        st["ssim"] += frame_ssim.to(dt).mean(dim=2).sum(0)
        st["n"] += pred_probs.shape[0]

    def compute(self) -> dict[str, Any]:
        """The scores.

        Returns
        -------
        dict
            ``cross_entropy``: the paper's per-sequence cross-entropy (summed over the
            T predicted frames' pixels, averaged over sequences);
            ``cross_entropy_by_lead`` (T,): its per-frame terms (they sum to it);
            ``cross_entropy_per_pixel``: the same per pixel (comparable to the
            training loss);
            ``mse`` / ``mae``: squared / absolute error per frame (summed over the
            frame's pixels), averaged over lead times, and ``mse_by_lead`` /
            ``mae_by_lead`` (T,);
            ``ssim`` (lead mean) and ``ssim_by_lead`` (T,);
            ``n_sequences``, ``n_leads``, ``pixels_per_frame``, ``eps``.
            Per-lead values are float64 numpy arrays.
        """
        if self._state is None:
            raise RuntimeError("compute() called before any update(); nothing to score")
        st = {k: v.detach().double().cpu().numpy() for k, v in self._state.items()}
        n = st["n"]
        pixels = int(np.prod(self._frame_shape))
        out: dict[str, Any] = {}
        for key, name in (
            ("cross_entropy", "ce"),
            ("mse", "se"),
            ("mae", "ae"),
            ("ssim", "ssim"),
        ):
            by_lead = st[name] / n
            out[f"{key}_by_lead"] = by_lead
            out[key] = float(by_lead.mean())
        out["cross_entropy"] = float(out["cross_entropy_by_lead"].sum())
        out["cross_entropy_per_pixel"] = out["cross_entropy"] / (n.size * pixels)
        out.update(
            n_sequences=int(n[0]),
            n_leads=int(n.size),
            pixels_per_frame=pixels,
            eps=self.eps,
        )
        return out


# ---------------------------------------------------------------------------------------
# Running forecasters and the report
# ---------------------------------------------------------------------------------------


def _n_parameters(forecaster: object) -> int | None:
    if isinstance(forecaster, torch.nn.Module):
        return int(sum(p.numel() for p in forecaster.parameters()))
    return None


def _fmt(x: float | None, digits: int = 2) -> str:
    if x is None or not math.isfinite(float(x)):
        return "–"
    return f"{float(x):,.{digits}f}"


def _dataset_notes(dataset: Dataset) -> list[str]:
    """Provenance notes from a cached Moving MNIST split's sidecar (best effort)."""
    path = getattr(dataset, "path", None)
    if path is None:
        return []
    meta_path = Path(path).with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return []
    source = str(meta.get("digit_source", ""))
    if source == "sklearn-fallback":
        return [
            "digits are the scikit-learn 8x8 FALLBACK (upsampled), not MNIST: the "
            "numbers do NOT compare with the paper's"
        ]
    return [f"digit source: {source}"] if source else []


def sequence_markdown_table(
    results: Mapping[str, Mapping[str, Any]],
    model_rows: Mapping[str, str] | None = None,
    notes: Sequence[str] = (),
) -> str:
    """The Table 1 style report of :func:`evaluate_sequences` results.

    Parameters
    ----------
    results : dict
        Forecaster name -> :meth:`SequenceMetricAccumulator.compute` output, with
        optional ``parameters``.
    model_rows : dict of str to str, optional
        Forecaster name -> :data:`PAPER_TABLE1` row whose published figures are shown
        beside it.
    notes : sequence of str
        Lines added under the table.

    Returns
    -------
    str
        Markdown: one row per forecaster, then the published Table 1.
    """
    if not results:
        raise ValueError("results is empty; nothing to tabulate")
    model_rows = dict(model_rows or {})
    first = next(iter(results.values()))
    lines = [
        f"Moving MNIST-style evaluation: {first['n_sequences']} sequences, "
        f"{first['n_leads']} predicted frames of {first['pixels_per_frame']} pixels. "
        "Cross-entropy per sequence as in Shi et al. (2015), Table 1 (summed over the "
        f"predicted frames' pixels, p and 1 - p floored at {first['eps']:g} in the "
        "logarithms); MSE / MAE per frame summed over the frame's pixels "
        "(as later papers report), averaged over lead times; SSIM (Gaussian window "
        "11, sigma 1.5) averaged over lead times.",
        "",
        "| forecaster | parameters | cross-entropy / sequence | paper row | "
        "paper parameters | paper cross-entropy | MSE / frame | MAE / frame | SSIM |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, res in results.items():
        params = res.get("parameters")
        row = model_rows.get(name)
        paper = PAPER_TABLE1.get(row, {}) if row else {}
        cells = [
            name,
            "–" if params is None else f"{int(params):,}",
            _fmt(res["cross_entropy"]),
            row or "–",
            f"{int(paper['parameters']):,}" if paper else "–",
            _fmt(paper.get("cross_entropy")) if paper else "–",
            _fmt(res["mse"]),
            _fmt(res["mae"]),
            _fmt(res["ssim"], 4),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if notes:
        lines += ["", "Notes:", "", *[f"- {n}" for n in notes]]
    lines += [
        "",
        "Published (Shi et al. 2015, Table 1, 3,000 test sequences of two digits; "
        f"the best model scores {PAPER_OOD_CROSS_ENTROPY} on three digits):",
        "",
        "| model | parameters | cross-entropy / sequence |",
        "|---|---|---|",
    ]
    for row, vals in PAPER_TABLE1.items():
        lines.append(
            f"| {row} | {int(vals['parameters']):,} | {_fmt(vals['cross_entropy'])} |"
        )
    return "\n".join(lines) + "\n"


def _write_plot(results: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    from nowcast.viz import plot_metrics_by_lead_time

    metrics = list(SEQUENCE_METRICS)
    scores = {
        name: {m: np.asarray(res[f"{m}_by_lead"]) for m in metrics}
        for name, res in results.items()
    }
    fig = plot_metrics_by_lead_time(scores, 1.0, metrics=metrics, ncols=2)
    for ax, m in zip(fig.axes, metrics, strict=False):
        ax.set_xlabel("lead time (frames)")
        ax.set_title(SEQUENCE_METRICS[m][1])
        ax.set_ylabel(SEQUENCE_METRICS[m][1])
    fig.savefig(path, dpi=100)
    return path


@torch.no_grad()
def evaluate_sequences(
    forecasters: Mapping[str, Forecaster],
    dataset: Dataset,
    out_dir: str | Path,
    n_steps: int = 10,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    max_batches: int | None = None,
    progress: bool = True,
    model_rows: Mapping[str, str] | None = None,
    num_workers: int = 0,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """Score forecasters on a sequence data set (Moving MNIST) and write the report.

    Every forecaster, learned or not, goes through the same path: each batch of
    ``(inputs, targets)`` is forecast with ``predict(inputs, n_steps)`` on ``device``
    and added to one :class:`SequenceMetricAccumulator` per forecaster.

    Parameters
    ----------
    forecasters : dict of str to Forecaster
        Name -> anything with ``predict``; ``torch.nn.Module`` forecasters are moved to
        ``device`` and put in eval mode. ``Persistence`` is the natural baseline.
    dataset : torch.utils.data.Dataset
        Items ``(inputs (T_in, C, H, W), targets (T_out, C, H, W))`` in [0, 1] with
        ``T_out >= n_steps`` (e.g. :class:`nowcast.data.moving_mnist.MovingMNISTDataset`).
    out_dir : str or Path
        Where ``metrics.md``, ``metrics_by_lead.csv``, ``metrics.json`` and
        ``metrics_by_lead.png`` go (created if missing).
    n_steps : int
        Frames to forecast and score (10 in the paper).
    batch_size : int
        Sequences per batch.
    device : str or torch.device
        Where forecasts are made and scored.
    max_batches : int, optional
        Stop after this many batches (quick looks, tests).
    progress : bool
        Show a tqdm bar.
    model_rows : dict of str to str, optional
        Forecaster name -> :data:`PAPER_TABLE1` row name, shown side by side.
    num_workers : int
        DataLoader workers.
    notes : sequence of str
        Extra lines for the report (a note on the digit source of a cached Moving
        MNIST split is added automatically).

    Returns
    -------
    dict
        ``{"results": {name: scores}, "files": {"markdown", "csv", "json", "plot"},
        "out_dir": Path}``; ``scores`` is :meth:`SequenceMetricAccumulator.compute`
        plus ``parameters`` (None for non-modules) and ``predict_seconds``.
    """
    _check_model_rows(model_rows)
    accs = {name: SequenceMetricAccumulator() for name in forecasters}
    loop = dict(progress=progress, max_batches=max_batches, num_workers=num_workers)
    run = accumulate_forecasts(
        forecasters, dataset, accs, n_steps, batch_size, device, **loop
    )
    results = {
        name: _sequence_scores(acc, forecasters[name], run["predict_seconds"][name])
        for name, acc in accs.items()
    }
    out = Path(out_dir)
    if not is_main_process():  # under torchrun rank 0 alone writes the report
        return {"results": results, "files": {}, "out_dir": out}
    files = write_sequence_report(
        results, out, model_rows, [*notes, *_dataset_notes(dataset)]
    )
    return {"results": results, "files": files, "out_dir": out}


def _check_model_rows(model_rows: Mapping[str, str] | None) -> None:
    """Refuse ``model_rows`` values that are not :data:`PAPER_TABLE1` row names."""
    unknown = {r for r in (model_rows or {}).values() if r not in PAPER_TABLE1}
    if unknown:
        raise ValueError(
            f"model_rows names unknown Table 1 rows {sorted(unknown)}; available: "
            f"{list(PAPER_TABLE1)}"
        )


def _sequence_scores(
    acc: SequenceMetricAccumulator, forecaster: Forecaster, seconds: float
) -> dict[str, Any]:
    """One forecaster's scores (summed over ranks), ``parameters``, ``predict_seconds``."""
    res = acc.all_reduce().compute()
    res["parameters"] = _n_parameters(forecaster)
    res["predict_seconds"] = seconds
    return res


def write_sequence_report(
    results: Mapping[str, Mapping[str, Any]],
    out: Path,
    model_rows: Mapping[str, str] | None,
    notes: Sequence[str],
) -> dict[str, Path]:
    """Write ``metrics.md``, ``metrics_by_lead.csv``, ``metrics.json`` and the plot.

    Parameters
    ----------
    results : mapping of str to dict
        Forecaster name -> :meth:`SequenceMetricAccumulator.compute` output.
    out : pathlib.Path
        Output folder (created if missing).
    model_rows : mapping of str to str, optional
        Forecaster name -> :data:`PAPER_TABLE1` row shown beside it.
    notes : sequence of str
        Report notes.

    Returns
    -------
    dict of str to Path
        ``markdown``, ``csv``, ``json`` and ``plot``.
    """
    out.mkdir(parents=True, exist_ok=True)
    notes = list(notes)
    files = {
        "markdown": out / "metrics.md",
        "csv": out / "metrics_by_lead.csv",
        "json": out / "metrics.json",
        "plot": out / "metrics_by_lead.png",
    }
    files["markdown"].write_text(sequence_markdown_table(results, model_rows, notes))
    payload = {
        "results": results,
        "paper_rows": dict(model_rows or {}),
        "paper_table1": PAPER_TABLE1,
        "notes": notes,
    }
    files["json"].write_text(json.dumps(_jsonable(payload), indent=1))
    metrics = list(SEQUENCE_METRICS)
    with files["csv"].open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["forecaster", "lead", *metrics])
        for name, res in results.items():
            for k in range(res["n_leads"]):
                writer.writerow(
                    [name, k + 1, *(float(res[f"{m}_by_lead"][k]) for m in metrics)]
                )
    _write_plot(results, files["plot"])
    return files
