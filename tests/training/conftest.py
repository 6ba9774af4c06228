"""Fixtures of the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_helpers import write_fake_processed


@pytest.fixture(scope="session")
def tiny_radar_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16x16, 240-frame processed radar file (48 / 12 / 12 windows of 2 + 3)."""
    return write_fake_processed(tmp_path_factory.mktemp("radar") / "processed.nc")
