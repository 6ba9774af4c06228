"""Peak memory of preprocessing an archive: in memory vs streamed to netCDF.

Run: ``python benchmarks/preprocess_memory.py`` (``--frames 4000,12000``, ``--size``,
``--tiny`` for the smoke test).

For each archive length a raw archive of random reflectivity (``size x size`` frames,
6-minute steps) is written to a temporary netCDF file; then, each in a fresh process
so that the peaks do not mix, it is preprocessed (disk filter of radius 2, no crop or
resize, so the output is as large as the input) either with
``Preprocessor.transform`` + ``write_radar`` (the whole output in memory) or with
``Preprocessor.transform_to_file`` (streamed chunk by chunk). Reported: the growth of
the process's peak resident memory during that call (Linux ``VmHWM``, reset just
before it), the output's size
and the wall time; the streamed file is checked equal to the in-memory one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_info, write_results  # noqa: E402

# Peak memory: Linux's VmHWM, reset to the current RSS just before the call (writing 5
# to /proc/self/clear_refs); ru_maxrss cannot be reset and even carries the parent's
# peak over fork + exec. Elsewhere ru_maxrss growth is the (weaker) fallback.
_CHILD = """
import json, resource, sys, time
from nowcast.data.preprocess import Preprocessor
from nowcast.data.radar import open_radar, write_radar

def status_kib(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(key + ":"))

mode, raw, out = sys.argv[1:4]
ds = open_radar(raw)
pre = Preprocessor(crop_size=None, disk_radius=2, resize_to=None, noise_mask=False,
                   progress=False)
pre.fit(ds.isel(time=slice(0, 10)))
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before, measure = status_kib("VmRSS"), "VmHWM after a clear_refs reset"
except OSError:
    before, measure = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"
t0 = time.perf_counter()
if mode == "memory":
    write_radar(pre.transform(ds), out)
else:
    pre.transform_to_file(ds, out)
seconds = time.perf_counter() - t0
peak = (status_kib("VmHWM") if measure.startswith("VmHWM")
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
print(json.dumps({"growth_MiB": (peak - before) / 1024, "seconds": seconds,
                  "measure": measure}))
"""


def _write_raw(path: Path, n: int, size: int) -> None:
    from nowcast.data.radar import make_radar_dataset, write_radar

    times = np.datetime64("2013-06-01") + np.arange(n) * np.timedelta64(6, "m")
    values = np.random.default_rng(0).uniform(-10, 60, (n, size, size))
    ds = make_radar_dataset(values.astype(np.float32), times, units="dBZ")
    write_radar(ds, path, complevel=1)


def _child(mode: str, raw: Path, out: Path) -> dict:
    run = subprocess.run(
        [sys.executable, "-c", _CHILD, mode, str(raw), str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        raise RuntimeError(f"{mode} run failed:\n{run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="smoke-test size")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--frames", default=None, help="default 4000,12000")
    parser.add_argument("--size", type=int, default=None, help="default 120")
    args = parser.parse_args(argv)
    frames = [
        int(f)
        for f in (args.frames or ("40" if args.tiny else "4000,12000")).split(",")
    ]
    size = args.size or (16 if args.tiny else 120)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        import xarray as xr

        for n in frames:
            raw = Path(tmp) / f"raw_{n}.nc"
            _write_raw(raw, n, size)
            outputs = {}
            for mode in ("memory", "stream"):
                outputs[mode] = Path(tmp) / f"{mode}_{n}.nc"
                got = _child(mode, raw, outputs[mode])
                rows.append(
                    {
                        "frames": n,
                        "frame": f"{size}x{size}",
                        "output_MiB": n * size * size * 4 / 2**20,
                        "method": "transform + write_radar"
                        if mode == "memory"
                        else "transform_to_file",
                        "peak_growth_MiB": got["growth_MiB"],
                        "seconds": got["seconds"],
                        "measure": got["measure"],
                    }
                )
            with (
                xr.open_dataset(outputs["memory"]) as a,
                xr.open_dataset(outputs["stream"]) as b,
            ):
                if not np.array_equal(a["intensity"].values, b["intensity"].values):
                    raise RuntimeError("streamed and in-memory outputs differ")
            for p in (raw, *outputs.values()):
                p.unlink()
    write_results("preprocess_memory", machine_info("cpu"), rows, args.out)
    return rows


if __name__ == "__main__":
    main()
