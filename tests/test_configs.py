"""Every experiment config composes and builds its data, model, loss and optimiser.

Iterates over ``configs/experiment/*.yaml`` (plus the default run without an
experiment), so new experiments are checked automatically. Data factories known to be
expensive get cheap stand-in arguments (a tiny fake archive for radar files, one
generated day for the synthetic set, a few Moving-MNIST sequences); each built model
runs one forward pass on one real item, which checks that the data and the model agree
on frame size and channels.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).parent / "training"))
from training_helpers import compose_config, write_fake_processed  # noqa: E402

from nowcast.training.checkpoint import build_model  # noqa: E402
from nowcast.training.trainer import build_datasets, build_loss  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _task_of(stem: str) -> str:
    """The experiment's training task (``task:`` key; issue 14), default forecast."""
    return OmegaConf.load(CONFIGS / "experiment" / f"{stem}.yaml").get(
        "task", "forecast"
    )


ALL_EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))
EXPERIMENTS = [None] + [e for e in ALL_EXPERIMENTS if _task_of(e) == "forecast"]
TASK_EXPERIMENTS = [e for e in ALL_EXPERIMENTS if _task_of(e) != "forecast"]


@pytest.fixture(scope="module")
def cheap_data(tmp_path_factory):
    """Overrides that make each known data factory cheap, keyed by ``_target_``."""
    root = tmp_path_factory.mktemp("configs")
    radar = write_fake_processed(root / "processed.nc", size=100)
    return {
        "nowcast.data.dataset.radar_datasets": [f"data.root={radar}"],
        "nowcast.data.synthetic.synthetic_datasets": [
            f"data.root={root / 'synthetic'}",
            "++data.datasets.n_days=1",
            "++data.datasets.size=165",
        ],
        "nowcast.data.series.synthetic_series_datasets": [
            f"data.root={root / 'synthetic'}",
            "++data.datasets.n_days=1",
            "++data.datasets.size=165",
        ],
        "nowcast.data.video.video_folder_datasets": [
            f"data.root={_tiny_kth(root / 'kth')}",
            "data.datasets.clip_len=4",
        ],
        "nowcast.data.moving_mnist.moving_mnist_datasets": [
            f"data.root={root / 'moving_mnist'}",
            "data.n_train=4",
            "data.n_val=2",
            "data.n_test=2",
        ],
    }


def _tiny_kth(root: Path) -> Path:
    """Six KTH class folders, one 4-frame 120x160 AVI of people 1 (train), 3 (val) and
    13 (test) each."""
    import cv2

    for action in (
        "boxing",
        "handclapping",
        "handwaving",
        "jogging",
        "running",
        "walking",
    ):
        for person in (1, 3, 13):
            path = root / action / f"person{person:02d}_{action}_d1_uncomp.avi"
            path.parent.mkdir(parents=True, exist_ok=True)
            fourcc = cv2.VideoWriter_fourcc(*"MJPG")
            writer = cv2.VideoWriter(str(path), fourcc, 25, (160, 120))
            for t in range(4):
                writer.write(np.full((120, 160, 3), 40 * t, np.uint8))
            writer.release()
    return root


def _compose(experiment, extra=()):
    overrides = [] if experiment is None else [f"+experiment={experiment}"]
    return compose_config([*overrides, *extra])


def test_train_yaml_defaults_are_the_cpu_default_run():
    cfg = _compose(None)
    assert cfg.data.datasets._target_ == "nowcast.data.synthetic.synthetic_datasets"
    assert cfg.model.hidden_channels == [32, 32] and cfg.loss.name == "bce"
    assert cfg.optimizer._target_ == "torch.optim.RMSprop"
    assert cfg.evaluate_after_training is True


def test_hko_experiment_is_the_papers_radar_setup():
    # Shi et al. (2015), Sec. 4.2: patch 2 (100x100 -> 50x50x4), 2 ConvLSTM layers of
    # 64, 3x3 kernels, 5 in / 15 out, cross-entropy, RMSProp lr 1e-3 decay 0.9,
    # early stopping on the validation set
    cfg = _compose("hko")
    assert cfg.name == "hko" and cfg.data.input_len == 5 and cfg.data.output_len == 15
    m = cfg.model
    assert (m.patch_size, list(m.hidden_channels), m.cell) == (2, [64, 64], "lstm")
    # the paper's model: none of the CPU default's departures (copy gate, lr 5e-3)
    assert m._target_.endswith("EncoderForecaster")
    assert not m.get("copy_gate", False) and not m.get("residual", False)
    assert cfg.get("scheduler") is None  # a constant learning rate
    assert m.input_kernel_size == m.state_kernel_size == 3
    assert cfg.loss.name == "bce"
    assert (cfg.optimizer.lr, cfg.optimizer.alpha) == (1e-3, 0.9)
    assert cfg.trainer.early_stopping.patience >= 1


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=lambda e: e or "default")
def test_experiment_builds_data_model_loss_and_optimizer(experiment, cheap_data):
    target = _compose(experiment).data.datasets._target_
    cfg = _compose(experiment, cheap_data.get(target, []))
    datasets = build_datasets(cfg.data)
    assert {"train", "val", "test"} <= set(datasets)
    inputs, targets = datasets["train"][0][:2]
    assert inputs.dtype == targets.dtype == torch.float32
    assert inputs.shape[0] == cfg.data.input_len
    assert targets.shape[0] == cfg.data.output_len
    assert 0 <= float(inputs.min()) and float(inputs.max()) <= 1

    model = build_model(cfg.model)
    optimizer = instantiate(cfg.optimizer)(params=model.parameters())
    assert isinstance(optimizer, torch.optim.Optimizer)
    loss_fn = build_loss(cfg.loss, datasets["train"])
    with torch.no_grad():
        logits = model(inputs[None], targets.shape[0])
    assert logits.shape == targets[None].shape
    loss = loss_fn(logits, targets[None])
    assert np.isfinite(float(loss))


@pytest.mark.slow
@pytest.mark.parametrize("experiment", TASK_EXPERIMENTS)
def test_task_experiment_builds_data_model_and_task(experiment, cheap_data):
    # the other training tasks (issue 14): one training loss and one validation pass
    from nowcast.training.tasks import build_task

    target = _compose(experiment).data.datasets._target_
    cfg = _compose(experiment, cheap_data.get(target, []))
    datasets = build_datasets(cfg.data)
    model = build_model(cfg.model)
    instantiate(cfg.optimizer)(params=model.parameters())
    plain = OmegaConf.to_container(cfg, resolve=True)
    task = build_task(plain, datasets, torch.device("cpu"), None)
    items = [datasets["train"][i] for i in range(2)]
    batch = [torch.stack([item[k] for item in items]) for k in range(2)]
    loss, n = task.training_loss(model, batch)
    assert n == 2 and np.isfinite(float(loss.detach()))
    loader = torch.utils.data.DataLoader(datasets["val"], batch_size=2)
    metrics = task.evaluate(model, loader, 1)
    assert task.monitor in metrics and metrics["n"] == 2
