"""Windows/s served by RadarWindowDataset + DataLoader from a processed netCDF file.

Run: ``python benchmarks/data_loading.py`` (``--tiny`` for the smoke test).
Compares reading windows from disk (netCDF4, per-worker handles) with 0 and 2 workers,
and from memory, at the paper's radar size (100x100, 5 + 15 frames, batch 16).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_info, write_results  # noqa: E402

from nowcast.data.dataset import radar_datasets  # noqa: E402
from nowcast.data.radar import make_radar_dataset, write_radar  # noqa: E402


def make_processed(path: Path, n_days: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    step = np.timedelta64(6, "m")
    times = np.concatenate(
        [
            np.datetime64("2015-06-01")
            + np.timedelta64(2 * d, "D")
            + np.arange(240) * step
            for d in range(n_days)
        ]
    )
    values = rng.random((times.size, size, size), dtype=np.float32)
    ds = make_radar_dataset(values, times, "1")
    ds["noise_mask"] = (("y", "x"), np.zeros((size, size), np.uint8))
    ds.attrs.update(zmin=-10.0, zmax=60.0, source_units="dBZ")
    return write_radar(ds, path, allow_nan=False)


def windows_per_second(dataset, batch_size: int, workers: int, n_batches: int) -> float:
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=False,
    )
    it = iter(loader)
    next(it)  # start-up (worker spawn, file open) is not throughput
    t0 = time.perf_counter()
    n = 0
    for _, (x, _) in zip(range(n_batches), it, strict=False):
        n += x.shape[0]
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="smoke-test size")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    n_days, size, n_batches = (1, 16, 3) if args.tiny else (3, 100, 60)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = make_processed(Path(tmp) / "processed.nc", n_days, size)
        for in_memory in (False, True):
            train = radar_datasets(path, 5, 15, in_memory=in_memory)["train"]
            for workers in (0, 2):
                rate = windows_per_second(train, 16, workers, n_batches)
                rows.append(
                    {
                        "source": "memory" if in_memory else "netCDF (disk)",
                        "workers": workers,
                        "frame": f"{size}x{size}",
                        "windows_per_s": rate,
                    }
                )
    write_results("data_loading", machine_info("cpu"), rows, args.out)
    return rows


if __name__ == "__main__":
    main()
