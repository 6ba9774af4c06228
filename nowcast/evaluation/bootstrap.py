"""Confidence intervals for the scores: a block bootstrap over per-group sums.

Windows cut from one block of consecutive frames overlap and share the weather, so
they are not independent samples; the blocks are (``dataset.block_ids``). During the
single evaluation pass :class:`~nowcast.evaluation.metrics.MetricAccumulator` keeps its
raw sums per group (block). A bootstrap resample draws ``G`` groups with replacement;
its sums are a weighted sum of the per-group sums, ``W @ sums`` with ``W`` of shape
(resamples, groups) holding how often each group was drawn, so every resample of every
score costs one matrix product and no forecaster runs again (Efron and Tibshirani
1993, ch. 13: percentile intervals; Kunsch 1989 for the block idea).

For each forecaster and headline score the lead-averaged score of every resample
gives a percentile interval, and the same resamples (the same ``W``) give the paired
difference against a reference forecaster, so the shared weather variance cancels.
Intervals are seeded: the same seed and groups give the same numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from nowcast.evaluation.metrics import MetricAccumulator, fss_key, threshold_key

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "headline_keys",
    "resample_weights",
    "choose_reference",
    "bootstrap_intervals",
]

#: Defaults of ``evaluation.bootstrap``.
DEFAULT_BOOTSTRAP = {"n_resamples": 1000, "seed": 0, "level": 0.95}


def headline_keys(thresholds: Sequence[float], fss_sizes: Sequence[int]) -> list[str]:
    """The scores that get intervals: CSI and HSS at every threshold, Rainfall-MSE,
    correlation, B-MSE, and FSS at every threshold and neighbourhood size."""
    keys = [threshold_key(m, t) for m in ("csi", "hss") for t in thresholds]
    keys += ["rainfall_mse", "correlation", "b_mse"]
    keys += [fss_key(t, s) for t in thresholds for s in fss_sizes]
    return keys


def resample_weights(
    n_groups: int,
    n_resamples: int = 1000,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """How often each group is drawn in each bootstrap resample.

    Parameters
    ----------
    n_groups : int
        Number of independent units ``G`` (>= 1).
    n_resamples : int
        Number of resamples ``R`` (>= 1).
    seed : int
        Seed of the draw (a private :class:`torch.Generator`; global RNG untouched).
    device, dtype
        Where and in which type the weights are returned.

    Returns
    -------
    torch.Tensor, shape (R, G)
        Non-negative integer counts; every row sums to ``G``.
    """
    if n_groups < 1 or n_resamples < 1:
        raise ValueError(
            f"need n_groups >= 1 and n_resamples >= 1, got {n_groups} and {n_resamples}"
        )
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.randint(n_groups, (n_resamples, n_groups), generator=gen)
    w = torch.zeros(n_resamples, n_groups, dtype=torch.float64)
    w.scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))
    return w.to(device=device, dtype=dtype)


def choose_reference(
    results: Mapping[str, Mapping[str, Any]], spec: str | None = "auto"
) -> str | None:
    """The forecaster the others are compared with.

    Parameters
    ----------
    results : mapping
        Forecaster name -> :meth:`MetricAccumulator.compute` output.
    spec : str or None
        A forecaster name, ``"auto"`` (the ROVER variant with the best ``csi``, i.e.
        CSI at 0.5 mm/h; else a persistence forecaster) or None (no differences).

    Returns
    -------
    str or None
    """
    if spec is None or str(spec).lower() in ("none", "null", ""):
        return None
    if spec != "auto":
        if spec not in results:
            raise ValueError(
                f"evaluation.reference={spec!r} is not among the forecasters "
                f"{list(results)}; name one of them or use 'auto'"
            )
        return str(spec)
    rovers = [n for n in results if re.match(r"rover", n, re.IGNORECASE)]
    scored = [n for n in rovers if math.isfinite(results[n].get("csi", math.nan))]
    if scored:
        return max(scored, key=lambda n: results[n]["csi"])
    persistence = [n for n in results if "persist" in n.lower()]
    return persistence[0] if persistence else None


def _aligned_sums(
    acc: MetricAccumulator, ids: Sequence[int]
) -> dict[str, torch.Tensor]:
    """The accumulator's per-group sums with the group axis in the order ``ids``."""
    own, sums = acc.grouped_sums()
    if sorted(own) != sorted(ids):
        raise ValueError(
            "forecasters were scored on different groups (blocks); score them on the "
            f"same windows: {len(own)} groups vs {len(ids)}"
        )
    where = {g: i for i, g in enumerate(own)}
    order = torch.tensor([where[g] for g in ids], device=sums["n"].device)
    return {k: v.index_select(0, order) for k, v in sums.items()}


def _resampled_scores(
    acc: MetricAccumulator,
    ids: Sequence[int],
    weights: torch.Tensor,
    keys: Sequence[str],
) -> dict[str, torch.Tensor]:
    """Per-lead scores of every resample: key -> (R, T)."""
    sums = _aligned_sums(acc, ids)
    w = weights.to(device=sums["n"].device, dtype=sums["n"].dtype)
    resampled = {k: torch.tensordot(w, v, dims=1) for k, v in sums.items()}
    scores = acc.pooled_scores(resampled)
    missing = [k for k in keys if k not in scores]
    if missing:
        raise KeyError(f"no pooled score {missing}; available: {sorted(scores)}")
    return {k: scores[k] for k in keys}


