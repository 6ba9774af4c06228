"""SIGTERM mid-epoch: last.pt, exit status 75, then resume=auto to the same weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from training_helpers import compose_config, tiny_overrides

from nowcast.training import EXIT_PREEMPTED, train
from nowcast.training.checkpoint import load_checkpoint
from nowcast.training.preemption import StopRequest
from nowcast.training.trainer import _find_resume_checkpoint

REPO = Path(__file__).resolve().parents[2]

# Runs scripts/train.py as `python scripts/train.py ...` would, after wrapping one
# loop method so that the process sends itself a real SIGTERM after step 3 (of 4 in
# the epoch): the signal arrives while the step's bookkeeping runs, as a scheduler's
# would arrive at any moment.
SIGNAL_AFTER_STEP_3 = textwrap.dedent(
    """
    import os, runpy, signal, sys
    from nowcast.training import trainer

    original = trainer._Loop.optimise

    def optimise(self, batch):
        out = original(self, batch)
        if self.state.step == 2:  # (0-based here: this is the 3rd step)
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    trainer._Loop.optimise = optimise
    sys.argv = [sys.argv[1], *sys.argv[2:]]
    runpy.run_path(sys.argv[0], run_name="__main__")
    """
)

EXTRA = ("trainer.max_steps=6", "trainer.limit_train_batches=4")


def test_stop_request_catches_sigterm_and_usr1_then_restores_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        assert stop.signal_name is None
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signal_name == "SIGUSR1"  # the first one is kept
    assert signal.getsignal(signal.SIGTERM) is before


def test_resume_auto_skips_a_finished_run_and_rejects_unknown_modes(tmp_path):
    run = tmp_path / "runs" / "old"
    (run / "checkpoints").mkdir(parents=True)
    for completed, expected in ((False, run / "checkpoints" / "last.pt"), (True, None)):
        keys = ("model", "optimizer", "config", "step", "epoch", "metrics")
        torch.save(
            {**dict.fromkeys(keys, {}), "train_state": {"completed": completed}},
            run / "checkpoints" / "last.pt",
        )
        new = tmp_path / "runs" / "new"
        assert _find_resume_checkpoint({"resume": "auto"}, new) == expected
        # resume=true continues the newest last.pt, finished or not
        assert _find_resume_checkpoint({"resume": True}, new) == run / "checkpoints" / (
            "last.pt"
        )
    assert _find_resume_checkpoint({"resume": "auto"}, tmp_path / "x" / "y") is None
    with pytest.raises(ValueError, match="trainer.resume must be false, true or auto"):
        _find_resume_checkpoint({"resume": "sometimes"}, tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sigterm_mid_epoch_then_resume_auto_matches_uninterrupted(
    tiny_radar_file, tmp_path
):
    overrides = tiny_overrides(tiny_radar_file, *EXTRA)
    full = train(compose_config(overrides), run_dir=tmp_path / "full")

    first = tmp_path / "runs" / "first"
    cmd = [
        sys.executable, "-c", SIGNAL_AFTER_STEP_3, str(REPO / "scripts" / "train.py"),
        *overrides, f"hydra.run.dir={first}",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=100
    )
    assert proc.returncode == EXIT_PREEMPTED == 75, proc.stderr[-3000:]
    assert "SIGTERM received: training stopped after step 3 (epoch 0)" in proc.stderr
    ck = load_checkpoint(first / "checkpoints" / "last.pt")
    assert ck["step"] == 3 and ck["train_state"]["batch_in_epoch"] == 3  # mid-epoch
    assert not ck["train_state"]["completed"]

    resumed = train(
        compose_config([*overrides, "trainer.resume=auto"]),
        run_dir=tmp_path / "runs" / "second",
    )
    assert resumed["step"] == full["step"] == 6
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "runs" / "second" / "checkpoints" / "last.pt")
    assert b["train_state"]["completed"]
    assert a.keys() == b["model"].keys()
    assert all(torch.equal(a[k], b["model"][k]) for k in a)
    assert resumed["val_loss"] == full["val_loss"]
