"""End-to-end tests of `scripts/evaluate.py` on a tiny processed archive."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from support import load_script, write_moving_blob

from nowcast.training.trainer import train

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = str(ROOT / "configs")


evaluate_script = load_script("scripts/evaluate.py")


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return write_moving_blob(tmp_path_factory.mktemp("eval") / "processed.nc", 16)


def _eval_cfg(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="evaluate", overrides=list(overrides))


def _data_overrides(archive: Path) -> list[str]:
    return [
        "data=hko",
        f"data.root={archive}",
        "data.input_len=3",
        "data.output_len=4",
        "data.stride=7",
        "data.num_workers=0",
        "evaluation.max_batches=2",
        "evaluation.batch_size=4",
        "evaluation.n_examples=1",
        "~evaluation.baselines.ROVER2",
        "~evaluation.baselines.ROVER3",
    ]


@pytest.fixture(scope="module")
def checkpoint(archive, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                "data=hko",
                f"data.root={archive}",
                "data.input_len=3",
                "data.output_len=4",
                "data.stride=7",
                "data.batch_size=4",
                "data.num_workers=0",
                "model.hidden_channels=[4]",
                "trainer=debug",
                "trainer.max_steps=2",
                "trainer.limit_val_batches=1",
                "logging.progress_bar=false",
                "logging.print_summary=false",
                "evaluate_after_training=false",
            ],
        )
    train(cfg, run_dir=run_dir)
    return run_dir / "checkpoints" / "best.pt"


def test_baselines_alone_write_the_report(archive, tmp_path):
    cfg = _eval_cfg(*_data_overrides(archive))
    out = evaluate_script.evaluate(cfg, tmp_path)
    assert set(out["results"]) == {"Persistence", "ROVER1"}
    table = (tmp_path / "metrics.md").read_text()
    assert "| Persistence |" in table and "| ROVER1 |" in table
    # the report says which ROVER parameters and which conversion it used
    assert "ROVER flow parameters: built-in defaults" in table
    assert "grey P -> dBZ = 70 P - 10" in table and "Support:" in table
    scores = json.loads((tmp_path / "metrics.json").read_text())
    # 4 lead times, as configured (data.output_len=4)
    assert len(scores["Persistence"]["csi_by_lead"]) == 4
    assert list(tmp_path.glob("*.png")), "metric plots were not written"
    assert len(list((tmp_path / "examples").glob("*.png"))) == 1
    # the blob moves one pixel per frame: advection must beat persistence
    assert scores["ROVER1"]["rainfall_mse"] < scores["Persistence"]["rainfall_mse"]


def test_checkpoint_is_evaluated_next_to_baselines(archive, checkpoint, tmp_path):
    cfg = _eval_cfg(f"ckpt_path={checkpoint}", *_data_overrides(archive)[7:])
    out = evaluate_script.evaluate(cfg, tmp_path)  # data from the checkpoint's config
    assert set(out["results"]) == {"ConvLSTM", "Persistence", "ROVER1"}
    assert "| ConvLSTM |" in (tmp_path / "metrics.md").read_text()
    csi = out["results"]["ConvLSTM"]["csi_by_lead"]
    assert csi.shape == (4,)


def test_missing_and_corrupt_checkpoints_are_explained(archive, tmp_path):
    cfg = _eval_cfg(f"ckpt_path={tmp_path / 'absent.pt'}", *_data_overrides(archive))
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        evaluate_script.evaluate(cfg, tmp_path)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    cfg = _eval_cfg(f"ckpt_path={bad}", *_data_overrides(archive))
    with pytest.raises(ValueError, match="bad.pt.*corrupt"):
        evaluate_script.evaluate(cfg, tmp_path)


def test_data_that_does_not_fit_the_checkpoint_is_rejected(checkpoint, tmp_path):
    odd = write_moving_blob(
        tmp_path / "odd.nc", 15
    )  # 15 is not divisible by the patch size
    cfg = _eval_cfg(f"ckpt_path={checkpoint}", *_data_overrides(odd))
    with pytest.raises(ValueError, match=r"15x15.*divisible by its patch size \d"):
        evaluate_script.evaluate(cfg, tmp_path)
    assert (
        torch.load(checkpoint, weights_only=False)["config"]["data"]["input_len"] == 3
    )


def test_sequence_data_is_scored_with_sequence_metrics(tmp_path):
    from nowcast.baselines import Persistence
    from nowcast.data.moving_mnist import MovingMNISTDataset
    from nowcast.evaluation.run import evaluate_datasets

    frames = np.random.default_rng(0).random((6, 20, 16, 16)).astype(np.float32)
    datasets = {
        "test": MovingMNISTDataset(frames, 10, 10),
        "test_ood": MovingMNISTDataset(frames[:2], 10, 10),
    }
    out = evaluate_datasets(
        {"Persistence": Persistence()},
        datasets,
        {"kind": "sequence", "output_len": 10},
        {"batch_size": 4, "device": "cpu"},
        tmp_path,
        progress=False,
    )
    res = out["results"]["Persistence"]
    # persistence repeats input frame 9: cross-entropy summed over 10 x 256 pixels
    p = np.clip(frames[:, 9:10], 1e-7, 1 - 1e-7)
    t = frames[:, 10:]
    ce = -(t * np.log(p) + (1 - t) * np.log(1 - p)).sum(axis=(1, 2, 3)).mean()
    assert res["cross_entropy"] == pytest.approx(ce, rel=1e-4)
    assert out["summary"]["cross_entropy"] == pytest.approx(ce, rel=1e-4)
    assert (tmp_path / "metrics.md").exists() and (
        tmp_path / "ood" / "metrics.md"
    ).exists()
    with pytest.raises(ValueError, match="unknown data kind 'video'"):
        evaluate_datasets({}, datasets, {"kind": "video"}, None, tmp_path)


def test_evaluation_settings_take_the_runs_baselines():
    from omegaconf import OmegaConf

    from nowcast.evaluation.run import DEFAULT_EVALUATION, evaluation_settings

    assert evaluation_settings(None) == DEFAULT_EVALUATION
    # the training config composes configs/evaluation/default.yaml: the ROVER configs'
    # built-in flow parameters (a data set's tuned ones replace them at evaluation)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train")
    defaults = OmegaConf.load(ROOT / "configs" / "baseline" / "rover_defaults.yaml")
    ev = evaluation_settings(cfg)
    assert ev["baselines"]["ROVER1"]["patch_size"] == defaults.patch_size
    assert ev["baselines"]["ROVER3"]["variant"] == 3
    assert evaluation_settings({"evaluation": {"batch_size": 2}})["batch_size"] == 2