def _interval(x: torch.Tensor, level: float, dim: int = 0) -> tuple[Any, Any]:
    """Percentile interval of ``x`` along ``dim`` (NaN resamples ignored)."""
    q = torch.tensor(
        [(1 - level) / 2, 1 - (1 - level) / 2], dtype=x.dtype, device=x.device
    )
    lo, hi = torch.nanquantile(x, q, dim=dim).double().cpu().numpy()
    return lo, hi


def _lead_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over the lead axis (last), NaN leads skipped, as ``compute`` does."""
    return torch.nanmean(x, dim=-1)


def bootstrap_intervals(
    accumulators: Mapping[str, MetricAccumulator],
    keys: Sequence[str] | None = None,
    reference: str | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, dict[str, Any]]:
    """Percentile intervals and paired differences from a block bootstrap.

    Parameters
    ----------
    accumulators : mapping of str to MetricAccumulator
        One per forecaster, all updated on the same windows with the same ``groups``.
    keys : sequence of str, optional
        Scores (pooled keys of :meth:`MetricAccumulator.pooled_scores`); default
        :func:`headline_keys` of the first accumulator.
    reference : str, optional
        Name of the forecaster the others are compared with (see
        :func:`choose_reference`); None: no differences.
    n_resamples : int
        Bootstrap resamples (1000 by default).
    seed : int
        Seed of the resampling; the same seed gives the same intervals.
    level : float
        Coverage of the intervals, in (0, 1).

    Returns
    -------
    dict
        Forecaster name -> ``{"ci": {key: (lo, hi)}, "ci_per_lead": {key: {"lo": (T,),
        "hi": (T,)}}, "diff": {key: {"mean", "lo", "hi", "reference"}},
        "bootstrap": {"n_resamples", "seed", "level", "n_groups"}}``. ``ci`` is the
        interval of the lead-averaged score; ``diff[key]["mean"]`` the lead-averaged
        score minus the reference's, with the interval of that difference over the
        same resamples (exactly 0 for the reference itself).
    """
    if not accumulators:
        raise ValueError("accumulators is empty; nothing to bootstrap")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if reference is not None and reference not in accumulators:
        raise ValueError(
            f"reference {reference!r} is not among the forecasters {list(accumulators)}"
        )
    first = next(iter(accumulators.values()))
    ids, _ = first.grouped_sums()
    if keys is None:
        keys = headline_keys(first.thresholds, first.fss_sizes)
    weights = resample_weights(len(ids), int(n_resamples), int(seed))
    per_lead = {
        name: _resampled_scores(acc, ids, weights, keys)
        for name, acc in accumulators.items()
    }
    means = {
        name: {k: _lead_mean(v) for k, v in sc.items()} for name, sc in per_lead.items()
    }
    point = {
        name: {k: _lead_mean(v) for k, v in _full_scores(acc, keys).items()}
        for name, acc in accumulators.items()
    }
    meta = dict(n_resamples=int(n_resamples), seed=int(seed), level=float(level))
    meta["n_groups"] = len(ids)
    out: dict[str, dict[str, Any]] = {}
    for name in accumulators:
        res: dict[str, Any] = {"ci": {}, "ci_per_lead": {}, "diff": {}}
        for k in keys:
            lo, hi = _interval(means[name][k], level)
            res["ci"][k] = (float(lo), float(hi))
            lo_t, hi_t = _interval(per_lead[name][k], level)
            res["ci_per_lead"][k] = {"lo": lo_t, "hi": hi_t}
        if reference is not None:
            res["diff"] = _paired_differences(
                means, point, name, reference, keys, level
            )
        out[name] = {**res, "bootstrap": meta}
    return out


def _paired_differences(
    means: Mapping[str, Mapping[str, torch.Tensor]],
    point: Mapping[str, Mapping[str, float]],
    name: str,
    reference: str,
    keys: Sequence[str],
    level: float,
) -> dict[str, dict[str, Any]]:
    """``{key: {mean, lo, hi, reference}}``: ``name`` minus ``reference`` over the
    same resamples (``means``: resampled lead means, ``point``: full-sample ones)."""
    diffs = {}
    for k in keys:
        d_lo, d_hi = _interval(means[name][k] - means[reference][k], level)
        diffs[k] = {
            "mean": float(point[name][k] - point[reference][k]),
            "lo": float(d_lo),
            "hi": float(d_hi),
            "reference": reference,
        }
    return diffs


def _full_scores(
    acc: MetricAccumulator, keys: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Per-lead pooled scores of the full sample (every group once): key -> (T,)."""
    _, sums = acc.grouped_sums()
    scores = acc.pooled_scores({k: v.sum(0) for k, v in sums.items()})
    return {k: scores[k] for k in keys}
