"""Evaluate a trained forecaster and the baselines on a test split, from a config.

This is the config-building layer between the hydra scripts and the pure evaluation
functions of :mod:`nowcast.evaluation.evaluate`: it instantiates the baselines named in
the ``evaluation`` config, runs every forecaster through the same
:func:`~nowcast.evaluation.evaluate.evaluate_forecasters` path, writes the report
(markdown table, per-lead CSV/JSON, metric plots) and a few forecast strips.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from nowcast.evaluation.evaluate import (
    evaluate_forecasters,
    is_main_process,
    write_report,
)
from nowcast.forecast import Forecaster

__all__ = [
    "build_baselines",
    "tuned_baselines",
    "dataset_scale",
    "score_dataset",
    "evaluation_settings",
    "resolve_device",
    "evaluate_split",
    "evaluate_datasets",
    "run_test_evaluation",
]

log = logging.getLogger(__name__)

DEFAULT_EVALUATION = {
    "baselines": {
        "Persistence": {"_target_": "nowcast.baselines.persistence.Persistence"},
        "ROVER1": {"_target_": "nowcast.baselines.rover.Rover", "variant": 1},
        "ROVER2": {"_target_": "nowcast.baselines.rover.Rover", "variant": 2},
        "ROVER3": {"_target_": "nowcast.baselines.rover.Rover", "variant": 3},
    },
    "thresholds": [0.5, 2, 5, 10, 30],
    "aggregation": "pooled",
    "batch_size": 8,
    "max_batches": None,
    "n_examples": 3,
    "device": "auto",
    "fss_sizes": [1, 5, 11, 21],
    "reference": "auto",
    "bootstrap": {"n_resamples": 1000, "seed": 0, "level": 0.95},
}


def evaluation_settings(
    config: Mapping[str, Any] | DictConfig | None,
) -> dict[str, Any]:
    """A run's evaluation settings: its ``evaluation`` node over :data:`DEFAULT_EVALUATION`.

    Parameters
    ----------
    config : mapping or DictConfig, optional
        A composed training config or the ``config`` stored in a checkpoint (both
        carry the ``evaluation`` group of ``configs/evaluation/``: the baselines with
        the tuned ROVER parameters, thresholds, ...).

    Returns
    -------
    dict
        Plain settings; the baselines of a config win over the built-in defaults.
    """
    node = None if config is None else config.get("evaluation")
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    return {**DEFAULT_EVALUATION, **dict(node or {})}


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available; use 'cpu'")
    return dev


def build_baselines(specs: Mapping[str, Any] | None) -> dict[str, Forecaster]:
    """Instantiate baselines from ``{name: {_target_: ..., **params}}`` specs."""
    out: dict[str, Forecaster] = {}
    for name, spec in (specs or {}).items():
        if spec is None:
            continue
        obj = instantiate(spec)
        if not isinstance(obj, Forecaster):
            raise TypeError(
                f"baseline {name!r} ({type(obj).__name__}) has no predict()"
            )
        out[str(name)] = obj
    return out


def tuned_baselines(
    specs: Mapping[str, Any] | None, dataset: Any
) -> tuple[dict[str, Forecaster], str | None]:
    """Baselines with the data set's tuned ROVER flow parameters, and the report note.

    Uses :func:`nowcast.baselines.tuning.apply_tuned_params` with ``dataset.path``
    (``<stem>_rover.yaml`` next to the processed file, else the built-in defaults).

    Returns
    -------
    (dict of str to Forecaster, str or None)
        The instantiated baselines and the note saying which ROVER parameters were
        used (None if the tuning module is unavailable).
    """
    try:
        from nowcast.baselines.tuning import apply_tuned_params
    except ImportError:  # older trees: the configured specs as they are
        return build_baselines(specs), None
    tuned, note = apply_tuned_params(specs or {}, getattr(dataset, "path", None))
    return build_baselines(tuned), note


def dataset_scale(
    dataset: Any, zr_a: float | None = None, zr_b: float | None = None
) -> tuple[Any, str | None]:
    """The grey scale a data set is scored with, and a note when it had to be guessed.

    Parameters
    ----------
    dataset : object
        With ``scale`` (:class:`nowcast.data.physical.GreyScale`), the normal case.
        Older datasets without it: ``source_units`` / ``zmin`` / ``zmax`` are read
        (:meth:`GreyScale.from_attrs`), and failing those the HKO-7 dBZ range.
    zr_a, zr_b : float, optional
        Z-R relation for the fallback (dBZ archives only).

    Returns
    -------
    (GreyScale, str or None)
    """
    from nowcast.data.physical import GreyScale

    scale = getattr(dataset, "scale", None)
    if scale is not None:
        return scale, None
    zmin = float(getattr(dataset, "zmin", np.nan))
    zmax = float(getattr(dataset, "zmax", np.nan))
    if np.isfinite(zmin) and np.isfinite(zmax):
        attrs = {
            "source_units": getattr(dataset, "source_units", "dBZ"),
            "zmin": zmin,
            "zmax": zmax,
        }
        scale = GreyScale.from_attrs(attrs, zr_a=zr_a, zr_b=zr_b)
    else:
        a, b = (zr_a, zr_b) if zr_a is not None and zr_b is not None else (58.53, 1.56)
        scale = GreyScale("dBZ", -10.0, 60.0, a, b)
    return scale, (
        f"the data set has no GreyScale (dataset.scale); scored with {scale.describe()}"
        " from its zmin / zmax / source_units (older data set)"
    )


def _accumulator_kwargs(ev: Mapping[str, Any], scale: Any) -> dict[str, Any]:
    return {
        "scale": scale,
        "thresholds": list(ev["thresholds"]),
        "fss_sizes": list(ev.get("fss_sizes") or DEFAULT_EVALUATION["fss_sizes"]),
        "aggregation": ev["aggregation"],
    }


def _dataset_notes(dataset: Any, scale_note: str | None) -> list[str]:
    notes = [str(n) for n in (getattr(dataset, "notes", None) or [])]
    return notes + ([scale_note] if scale_note else [])


def _score(
    forecasters: Mapping[str, Forecaster],
    dataset: Any,
    ev: Mapping[str, Any],
    scale: Any,
    n_steps: int,
    max_batches: int | None,
    progress: bool,
) -> dict[str, dict]:
    """The one scoring call of :func:`score_dataset` and :func:`evaluate_split`: the
    dataset's clutter mask and block ids, the evaluation's thresholds and bootstrap."""
    device = resolve_device(ev["device"])
    for f in forecasters.values():
        if isinstance(f, torch.nn.Module):
            f.to(device).eval()
    mask = getattr(dataset, "valid_mask", None)
    block_ids = getattr(dataset, "block_ids", None)
    return evaluate_forecasters(
        dict(forecasters),
        dataset,
        n_steps=n_steps,
        batch_size=int(ev["batch_size"]),
        device=device,
        accumulator_kwargs=_accumulator_kwargs(ev, scale),
        mask=None if mask is None else mask.to(device),
        progress=progress,
        max_batches=max_batches,
        groups=None if block_ids is None else np.asarray(block_ids),
        bootstrap=ev.get("bootstrap"),
        reference=ev.get("reference", "auto"),
    )


def score_dataset(
    forecasters: Mapping[str, Forecaster],
    dataset: Any,
    evaluation: Mapping[str, Any] | None = None,
    n_steps: int | None = None,
    max_batches: int | None = None,
    progress: bool = False,
) -> dict[str, dict]:
    """Score forecasters on a dataset exactly as the test evaluation does.

    The dataset's GreyScale (``dataset.scale``), clutter mask (``valid_mask``),
    per-frame coverage (3-element items) and block ids (``block_ids``, the bootstrap
    units), the thresholds, FSS sizes, aggregation and bootstrap of ``evaluation``;
    no files are written.

    Parameters
    ----------
    forecasters : mapping of str to Forecaster
        Scored through the same ``predict`` path.
    dataset : RadarWindowDataset or compatible
        Items ``(inputs, targets)`` or ``(inputs, targets, target_valid)``.
    evaluation : mapping, optional
        The ``evaluation`` config over :data:`DEFAULT_EVALUATION`; set
        ``bootstrap.n_resamples: 0`` to skip the intervals (e.g. inside a tuning loop).
    n_steps : int, optional
        Lead times; default the dataset's target length.
    max_batches : int, optional
        Stop after this many batches (default ``evaluation.max_batches``).
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict of str to dict
        Name -> :meth:`MetricAccumulator.compute` output (with the extras of
        :func:`~nowcast.evaluation.evaluate.evaluate_forecasters`: support, intervals,
        mask counts); every result's ``notes`` also hold the data set's notes.
    """
    ev = {**DEFAULT_EVALUATION, **dict(evaluation or {})}
    if n_steps is None:
        n_steps = int(dataset[0][1].shape[0])
    scale, scale_note = dataset_scale(dataset)
    results = _score(
        forecasters,
        dataset,
        ev,
        scale,
        n_steps,
        ev["max_batches"] if max_batches is None else max_batches,
        progress,
    )
    extra = _dataset_notes(dataset, scale_note)
    for res in results.values():
        res["notes"] = [*extra, *res["notes"]]
    return results


def _example_indices(n_windows: int, n_examples: int) -> list[int]:
    if n_windows == 0 or n_examples <= 0:
        return []
    return sorted({int(i) for i in np.linspace(0, n_windows - 1, n_examples)})


def plot_window_forecasts(
    forecasters: Mapping[str, Forecaster],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    scale: Any,
    frame_minutes: float = 6.0,
    hide: torch.Tensor | None = None,
    device: str | torch.device = "cpu",
    **plot_options: Any,
) -> Any:
    """Forecast one window with each forecaster and draw inputs | truth | forecasts.

    Parameters
    ----------
    forecasters : dict of str to Forecaster
        One strip row each, in the dict's order.
    inputs, targets : torch.Tensor
        The window's grey-level frames, ``(T_in, 1, H, W)`` and ``(T_out, 1, H, W)``;
        each forecaster predicts ``T_out`` steps.
    scale : nowcast.data.physical.GreyScale
        The data's grey-level scale: frames are drawn in ``scale.units`` through
        ``scale.to_source``.
    frame_minutes : float
        Minutes between frames.
    hide : torch.Tensor of bool, (H, W), optional
        Pixels drawn grey (True = hidden: clutter, no coverage).
    device : str or torch.device
        Where the forecasts are made.
    **plot_options
        Passed to :func:`nowcast.viz.plot_sequence` (``max_frames``, ``title``, ...).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from nowcast.viz import plot_sequence

    x = inputs[None].to(device)
    n_steps = targets.shape[0]
    with torch.no_grad():
        forecasts = {
            name: f.predict(x, n_steps)[0, :, 0].float().cpu()
            for name, f in forecasters.items()
        }
    return plot_sequence(
        inputs[:, 0],
        targets[:, 0],
        forecasts,
        frame_minutes=frame_minutes,
        units=scale.units,
        to_physical=scale.to_source,
        mask=hide,
        **plot_options,
    )


