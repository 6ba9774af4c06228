"""Fixtures of the forecast tests: small raw radar archives and their preprocessing."""

from __future__ import annotations

from pathlib import Path

import pytest
from forecast_helpers import REAL, moving_blob

from nowcast.data.radar import write_radar


@pytest.fixture(scope="session")
def raw_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One day (240 frames) of 40x40 raw dBZ frames at 6 minutes, as radar netCDF."""
    return write_radar(moving_blob(), tmp_path_factory.mktemp("raw") / "raw.nc")


@pytest.fixture(scope="session")
def fmi_files() -> list[Path]:
    """The three real FMI frames of tests/data/real (14:45, 14:50, 14:55 UTC)."""
    return sorted((REAL / "fmi").glob("*.pgm.gz"))
