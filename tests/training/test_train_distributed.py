"""DDP through torchrun with 2 CPU processes on gloo, against one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from training_helpers import compose_config, tiny_overrides

from nowcast.training import train
from nowcast.training.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]


#: A seconds-long test evaluation: 8 of the 12 test windows, persistence as baseline.
SMALL_EVALUATION = [
    "evaluate_after_training=true",
    "evaluation.max_batches=2",
    "evaluation.batch_size=4",
    "evaluation.n_examples=0",
    "evaluation.device=cpu",
    "evaluation.bootstrap.n_resamples=20",
    "~evaluation.baselines.ROVER1",
    "~evaluation.baselines.ROVER2",
    "~evaluation.baselines.ROVER3",
]


@pytest.mark.slow  # (runs in CI; about 25 s on 2 busy cores)
@pytest.mark.timeout(180)
def test_torchrun_two_processes_match_one_process_with_the_same_global_batch(
    tiny_radar_file, tmp_path
):
    # 2 ranks x batch 2 see, step by step, exactly the 4 sequences one process sees
    # with batch 4 (rank r takes every 2nd index of the same permutation) and DDP
    # averages equal-size gradients, so the weights must agree to rounding. The test
    # evaluation runs on both ranks over their halves of the test windows.
    common = tiny_overrides(tiny_radar_file, "trainer.max_steps=3")
    common = [
        o
        for o in common
        if not o.startswith(("data.batch_size", "trainer.limit_", "evaluate_after"))
    ]
    common += SMALL_EVALUATION
    ddp_dir = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc_per_node=2", str(REPO / "scripts" / "train.py"),
        *common, "data.batch_size=2", "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1", f"hydra.run.dir={ddp_dir}",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=170
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # rank 0 alone wrote the run directory; rank 1 left nothing in its cwd
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]
    assert (ddp_dir / "checkpoints" / "last.pt").is_file()
    assert (ddp_dir / "metrics.csv").read_text().count("\n") > 3
    assert proc.stdout.count("Test split:") == 1  # printed by rank 0 only

    single_cfg = compose_config(
        [*common, "data.batch_size=4", "trainer.limit_train_batches=3",
         "trainer.limit_val_batches=1"]
    )  # fmt: skip
    single = train(single_cfg, run_dir=tmp_path / "single")
    a = load_checkpoint(ddp_dir / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "single" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 3
    for k in b["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-5)
    # validation: ranks take sequences 0, 2 and 1, 3 = the single process's batch of 4
    assert a["metrics"]["val_loss"] == pytest.approx(single["val_loss"], rel=1e-5)

    # the report: the same 8 windows (2 global batches of 4) counted once each
    ddp_report = json.loads((ddp_dir / "evaluation" / "metrics.json").read_text())
    one_report = json.loads(
        (tmp_path / "single" / "evaluation" / "metrics.json").read_text()
    )
    assert ddp_report.keys() == one_report.keys() == {"ConvLSTM", "Persistence"}
    for name, one in one_report.items():
        ddp = ddp_report[name]
        assert ddp["n_sequences"] == one["n_sequences"] == 8
        assert ddp["mask_counts"] == one["mask_counts"]
        assert ddp["support"] == one["support"]
        for key in ("rainfall_mse", "csi", "far", "pod", "correlation"):
            assert ddp[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), key
