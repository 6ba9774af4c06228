"""Draw the README's figures from a trained checkpoint.

    python scripts/make_readme_figures.py                    # newest default run
    python scripts/make_readme_figures.py --ckpt runs/default/<time>/checkpoints/best.pt

Writes ``docs/figures/forecast_strip.png`` (inputs | truth | the model | ROVER1 |
persistence on the rainiest test window) and ``docs/figures/metrics_by_lead.png``
(Rainfall-MSE, CSI, FAR, POD and correlation against lead time, Shi et al. 2015 Fig. 5
style, on the first test batches). The test split is rebuilt from the data config
stored in the checkpoint, so the data must be where the training found them (the same
``NOWCAST_DATA_DIR``). Only package functions are composed here.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate

from nowcast.data.dataset import rainiest_windows
from nowcast.evaluation.evaluate import evaluate_forecasters, scores_by_lead
from nowcast.evaluation.metrics import grey_to_dbz
from nowcast.evaluation.run import build_baselines, evaluation_settings, model_label
from nowcast.training.checkpoint import load_checkpoint, load_forecaster
from nowcast.viz import plot_metrics_by_lead_time, plot_sequence

REPO = Path(__file__).resolve().parents[1]
MAX_BYTES = 200_000  # README figures stay screenshot-sized


def newest_checkpoint(root: Path = REPO / "runs" / "default") -> Path:
    """The most recently written ``<root>/*/checkpoints/best.pt``.

    Raises
    ------
    FileNotFoundError
        If there is none, saying how to make one.
    """
    found = sorted(root.glob("*/checkpoints/best.pt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(
            f"no checkpoint found under {root}: run `python scripts/train.py` first, "
            "or pass --ckpt <path to best.pt>"
        )
    return found[-1]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", type=Path, default=None, help="checkpoint (best.pt)")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "figures")
    p.add_argument("--window", type=int, default=None, help="test window of the strip")
    p.add_argument("--max-frames", type=int, default=8, help="columns of the strip")
    p.add_argument("--batches", type=int, default=8, help="test batches for the scores")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--dpi", type=int, default=80)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    """Write both figures; returns their paths."""
    args = parse_args(argv)
    ckpt_path = args.ckpt if args.ckpt is not None else newest_checkpoint()
    ckpt = load_checkpoint(ckpt_path)
    config = ckpt["config"]
    data_cfg = config["data"]
    test = instantiate(data_cfg["datasets"], _convert_="all")["test"]
    n_steps = int(data_cfg["output_len"])
    frame_minutes = float(data_cfg.get("frame_minutes", 6.0))
    zmin = test.zmin if np.isfinite(test.zmin) else float(data_cfg.get("dbz_min", -10))
    zmax = test.zmax if np.isfinite(test.zmax) else float(data_cfg.get("dbz_max", 60))

    name = model_label(config)
    evaluation = evaluation_settings(config)  # the run's baselines (tuned ROVER)
    baselines = build_baselines(evaluation["baselines"])
    forecasters = {name: load_forecaster(ckpt), **baselines}
    args.out.mkdir(parents=True, exist_ok=True)
    paths = {}

    # the strip: inputs | truth | model | ROVER | persistence
    if len(test) == 0:
        raise ValueError("the test split is empty; nothing to draw")
    window = rainiest_windows(test, 1)[0] if args.window is None else args.window
    inputs, targets = test[window][:2]
    with torch.no_grad():
        strips = {
            key: forecasters[key].predict(inputs[None], n_steps)[0, :, 0]
            for key in (name, "ROVER1", "Persistence")
        }
    analysis = np.datetime_as_string(
        test.window_times(window)[test.input_len - 1], unit="m"
    )
    fig = plot_sequence(
        inputs[:, 0],
        targets[:n_steps, 0],
        strips,
        frame_minutes=frame_minutes,
        units="dBZ",
        to_physical=lambda p: grey_to_dbz(p, zmin, zmax),
        mask=~test.valid_mask,
        max_frames=args.max_frames,
        panel_size=1.1,
        title=f"test window {window}, analysis time {analysis}",
    )
    paths["strip"] = args.out / "forecast_strip.png"
    fig.savefig(paths["strip"], dpi=args.dpi)

    # scores against lead time on the first test batches
    results = evaluate_forecasters(
        forecasters,
        test,
        n_steps=n_steps,
        batch_size=args.batch_size,
        accumulator_kwargs={
            "thresholds": evaluation["thresholds"],
            "a": float(data_cfg.get("zr_a", 58.53)),
            "b": float(data_cfg.get("zr_b", 1.56)),
            "dbz_min": zmin,
            "dbz_max": zmax,
        },
        mask=test.valid_mask,
        progress=False,
        max_batches=args.batches or None,
    )
    scores = scores_by_lead(results)
    fig = plot_metrics_by_lead_time(scores, frame_minutes, panel_size=(3.0, 2.4))
    n_seq = next(iter(results.values()))["n_sequences"]
    fig.suptitle(f"{n_seq} test sequences; CSI, FAR and POD at 0.5 mm/h")
    paths["metrics"] = args.out / "metrics_by_lead.png"
    fig.savefig(paths["metrics"], dpi=args.dpi)

    for path in paths.values():
        size = path.stat().st_size
        flag = (
            "" if size < MAX_BYTES else f" (over {MAX_BYTES // 1000} KB: lower --dpi)"
        )
        print(f"wrote {path} ({size / 1000:.0f} KB){flag}")
    return paths


if __name__ == "__main__":
    main()
