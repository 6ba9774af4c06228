"""Import -> preprocess -> evaluate on archives made here, against hand-computed scores.

A rain-rate (mm/h) archive and a reflectivity (dBZ) archive with the same rain field go
through ``write_radar`` (the importers' output convention), ``preprocess_archive`` with
identity geometry (no crop, no disk filter, no resize, so every grey level is known),
``radar_datasets`` and ``score_dataset`` with persistence. The scores must equal what
the field gives by hand, in mm/h, with the pixels outside coverage left out.

The field (32 x 32, 2 days x 40 frames, 20-frame blocks = one 5 + 15 window each):

* input frames (0-4 of each block): rain ``R_A`` in rows 0-15, dry elsewhere;
* target frames (5-19): rain ``R_B`` in rows 8-23, dry elsewhere; rows 0-3 have no
  data (NaN) in the target frames.

Persistence forecasts the last input frame for every lead time, so at threshold
0.5 mm/h, per lead time and window: hits = rows 8-15 (256 pixels), misses = rows 16-23
(256), false alarms = rows 4-7 (128; rows 0-3 are unobserved, else 256).
CSI = 256 / (256 + 256 + 128) = 0.4 (it would be 1/3 if no-data pixels were scored as
dry).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from support import SAME_GEOMETRY

from nowcast.baselines.persistence import Persistence
from nowcast.data.dataset import radar_datasets
from nowcast.data.preprocess import preprocess_archive
from nowcast.data.radar import make_radar_dataset, write_radar
from nowcast.evaluation.run import score_dataset

SIZE, R_A, R_B = 32, 10.0, 20.0
ROWS = np.arange(SIZE)[:, None] * np.ones((1, SIZE))
INPUT = (ROWS < 16).astype(np.float64)  # rain mask of the input frames
TARGET = ((ROWS >= 8) & (ROWS < 24)).astype(np.float64)
OBSERVED = ROWS >= 4  # in the target frames
EVALUATION = {"bootstrap": {"n_resamples": 0}, "device": "cpu", "batch_size": 4}


def _archive(input_frame: np.ndarray, target_frame: np.ndarray, units: str):
    """2 days x 40 frames: per 20-frame block, 5 input frames then 15 targets."""
    block = np.concatenate(
        [np.repeat(input_frame[None], 5, 0), np.repeat(target_frame[None], 15, 0)]
    )
    block[5:, ~OBSERVED] = np.nan
    values = np.tile(block, (4, 1, 1)).astype(np.float32)
    step = np.timedelta64(6, "m")
    times = np.concatenate(
        [np.datetime64(f"2020-01-0{d}T00:00") + np.arange(40) * step for d in (1, 2)]
    )
    return make_radar_dataset(values, times, units)


def _hand_mse(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean squared rain-rate error over the observed pixels (same for every lead)."""
    return float(np.mean((pred[OBSERVED] - truth[OBSERVED]) ** 2))


def _persistence_scores(tmp_path, raw, zr=None, **preprocess):
    path = write_radar(raw, tmp_path / "raw.nc")
    out = preprocess_archive(
        path, tmp_path / "processed.nc", noise_mask=False, **SAME_GEOMETRY, **preprocess
    )
    zr_a, zr_b = zr or (None, None)
    test = radar_datasets(
        out, 5, 15, block_len=20, counts=(0, 0, 1), zr_a=zr_a, zr_b=zr_b
    )["test"]
    assert len(test) == 4 and test.has_coverage
    scores = score_dataset({"Persistence": Persistence()}, test, EVALUATION)
    return scores["Persistence"], test


def test_rain_rate_archive_scores_in_mm_per_hour(tmp_path):
    raw = _archive(R_A * INPUT, R_B * TARGET, "mm/h")
    # a config's Z-R relation must not touch a rain-rate archive
    res, test = _persistence_scores(
        tmp_path, raw, zr=(58.53, 1.56), zmin=0.0, zmax=50.0
    )
    assert test.scale.describe().startswith("grey P -> R (mm/h) = 50 P")
    assert res["csi@0.5"] == pytest.approx(256 / (256 + 256 + 128), rel=1e-6)
    # hits err 10, false alarms 10, misses 20 mm/h:
    # (256 * 100 + 128 * 100 + 256 * 400) / 896 observed pixels = 157.142857
    expected = (256 * 100 + 128 * 100 + 256 * 400) / 896
    assert _hand_mse(R_A * INPUT, R_B * TARGET) == pytest.approx(expected)
    assert res["rainfall_mse"] == pytest.approx(expected, rel=1e-5)


def test_reflectivity_archive_scores_through_its_recorded_zr(tmp_path):
    # Marshall-Palmer Z = 200 R^1.6 recorded at preprocessing: dBZ = 10 log10 200 +
    # 16 log10 R; the dry -10 dBZ (grey 0) is R0 = 10 ** ((-10 - 23.0103) / 16)
    a, b = 200.0, 1.6

    def dbz(r: float) -> float:
        return 10 * math.log10(a) + 10 * b * math.log10(r)

    r0 = 10 ** ((-10.0 - 10 * math.log10(a)) / (10 * b))
    inp = np.where(INPUT > 0, dbz(R_A), -10.0)
    tgt = np.where(TARGET > 0, dbz(R_B), -10.0)
    raw = _archive(inp, tgt, "dBZ")
    # the data config's HKO-7 relation is overridden by the file's own
    res, test = _persistence_scores(
        tmp_path, raw, zr=(58.53, 1.56), zmin=-10.0, zmax=60.0, zr_a=a, zr_b=b
    )
    assert (test.scale.zr_a, test.scale.zr_b) == (a, b)
    assert res["csi@0.5"] == pytest.approx(0.4, rel=1e-6)
    rain_in = np.where(INPUT > 0, R_A, r0)
    rain_tgt = np.where(TARGET > 0, R_B, r0)
    expected = (
        256 * (R_A - R_B) ** 2 + 128 * (R_A - r0) ** 2 + 256 * (r0 - R_B) ** 2
    ) / 896
    assert _hand_mse(rain_in, rain_tgt) == pytest.approx(expected)
    assert res["rainfall_mse"] == pytest.approx(expected, rel=1e-4)
