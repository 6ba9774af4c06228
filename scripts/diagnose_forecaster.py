"""Train with per-lead learning curves: where a forecaster gains and where it stalls.

Usage (any training override works; the run is an ordinary training run)::

    python scripts/diagnose_forecaster.py                        # the default run
    python scripts/diagnose_forecaster.py optimizer.lr=3e-3 +diagnose.every=25

Every ``diagnose.every`` steps (default 50) the model is scored on
``diagnose.max_batches`` validation batches (default 4) by the evaluation's own path;
the run directory gets ``lead_curves.csv`` and ``lead_curves.png`` (CSI@0.5 per lead
against steps, persistence and ROVER2 on the same batches as dashed / dotted lines, and
the distance of the first forecast from the last input frame). See
:mod:`nowcast.training.diagnostics`.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from nowcast.baselines import Persistence, Rover
from nowcast.cli import hydra_entry
from nowcast.evaluation.run import evaluation_settings
from nowcast.training import train
from nowcast.training.diagnostics import (
    LeadCurveRecorder,
    plot_lead_curves,
    reference_scores,
)
from nowcast.training.trainer import Callbacks, build_datasets


def run(cfg: DictConfig) -> None:
    """Train with the lead-curve recorder and plot the curves against the baselines."""
    diag = dict(cfg.get("diagnose") or {})
    every, max_batches = int(diag.get("every", 50)), int(diag.get("max_batches", 4))
    plain = OmegaConf.to_container(cfg, resolve=True)
    val = build_datasets(plain["data"])["val"]
    ev = {**evaluation_settings(cfg), "fss_sizes": [1]}
    recorder = LeadCurveRecorder(val, every, max_batches, ev)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    train(cfg, run_dir=run_dir, callbacks=Callbacks(on_step_end=recorder))
    refs = reference_scores(
        {"Persistence": Persistence(), "ROVER2": Rover(variant=2)},
        val,
        max_batches,
        ev,
    )
    recorder.write_csv(run_dir / "lead_curves.csv")
    fig = plot_lead_curves(recorder.rows, refs)
    fig.savefig(run_dir / "lead_curves.png", dpi=90)
    print(f"learning curves: {run_dir / 'lead_curves.csv'}, lead_curves.png")


main = hydra_entry(run, "train")


if __name__ == "__main__":
    main()
