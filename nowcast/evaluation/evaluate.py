"""Run forecasters over a test split, score them per lead time, write the report.

Learned models and baselines go through the same path (they all answer
``predict(inputs, n_steps)``, :class:`nowcast.forecast.Forecaster`): every batch of
``(inputs, targets)`` is forecast by each forecaster on ``device`` and scored there by
one :class:`~nowcast.evaluation.metrics.MetricAccumulator` per forecaster, which only
keeps per-lead sums, so nothing field-sized leaves the device.
"""

from __future__ import annotations

import csv
import json
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from nowcast.evaluation.metrics import MetricAccumulator, threshold_key
from nowcast.forecast import Forecaster, check_n_steps

__all__ = [
    "PAPER_TABLE",
    "HKO7_CSI_TABLE",
    "PAPER_COLUMNS",
    "accumulate_forecasts",
    "evaluate_forecasters",
    "markdown_table",
    "scores_by_lead",
    "write_report",
]

#: The paper's columns: result key -> column title.
PAPER_COLUMNS = {
    "rainfall_mse": "Rainfall-MSE",
    "csi": "CSI",
    "far": "FAR",
    "pod": "POD",
    "correlation": "Correlation",
}

#: Shi et al. (2015), radar experiment: averages over the 15 predictions (HKO data,
#: 0.5 mm/h threshold), as published.
PAPER_TABLE: dict[str, dict[str, float]] = {
    "ConvLSTM": dict(
        rainfall_mse=1.420, csi=0.577, far=0.195, pod=0.660, correlation=0.908
    ),
    "ROVER1": dict(
        rainfall_mse=1.712, csi=0.516, far=0.308, pod=0.636, correlation=0.843
    ),
    "ROVER2": dict(
        rainfall_mse=1.684, csi=0.522, far=0.301, pod=0.642, correlation=0.850
    ),
    "ROVER3": dict(
        rainfall_mse=1.685, csi=0.522, far=0.301, pod=0.642, correlation=0.849
    ),
    "FC-LSTM": dict(
        rainfall_mse=1.865, csi=0.286, far=0.335, pod=0.351, correlation=0.774
    ),
}

#: Shi et al. (2017), HKO-7 offline test (5 in, 20 out): CSI averaged over leads per
#: threshold (mm/h), from a public reproduction's result files.
HKO7_CSI_TABLE: dict[str, dict[str, float]] = {
    "last frame (persistence)": {
        "csi@0.5": 0.4022, "csi@2": 0.3266, "csi@5": 0.2401, "csi@10": 0.1574,
        "csi@30": 0.0692,
    },
    "ROVER (non-linear)": {
        "csi@0.5": 0.4655, "csi@2": 0.4074, "csi@5": 0.3226, "csi@10": 0.2164,
        "csi@30": 0.0951,
    },
    "ConvLSTM (balanced loss)": {
        "csi@0.5": 0.5543, "csi@2": 0.4790, "csi@5": 0.3784, "csi@10": 0.2866,
        "csi@30": 0.1815,
    },
    "TrajGRU": {
        "csi@0.5": 0.5430, "csi@2": 0.4678, "csi@5": 0.3667, "csi@10": 0.2774,
        "csi@30": 0.1730,
    },
}  # fmt: skip


def _is_persistence(name: str, forecaster: object) -> bool:
    from nowcast.baselines.persistence import Persistence

    return isinstance(forecaster, Persistence) or name.lower() == "persistence"


