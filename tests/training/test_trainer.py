"""The training loop on a tiny real configuration (real data factory, model, configs)."""

from __future__ import annotations

import csv
import math
import sys
import types

import pytest
import torch
from training_helpers import compose_config, tiny_overrides

from nowcast.training import Callbacks, NonFiniteLossError, load_forecaster, train
from nowcast.training.checkpoint import load_checkpoint


def _rows(run_dir, split="train"):
    with open(run_dir / "metrics.csv") as f:
        return [r for r in csv.DictReader(f) if r["split"] == split]


def _weights(path):
    return load_checkpoint(path)["model"]


@pytest.mark.slow
def test_seeded_runs_repeat_and_checkpoint_loads_for_inference(
    tiny_radar_file, tmp_path
):
    cfg = compose_config(tiny_overrides(tiny_radar_file, "trainer.max_steps=4"))
    m1 = train(cfg, run_dir=tmp_path / "a")
    m2 = train(cfg, run_dir=tmp_path / "b")
    losses = [float(r["loss"]) for r in _rows(tmp_path / "a")]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert losses == [float(r["loss"]) for r in _rows(tmp_path / "b")]
    assert m1["val_loss"] == m2["val_loss"] and m1["step"] == 4
    # 4 train batches of 4 = one epoch; validated at its end, then the run stops
    assert m1["epoch"] == 1 and len(_rows(tmp_path / "a", "val")) == 1
    for name in ("last.pt", "best.pt"):
        assert (tmp_path / "a" / "checkpoints" / name).is_file()
    ck = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")
    assert ck["config"]["data"]["root"] == str(
        tiny_radar_file
    )  # test split rebuildable
    assert ck["step"] == 4 and ck["metrics"]["val_loss"] == pytest.approx(
        m1["val_loss"]
    )
    model = load_forecaster(tmp_path / "a" / "checkpoints" / "last.pt")
    assert not model.training
    forecast = model.predict(torch.rand(2, 2, 1, 16, 16), 3)
    assert forecast.shape == (2, 3, 1, 16, 16)
    assert forecast.min() >= 0 and forecast.max() <= 1
    # an already-read checkpoint rebuilds the same model (no second read)
    again = load_forecaster(ck)
    for (k, v), (k2, v2) in zip(
        model.state_dict().items(), again.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(v, v2)


@pytest.mark.slow
def test_crash_and_resume_matches_uninterrupted(tiny_radar_file, tmp_path):
    # 3 batches per epoch, 8 steps: crosses two epoch ends (with validations);
    # last.pt every 2 steps, so a crash after step 5 resumes from step 4.
    extra = (
        "trainer.max_steps=8",
        "trainer.limit_train_batches=3",
        "trainer.checkpoint_every_n_steps=2",
    )
    cfg = compose_config(tiny_overrides(tiny_radar_file, *extra))
    full = train(cfg, run_dir=tmp_path / "full")

    def crash(step, model):
        if step == 5:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        train(
            cfg,
            run_dir=tmp_path / "runs" / "first",
            callbacks=Callbacks(on_step_end=crash),
        )
    assert (
        load_checkpoint(tmp_path / "runs" / "first" / "checkpoints" / "last.pt")["step"]
        == 4
    )
    resume_cfg = compose_config(
        tiny_overrides(tiny_radar_file, *extra, "trainer.resume=true")
    )
    resumed = train(resume_cfg, run_dir=tmp_path / "runs" / "second")
    assert resumed["step"] == full["step"] == 8
    assert resumed["epoch"] == full["epoch"]
    a = _weights(tmp_path / "full" / "checkpoints" / "last.pt")
    b = _weights(tmp_path / "runs" / "second" / "checkpoints" / "last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the resumed run's metrics.csv holds the whole history: the interrupted run's
    # rows up to its checkpoint (step 4; its lost step 5 is dropped), then its own,
    # with the uninterrupted run's losses
    full_rows = _rows(tmp_path / "full")
    full_losses = {r["step"]: r["loss"] for r in full_rows}
    second = _rows(tmp_path / "runs" / "second")
    assert [r["step"] for r in second] == [r["step"] for r in full_rows]
    for r in second:
        assert r["loss"] == full_losses[r["step"]]
    assert resumed["val_loss"] == full["val_loss"]


def _nan_at_step_3(step, loss):
    return loss * float("nan") if step == 3 else loss


def test_nonfinite_loss_stops_or_skips(tiny_radar_file, tmp_path):
    extra = ("trainer.max_steps=4", "trainer.checkpoint_every_n_steps=1")
    cfg = compose_config(tiny_overrides(tiny_radar_file, *extra))
    with pytest.raises(NonFiniteLossError, match="non-finite loss .* at step 3"):
        train(
            cfg, run_dir=tmp_path / "stop", callbacks=Callbacks(on_loss=_nan_at_step_3)
        )
    ck = load_checkpoint(tmp_path / "stop" / "checkpoints" / "last.pt")
    assert ck["step"] == 2  # the last good step; nothing written after the NaN
    assert all(torch.isfinite(v).all() for v in ck["model"].values())

    cfg = compose_config(
        tiny_overrides(tiny_radar_file, *extra, "trainer.nonfinite=skip")
    )
    with pytest.warns(RuntimeWarning, match="skipping the step"):
        m = train(
            cfg, run_dir=tmp_path / "skip", callbacks=Callbacks(on_loss=_nan_at_step_3)
        )
    assert m["nonfinite_skips"] == 1 and m["step"] == 4 and math.isfinite(m["val_loss"])
    ck = load_checkpoint(tmp_path / "skip" / "checkpoints" / "last.pt")
    assert all(torch.isfinite(v).all() for v in ck["model"].values())
    assert [r["step"] for r in _rows(tmp_path / "skip")] == ["1", "2", "4"]


@pytest.mark.slow
def test_early_stopping_and_test_evaluation_hook(
    tiny_radar_file, tmp_path, monkeypatch
):
    # lr = 0: the validation loss never improves, so patience 1 stops at the second
    # validation (end of epoch 2 = step 8) although max_steps allows 20.
    calls = []
    fake = types.ModuleType("nowcast.evaluation.run")

    def run_test_evaluation(model, datasets, cfg, run_dir):
        calls.append((model.training, sorted(datasets), run_dir))
        return {"csi": 0.5, "note": "text is dropped"}

    fake.run_test_evaluation = run_test_evaluation
    monkeypatch.setitem(sys.modules, "nowcast.evaluation.run", fake)
    cfg = compose_config(
        tiny_overrides(
            tiny_radar_file,
            "trainer.max_steps=20",
            "trainer.max_epochs=10",
            "trainer.early_stopping.patience=1",
            "optimizer.lr=0.0",
            "~scheduler",  # the default's cosine would raise lr towards 1e-4
            "evaluate_after_training=true",
        )
    )
    m = train(cfg, run_dir=tmp_path)
    assert m["stopped_early"] == 1.0 and m["step"] == 8 and m["best_step"] == 4
    assert calls == [(False, ["test", "train", "val"], tmp_path)]
    assert m["test_csi"] == 0.5 and "test_note" not in m


def test_missing_hko_archive_explains_what_to_do(tmp_path):
    cfg = compose_config(["+experiment=hko", f"data.root={tmp_path / 'none.nc'}"])
    with pytest.raises(FileNotFoundError) as err:
        train(cfg, run_dir=tmp_path / "run")
    msg = str(err.value)
    assert f"data.root={tmp_path / 'none.nc'} does not exist" in msg
    assert "scripts/preprocess.py preprocess=hko" in msg
    assert "scripts/import_radar.py preset=hko7" in msg
    assert "python scripts/train.py" in msg
    assert not (tmp_path / "run").exists()  # no empty run directory left behind
