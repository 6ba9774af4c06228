"""Smoke tests of benchmarks/ingest.py (tiny sizes; never a timing assertion)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _ingest():
    """benchmarks/ingest.py as the module ``ingest`` (worker processes import it by
    that name: spawn passes sys.path on)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module("ingest")


def test_generated_archive_imports_as_hko7(tmp_path):
    ingest = _ingest()
    from nowcast.data.importers import import_archive
    from nowcast.data.radar import open_radar

    paths = ingest.make_archive(tmp_path / "png", 3)  # 480x480: the preset's shape
    assert [p.name for p in paths] == [
        "RAD130601000000.png",
        "RAD130601000600.png",
        "RAD130601001200.png",
    ]
    (out,) = import_archive(paths, ingest.PRESET, tmp_path / "raw.nc", progress=False)
    ds = open_radar(out).load()
    steps = np.diff(ds["time"].values).astype("timedelta64[m]").astype(int)
    assert steps.tolist() == [6, 6]
    dbz = ds[ds.attrs["intensity_variable"]].values
    # HKO-7 grey p -> dBZ = p * 70 / 255 - 10: dry pixels (p = 0) are -10 dBZ, and
    # some pixels are wet but none exceeds 60 dBZ (p = 255)
    assert np.isclose(dbz.min(), -10.0) and -10 < dbz.max() <= 60
    assert 0.01 < float((dbz > -10).mean()) < 0.6


def test_ratios():
    ingest = _ingest()
    rows = [
        {"stage": "decode", "workers": 1, "fps": 400.0},
        {"stage": "import", "workers": 1, "fps": 100.0},
        {"stage": "decode", "workers": 2, "fps": 800.0},
        {"stage": "import", "workers": 2, "fps": 150.0},
    ]
    ingest.add_ratios(rows)
    assert [r["vs_decode"] for r in rows] == [1.0, 0.25, 1.0, 0.1875]
    assert [r["vs_1_worker"] for r in rows] == [1.0, 1.0, 2.0, 1.5]


@pytest.mark.slow
def test_ingest_tiny(tmp_path):
    ingest = _ingest()
    rows = ingest.main(["--tiny", "--workers", "1", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "ingest_cpu.json").read_text())
    assert data["results"] == json.loads(json.dumps(rows))
    assert data["machine"]["frames"] == 48
    assert {r["stage"] for r in rows} == {"decode", "import", "preprocess"}
    for r in rows:
        assert r["workers"] == 1 and r["end_to_end_fps"] > 0
    assert next(r for r in rows if r["stage"] == "decode")["vs_decode"] == 1.0