@torch.no_grad()
def accumulate_forecasts(
    forecasters: Mapping[str, Forecaster],
    dataset: Dataset,
    accumulators: Mapping[str, Any],
    n_steps: int,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    mask: torch.Tensor | None = None,
    progress: bool = True,
    max_batches: int | None = None,
    num_workers: int = 0,
) -> dict[str, Any]:
    """Run every forecaster over ``dataset`` and feed one accumulator per forecaster.

    The one evaluation path shared by the radar metrics (:func:`evaluate_forecasters`)
    and the sequence metrics (``nowcast.evaluation.sequence_metrics``): each batch of
    ``(inputs, targets)`` is moved to ``device`` once, forecast by each forecaster with
    ``predict(inputs, n_steps)`` and added with ``accumulators[name].update(pred,
    targets[, mask])``, so nothing field-sized leaves the device.

    Parameters
    ----------
    forecasters : dict of str to Forecaster
        ``torch.nn.Module`` forecasters are put in eval mode and moved to ``device``.
    dataset : torch.utils.data.Dataset
        Items ``(inputs (T_in, C, H, W), targets (T_out, C, H, W))``, T_out >= n_steps.
    accumulators : dict of str to accumulator
        One per forecaster name, with ``update(pred, target[, mask])``.
    n_steps, batch_size, device, mask, progress, max_batches, num_workers
        As in :func:`evaluate_forecasters` (``mask`` is passed only when given).

    Returns
    -------
    dict
        ``predict_seconds`` (name -> total seconds in ``predict``) and ``n_sequences``.
    """
    n_steps = check_n_steps(n_steps)
    if not forecasters:
        raise ValueError(
            "forecasters is empty; pass e.g. {'persistence': Persistence()}"
        )
    for name, fc in forecasters.items():
        if not callable(getattr(fc, "predict", None)):
            raise TypeError(
                f"forecaster {name!r} has no predict(inputs, n_steps) method, got "
                f"{type(fc).__name__}"
            )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError("dataset is empty; nothing to evaluate")
    device = torch.device(device)
    for fc in forecasters.values():
        if isinstance(fc, torch.nn.Module):
            fc.eval().to(device)
    extra = () if mask is None else (torch.as_tensor(mask).to(device),)
    seconds = dict.fromkeys(forecasters, 0.0)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    total = len(loader) if max_batches is None else min(len(loader), max_batches)
    batches: Any = loader
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(loader, total=total, desc="evaluate", unit="batch")
    n_seq = 0
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        inputs, targets = _unpack(batch)
        if targets.shape[1] < n_steps:
            raise ValueError(
                f"targets hold {targets.shape[1]} frames but n_steps={n_steps}; build "
                "the dataset with output_len >= n_steps"
            )
        inputs = inputs.to(device, non_blocking=True).float()
        targets = targets[:, :n_steps].to(device, non_blocking=True).float()
        n_seq += inputs.shape[0]
        for name, fc in forecasters.items():
            t0 = time.perf_counter()
            pred = fc.predict(inputs, n_steps)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds[name] += time.perf_counter() - t0
            if pred.shape != targets.shape:
                raise ValueError(
                    f"forecaster {name!r} returned shape {tuple(pred.shape)}, expected "
                    f"{tuple(targets.shape)} (B, n_steps, C, H, W)"
                )
            accumulators[name].update(pred.to(device), targets, *extra)
    if progress:
        batches.close()
    return {"predict_seconds": seconds, "n_sequences": n_seq}


@torch.no_grad()
def evaluate_forecasters(
    forecasters: Mapping[str, Forecaster],
    dataset: Dataset,
    n_steps: int,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    accumulator_kwargs: dict | None = None,
    mask: torch.Tensor | None = None,
    progress: bool = True,
    max_batches: int | None = None,
    num_workers: int = 0,
) -> dict[str, dict]:
    """Score every forecaster on every window of ``dataset``, per lead time.

    Parameters
    ----------
    forecasters : dict of str to Forecaster
        Name -> anything with ``predict(inputs, n_steps)``. ``torch.nn.Module``
        forecasters are put in eval mode and moved to ``device``.
    dataset : torch.utils.data.Dataset
        Yields ``(inputs, targets)`` pairs of ``(T, C, H, W)`` float tensors of grey
        levels in [0, 1] (``targets`` holds at least ``n_steps`` frames).
    n_steps : int
        Lead times to forecast and score (15 in the paper).
    batch_size : int
        Windows per batch.
    device : str or torch.device
        Where forecasts are made and scored.
    accumulator_kwargs : dict, optional
        Passed to :class:`~nowcast.evaluation.metrics.MetricAccumulator` (thresholds,
        ``a``, ``b``, ``dbz_min``, ``dbz_max``, ``aggregation``).
    mask : torch.Tensor of bool, optional
        Valid pixels, (H, W) or broadcastable to (B, T, C, H, W); True = scored.
    progress : bool
        Show a tqdm progress bar.
    max_batches : int, optional
        Stop after this many batches (quick looks, tests).
    num_workers : int
        DataLoader worker processes.

    Returns
    -------
    dict of str to dict
        Forecaster name -> :meth:`MetricAccumulator.compute` output, plus
        ``predict_seconds`` (total time in ``predict``), ``n_sequences`` and, when a
        persistence forecaster is among them, ``rainfall_mse_skill`` (lead mean) and
        ``rainfall_mse_skill_by_lead`` = 1 - MSE / MSE(persistence).
    """
    accs = {
        name: MetricAccumulator(**(accumulator_kwargs or {})) for name in forecasters
    }
    run = accumulate_forecasts(
        forecasters,
        dataset,
        accs,
        n_steps,
        batch_size,
        device,
        mask=mask,
        progress=progress,
        max_batches=max_batches,
        num_workers=num_workers,
    )
    seconds, n_seq = run["predict_seconds"], run["n_sequences"]

    results: dict[str, dict] = {}
    for name, acc in accs.items():
        with warnings.catch_warnings(record=True):  # notes are kept in the result
            warnings.simplefilter("always")
            res = acc.all_reduce().compute()
        res["predict_seconds"] = seconds[name]
        res["n_sequences"] = n_seq
        results[name] = res
    ref = [n for n, fc in forecasters.items() if _is_persistence(n, fc)]
    if ref:
        base = results[ref[0]]["rainfall_mse_by_lead"]
        for res in results.values():
            with np.errstate(divide="ignore", invalid="ignore"):
                skill = 1.0 - res["rainfall_mse_by_lead"] / base
            res["rainfall_mse_skill_by_lead"] = skill
            res["rainfall_mse_skill"] = (
                float(np.nanmean(skill)) if np.isfinite(skill).any() else float("nan")
            )
    return results


