"""Train a nowcasting model.

Usage::

    python scripts/train.py                      # small ConvLSTM, synthetic radar, CPU
    python scripts/train.py +experiment=hko      # the paper's radar setup
    python scripts/train.py trainer.max_epochs=10 data.batch_size=16 loss=balanced_mse
    python scripts/train.py trainer.resume=true  # continue the newest run of this name
    python scripts/train.py trainer.resume=auto  # ... only if it was interrupted
    torchrun --nproc_per_node=4 scripts/train.py +experiment=hko   # DDP on 4 GPUs

The work is done by :func:`nowcast.training.train`; this script only composes the hydra
config ``configs/train.yaml`` and hands it over.

Exit status: 0 when the training finished; 75 (``EX_TEMPFAIL``,
:data:`nowcast.training.preemption.EXIT_PREEMPTED`) when SIGTERM or SIGUSR1 stopped it
after a step with ``last.pt`` written (requeue the job with ``trainer.resume=auto``);
1 on an error. A bad input (an invalid config value, missing or unreadable data, a
diverged loss) is reported in one paragraph without a traceback
(``HYDRA_FULL_ERROR=1`` shows it), and a run directory that holds nothing but hydra's
own files is removed.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from omegaconf import DictConfig

from nowcast.cli import hydra_entry
from nowcast.training import NonFiniteLossError, train
from nowcast.training.preemption import EXIT_PREEMPTED, TrainingPreempted


def _quiet_hydra_on_workers() -> None:
    """Under torchrun only rank 0 owns the run directory and its logs.

    Every process composes the config through hydra, and each would create its own
    timestamped run directory; the other ranks write nothing (rank 0's run directory is
    shared with them by the trainer).
    """
    if int(os.environ.get("RANK", "0")) != 0:
        sys.argv = [a for a in sys.argv if not a.startswith("hydra.run.dir=")]
        sys.argv += [
            "hydra.output_subdir=null",
            "hydra.run.dir=.",
            "hydra/job_logging=disabled",
            "hydra/hydra_logging=disabled",
        ]


def _remove_if_only_hydra_files(run_dir: Path) -> None:
    """Delete ``run_dir`` (and empty parents) if it holds only ``.hydra`` and logs."""
    if not run_dir.is_dir() or run_dir.resolve() == Path.cwd().resolve():
        return
    if any(p.name != ".hydra" and p.suffix != ".log" for p in run_dir.iterdir()):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    for parent in run_dir.parents:
        if parent.resolve() == Path.cwd().resolve():
            break
        try:
            parent.rmdir()  # only when empty
        except OSError:
            break


def _hydra_run_dir() -> Path | None:
    from hydra.core.hydra_config import HydraConfig

    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        return None


def _clean_up_run_dir() -> None:
    """After a bad input, no run directory is left that holds only hydra's files."""
    run_dir = _hydra_run_dir()
    if run_dir is not None and int(os.environ.get("RANK", "0")) == 0:
        _remove_if_only_hydra_files(run_dir)


def run(cfg: DictConfig) -> float:
    """Train; returns the best validation loss (for hydra sweepers)."""
    try:
        metrics = train(cfg)
    except TrainingPreempted as stopped:
        print(stopped, file=sys.stderr, flush=True)
        sys.exit(EXIT_PREEMPTED)
    return float(metrics["best_val_loss"])


main = hydra_entry(
    run, "train", bad_input=(NonFiniteLossError,), on_error=_clean_up_run_dir
)


if __name__ == "__main__":
    _quiet_hydra_on_workers()
    main()
