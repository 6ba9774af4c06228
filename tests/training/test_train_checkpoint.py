"""Checkpoints (atomic writes, errors, NaN refusal) and the resumable sharded sampler."""

from __future__ import annotations

import os

import pytest
import torch

from nowcast.training.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    unwrap_model,
)
from nowcast.training.distributed import ShardedSampler


def _state(model: torch.nn.Module) -> dict:
    return {
        "model": model.state_dict(),
        "optimizer": {},
        "config": {"model": {"_target_": "torch.nn.Linear"}},
        "step": 3,
        "epoch": 1,
        "metrics": {"val_loss": 0.5},
    }


def test_save_load_round_trip_leaves_no_temp_file(tmp_path):
    model = torch.nn.Linear(3, 2)
    path = save_checkpoint(_state(model), tmp_path / "ck" / "last.pt")
    assert sorted(os.listdir(path.parent)) == ["last.pt"]
    loaded = load_checkpoint(path)
    assert loaded["step"] == 3 and loaded["metrics"] == {"val_loss": 0.5}
    assert torch.equal(loaded["model"]["weight"], model.weight.detach())


def test_nan_model_is_never_written(tmp_path):
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.bias[0] = float("nan")
    with pytest.raises(ValueError, match=r"refusing to write .*bias.* NaN or inf"):
        save_checkpoint(_state(model), tmp_path / "last.pt")
    assert not any(tmp_path.iterdir())


def test_missing_corrupt_and_foreign_files_name_the_path(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match=f"checkpoint {missing} does not exist"):
        load_checkpoint(missing)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=f"checkpoint {corrupt} is corrupt"):
        load_checkpoint(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": {}}, foreign)
    with pytest.raises(ValueError, match=r"lacks keys \['optimizer', 'config'"):
        load_checkpoint(foreign)


def test_unwrap_and_rng_round_trip():
    inner = torch.nn.Linear(2, 2)
    wrapped = torch.nn.DataParallel(inner)
    assert unwrap_model(wrapped) is inner
    state = capture_rng_state()
    a = torch.rand(3)
    restore_rng_state(state)
    assert torch.equal(torch.rand(3), a)


def test_sharded_sampler_covers_shards_and_resumes():
    shards = [ShardedSampler(10, 2, r, shuffle=True, seed=5) for r in range(2)]
    for s in shards:
        s.set_epoch(3)
    a, b = (list(s) for s in shards)
    assert len(a) == len(b) == 5 and sorted(a + b) == list(range(10))
    # skipping k samples yields exactly the tail of the same epoch's order
    shards[0].set_epoch(3, skip=2)
    assert list(shards[0]) == a[2:] and len(shards[0]) == 3
    # another epoch, another order; same epoch, same order
    shards[0].set_epoch(4)
    assert list(shards[0]) != a
    # padding: 5 samples on 2 ranks -> 3 each, one repeated; no padding for validation
    assert [len(ShardedSampler(5, 2, r)) for r in range(2)] == [3, 3]
    val = [list(ShardedSampler(5, 2, r, shuffle=False, pad=False)) for r in range(2)]
    assert val == [[0, 2, 4], [1, 3]]
    capped = ShardedSampler(10, 1, 0, max_samples=4)
    assert len(list(capped)) == 4
    with pytest.raises(ValueError, match="empty data set"):
        ShardedSampler(0)
