"""Learning curves per lead time: what a forecaster learns first, and where it stalls.

:class:`LeadCurveRecorder` is a trainer callback (``Callbacks.on_step_end``): every
``every`` optimiser steps it scores the model on a few validation batches through the
evaluation's own path (:func:`nowcast.evaluation.run.score_dataset`: the data's grey
level conversion, masks and thresholds) and records, per lead time, CSI at the paper's
0.5 mm/h and Rainfall-MSE, plus how far the first forecast frame is from the last input
(``first_vs_last_mse``: 0 would be a copy of the last frame, persistence's lead 1).
:func:`plot_lead_curves` draws them. ``scripts/diagnose_forecaster.py`` runs a training
with the recorder attached and writes ``lead_curves.csv`` and ``lead_curves.png``.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

__all__ = ["LeadCurveRecorder", "plot_lead_curves", "reference_scores"]


def _first_vs_last(model: nn.Module, dataset: Dataset, n: int) -> float:
    """Mean squared grey-level difference of the first forecast frame and the last input."""
    items = [dataset[i] for i in range(min(n, len(dataset)))]
    x = torch.stack([it[0] for it in items])
    device = next(model.parameters()).device
    pred = model.predict(x.to(device), 1)[:, 0].float().cpu()
    return float(((pred - x[:, -1]) ** 2).mean())


class LeadCurveRecorder:
    """Trainer callback that scores the model per lead time every ``every`` steps.

    Parameters
    ----------
    dataset : Dataset
        Validation windows (with ``scale`` and ``valid_mask`` like the radar data sets).
    every : int
        Optimiser steps between two measurements.
    max_batches : int
        Validation batches scored per measurement (of ``evaluation["batch_size"]``).
    evaluation : mapping, optional
        Evaluation settings (thresholds, batch size); intervals are switched off.
    n_steps : int, optional
        Lead times; default the data set's target length.

    Attributes
    ----------
    rows : list of dict
        One row per measurement: ``step``, ``first_vs_last_mse``, ``csi``,
        ``rainfall_mse`` and ``csi_lead<k>`` / ``rainfall_mse_lead<k>`` per lead.
    """

    def __init__(
        self,
        dataset: Dataset,
        every: int = 50,
        max_batches: int = 4,
        evaluation: Mapping[str, Any] | None = None,
        n_steps: int | None = None,
    ) -> None:
        if every < 1 or max_batches < 1:
            raise ValueError(
                f"every and max_batches must be >= 1, got {every} and {max_batches}"
            )
        self.dataset = dataset
        self.every = int(every)
        self.max_batches = int(max_batches)
        self.evaluation = {**dict(evaluation or {}), "bootstrap": {"n_resamples": 0}}
        self.n_steps = n_steps
        self.rows: list[dict[str, float]] = []

    def __call__(self, step: int, model: nn.Module) -> None:
        if step % self.every == 0:
            self.record(step, model)

    def record(self, step: int, model: nn.Module) -> dict[str, float]:
        """Score ``model`` now and append the row."""
        from nowcast.evaluation.run import score_dataset

        was_training = model.training
        scores = score_dataset(
            {"model": model},
            self.dataset,
            self.evaluation,
            n_steps=self.n_steps,
            max_batches=self.max_batches,
        )["model"]
        row = {
            "step": float(step),
            "first_vs_last_mse": _first_vs_last(model, self.dataset, 16),
            "csi": scores["csi"],
            "rainfall_mse": scores["rainfall_mse"],
        }
        for key in ("csi", "rainfall_mse"):
            for k, v in enumerate(scores[f"{key}_by_lead"], start=1):
                row[f"{key}_lead{k}"] = float(v)
        model.train(was_training)
        self.rows.append(row)
        return row

    def write_csv(self, path: str | Path) -> Path:
        """Write the rows as CSV (one column per key of the first row)."""
        path = Path(path)
        if not self.rows:
            raise RuntimeError("no measurement recorded yet; nothing to write")
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(self.rows[0]))
            writer.writeheader()
            writer.writerows(self.rows)
        return path


def reference_scores(
    forecasters: Mapping[str, Any],
    dataset: Dataset,
    max_batches: int,
    evaluation: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Scores of fixed forecasters (persistence, ROVER) on the recorder's batches."""
    from nowcast.evaluation.run import score_dataset

    ev = {**dict(evaluation or {}), "bootstrap": {"n_resamples": 0}}
    return score_dataset(forecasters, dataset, ev, max_batches=max_batches)


def plot_lead_curves(
    rows: Sequence[Mapping[str, float]],
    references: Mapping[str, Mapping[str, Any]] | None = None,
    leads: Sequence[int] = (1, 2, 5, 10, 15),
):
    """CSI@0.5 per lead time against training steps, references as dashed lines.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    steps = np.array([r["step"] for r in rows])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(leads)))
    for lead, colour in zip(leads, colours, strict=True):
        key = f"csi_lead{lead}"
        if key not in rows[0]:
            continue
        axes[0].plot(steps, [r[key] for r in rows], color=colour, label=f"lead {lead}")
        for j, res in enumerate((references or {}).values()):
            axes[0].axhline(
                res["csi_by_lead"][lead - 1],
                color=colour,
                ls=("--", ":", "-.")[j % 3],
                lw=0.8,
            )
    axes[0].set(xlabel="training step", ylabel="CSI @ 0.5 mm/h", ylim=(0, 1))
    names = ", ".join(
        f"{name} {('--', ':', '-.')[j % 3]}" for j, name in enumerate(references or {})
    )
    axes[0].set_title(f"validation CSI per lead (references: {names})", fontsize=9)
    axes[0].legend(fontsize=8)
    axes[1].semilogy(steps, [r["first_vs_last_mse"] for r in rows])
    axes[1].set(
        xlabel="training step",
        ylabel="MSE(first forecast, last input)",
        title="how far lead 1 is from copying the last frame",
    )
    fig.tight_layout()
    return fig
