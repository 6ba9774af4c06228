"""Ship a trained checkpoint: slim it, score it on the embedded test split, record both.

    python scripts/ship_checkpoint.py --ckpt runs/synthetic_long/<time>/checkpoints/best.pt \\
        --out checkpoints/lagrangian_convlstm_synthetic_long.pt \\
        --command "python scripts/train.py +experiment=synthetic_long"

The output holds the weights and the run's config (no optimiser state: it is for
inference, not for resuming) and a ``shipped`` entry: the training command, the date,
and the scores of the model and the baselines on the test split of the embedded default
data set (``nowcast.data.synthetic.synthetic_datasets`` with its defaults), computed as
``scripts/evaluate.py`` does. ``tests/test_shipped_checkpoint.py`` re-evaluates the
shipped file and checks them.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

from nowcast.training.checkpoint import (
    load_checkpoint,
    save_checkpoint,
    slim_checkpoint,
)
from nowcast.training.shipped import score_on_embedded_test


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, type=Path, help="trained best.pt")
    p.add_argument("--out", required=True, type=Path, help="shipped .pt to write")
    p.add_argument("--command", required=True, help="the command that trained it")
    p.add_argument("--data-root", default="data_cache/synthetic")
    args = p.parse_args(argv)
    ckpt = load_checkpoint(args.ckpt)
    scores = score_on_embedded_test(ckpt, args.data_root)
    shipped = {
        "command": args.command,
        "source": str(args.ckpt),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "embedded_test": scores,
    }
    out = save_checkpoint(slim_checkpoint(ckpt, shipped=shipped), args.out)
    for name, s in scores.items():
        print(
            f"{name:>22}: CSI@0.5 {s['csi']:.4f}, Rainfall-MSE {s['rainfall_mse']:.4f}"
        )
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return out


if __name__ == "__main__":
    main()
