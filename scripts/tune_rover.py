"""Tune ROVER's flow parameters on a data set's validation split, scored as it is judged.

Shi et al. (2015) tuned ROVER's optical-flow parameters on the validation set. This
grid search does the same for the ``"dis"`` variational flow: every combination is
scored by :func:`nowcast.evaluation.run.score_dataset`, the path of the test
evaluation (the data set's grey-level conversion and Z-R, its clutter mask and
per-frame coverage), on the VALIDATION windows cut with the same split settings as the
data config; the best by CSI at 0.5 mm/h (ties: lower rainfall MSE) is written to
``<stem>_rover.yaml`` next to the processed file, which the evaluation of that file
then uses (:func:`nowcast.baselines.tuning.apply_tuned_params`), and copied with a
table of every grid point into the run directory ``runs/tune_rover/<timestamp>/``.
Nothing tracked is written.

    python scripts/tune_rover.py --data data_cache/synthetic/processed.nc
    python scripts/tune_rover.py --data data/fmi/processed.nc --block-len 20 \\
        --counts 2 1 1 --alpha 10 20 40 --max-batches 20
"""

from __future__ import annotations

import argparse
import itertools
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from nowcast.baselines import Rover
from nowcast.baselines.tuning import save_tuned_params, tuned_params_path
from nowcast.data.dataset import radar_datasets
from nowcast.evaluation.metrics import threshold_key
from nowcast.evaluation.run import DEFAULT_EVALUATION, score_dataset

#: Rover settings the grid does not vary (written with the tuned values).
FIXED = {"method": "dis", "finest_scale": "auto"}

#: Evaluation settings for the tuning loop: the test evaluation's thresholds and
#: aggregation, no intervals (the grid is ranked on point scores).
TUNING_EVALUATION = {"bootstrap": {"n_resamples": 0}, "reference": None}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, type=Path, help="processed radar netCDF")
    p.add_argument("--variant", type=int, default=1, choices=(1, 2, 3))
    p.add_argument("--alpha", type=float, nargs="+", default=[5.0, 20.0, 50.0])
    p.add_argument("--patch-size", type=int, nargs="+", default=[8, 16])
    p.add_argument("--variational-iterations", type=int, nargs="+", default=[10])
    p.add_argument("--input-len", type=int, default=5)
    p.add_argument("--output-len", type=int, default=15)
    p.add_argument("--stride", type=int, default=1, help="window stride (frames)")
    p.add_argument("--block-len", type=int, default=40, help="split block length")
    p.add_argument(
        "--counts",
        type=int,
        nargs=3,
        default=[4, 1, 1],
        metavar=("TRAIN", "VAL", "TEST"),
    )
    p.add_argument("--seed", type=int, default=0, help="block split seed")
    p.add_argument("--zr-a", type=float, default=None, help="Z = a R^b (dBZ data)")
    p.add_argument("--zr-b", type=float, default=None)
    p.add_argument("--threshold", type=float, default=0.5, help="CSI threshold ranked")
    p.add_argument("--max-batches", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="runs root")
    return p.parse_args(argv)