def _unpack(batch: object) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(batch, Mapping):
        batch = (batch["inputs"], batch["targets"])
    if not isinstance(batch, Sequence) or len(batch) < 2:
        raise TypeError(
            "dataset items must be (inputs, targets) pairs of (T, C, H, W) tensors, "
            f"got a batch of type {type(batch).__name__}"
        )
    inputs, targets = batch[0], batch[1]
    for name, x in (("inputs", inputs), ("targets", targets)):
        if not isinstance(x, torch.Tensor) or x.ndim != 5:
            shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise ValueError(
                f"batched {name} must be (B, T, C, H, W) tensors (dataset items "
                f"(T, C, H, W)), got {shape}"
            )
    return inputs, targets


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def _fmt(x: float, digits: int = 3) -> str:
    return "nan" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def markdown_table(results: Mapping[str, Mapping[str, Any]], paper: bool = True) -> str:
    """The paper's table for ``results`` (lead-averaged), optionally with the paper's.

    Parameters
    ----------
    results : dict
        :func:`evaluate_forecasters` output.
    paper : bool
        Append Shi et al. (2015)'s published table for comparison.

    Returns
    -------
    str
        Markdown: the paper's five columns, then CSI / FAR / POD at every threshold.
    """
    if not results:
        raise ValueError("results is empty; nothing to tabulate")
    first = next(iter(results.values()))
    thresholds = list(first.get("thresholds", []))
    agg = first.get("aggregation", "pooled")
    lines = [
        f"Averages over {first.get('n_leads', '?')} lead times "
        f"({first.get('n_sequences', '?')} sequences, {agg} counts); rain rate in "
        "mm/h, CSI/FAR/POD at 0.5 mm/h.",
        "",
        "| forecaster | " + " | ".join(PAPER_COLUMNS.values()) + " |",
        "|---|" + "---|" * len(PAPER_COLUMNS),
    ]
    for name, res in results.items():
        cells = [_fmt(res.get(k, float("nan"))) for k in PAPER_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if thresholds:
        cols = [(m, t) for m in ("csi", "far", "pod") for t in thresholds]
        lines += [
            "",
            "Scores at each rain threshold (mm/h):",
            "",
            "| forecaster | "
            + " | ".join(f"{m.upper()} {t:g}" for m, t in cols)
            + " |",
            "|---|" + "---|" * len(cols),
        ]
        for name, res in results.items():
            cells = [_fmt(res.get(threshold_key(m, t), float("nan"))) for m, t in cols]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    notes = [
        f"- {name}: {n}" for name, res in results.items() for n in res.get("notes", [])
    ]
    if notes:
        lines += ["", "Notes:", "", *notes]
    if paper:
        lines += [
            "",
            "Published (Shi et al. 2015, HKO radar, 15 leads; not the same data):",
            "",
            "| model | " + " | ".join(PAPER_COLUMNS.values()) + " |",
            "|---|" + "---|" * len(PAPER_COLUMNS),
        ]
        for name, row in PAPER_TABLE.items():
            cells = [_fmt(row[k]) for k in PAPER_COLUMNS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float | np.floating):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def _by_lead_keys(res: Mapping[str, Any]) -> list[str]:
    return [k[: -len("_by_lead")] for k in res if k.endswith("_by_lead")]


def write_report(
    results: Mapping[str, Mapping[str, Any]],
    out_dir: str | Path,
    lead_minutes: float = 6.0,
    plots: bool = True,
) -> dict[str, Path]:
    """Write the evaluation report: markdown table, per-lead CSV and JSON, plots.

    Parameters
    ----------
    results : dict
        :func:`evaluate_forecasters` output (forecaster -> scores).
    out_dir : str or Path
        Directory to write into (created if missing).
    lead_minutes : float
        Minutes between frames (6 for HKO); lead ``k`` is ``k * lead_minutes``.
    plots : bool
        Draw PNGs with :func:`nowcast.viz.plot_metrics_by_lead_time`: ``metrics_by_lead
        .png`` (the paper's five metrics), ``csi_by_lead.png``, ``far_by_lead.png``,
        ``pod_by_lead.png`` (one panel per threshold) and ``errors_by_lead.png``
        (MSE, MAE, bias). Skipped with a warning if ``nowcast.viz`` is unavailable.

    Returns
    -------
    dict of str to Path
        ``"markdown"`` (metrics.md), ``"csv"`` (metrics_by_lead.csv: one row per
        forecaster and lead, one column per metric), ``"json"`` (metrics.json, NaN as
        null), and ``"plot_<name>"`` for each PNG.
    """
    if not results:
        raise ValueError("results is empty; run evaluate_forecasters first")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}

    paths["markdown"] = out / "metrics.md"
    paths["markdown"].write_text(markdown_table(results))

    paths["json"] = out / "metrics.json"
    paths["json"].write_text(json.dumps(_jsonable(results), indent=1))

    first = next(iter(results.values()))
    metrics = [
        k
        for k in _by_lead_keys(first)
        if all(f"{k}_by_lead" in r for r in results.values())
    ]
    paths["csv"] = out / "metrics_by_lead.csv"
    with paths["csv"].open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["forecaster", "lead", "lead_minutes", *metrics])
        for name, res in results.items():
            n = len(res[f"{metrics[0]}_by_lead"]) if metrics else 0
            for k in range(n):
                row = [np.asarray(res[f"{m}_by_lead"])[k] for m in metrics]
                writer.writerow([name, k + 1, (k + 1) * lead_minutes, *row])

    if plots:
        paths.update(_write_plots(results, out, lead_minutes, metrics))
    return paths


