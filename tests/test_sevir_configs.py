"""The SEVIR configs: experiment (VIL thresholds), preprocessing and the date split.

configs/experiment/sevir.yaml, configs/data/sevir.yaml, configs/preprocess/sevir.yaml,
run end to end on a tiny synthetic VIL archive (3 events of 49 frames, 8x8).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).parent / "training"))
from support import load_script  # noqa: E402
from training_helpers import compose_config  # noqa: E402

from nowcast.data.importers import sevir_vil_to_kgm2  # noqa: E402
from nowcast.data.importers.sevir import SEVIR_THRESHOLDS  # noqa: E402
from nowcast.data.radar import make_radar_dataset, write_radar  # noqa: E402
from nowcast.training.schema import validate_config  # noqa: E402
from nowcast.training.trainer import build_datasets  # noqa: E402


def test_sevir_experiment_scores_at_the_vil_thresholds_in_kg_m2():
    cfg = compose_config(["+experiment=sevir"])
    plain = OmegaConf.to_container(cfg, resolve=True)
    validate_config(plain)
    expected = sevir_vil_to_kgm2(np.array(SEVIR_THRESHOLDS))  # bytes 16 .. 219
    assert plain["evaluation"]["thresholds"] == plain["data"]["thresholds"]
    np.testing.assert_allclose(plain["evaluation"]["thresholds"], expected, atol=1e-4)
    assert plain["data"]["units"] == "kg m-2"
    assert (plain["data"]["input_len"], plain["data"]["output_len"]) == (13, 12)
    assert plain["data"]["datasets"]["split_dates"] == {
        "train_end": "2019-01-01",
        "val_end": "2019-06-01",
        "test_end": "2020-01-01",
    }
    # byte 255 decodes to the preprocessing's zmax
    assert float(sevir_vil_to_kgm2(255)) == pytest.approx(plain["data"]["zmax"], 1e-5)


def _vil_archive(path: Path) -> Path:
    """Three 49-frame events (kg m-2): frame k of the archive holds k / 10 kg m-2.

    One before 2019-01-01 (train), one in March 2019 (val), one from 2019-07-01 23:00
    crossing midnight (test: a per-day block split would cut it to pieces).
    """
    starts = ["2018-12-30T10:00", "2019-03-01T10:00", "2019-07-01T23:00"]
    step = np.timedelta64(5, "m")
    times = np.concatenate([np.datetime64(s) + np.arange(49) * step for s in starts])
    values = np.broadcast_to(
        (np.arange(times.size, dtype=np.float32) / 10)[:, None, None], (147, 8, 8)
    ).copy()
    raw = make_radar_dataset(values, times, "kg m-2")
    raw["event_id"] = (("time",), np.repeat(np.array(["S1", "S2", "S3"]), 49))
    return write_radar(raw, path)


def _script(name: str):
    return load_script(f"scripts/{name}.py")


def test_sevir_preprocess_and_date_split_end_to_end(tmp_path):
    raw = _vil_archive(tmp_path / "raw.nc")
    out = tmp_path / "processed.nc"
    pre = compose_config(
        ["preprocess=sevir", f"input={raw}", f"output={out}", "progress=false"],
        config_name="preprocess",
    )
    _script("preprocess").run(pre)
    cfg = compose_config(["+experiment=sevir", f"data.root={out}"])
    sets = build_datasets(cfg.data)
    # 49-frame events, 25-frame windows (13 + 12), stride 1: 25 windows each
    assert {k: len(v) for k, v in sets.items()} == {"train": 25, "val": 25, "test": 25}
    assert sets["test"].starts.tolist() == list(range(98, 123))
    inputs, targets = sets["val"][0][:2]  # frame 49: 4.9 kg m-2 over zmax
    assert inputs.shape == (13, 1, 8, 8) and targets.shape == (12, 1, 8, 8)
    assert float(inputs[0, 0, 0, 0]) == pytest.approx(
        4.9 / float(sevir_vil_to_kgm2(255)), rel=1e-4
    )
    assert sets["val"].source_units == "kg m-2"


def test_evaluate_script_takes_the_data_thresholds_unless_given():
    pick = _script("evaluate")._thresholds_in_data_units
    sevir = compose_config(["data=sevir"], config_name="evaluate").data
    hko = compose_config(["data=hko"], config_name="evaluate").data
    default = {"thresholds": [0.5, 2, 5, 10, 30]}  # configs/evaluation/default.yaml
    assert pick(dict(default), sevir)["thresholds"] == list(sevir.thresholds)
    assert pick(dict(default), hko) == default  # no data thresholds: mm/h defaults
    given = {"thresholds": [1.0, 10.0]}  # evaluation.thresholds=[1,10] on the CLI
    assert pick(dict(given), sevir) == given