def param_grid(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every combination of the grid's flow parameters."""
    axes = grid_axes(args)
    return [
        dict(zip(axes, combo, strict=True))
        for combo in itertools.product(*axes.values())
    ]


def grid_axes(args: argparse.Namespace) -> dict[str, list]:
    """Rover keyword -> values searched."""
    return {
        "alpha": list(args.alpha),
        "patch_size": list(args.patch_size),
        "variational_refinement_iterations": list(args.variational_iterations),
    }


def score_key(scores: Mapping[str, Any], csi_key: str) -> tuple[float, float]:
    """Sort key, best first: high CSI, then low rainfall MSE (NaN last)."""
    csi, mse = scores[csi_key], scores["rainfall_mse"]
    return (
        -csi if math.isfinite(csi) else math.inf,
        mse if math.isfinite(mse) else math.inf,
    )


def grid_table(
    grid: Sequence[Mapping[str, Any]],
    results: Sequence[Mapping[str, Any]],
    ranked: Sequence[int],
    csi_key: str,
) -> str:
    """Markdown table of every grid point, best first."""
    names = list(grid[0]) if grid else []
    lines = [
        "| rank | " + " | ".join(names) + f" | {csi_key} | Rainfall-MSE |",
        "|---" * (len(names) + 3) + "|",
    ]
    for rank, i in enumerate(ranked, 1):
        vals = " | ".join(str(grid[i][k]) for k in names)
        r = results[i]
        lines.append(
            f"| {rank} | {vals} | {r[csi_key]:.4f} | {r['rainfall_mse']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def validation_set(args: argparse.Namespace) -> Any:
    """The VALIDATION windows of ``args.data`` under the given split settings."""
    sets = radar_datasets(
        args.data,
        input_len=args.input_len,
        output_len=args.output_len,
        seed=args.seed,
        stride=args.stride,
        block_len=args.block_len,
        counts=tuple(args.counts),
        zr_a=args.zr_a,
        zr_b=args.zr_b,
    )
    val = sets["val"]
    if len(val) == 0:
        raise ValueError(
            f"{args.data} has no validation windows with block_len={args.block_len}, "
            f"counts={list(args.counts)}; give --counts a validation share (middle "
            "number > 0) or a shorter --block-len"
        )
    return val


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    thresholds = list(DEFAULT_EVALUATION["thresholds"])
    if args.threshold not in thresholds:
        thresholds = sorted({*thresholds, args.threshold})
    csi_key = threshold_key("csi", args.threshold)
    evaluation = {
        **TUNING_EVALUATION,
        "thresholds": thresholds,
        "batch_size": args.batch_size,
        "device": args.device,
    }
    val = validation_set(args)
    grid = param_grid(args)
    results = []
    for params in tqdm(grid, desc="ROVER grid", unit="point"):
        rover = Rover(variant=args.variant, **FIXED, **params)
        res = score_dataset(
            {"rover": rover},
            val,
            evaluation=evaluation,
            n_steps=args.output_len,
            max_batches=args.max_batches,
        )
        results.append(res["rover"])
    ranked = sorted(range(len(grid)), key=lambda i: score_key(results[i], csi_key))
    table = grid_table(grid, results, ranked, csi_key)
    print(table)
    best_i = ranked[0]
    best = {**FIXED, **grid[best_i]}
    now = datetime.now(timezone.utc)
    provenance = {
        "data": str(Path(args.data).resolve()),
        "split": {
            "name": "val",
            "block_len": args.block_len,
            "counts": list(args.counts),
            "seed": args.seed,
            "input_len": args.input_len,
            "output_len": args.output_len,
            "stride": args.stride,
            "windows": len(val),
            "max_batches": args.max_batches,
        },
        "date": now.isoformat(timespec="seconds"),
        "variant": args.variant,
        "grid": grid_axes(args),
        "score": {
            csi_key: float(results[best_i][csi_key]),
            "rainfall_mse": float(results[best_i]["rainfall_mse"]),
        },
        "scale": getattr(getattr(val, "scale", None), "describe", lambda: None)(),
    }
    run_dir = args.runs_dir / "tune_rover" / f"{now:%Y-%m-%d_%H-%M-%S}"
    out = save_tuned_params(args.data, best, provenance)
    copy = save_tuned_params(
        args.data, best, provenance, out=run_dir / tuned_params_path(args.data).name
    )
    (run_dir / "grid.md").write_text(
        f"# ROVER{args.variant} grid on the validation split of {args.data}\n\n" + table
    )
    print(f"best {grid[best_i]} -> {out} (copy: {copy})")
    return {"best": best, "results": results, "path": out, "run_dir": run_dir}


if __name__ == "__main__":
    main()