def write_examples(
    forecasters: Mapping[str, Forecaster],
    dataset: Any,
    out_dir: Path,
    n_examples: int,
    n_steps: int,
    device: torch.device,
    scale: Any,
    frame_minutes: float = 6.0,
) -> list[Path]:
    """Write ``n_examples`` forecast strips (inputs | truth | each forecaster) as PNG.

    Grey levels are shown in the archive's source units (``scale.to_source``).
    """
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    mask = getattr(dataset, "valid_mask", None)
    paths = []
    for i in _example_indices(len(dataset), n_examples):
        inputs, targets = dataset[i][:2]
        fig = plot_window_forecasts(
            forecasters,
            inputs,
            targets[:n_steps],
            scale,
            frame_minutes,
            hide=None if mask is None else ~mask,
            device=device,
        )
        path = out_dir / f"example_{i:05d}.png"
        fig.savefig(path, dpi=80, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths


def evaluate_split(
    forecasters: Mapping[str, Forecaster],
    dataset: Any,
    out_dir: str | Path,
    evaluation: Mapping[str, Any] | None = None,
    n_steps: int | None = None,
    zr_a: float | None = None,
    zr_b: float | None = None,
    dbz_min: float | None = None,
    dbz_max: float | None = None,
    frame_minutes: float = 6.0,
    progress: bool = True,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """Score forecasters on one split and write the report into ``out_dir``.

    Parameters
    ----------
    forecasters : mapping of name -> Forecaster
        Model(s) and baselines; all go through the same path.
    dataset : torch Dataset of (inputs, targets[, target_valid])
        With ``scale`` (GreyScale), optional ``valid_mask`` (bool (H, W)),
        ``block_ids`` and ``notes``; see :func:`score_dataset`.
    out_dir : path
        Where ``metrics.md``, ``metrics_by_lead.csv``, ``metrics.json``, plots and
        example strips go.
    evaluation : mapping, optional
        The ``evaluation`` config (thresholds, batch size, bootstrap, ...); defaults
        in :data:`DEFAULT_EVALUATION`.
    n_steps : int, optional
        Lead times to forecast; default the dataset's target length.
    zr_a, zr_b : float, optional
        Z-R coefficients, used only for an older data set without ``scale``.
    dbz_min, dbz_max : float, optional
        Deprecated override: score as a dBZ archive with this range (and ``zr_a``,
        ``zr_b``, HKO-7 by default) instead of ``dataset.scale``.
    frame_minutes : float
        Minutes between frames (6 for HKO).
    progress : bool
        Show a progress bar.
    notes : sequence of str
        Extra report notes (e.g. which ROVER parameters were used).

    Returns
    -------
    dict
        ``{"results": {name: scores}, "files": {...}, "out_dir": Path}``.
    """
    ev = {**DEFAULT_EVALUATION, **dict(evaluation or {})}
    out_dir = Path(out_dir)
    device = resolve_device(ev["device"])
    if n_steps is None:
        n_steps = int(dataset[0][1].shape[0])
    scale, scale_note = _scoring_scale(dataset, zr_a, zr_b, dbz_min, dbz_max)
    results = _score(
        forecasters, dataset, ev, scale, n_steps, ev["max_batches"], progress
    )
    if not is_main_process():  # under torchrun rank 0 alone writes the report
        return {"results": results, "files": {}, "out_dir": out_dir}
    report_notes = [*_dataset_notes(dataset, scale_note), *notes]
    files = write_report(
        results, out_dir, lead_minutes=frame_minutes, report_notes=report_notes
    )
    files["examples"] = write_examples(
        forecasters,
        dataset,
        out_dir / "examples",
        int(ev["n_examples"]),
        n_steps,
        device,
        scale,
        frame_minutes,
    )
    return {"results": results, "files": files, "out_dir": out_dir}


def _scoring_scale(
    dataset: Any,
    zr_a: float | None,
    zr_b: float | None,
    dbz_min: float | None,
    dbz_max: float | None,
) -> tuple[Any, str | None]:
    """The GreyScale to score with and its report note: the data set's, or a dBZ
    range the caller forces (deprecated ``dbz_min`` / ``dbz_max``)."""
    if dbz_min is None and dbz_max is None:
        return dataset_scale(dataset, zr_a, zr_b)
    from nowcast.evaluation.metrics import dbz_scale

    scale = dbz_scale(
        58.53 if zr_a is None else zr_a,
        1.56 if zr_b is None else zr_b,
        -10.0 if dbz_min is None else dbz_min,
        60.0 if dbz_max is None else dbz_max,
    )
    return scale, f"grey levels scored as given by the caller: {scale.describe()}"


def evaluate_datasets(
    forecasters: Mapping[str, Forecaster],
    datasets: Mapping[str, Any],
    data_cfg: Mapping[str, Any],
    evaluation: Mapping[str, Any] | None,
    out_dir: str | Path,
    n_steps: int | None = None,
    progress: bool = True,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """Evaluate on the test split with the metrics that fit the data's ``kind``.

    Radar data (``kind: radar``, the default) gets the paper's radar metrics
    (:func:`evaluate_split`); sequence data such as Moving MNIST (``kind: sequence``)
    gets the per-sequence cross-entropy, MSE/MAE per frame and SSIM of
    :func:`nowcast.evaluation.sequence_metrics.evaluate_sequences`, also on the
    out-of-domain split ``test_ood`` when the data set has one (written to
    ``out_dir / "ood"``).

    Returns
    -------
    dict
        The selected evaluation's output (``results``, ``files``, ``out_dir``), plus
        ``summary``: a flat dict of the first forecaster's lead-averaged scores (and
        persistence's, prefixed ``persistence_``) for logs.
    """
    ev = {**DEFAULT_EVALUATION, **dict(evaluation or {})}
    out_dir = Path(out_dir)
    n_steps = int(
        n_steps or data_cfg.get("output_len") or datasets["test"][0][1].shape[0]
    )
    kind = str(data_cfg.get("kind", "radar") or "radar")
    if kind == "sequence":
        from nowcast.evaluation.sequence_metrics import evaluate_sequences

        first = next(iter(forecasters), None)
        rows = {first: ev["paper_row"]} if first and ev.get("paper_row") else None
        kwargs = dict(
            n_steps=n_steps,
            batch_size=int(ev["batch_size"]),
            device=resolve_device(ev["device"]),
            max_batches=ev["max_batches"],
            progress=progress,
            model_rows=rows,
        )
        out = evaluate_sequences(forecasters, datasets["test"], out_dir, **kwargs)
        if "test_ood" in datasets:
            out["ood"] = evaluate_sequences(
                forecasters, datasets["test_ood"], out_dir / "ood", **kwargs
            )
        keys = ("cross_entropy", "mse", "mae", "ssim")
    elif kind == "radar":
        out = evaluate_split(
            forecasters,
            datasets["test"],
            out_dir,
            evaluation=ev,
            n_steps=n_steps,
            zr_a=_opt_float(data_cfg.get("zr_a")),
            zr_b=_opt_float(data_cfg.get("zr_b")),
            frame_minutes=float(data_cfg.get("frame_minutes", 6.0)),
            progress=progress,
            notes=notes,
        )
        keys = ("rainfall_mse", "csi", "far", "pod", "correlation")
    else:
        raise ValueError(f"unknown data kind {kind!r}; expected 'radar' or 'sequence'")
    summary: dict[str, float] = {}
    for i, (name, res) in enumerate(out["results"].items()):
        prefix = (
            "" if i == 0 else ("persistence_" if "persist" in name.lower() else None)
        )
        if prefix is None:
            continue
        summary.update({f"{prefix}{k}": float(res[k]) for k in keys if k in res})
    out["summary"] = summary
    return out


def _opt_float(x: Any) -> float | None:
    return None if x is None else float(x)


def run_test_evaluation(
    model: torch.nn.Module,
    datasets: Mapping[str, Any],
    cfg: DictConfig,
    run_dir: str | Path,
) -> dict[str, float]:
    """Evaluate a trained model and the configured baselines on the test split.

    Called at the end of ``scripts/train.py`` (``evaluate_after_training``); writes into
    ``run_dir / "evaluation"``, prints the table and returns the flat summary of
    :func:`evaluate_datasets`. Under ``torchrun`` every rank calls it and scores its
    shard of the test split; the sums are reduced across ranks, so every rank returns
    the same summary, and rank 0 alone writes and prints the report.
    """
    evaluation = evaluation_settings(cfg)
    forecasters: dict[str, Forecaster] = {model_label(cfg): model}
    baselines, rover_note = tuned_baselines(evaluation["baselines"], datasets["test"])
    forecasters.update(baselines)
    out = evaluate_datasets(
        forecasters,
        datasets,
        cfg.data,
        evaluation,
        Path(run_dir) / "evaluation",
        n_steps=int(cfg.data.output_len),
        progress=bool(cfg.get("logging", {}).get("progress_bar", True)),
        notes=[rover_note] if rover_note else [],
    )
    if is_main_process():
        print("\nTest split:\n" + (out["out_dir"] / "metrics.md").read_text())
        log.info("evaluation written to %s", out["out_dir"])
    return out["summary"]


def model_label(cfg: Mapping[str, Any] | DictConfig) -> str:
    """A short display name for the configured model, e.g. ``ConvLSTM``."""
    model = cfg.get("model", {}) or {}
    target = str(model.get("_target_", ""))
    if target.endswith("FCLSTM"):
        return "FC-LSTM"
    cell = str(model.get("cell", "lstm")).lower()
    name = "ConvGRU" if cell == "gru" else "ConvLSTM"
    return f"Lagrangian {name}" if target.endswith("LagrangianForecaster") else name
