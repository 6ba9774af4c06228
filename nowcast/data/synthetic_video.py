"""Synthetic action videos: textured shapes whose class is their motion (no download).

The embedded stand-in for KTH (issue 14): every clip shows one textured ellipse on a
noisy background, and its class is *how it moves*, never what it looks like (shape,
size, texture, brightness and starting point are random for every clip):

========================  ===============================================
class                     motion (pixels per frame, ``+x`` right, ``+y`` down)
========================  ===============================================
``walk_left``             constant velocity, ``speed_slow`` to the left
``walk_right``            constant velocity, ``speed_slow`` to the right
``run_left``              constant velocity, ``speed_fast`` to the left
``run_right``             constant velocity, ``speed_fast`` to the right
``wave_horizontal``       sine oscillation about the start along ``x``
``wave_vertical``         sine oscillation about the start along ``y``
========================  ===============================================

A classifier therefore has to use the sequence (direction, speed, reversal), as on KTH
where "jogging", "running" and "walking" differ by speed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "MOTION_CLASSES",
    "SyntheticVideoDataset",
    "make_motion_clip",
    "synthetic_video_datasets",
]

MOTION_CLASSES = (
    "walk_left",
    "walk_right",
    "run_left",
    "run_right",
    "wave_horizontal",
    "wave_vertical",
)
"""Class names, in label order."""


def _trajectory(
    label: int, n_frames: int, speed_slow: float, speed_fast: float, phase: float
) -> np.ndarray:
    """Offsets ``(n_frames, 2)`` (dx, dy, pixels) from the start for class ``label``."""
    t = np.arange(n_frames, dtype=np.float64)
    offsets = np.zeros((n_frames, 2))
    name = MOTION_CLASSES[label]
    if name.startswith(("walk", "run")):
        speed = speed_slow if name.startswith("walk") else speed_fast
        offsets[:, 0] = (-1.0 if name.endswith("left") else 1.0) * speed * t
    else:  # waving: amplitude 2.5 x speed_fast, period 6 frames
        swing = 2.5 * speed_fast * np.sin(2 * math.pi * t / 6.0 + phase)
        offsets[:, 0 if name.endswith("horizontal") else 1] = swing
    return offsets


def make_motion_clip(
    label: int,
    rng: np.random.Generator,
    n_frames: int = 10,
    size: tuple[int, int] = (32, 32),
    speed_slow: float = 1.0,
    speed_fast: float = 2.5,
) -> np.ndarray:
    """One clip of class ``label``: ``(n_frames, H, W)`` float32 grey levels in [0, 1].

    Parameters
    ----------
    label : int
        Index into :data:`MOTION_CLASSES`.
    rng : numpy.random.Generator
        Source of the shape, texture, brightness, start and noise.
    n_frames : int
        Frames per clip.
    size : (int, int)
        ``(H, W)`` in pixels.
    speed_slow, speed_fast : float
        Speeds of the walking and running classes, pixels per frame.
    """
    if not 0 <= label < len(MOTION_CLASSES):
        raise ValueError(f"label must be in 0..{len(MOTION_CLASSES) - 1}, got {label}")
    height, width = size
    offsets = _trajectory(
        label, n_frames, speed_slow, speed_fast, rng.uniform(0, 2 * math.pi)
    )
    radius = rng.uniform(0.12, 0.2, size=2) * min(height, width)  # (ry, rx)
    span_x = offsets[:, 0].max() - offsets[:, 0].min()
    span_y = offsets[:, 1].max() - offsets[:, 1].min()
    # a start that keeps the shape's centre inside the frame for the whole clip
    x0 = rng.uniform(radius[1], max(radius[1], width - radius[1] - span_x))
    y0 = rng.uniform(radius[0], max(radius[0], height - radius[0] - span_y))
    x0 -= offsets[:, 0].min()
    y0 -= offsets[:, 1].min()
    texture_freq = rng.uniform(0.5, 1.5, size=2)
    brightness = rng.uniform(0.5, 1.0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    frames = np.empty((n_frames, height, width), dtype=np.float32)
    for t in range(n_frames):
        cx, cy = x0 + offsets[t, 0], y0 + offsets[t, 1]
        inside = ((xx - cx) / radius[1]) ** 2 + ((yy - cy) / radius[0]) ** 2 <= 1.0
        # a texture that moves with the shape (stripes in its own frame)
        stripes = 0.5 + 0.5 * np.sin(
            texture_freq[0] * (xx - cx) + texture_freq[1] * (yy - cy)
        )
        frame = rng.uniform(0.0, 0.15, size=(height, width))  # background noise
        frame[inside] = brightness * (0.6 + 0.4 * stripes[inside])
        frames[t] = frame
    return frames


class SyntheticVideoDataset(Dataset):
    """Generated motion clips, ``(clip (T, 1, H, W) float32 in [0, 1], label int64)``.

    Parameters
    ----------
    n_clips : int
        Number of clips (classes balanced: clip ``i`` has label ``i % n_classes``).
    seed : int
        Seed of the generator (the splits use different seeds).
    n_frames, size, speed_slow, speed_fast
        As for :func:`make_motion_clip`.
    """

    classes = MOTION_CLASSES

    def __init__(
        self,
        n_clips: int,
        seed: int = 0,
        n_frames: int = 10,
        size: tuple[int, int] = (32, 32),
        speed_slow: float = 1.0,
        speed_fast: float = 2.5,
    ) -> None:
        if n_clips < 1:
            raise ValueError(f"n_clips must be >= 1, got {n_clips}")
        rng = np.random.default_rng(seed)
        n_classes = len(MOTION_CLASSES)
        self.labels = torch.arange(n_clips) % n_classes
        clips = [
            make_motion_clip(
                int(lab), rng, n_frames, tuple(size), speed_slow, speed_fast
            )
            for lab in self.labels
        ]
        self.clips = torch.from_numpy(np.stack(clips)[:, :, None])  # (N, T, 1, H, W)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.clips[index], self.labels[index]


def synthetic_video_datasets(
    n_train: int = 600,
    n_val: int = 120,
    n_test: int = 240,
    seed: int = 0,
    n_frames: int = 10,
    size: tuple[int, int] = (32, 32),
    speed_slow: float = 1.0,
    speed_fast: float = 2.5,
) -> dict[str, SyntheticVideoDataset]:
    """The three splits of the synthetic video set, each from its own seed.

    Returns
    -------
    dict
        ``{"train", "val", "test"}`` :class:`SyntheticVideoDataset` (seeds ``seed``,
        ``seed + 1``, ``seed + 2``).
    """
    common = dict(
        n_frames=n_frames,
        size=tuple(size),
        speed_slow=speed_slow,
        speed_fast=speed_fast,
    )
    counts = {"train": n_train, "val": n_val, "test": n_test}
    return {
        split: SyntheticVideoDataset(n, seed=seed + k, **common)
        for k, (split, n) in enumerate(counts.items())
    }
