"""Every script's command line: bad input in one paragraph, exit status 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nowcast.cli import report_bad_input

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("script", "args", "expected"),
    [
        (
            "preprocess.py",
            ["input=/no/such.nc", "output=x.nc"],
            "/no/such.nc does not exist",
        ),
        (
            "import_radar.py",
            ["preset=fmi", "input=/no/such/dir", "output=x.nc"],
            "/no/such/dir",
        ),
        (
            "forecast.py",
            ["forecaster=rover1", "input=/no/dir", "output=x.nc"],
            "preprocess=",
        ),
    ],
)
def test_scripts_report_bad_input_in_one_paragraph(tmp_path, script, args, expected):
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / script),
            *args,
            f"hydra.run.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    first, hint = proc.stderr.strip().splitlines()[-2:]
    assert first.startswith("error: ") and expected in first
    assert hint == "(set HYDRA_FULL_ERROR=1 for the traceback)"


def test_report_bad_input_prints_exits_and_reraises_on_request(monkeypatch, capsys):
    calls = []
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as stop:
        report_bad_input(OSError("file x.nc\nis truncated"), lambda: calls.append(1))
    assert stop.value.code == 1 and calls == [1]
    assert "error: file x.nc is truncated\n" in capsys.readouterr().err
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(OSError, match="truncated"):
        report_bad_input(OSError("truncated"))
