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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from nowcast.evaluation.bootstrap import (
    DEFAULT_BOOTSTRAP,
    bootstrap_intervals,
    choose_reference,
)
from nowcast.evaluation.metrics import MetricAccumulator, threshold_key
from nowcast.forecast import Forecaster, check_n_steps

__all__ = [
    "PAPER_TABLE",
    "HKO7_CSI_TABLE",
    "PAPER_COLUMNS",
    "accumulate_forecasts",
    "process_shard",
    "is_main_process",
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
_HKO7_CSI_THRESHOLDS = (0.5, 2, 5, 10, 30)  # mm/h
HKO7_CSI_TABLE: dict[str, dict[str, float]] = {
    name: {f"csi@{t:g}": v for t, v in zip(_HKO7_CSI_THRESHOLDS, row, strict=True)}
    for name, row in {
        # CSI at 0.5, 2, 5, 10 and 30 mm/h
        "last frame (persistence)": (0.4022, 0.3266, 0.2401, 0.1574, 0.0692),
        "ROVER (non-linear)": (0.4655, 0.4074, 0.3226, 0.2164, 0.0951),
        "ConvLSTM (balanced loss)": (0.5543, 0.4790, 0.3784, 0.2866, 0.1815),
        "TrajGRU": (0.5430, 0.4678, 0.3667, 0.2774, 0.1730),
    }.items()
}


def _is_persistence(name: str, forecaster: object) -> bool:
    from nowcast.baselines.persistence import Persistence

    return isinstance(forecaster, Persistence) or name.lower() == "persistence"


def process_shard() -> tuple[int, int]:
    """``(rank, world_size)`` of this process: ``(0, 1)`` without a process group.

    Under ``torchrun`` (an initialised ``torch.distributed`` group) the evaluation
    runs on every rank over its shard of the split and the accumulators are summed
    across ranks; only rank 0 writes files.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """True on rank 0 (and without a process group): the process that writes files."""
    return process_shard()[0] == 0


def _shard_indices(
    n_items: int, batch_size: int, max_batches: int | None
) -> np.ndarray:
    """This rank's item indices: every ``world``-th of the first ``max_batches`` batches.

    ``max_batches`` counts batches of the whole split (not per rank), so a run on
    several processes scores exactly the windows of a one-process run.
    """
    rank, world = process_shard()
    n = n_items if max_batches is None else min(n_items, max_batches * batch_size)
    if n < world:
        raise ValueError(
            f"{n} windows to evaluate but {world} processes: every process needs at "
            "least one; evaluate with fewer processes or more windows "
            "(evaluation.max_batches)"
        )
    return np.arange(rank, n, world)


def _validate_inputs(
    forecasters: Mapping[str, Forecaster],
    dataset: Dataset,
    batch_size: int,
    groups: Sequence[int] | np.ndarray | None,
) -> np.ndarray | None:
    """Check what :func:`accumulate_forecasts` gets; the groups as a flat array."""
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
    if groups is None:
        return None
    groups = np.asarray(groups).ravel()
    if groups.size != len(dataset):  # type: ignore[arg-type]
        raise ValueError(
            f"groups must hold one id per dataset item ({len(dataset)}), got "
            f"{groups.size}"
        )
    return groups


def _sum_over_processes(values: Mapping[str, float]) -> dict[str, float]:
    """Sum a flat dict of numbers over all ranks (unchanged without a group)."""
    import torch.distributed as dist

    if process_shard()[1] == 1:
        return dict(values)
    keys = list(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    summed = dict(zip(keys, t.tolist(), strict=True))
    return {k: int(v) if isinstance(values[k], int) else v for k, v in summed.items()}


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
    groups: Sequence[int] | np.ndarray | None = None,
) -> dict[str, Any]:
    """Run every forecaster over ``dataset`` and feed one accumulator per forecaster.

    The one evaluation path shared by the radar metrics (:func:`evaluate_forecasters`)
    and the sequence metrics (``nowcast.evaluation.sequence_metrics``): each batch of
    ``(inputs, targets)`` or ``(inputs, targets, target_valid)`` is moved to ``device``
    once, forecast by each forecaster with ``predict(inputs, n_steps)`` and added with
    ``accumulators[name].update(pred, targets[, mask][, groups=...])``, so nothing
    field-sized leaves the device. Under a process group (``torchrun``) each rank
    takes every ``world_size``-th window (:func:`process_shard`); the caller sums the
    accumulators with ``all_reduce()``, the counts returned here are already summed.

    Parameters
    ----------
    forecasters : dict of str to Forecaster
        ``torch.nn.Module`` forecasters are put in eval mode and moved to ``device``.
    dataset : torch.utils.data.Dataset
        Items ``(inputs (T_in, C, H, W), targets (T_out, C, H, W))``, T_out >= n_steps,
        optionally with a third element ``target_valid``: bool ``(T_out, 1, H, W)``,
        True where the observation exists (per-frame radar coverage).
    accumulators : dict of str to accumulator
        One per forecaster name, with ``update(pred, target[, mask][, groups])``.
    n_steps, batch_size, device, mask, progress, num_workers
        As in :func:`evaluate_forecasters`. The mask passed on is the static ``mask``
        AND the batch's ``target_valid`` (only when either is given).
    max_batches : int, optional
        Score only the first ``max_batches * batch_size`` windows of the split (on
        all ranks together).
    groups : sequence of int, optional
        One independent-unit id (e.g. ``dataset.block_ids``) per dataset item, in
        dataset order; passed to ``update(..., groups=...)`` when given.

    Returns
    -------
    dict
        ``predict_seconds`` (name -> total seconds in ``predict``, all ranks),
        ``n_sequences`` and ``mask_counts`` (all ranks): ``pixel_frames``
        (scored-lead pixels x frames seen), ``clutter`` (pixel-frames removed by the
        static mask), ``no_coverage`` (pixel-frames without an observation),
        ``no_coverage_only`` (of those, the ones the static mask kept) and
        ``with_coverage`` (pixel-frames of batches that carried a coverage mask).
    """
    n_steps = check_n_steps(n_steps)
    groups = _validate_inputs(forecasters, dataset, batch_size, groups)
    device = torch.device(device)
    for fc in forecasters.values():
        if isinstance(fc, torch.nn.Module):
            fc.eval().to(device)
    static = None if mask is None else torch.as_tensor(mask).to(device).bool()
    indices = _shard_indices(len(dataset), batch_size, max_batches)  # type: ignore[arg-type]
    if groups is not None:
        groups = groups[indices]
    batches = _shard_batches(dataset, indices, batch_size, num_workers, device)
    if progress and is_main_process():
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="evaluate", unit="batch")
    n_seq, seconds, counts = _feed_accumulators(
        batches, forecasters, accumulators, n_steps, device, static, groups
    )
    if hasattr(batches, "close"):
        batches.close()
    return {
        "predict_seconds": _sum_over_processes(seconds),
        "n_sequences": int(_sum_over_processes({"n": n_seq})["n"]),
        "mask_counts": _sum_over_processes(counts),
    }


def _feed_accumulators(
    batches: Iterable[object],
    forecasters: Mapping[str, Forecaster],
    accumulators: Mapping[str, Any],
    n_steps: int,
    device: torch.device,
    static: torch.Tensor | None,
    groups: np.ndarray | None,
) -> tuple[int, dict[str, float], dict[str, int]]:
    """Forecast every batch with every forecaster and update its accumulator.

    ``groups`` holds one unit id per window of ``batches``, in order. Returns this
    rank's window count, the seconds each forecaster spent in ``predict`` and the
    pixel-frame ``mask_counts`` (see :func:`accumulate_forecasts`).
    """
    counts = dict.fromkeys(
        ("pixel_frames", "clutter", "no_coverage", "no_coverage_only", "with_coverage"),
        0,
    )
    seconds = dict.fromkeys(forecasters, 0.0)
    n_seq = 0
    for batch in batches:
        inputs, targets, batch_mask = _batch_on_device(
            batch, n_steps, device, static, counts
        )
        extra = () if batch_mask is None else (batch_mask,)
        kw = {}
        if groups is not None:
            kw["groups"] = groups[n_seq : n_seq + inputs.shape[0]]
        n_seq += inputs.shape[0]
        for name, fc in forecasters.items():
            pred, dt = _timed_predict(name, fc, inputs, n_steps, targets.shape)
            seconds[name] += dt
            accumulators[name].update(pred.to(device), targets, *extra, **kw)
    return n_seq, seconds, counts


def _shard_batches(
    dataset: Dataset,
    indices: np.ndarray,
    batch_size: int,
    num_workers: int,
    device: torch.device,
) -> DataLoader:
    """Batches of this rank's items ``indices`` of ``dataset``, in order."""
    return DataLoader(
        Subset(dataset, indices.tolist()),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )


def _batch_on_device(
    batch: object,
    n_steps: int,
    device: torch.device,
    static: torch.Tensor | None,
    counts: dict[str, int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Inputs, the first ``n_steps`` targets and the scoring mask, on ``device``."""
    inputs, targets, target_valid = _unpack(batch)
    if targets.shape[1] < n_steps:
        raise ValueError(
            f"targets hold {targets.shape[1]} frames but n_steps={n_steps}; build "
            "the dataset with output_len >= n_steps"
        )
    inputs = inputs.to(device, non_blocking=True).float()
    targets = targets[:, :n_steps].to(device, non_blocking=True).float()
    if target_valid is not None:
        target_valid = target_valid[:, :n_steps].to(device).bool()
    return inputs, targets, _combine_masks(static, target_valid, targets.shape, counts)


def _timed_predict(
    name: str,
    forecaster: Forecaster,
    inputs: torch.Tensor,
    n_steps: int,
    expected: torch.Size,
) -> tuple[torch.Tensor, float]:
    """``forecaster.predict(inputs, n_steps)``, its wall time (s), shape checked."""
    t0 = time.perf_counter()
    pred = forecaster.predict(inputs, n_steps)
    if inputs.device.type == "cuda":
        torch.cuda.synchronize(inputs.device)
    dt = time.perf_counter() - t0
    if pred.shape != expected:
        raise ValueError(
            f"forecaster {name!r} returned shape {tuple(pred.shape)}, expected "
            f"{tuple(expected)} (B, n_steps, C, H, W)"
        )
    return pred, dt


def _combine_masks(
    static: torch.Tensor | None,
    target_valid: torch.Tensor | None,
    shape: torch.Size,
    counts: dict[str, int],
) -> torch.Tensor | None:
    """Static clutter mask AND per-frame coverage, counting what each removes.

    ``static`` is bool (H, W) (or broadcastable to ``shape`` = (B, T, C, H, W)),
    ``target_valid`` bool (B, T, 1 or C, H, W); True = scored. Updates ``counts`` in
    place (pixel-frames) and returns the combined mask, or None when neither is given.
    """
    b, t, c = shape[:3]
    frames_px = math.prod(shape)
    counts["pixel_frames"] += frames_px
    if static is not None:
        kept = int(torch.broadcast_to(static, shape).sum().item())
        counts["clutter"] += frames_px - kept
    if target_valid is None:
        return static
    cover = torch.broadcast_to(target_valid, shape)
    counts["with_coverage"] += frames_px
    missing = frames_px - int(cover.sum().item())
    counts["no_coverage"] += missing
    if static is None:
        counts["no_coverage_only"] += missing
        return target_valid
    counts["no_coverage_only"] += int((~cover & static).sum().item())
    return static & target_valid


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
    groups: Sequence[int] | np.ndarray | None = None,
    bootstrap: Mapping[str, Any] | None = None,
    reference: str | None = "auto",
) -> dict[str, dict]:
    """Score every forecaster on every window of ``dataset``, per lead time.

    Parameters
    ----------
    forecasters : dict of str to Forecaster
        Name -> anything with ``predict(inputs, n_steps)``. ``torch.nn.Module``
        forecasters are put in eval mode and moved to ``device``.
    dataset : torch.utils.data.Dataset
        Yields ``(inputs, targets)`` pairs of ``(T, C, H, W)`` float tensors of grey
        levels in [0, 1] (``targets`` holds at least ``n_steps`` frames), or
        ``(inputs, targets, target_valid)`` with the per-frame coverage (bool
        ``(T, 1, H, W)``, True = observed), combined with ``mask``.
    n_steps : int
        Lead times to forecast and score (15 in the paper).
    batch_size : int
        Windows per batch.
    device : str or torch.device
        Where forecasts are made and scored.
    accumulator_kwargs : dict, optional
        Passed to :class:`~nowcast.evaluation.metrics.MetricAccumulator` (``scale``,
        ``thresholds``, ``fss_sizes``, ``aggregation``; or the older ``a``, ``b``,
        ``dbz_min``, ``dbz_max``).
    mask : torch.Tensor of bool, optional
        Valid pixels, (H, W) or broadcastable to (B, T, C, H, W); True = scored.
    progress : bool
        Show a tqdm progress bar.
    max_batches : int, optional
        Stop after this many batches (quick looks, tests).
    num_workers : int
        DataLoader worker processes.
    groups : sequence of int, optional
        Independent unit of each dataset item (``dataset.block_ids``); default every
        window its own unit (with a note: overlapping windows make the intervals too
        narrow).
    bootstrap : mapping, optional
        ``n_resamples``, ``seed``, ``level`` of the block bootstrap
        (:data:`nowcast.evaluation.bootstrap.DEFAULT_BOOTSTRAP`); ``n_resamples: 0``
        turns the intervals off.
    reference : str or None
        Forecaster the paired differences are taken against: a name, ``"auto"`` (the
        best ROVER variant by CSI at 0.5 mm/h, else persistence) or None.

    Returns
    -------
    dict of str to dict
        Forecaster name -> :meth:`MetricAccumulator.compute` output, plus
        ``predict_seconds`` (total time in ``predict``), ``n_sequences``,
        ``mask_counts`` (see :func:`accumulate_forecasts`), ``support`` (``windows``,
        ``blocks``, ``event_pixels``), the bootstrap's ``ci``, ``ci_per_lead``,
        ``diff`` and ``bootstrap`` (see
        :func:`~nowcast.evaluation.bootstrap.bootstrap_intervals`) and, when a
        persistence forecaster is among them, ``rainfall_mse_skill`` (lead mean) and
        ``rainfall_mse_skill_by_lead`` = 1 - MSE / MSE(persistence).
    """
    accs = {n: MetricAccumulator(**(accumulator_kwargs or {})) for n in forecasters}
    groups, group_note = _bootstrap_units(groups, len(dataset))  # type: ignore[arg-type]
    loop = dict(mask=mask, progress=progress, max_batches=max_batches)
    run = accumulate_forecasts(
        forecasters, dataset, accs, n_steps, batch_size, device,
        num_workers=num_workers, groups=groups, **loop,
    )  # fmt: skip
    results = {name: _scores(acc, run, name, group_note) for name, acc in accs.items()}
    _add_intervals(results, accs, bootstrap, reference)
    _add_persistence_skill(results, forecasters)
    return results


def _bootstrap_units(
    groups: Sequence[int] | np.ndarray | None, n_windows: int
) -> tuple[Sequence[int] | np.ndarray, str | None]:
    """The bootstrap unit of each window, and a note when none were given.

    Without block ids every window is its own unit, which makes the intervals too
    narrow: the note says so in the report.
    """
    if groups is not None:
        return groups, None
    return np.arange(n_windows), (
        "no block ids: every window is its own bootstrap unit (overlapping "
        "windows are not independent, so the intervals are too narrow)"
    )


def _add_persistence_skill(
    results: dict[str, dict], forecasters: Mapping[str, Forecaster]
) -> None:
    """Add ``rainfall_mse_skill`` against the first persistence forecaster, if any."""
    ref = [n for n, fc in forecasters.items() if _is_persistence(n, fc)]
    if ref:
        _add_skill(results, results[ref[0]]["rainfall_mse_by_lead"])


def _scores(
    acc: MetricAccumulator, run: Mapping[str, Any], name: str, group_note: str | None
) -> dict[str, Any]:
    """One forecaster's scores (summed over ranks) with the run's counts and notes."""
    with warnings.catch_warnings(record=True):  # notes are kept in the result
        warnings.simplefilter("always")
        res = acc.all_reduce().compute()
    n_seq = run["n_sequences"]
    res["predict_seconds"] = run["predict_seconds"][name]
    res["n_sequences"] = n_seq
    res["mask_counts"] = dict(run["mask_counts"])
    res["support"] = {
        "windows": n_seq,
        "blocks": res["n_groups"],
        "event_pixels": res["event_pixels"],
    }
    if group_note:
        res["notes"] = [*res["notes"], group_note]
    return res


def _add_skill(results: Mapping[str, dict], base: np.ndarray) -> None:
    """``rainfall_mse_skill(_by_lead)`` = 1 - MSE / MSE(persistence) per lead."""
    for res in results.values():
        with np.errstate(divide="ignore", invalid="ignore"):
            skill = 1.0 - res["rainfall_mse_by_lead"] / base
        res["rainfall_mse_skill_by_lead"] = skill
        res["rainfall_mse_skill"] = (
            float(np.nanmean(skill)) if np.isfinite(skill).any() else float("nan")
        )


def _add_intervals(
    results: dict[str, dict],
    accs: Mapping[str, MetricAccumulator],
    bootstrap: Mapping[str, Any] | None,
    reference: str | None,
) -> None:
    """Put the block bootstrap's intervals and paired differences into ``results``."""
    settings = {**DEFAULT_BOOTSTRAP, **dict(bootstrap or {})}
    if int(settings["n_resamples"]) <= 0:
        return
    ref = choose_reference(results, reference)
    boot = bootstrap_intervals(
        accs,
        reference=ref,
        n_resamples=int(settings["n_resamples"]),
        seed=int(settings["seed"]),
        level=float(settings["level"]),
    )
    for name, res in results.items():
        res.update(boot[name])
        res["reference"] = ref
        if res["bootstrap"]["n_groups"] < 2:
            res["notes"] = [
                *res["notes"],
                "only one independent unit (block): the intervals are degenerate",
            ]


def _unpack(
    batch: object,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(inputs, targets, target_valid or None)`` of a batch of 2- or 3-tuples."""
    if isinstance(batch, Mapping):
        batch = (batch["inputs"], batch["targets"], batch.get("target_valid"))
    if not isinstance(batch, Sequence) or len(batch) < 2:
        raise TypeError(
            "dataset items must be (inputs, targets) pairs or (inputs, targets, "
            "target_valid) triples of (T, C, H, W) tensors, got a batch of type "
            f"{type(batch).__name__}"
        )
    inputs, targets = batch[0], batch[1]
    valid = batch[2] if len(batch) > 2 else None
    if valid is not None and (not isinstance(valid, torch.Tensor) or valid.ndim != 5):
        shape = tuple(valid.shape) if hasattr(valid, "shape") else type(valid).__name__
        raise ValueError(
            "batched target_valid must be a (B, T, 1, H, W) bool tensor (dataset "
            f"items (T, 1, H, W)), got {shape}"
        )
    for name, x in (("inputs", inputs), ("targets", targets)):
        if not isinstance(x, torch.Tensor) or x.ndim != 5:
            shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise ValueError(
                f"batched {name} must be (B, T, C, H, W) tensors (dataset items "
                f"(T, C, H, W)), got {shape}"
            )
    return inputs, targets, valid


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def _fmt(x: float, digits: int = 3) -> str:
    return "nan" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _cell(res: Mapping[str, Any], key: str, digits: int = 3) -> str:
    """``0.590 [0.551, 0.630]`` when an interval exists, else ``0.590``."""
    val = _fmt(res.get(key, float("nan")), digits)
    cis = res.get("ci") or {}
    ci = cis.get(key, cis.get(threshold_key(key, _primary(res))))
    if ci is None or val == "nan":
        return val
    return f"{val} [{_fmt(ci[0], digits)}, {_fmt(ci[1], digits)}]"


def _diff_cell(res: Mapping[str, Any], key: str, digits: int = 3) -> str:
    d = (res.get("diff") or {}).get(key)
    if d is None:
        return "-"
    mean = d["mean"]
    sign = "+" if mean is not None and math.isfinite(mean) and mean > 0 else ""
    return (
        f"{sign}{_fmt(mean, digits)} [{_fmt(d['lo'], digits)}, {_fmt(d['hi'], digits)}]"
    )


def _table(
    results: Mapping[str, Mapping[str, Any]],
    columns: Sequence[tuple[str, str]],
    cell: Any = _cell,
) -> list[str]:
    lines = [
        "| forecaster | " + " | ".join(title for _, title in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name, res in results.items():
        lines.append(
            f"| {name} | " + " | ".join(cell(res, k) for k, _ in columns) + " |"
        )
    return lines


def _header(first: Mapping[str, Any]) -> str:
    agg = first.get("aggregation", "pooled")
    units = first.get("score_units", "mm/h")
    support = first.get("support") or {}
    blocks = support.get("blocks")
    text = (
        f"Averages over {first.get('n_leads', '?')} lead times "
        f"({first.get('n_sequences', '?')} windows"
        + (f" in {blocks} blocks" if blocks is not None else "")
        + f", {agg} counts); scores in {units}, CSI/FAR/POD at "
        f"{_primary(first):g} {units}."
    )
    boot = first.get("bootstrap")
    if boot:
        text += (
            f" [lo, hi]: {100 * boot['level']:g}% block-bootstrap percentile interval"
            f" ({boot['n_resamples']} resamples of the {boot['n_groups']} blocks, "
            f"seed {boot['seed']})."
        )
    return text


def _primary(res: Mapping[str, Any]) -> float:
    thresholds = list(res.get("thresholds") or [0.5])
    return 0.5 if res.get("score_units", "mm/h") == "mm/h" else float(thresholds[0])


def _support_lines(first: Mapping[str, Any]) -> list[str]:
    support = first.get("support")
    lines = []
    if support:
        units = first.get("score_units", "mm/h")
        events = ", ".join(
            f"{k.split('@')[1]} {units}: {v}"
            for k, v in (support.get("event_pixels") or {}).items()
        )
        lines.append(
            f"Support: {support['windows']} windows, {support['blocks']} blocks "
            f"(the bootstrap's independent units); observed event pixels (all leads) "
            f"at {events}."
        )
    mc = first.get("mask_counts")
    if mc and mc.get("pixel_frames"):
        total = mc["pixel_frames"]
        text = (
            f"Masks: of {total} pixel-frames, the clutter mask removed "
            f"{mc['clutter']} ({100 * mc['clutter'] / total:.1f}%); "
        )
        if mc.get("with_coverage", 1):
            text += (
                f"{mc['no_coverage']} had no observation (coverage), "
                f"{mc['no_coverage_only']} of them not already clutter."
            )
        else:
            text += "the data hold no per-frame coverage (none removed for it)."
        lines.append(text)
    if first.get("conversion"):
        lines.append(f"Conversion: {first['conversion']}.")
    return lines


def markdown_table(
    results: Mapping[str, Mapping[str, Any]],
    paper: bool = True,
    report_notes: Sequence[str] = (),
) -> str:
    """The report for ``results`` (lead-averaged), optionally with the paper's table.

    Parameters
    ----------
    results : dict
        :func:`evaluate_forecasters` output.
    paper : bool
        Append Shi et al. (2015)'s published table for comparison.
    report_notes : sequence of str
        Notes about the run (data set notes, which ROVER parameters, ...).

    Returns
    -------
    str
        Markdown: the paper's five columns (with intervals where the bootstrap gave
        them), CSI / FAR / POD at every threshold, HSS / GSS and B-MSE / B-MAE, FSS
        per threshold and neighbourhood, the paired differences against the
        reference forecaster, the support, masks, conversion and notes.
    """
    if not results:
        raise ValueError("results is empty; nothing to tabulate")
    first = next(iter(results.values()))
    thresholds = list(first.get("thresholds", []))
    units = first.get("score_units", "mm/h")
    lines = [_header(first), "", *_table(results, list(PAPER_COLUMNS.items()))]
    if thresholds:
        cols = [(threshold_key(m, t), f"{m.upper()} {t:g}") for m in
                ("csi", "far", "pod") for t in thresholds]  # fmt: skip
        lines += ["", f"Scores at each threshold ({units}):", ""]
        lines += _table(results, cols)
        cols = [(threshold_key(m, t), f"{m.upper()} {t:g}") for m in ("hss", "gss")
                for t in thresholds]  # fmt: skip
        cols += [("b_mse", "B-MSE"), ("b_mae", "B-MAE")]
        lines += ["", "HKO-7 scores (Heidke, Gilbert; balanced MSE / MAE):", ""]
        lines += _table(results, cols)
    sizes = list(first.get("fss_sizes") or [])
    if sizes and thresholds:
        lines += _fss_table(results, thresholds, sizes)
    lines += _paired_difference_table(results, first, sizes)
    support = [
        line
        for line in _support_lines(first)
        if not (line.startswith("Conversion:") and any(
            str(first.get("conversion")) in n for n in report_notes))
    ]  # fmt: skip
    if support:
        lines += ["", *support]
    lines += _notes_lines(results, report_notes)
    if paper:
        lines += _paper_table_lines()
    return "\n".join(lines) + "\n"


def _fss_table(
    results: Mapping[str, Mapping[str, Any]],
    thresholds: Sequence[float],
    sizes: Sequence[int],
) -> list[str]:
    """Markdown lines: FSS per forecaster and threshold, one column per size."""
    lines = [
        "",
        "Fractions skill score by threshold / neighbourhood (pixels):",
        "",
        "| forecaster | threshold | " + " | ".join(f"FSS {n}" for n in sizes) + " |",
        "|---|---|" + "---|" * len(sizes),
    ]
    for name, res in results.items():
        for t in thresholds:
            cells = [_cell(res, f"fss@{t:g}/{n}") for n in sizes]
            lines.append(f"| {name} | {t:g} | " + " | ".join(cells) + " |")
    return lines


def _paired_difference_table(
    results: Mapping[str, Mapping[str, Any]],
    first: Mapping[str, Any],
    sizes: Sequence[int],
) -> list[str]:
    """Markdown lines: the bootstrap's paired differences against the reference."""
    ref = first.get("reference")
    if not ref or not any(res.get("diff") for res in results.values()):
        return []
    prim = _primary(first)
    mid = sizes[len(sizes) // 2] if sizes else None
    cols = [
        (threshold_key("csi", prim), f"CSI {prim:g}"),
        (threshold_key("hss", prim), f"HSS {prim:g}"),
        ("rainfall_mse", "Rainfall-MSE"),
        ("correlation", "Correlation"),
        ("b_mse", "B-MSE"),
    ]
    if mid is not None:
        cols.append((f"fss@{prim:g}/{mid}", f"FSS {prim:g}/{mid}"))
    return [
        "",
        f"Paired difference against {ref} (forecaster minus {ref}, same "
        "resamples; metrics.json holds every threshold):",
        "",
        *_table(results, cols, _diff_cell),
    ]


def _notes_lines(
    results: Mapping[str, Mapping[str, Any]], report_notes: Sequence[str]
) -> list[str]:
    """Markdown lines: the run's notes, those all forecasters share, then each one's."""
    per_name = {name: list(res.get("notes", [])) for name, res in results.items()}
    common = [n for n in next(iter(per_name.values())) if
              all(n in v for v in per_name.values())]  # fmt: skip
    notes = [f"- {n}" for n in [*report_notes, *common]] + [
        f"- {name}: {n}" for name, v in per_name.items() for n in v if n not in common
    ]
    return ["", "Notes:", "", *notes] if notes else []


def _paper_table_lines() -> list[str]:
    """Markdown lines: Shi et al. (2015)'s radar table with the caveat on Z-R."""
    lines = [
        "",
        "Published (Shi et al. 2015, HKO radar, 15 leads; not the same data). The "
        "paper converts reflectivity to rain rate with its own HKO Z-R relation, "
        "reported as a = 118.239, b = 1.5241 (dBZ = 10 log10 a + 10 b log10 R; not "
        "verified), not the HKO-7 benchmark's a = 58.53, b = 1.56: Rainfall-MSE "
        "depends on the Z-R relation (and on the data), so compare its ordering, not "
        "its values; CSI, FAR and POD at 0.5 mm/h depend on it only through the "
        "threshold's dBZ:",
        "",
        "| model | " + " | ".join(PAPER_COLUMNS.values()) + " |",
        "|---|" + "---|" * len(PAPER_COLUMNS),
    ]
    for name, row in PAPER_TABLE.items():
        cells = [_fmt(row[k]) for k in PAPER_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


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
    report_notes: Sequence[str] = (),
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
        (MSE, MAE, bias), with the bootstrap's per-lead bands where the results
        hold them. Skipped with a warning if ``nowcast.viz`` is unavailable.
    report_notes : sequence of str
        Notes about the run, printed in metrics.md and stored in metrics.json
        (``"report_notes"``).

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
    paths["markdown"].write_text(markdown_table(results, report_notes=report_notes))

    paths["json"] = out / "metrics.json"
    notes = list(report_notes)
    payload = {n: {**r, "report_notes": notes} for n, r in results.items()}
    paths["json"].write_text(json.dumps(_jsonable(payload), indent=1))

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
        fig = plot_metrics_by_lead_time(
            scores, lead_minutes, metrics=keys, bands=lead_bands(results, keys)
        )
        path = out / f"{group}_by_lead.png"
        fig.savefig(path, dpi=100)
        paths[f"plot_{group}"] = path
    return paths


def lead_bands(
    results: Mapping[str, Mapping[str, Any]], keys: Sequence[str]
) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per-lead bootstrap bands ``{forecaster: {metric: (lo, hi)}}`` for the plots."""
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for name, res in results.items():
        per_lead = res.get("ci_per_lead") or {}
        out[name] = {}
        for k in keys:
            b = per_lead.get(k, per_lead.get(threshold_key(k, _primary(res))))
            if b is not None:
                out[name][k] = (np.asarray(b["lo"]), np.asarray(b["hi"]))
    return out
