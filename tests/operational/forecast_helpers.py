"""Helpers of the forecast tests: small raw radar archives."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nowcast.data.radar import make_radar_dataset

REAL = Path(__file__).resolve().parents[1] / "data" / "real"


def moving_blob(
    n_frames: int = 240, size: int = 40, minutes: int = 6, start: str = "2015-06-01"
):
    """Raw dBZ frames (T, size, size) of a Gaussian echo moving one pixel per frame
    along +x, on a 6-minute (default) cadence from ``start`` 00:00."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    t = np.arange(n_frames, dtype=np.float32)[:, None, None]
    cx = (size / 4 + t) % size
    dbz = 50.0 * np.exp(-((yy - size / 2) ** 2 + (xx - cx) ** 2) / (2 * 5.0**2)) - 5.0
    times = np.datetime64(f"{start}T00:00") + np.arange(n_frames) * np.timedelta64(
        minutes, "m"
    )
    return make_radar_dataset(dbz.astype(np.float32), times, units="dBZ")
