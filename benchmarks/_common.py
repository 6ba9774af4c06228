"""Shared helpers of the benchmark scripts: machine facts, timing, JSON + markdown output."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch

RESULTS_DIR = Path(__file__).parent / "results"


def machine_info(device: str = "cpu") -> dict:
    """Facts needed to compare figures across machines."""
    info = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def best_time(fn: Callable[[], object], repeats: int = 3, sync: bool = False) -> float:
    """Minimum wall time of ``repeats`` calls of ``fn`` (seconds)."""
    times = []
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times)


def write_results(
    name: str, info: dict, rows: list[dict], out_dir: Path | None = None
) -> Path:
    """Write ``rows`` (list of flat dicts) as JSON and a markdown table; print the table."""
    out_dir = Path(out_dir or RESULTS_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = [
        f"### {name} ({info['date']}, {info['device']}, torch {info['torch']})",
        "",
        "| " + " | ".join(keys) + " |",
        "|" + "---|" * len(keys),
        *("| " + " | ".join(fmt(row.get(k, "")) for k in keys) + " |" for row in rows),
    ]
    table = "\n".join(lines)
    print(table)
    tag = "gpu" if info["device"].startswith("cuda") else "cpu"
    path = out_dir / f"{name}_{tag}.json"
    path.write_text(json.dumps({"machine": info, "results": rows}, indent=2))
    (out_dir / f"{name}_{tag}.md").write_text(table + "\n")
    return path
