"""Ingest speed: decoding, importing and preprocessing HKO-sized PNG frames, 1 and 2 workers.

Run: ``python benchmarks/ingest.py`` (``--frames 2000``, ``--workers 1,2``, ``--tiny``
for the smoke test, ``--out DIR``).

An archive of ``--frames`` HKO-7-like frames is generated first (480x480 8-bit grey PNG,
``RAD%y%m%d%H%M%S.png`` every 6 minutes: a drifting rain field, about 15 % of the
pixels wet, zero outside the 240-pixel radar circle, as HKO-7 frames look). Then, for
each worker count, three stages are timed:

* ``decode``: reading and decoding every PNG to an array, nothing else (the ceiling
  of any importer);
* ``import``: :func:`nowcast.data.importers.import_archive` with the HKO-7 preset to
  one netCDF file, decoding on ``workers`` processes;
* ``preprocess``: :func:`nowcast.data.preprocess.preprocess_archive` with the paper's
  parameters (``configs/preprocess/hko.yaml``: noise mask fitted on the training
  blocks, crop 330, disk filter 10, resize 100) from the imported file.

(Archives shorter than a day, ``--tiny``, fit the mask on all frames instead.)
Start-up excluded: after a warm-up run on 8 frames (imports, first-call caches), each
stage runs on the whole archive and on its first quarter, and
the rate is ``(N - N/4) / (t_N - t_{N/4})``, the marginal frames per second once
pools are started, modules imported, files opened and the K-Means clustering done
(those fixed costs are reported apart as ``startup_s``). ``end_to_end_fps`` is
``N / t_N``. ``cpu_fps`` is the same marginal rate per CPU-second of this process
and its workers (frames per core-second: the figure to trust on a shared, loaded
machine, where wall-clock rates depend on what else runs). Ratios: each stage against ``decode`` at the same worker count, and each
worker count against 1 worker.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_info, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SIZE = 480  # HKO-7 frames: 480 x 480 pixels, 8-bit grey
STEP = np.timedelta64(6, "m")


def make_archive(folder: Path, n: int, size: int = SIZE, seed: int = 0) -> list[Path]:
    """Write ``n`` HKO-7-like PNG frames into ``folder``; return their paths (time order).

    A smooth random field (Gaussian-filtered noise, 15-pixel scale) drifting 3 pixels
    per frame is turned into rain where it exceeds 0.8 of its standard deviation
    (grey rising 120 per standard deviation, plus 2 grey levels of noise), clipped to
    0..255 and set to 0 outside the radar circle.
    """
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, (size, 2 * size)).astype(np.float32)
    field = cv2.GaussianBlur(noise, (0, 0), 15)
    field = (field - field.mean()) / field.std()
    yy, xx = np.mgrid[:size, :size]
    centre = (size - 1) / 2
    circle = (yy - centre) ** 2 + (xx - centre) ** 2 <= (size / 2) ** 2
    t0 = np.datetime64("2013-06-01T00:00")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for t in range(n):
        shift = (3 * t) % size
        f = field[:, shift : shift + size]
        wet = f > 0.8
        grey = np.clip((f - 0.8) * 120 + rng.normal(0, 2, f.shape) * wet, 0, 255)
        grey = np.where(circle & wet, grey, 0).round().astype(np.uint8)
        stamp = (t0 + t * STEP).astype(object).strftime("%y%m%d%H%M%S")
        path = folder / f"RAD{stamp}.png"
        cv2.imwrite(str(path), grey)
        paths.append(path)
    return paths


def decode_batch(paths: list[str]) -> int:
    """Decode PNG files with Pillow (as the importer does); return the sum of their
    first pixels (a result that needs every decode)."""
    from PIL import Image

    total = 0
    for p in paths:
        with Image.open(p) as im:
            total += int(np.asarray(im)[0, 0])
    return total


def _decode(paths: list[Path], workers: int, out: Path) -> None:
    from nowcast.data.parallel import batches, map_ordered

    items = list(batches([str(p) for p in paths], 50))
    for _ in map_ordered(decode_batch, items, workers=workers, progress=False):
        pass


def _import(paths: list[Path], workers: int, out: Path) -> None:
    from nowcast.data.importers import import_archive

    import_archive(paths, PRESET, out / "raw.nc", progress=False, workers=workers)


def _hko_params() -> dict:
    import yaml

    return yaml.safe_load((REPO / "configs" / "preprocess" / "hko.yaml").read_text())


#: The importer preset of the generated frames (HKO-7 PNG naming and scale).
PRESET = "hko7"

#: Frames of one day at 6 minutes: the fewest that hold the paper's 4 + 1 + 1 blocks of
#: 40 frames, so that the noise mask can be fitted on the training blocks.
DAY = 240


def _preprocess(raw: Path, workers: int, out: Path, n: int) -> None:
    from nowcast.data.preprocess import preprocess_archive

    preprocess_archive(
        raw,
        out / "processed.nc",
        fit_on="train" if n >= DAY else "all",  # "all" only for --tiny archives
        progress=False,
        workers=workers,
        **_hko_params(),
    )


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _timed(fn, *args) -> tuple[float, float]:
    """Wall and CPU seconds of ``fn(*args)`` (CPU: this process and its workers)."""
    c0, t0 = _cpu_seconds(), time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0, _cpu_seconds() - c0


def measure(paths: list[Path], workers: int, work: Path) -> list[dict]:
    """Time the three stages on all frames and on the first quarter (one worker count).

    Returns one row per stage: ``fps`` (start-up excluded), ``end_to_end_fps``,
    ``startup_s`` and the times.
    """
    n, n0 = len(paths), max(len(paths) // 4, 1)
    rows = []
    for stage in ("decode", "import", "preprocess"):
        times = {}
        runs = (("warm", paths[: min(n0, 8)]), ("part", paths[:n0]), ("all", paths))
        for k, files in runs:  # "warm": imports and first-call caches, not timed
            out = work / f"{stage}_{workers}_{k}"
            out.mkdir(parents=True, exist_ok=True)
            if stage == "decode":
                times[k] = _timed(_decode, files, workers, out)
            elif stage == "import":
                times[k] = _timed(_import, files, workers, out)
            else:
                raw = work / f"import_{workers}_{k}" / "raw.nc"
                times[k] = _timed(_preprocess, raw, workers, out, len(files))
        (wall, cpu), (wall0, cpu0) = times["all"], times["part"]
        marginal, cpu_marginal = (wall - wall0) / (n - n0), (cpu - cpu0) / (n - n0)
        rows.append(
            {
                "stage": stage,
                "workers": workers,
                "frames": n,
                "fps": 1.0 / marginal if marginal > 0 else float("nan"),
                "end_to_end_fps": n / wall,
                "startup_s": max(wall - n * marginal, 0.0),
                "seconds": wall,
                "cpu_fps": 1.0 / cpu_marginal if cpu_marginal > 0 else float("nan"),
            }
        )
    return rows


def add_ratios(rows: list[dict]) -> None:
    """``vs_decode``: stage fps / decode fps (same workers); ``vs_1_worker``."""
    by = {(r["stage"], r["workers"]): r for r in rows}
    for r in rows:
        r["vs_decode"] = r["fps"] / by[("decode", r["workers"])]["fps"]
        one = by.get((r["stage"], 1))
        r["vs_1_worker"] = r["fps"] / one["fps"] if one else float("nan")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--tiny", action="store_true", help="smoke-test size")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    n = 48 if args.tiny else args.frames
    workers = [int(w) for w in args.workers.split(",")]
    work = Path(tempfile.mkdtemp(prefix="ingest_"))
    try:
        paths = make_archive(work / "png", n)
        rows = []
        for w in workers:
            rows += measure(paths, w, work / "run")
            shutil.rmtree(work / "run")
        add_ratios(rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info = machine_info()
    info["frames"] = n
    info["frame_size"] = f"{SIZE}x{SIZE}"
    write_results("ingest", info, rows, args.out)
    return rows


if __name__ == "__main__":
    main()
