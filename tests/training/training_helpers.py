"""Helpers of the training tests: a tiny processed radar archive and config composer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from support import processed_dataset, tiny_run_overrides

from nowcast.data.radar import write_radar

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")


def write_fake_processed(
    path: Path, size: int = 16, n_frames: int = 240, seed: int = 0
) -> Path:
    """A processed-radar file like ``scripts/preprocess.py`` writes, with moving blobs.

    One day of 6-minute frames (240 = six 40-frame blocks, split 4/1/1 by
    ``radar_datasets``), grey levels in [0, 1], a ``noise_mask`` (y, x) with the
    first column flagged as noise, and ``zmin`` / ``zmax`` attributes (HKO-7 range).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    t = np.arange(n_frames, dtype=np.float32)[:, None, None]
    cy = size / 2 + size / 4 * np.sin(t / 7.0)
    cx = (t * 0.8) % size
    frames = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 6) ** 2))
    frames = np.clip(frames + 0.02 * rng.random(frames.shape), 0, 1).astype(np.float32)
    return write_radar(processed_dataset(frames, noise_first_column=True), path)


def compose_config(overrides: list[str], config_name: str = "train"):
    """Compose ``configs/<config_name>.yaml`` with hydra's compose API."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


def tiny_overrides(radar_file: Path, *extra: str) -> list[str]:
    """A seconds-long CPU training on the tiny archive (real data and model code)."""
    return [
        *tiny_run_overrides(radar_file),
        "trainer.max_steps=6",
        "trainer.limit_train_batches=4",
        "trainer.limit_val_batches=1",
        "trainer.max_epochs=3",
        "logging.progress_bar=false",
        "logging.print_summary=false",
        "logging.log_every_n_steps=1",
        "evaluate_after_training=false",
        *extra,
    ]