def scores_by_lead(
    results: Mapping[str, Mapping[str, Any]], metrics: Sequence[str] | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """Per-lead series ``{forecaster: {metric: (T,) array}}`` for plotting.

    Parameters
    ----------
    results : mapping
        Output of :func:`evaluate_forecasters` (``MetricAccumulator.compute`` per name).
    metrics : sequence of str, optional
        Metric keys (without ``_by_lead``); default the paper's columns.
    """
    metrics = list(PAPER_COLUMNS) if metrics is None else list(metrics)
    return {
        name: {m: np.asarray(res[f"{m}_by_lead"]) for m in metrics}
        for name, res in results.items()
    }


def _write_plots(
    results: Mapping[str, Mapping[str, Any]],
    out: Path,
    lead_minutes: float,
    metrics: list[str],
) -> dict[str, Path]:
    try:
        from nowcast.viz import plot_metrics_by_lead_time
    except ImportError as err:  # viz is optional for the numbers
        warnings.warn(
            f"nowcast.viz.plot_metrics_by_lead_time unavailable ({err}); metric plots "
            "skipped, tables written",
            RuntimeWarning,
            stacklevel=3,
        )
        return {}
    scores = scores_by_lead(results, metrics)
    thresholds = list(next(iter(results.values())).get("thresholds", []))
    groups = {
        "metrics": [m for m in PAPER_COLUMNS if m in metrics],
        **{
            fam: [
                threshold_key(fam, t)
                for t in thresholds
                if threshold_key(fam, t) in metrics
            ]
            for fam in ("csi", "far", "pod")
        },
        "errors": [m for m in ("rainfall_mse", "rainfall_mae", "bias") if m in metrics],
    }
    paths = {}
    for group, keys in groups.items():
        if not keys:
            continue
        fig = plot_metrics_by_lead_time(scores, lead_minutes, metrics=keys)
        path = out / f"{group}_by_lead.png"
        fig.savefig(path, dpi=100)
        paths[f"plot_{group}"] = path
    return paths
