"""Analytic moving rain fields for the baseline tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def blob_sequence(
    size: int = 64,
    n_frames: int = 5,
    velocity: tuple[float, float] = (1.5, -0.8),
    omega: float = 0.0,
    n_blobs: int = 10,
    seed: int = 0,
    amp: tuple[float, float] = (0.35, 0.8),
) -> torch.Tensor:
    """Sum of Gaussian blobs moving rigidly, shape (1, n_frames, 1, size, size).

    Blob centres translate by ``velocity`` = (u, v) pixels per frame (x right, y down)
    and rotate by ``omega`` radians per frame about the image centre; the field is
    evaluated analytically at every frame, so the true motion is known exactly.
    """
    rng = np.random.default_rng(seed)
    c = (size - 1) / 2
    cx, cy = (rng.uniform(0.25, 0.75, (2, n_blobs)) * size).astype(np.float64)
    sig = rng.uniform(0.04, 0.09, n_blobs) * size
    a = rng.uniform(*amp, n_blobs)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    frames = []
    for k in range(n_frames):
        ang = omega * k
        rx = c + np.cos(ang) * (cx - c) - np.sin(ang) * (cy - c) + velocity[0] * k
        ry = c + np.sin(ang) * (cx - c) + np.cos(ang) * (cy - c) + velocity[1] * k
        d2 = (x[..., None] - rx) ** 2 + (y[..., None] - ry) ** 2
        frames.append(np.clip((a * np.exp(-d2 / (2 * sig**2))).sum(-1), 0, 1))
    return torch.from_numpy(np.stack(frames)).float()[None, :, None]


@pytest.fixture
def blobs():
    """The :func:`blob_sequence` factory."""
    return blob_sequence
