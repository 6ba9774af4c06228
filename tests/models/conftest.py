"""Shared fixtures for the model tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    """Run the model tests on one intra-op thread (restored afterwards).

    The tests use tiny tensors, where synchronising two threads costs more than it
    saves, and on a loaded 2-core machine the spinning threads made each step ~30x
    slower (measured: 17 ms vs 0.1-1 s for a 7-step 2-layer stack).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
