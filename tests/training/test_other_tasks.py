"""The classification and series tasks through the one trainer (tiny CPU runs)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from support import load_script, processed_dataset

from nowcast.data.radar import write_radar
from nowcast.training.other_tasks import warmup_cosine
from nowcast.training.trainer import train

ROOT = Path(__file__).resolve().parents[2]


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


TINY_VIDEOS = (
    "+experiment=kth_synthetic",
    "data.datasets.n_train=192",
    "data.datasets.n_val=30",
    "data.datasets.n_test=60",
    "data.datasets.n_frames=6",
    "data.datasets.size=[16,16]",
    "data.datasets.speed_fast=1.5",
    "model.hidden_channels=[6]",
    "model.frame_size=[16,16]",
    "optimizer.lr=1e-2",
    "scheduler.warmup_steps=1",  # (almost) constant: no time to warm up and decay
    "scheduler.total_steps=100000",
    "trainer.max_epochs=6",
    "logging.progress_bar=false",
    "logging.print_summary=false",
)


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("kth_synthetic")
    return run_dir, train(_cfg(*TINY_VIDEOS), run_dir=run_dir)


def test_kth_synthetic_beats_chance_by_a_wide_margin(classifier_run):
    run_dir, metrics = classifier_run
    # six balanced classes: chance is 1/6; this 6-epoch run of 192 clips gets 0.88
    # (0.65-0.88 over seeds 0-3)
    assert metrics["test_accuracy"] > 0.5
    assert (run_dir / "evaluation" / "confusion.png").exists()
    assert (
        "| true \\ predicted |"
        in (run_dir / "evaluation" / "classification.md").read_text()
    )


def test_best_checkpoint_follows_validation_accuracy(classifier_run):
    run_dir, metrics = classifier_run
    with open(run_dir / "metrics.csv") as f:
        val = [r for r in csv.DictReader(f) if r["split"] == "val"]
    assert len(val) == 6  # accuracy logged every epoch
    accuracy = [float(r["accuracy"]) for r in val]
    best = max(range(6), key=lambda i: (accuracy[i], -i))  # the first best one
    assert metrics["best_step"] == float(val[best]["step"])


def test_evaluate_script_reports_the_checkpoint(classifier_run, tmp_path):
    run_dir, metrics = classifier_run
    script = load_script("scripts/evaluate.py")
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("evaluate", [f"ckpt_path={run_dir / 'checkpoints' / 'best.pt'}"])
    out = script.evaluate(cfg, tmp_path)
    assert out["accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert (tmp_path / "evaluation" / "confusion.png").exists()


def test_series_task_end_to_end(tmp_path):
    torch.set_num_threads(1)
    t = np.arange(240, dtype=np.float32)
    rain = 0.01 * (1 + np.sin(2 * np.pi * t / 40))  # 0..2 mm/h, a 4-hour cycle
    frames = np.broadcast_to(rain[:, None, None], (240, 8, 8))
    ds = processed_dataset(frames, noise_first_column=False)  # 6-minute frames
    ds.attrs.update(zmin=0.0, zmax=100.0, source_units="mm/h")
    path = write_radar(ds, tmp_path / "p.nc")
    cfg = _cfg(
        "+experiment=series_synthetic",
        "data=series_radar",
        f"data.root={path}",
        "data.input_len=3",
        "data.output_len=4",
        "data.datasets.box=[2,6,2,6]",
        "model.hidden_size=8",
        "trainer.max_epochs=3",
        "logging.progress_bar=false",
        "logging.print_summary=false",
    )
    with open_dict(cfg):  # the fields' persistence instead of ConvLSTM / ROVER
        cfg.evaluation.field_forecasters = {
            "Persistence fields": {"_target_": "nowcast.baselines.Persistence"}
        }
    metrics = train(cfg, run_dir=tmp_path / "run")
    table = (tmp_path / "run" / "evaluation" / "series.md").read_text()
    # the last lead: output_len 4 x 6 min = 24 min
    assert "| series model | 24 |" in table and "| Persistence | mean |" in table
    # the fields' persistence, area-averaged, is the series' persistence exactly
    assert metrics["test_persistence_fields_mae"] == pytest.approx(
        metrics["test_persistence_mae"], rel=1e-5
    )
    assert (
        np.isfinite(metrics["test_mae"]) and metrics["test_rmse"] >= metrics["test_mae"]
    )


def test_warmup_cosine_factors():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = warmup_cosine(opt, warmup_steps=2, total_steps=6, final_fraction=0.0)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    # warm-up 1/2, 1; cosine over 4 steps: 1, (1 + cos(pi/4))/2, 1/2, (1 - cos(pi/4))/2, 0
    c = np.cos(np.pi / 4)
    np.testing.assert_allclose(
        lrs, [0.5, 1, 1, (1 + c) / 2, 0.5, (1 - c) / 2, 0, 0], atol=1e-12
    )
    with pytest.raises(ValueError, match="warmup_steps < total_steps"):
        warmup_cosine(opt, warmup_steps=6, total_steps=6)


def test_task_schemas_check_the_tasks_own_keys():
    from omegaconf import OmegaConf

    from nowcast.training.schema import ConfigError, validate_config

    def plain(*overrides):
        return OmegaConf.to_container(_cfg(*overrides), resolve=True)

    validate_config(plain("+experiment=series_synthetic"))
    validate_config(plain("+experiment=kth_synthetic"))
    with pytest.raises(
        ConfigError, match="evaluation.wet_threshold=-1.0: expected a rain"
    ):
        validate_config(
            plain("+experiment=series_synthetic", "evaluation.wet_threshold=-1.0")
        )
    with pytest.raises(
        ConfigError, match="evaluation.wet_threshold is not a known key"
    ):
        validate_config(
            plain("+experiment=kth_synthetic", "+evaluation.wet_threshold=0.1")
        )
