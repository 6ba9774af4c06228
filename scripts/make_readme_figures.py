"""Draw the README's figures from a trained checkpoint.

    python scripts/make_readme_figures.py                    # the shipped checkpoint
    python scripts/make_readme_figures.py --ckpt runs/default/<time>/checkpoints/best.pt
    python scripts/make_readme_figures.py --ckpt newest      # the newest default run

Writes ``docs/figures/forecast_strip.png`` (inputs | truth | the model | ROVER1 |
persistence on the rainiest test window) and ``docs/figures/metrics_by_lead.png``
(Rainfall-MSE, CSI, FAR, POD and correlation against lead time, Shi et al. 2015 Fig. 5
style, with 95% block-bootstrap bands, on the first test batches). The test split is the
embedded default's (``--data embedded``, generated when missing) or the one rebuilt from
the data config stored in the checkpoint (``--data checkpoint``: the data must be where
the training found them, the same ``NOWCAST_DATA_DIR``). Grey levels go through the
data's own conversion (``dataset.scale``), the scores through ``score_dataset``. Only
package functions are composed here.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from hydra.utils import instantiate

from nowcast.data.dataset import rainiest_windows
from nowcast.data.synthetic import synthetic_datasets
from nowcast.evaluation.evaluate import lead_bands, scores_by_lead
from nowcast.evaluation.run import (
    evaluation_settings,
    model_label,
    plot_window_forecasts,
    score_dataset,
    tuned_baselines,
)
from nowcast.training.checkpoint import load_checkpoint, load_forecaster
from nowcast.viz import plot_metrics_by_lead_time

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "checkpoints" / "lagrangian_convlstm_synthetic_long.pt"
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
    p.add_argument(
        "--ckpt",
        default=str(SHIPPED),
        help="checkpoint (best.pt), or 'newest' for the newest runs/default run",
    )
    p.add_argument(
        "--data",
        choices=("embedded", "checkpoint"),
        default="embedded",
        help="test split: the embedded default's, or the checkpoint's own data",
    )
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
    ckpt_path = newest_checkpoint() if args.ckpt == "newest" else Path(args.ckpt)
    ckpt = load_checkpoint(ckpt_path)
    config = ckpt["config"]
    data_cfg = config["data"]
    n_steps = int(data_cfg["output_len"])
    if args.data == "embedded":
        test = synthetic_datasets(
            REPO / "data_cache" / "synthetic",
            input_len=int(data_cfg["input_len"]),
            output_len=n_steps,
        )["test"]
    else:
        test = instantiate(data_cfg["datasets"], _convert_="all")["test"]
    frame_minutes = float(data_cfg.get("frame_minutes", 6.0))
    scale = test.scale  # the data's own grey-level conversion

    name = model_label(config)
    evaluation = evaluation_settings(config)
    baselines, _ = tuned_baselines(evaluation["baselines"], test)
    forecasters = {name: load_forecaster(ckpt), **baselines}
    args.out.mkdir(parents=True, exist_ok=True)
    paths = {}

    # the strip: inputs | truth | model | ROVER | persistence
    if len(test) == 0:
        raise ValueError("the test split is empty; nothing to draw")
    window = rainiest_windows(test, 1)[0] if args.window is None else args.window
    inputs, targets = test[window][:2]
    analysis = np.datetime_as_string(
        test.window_times(window)[test.input_len - 1], unit="m"
    )
    fig = plot_window_forecasts(
        {key: forecasters[key] for key in (name, "ROVER1", "Persistence")},
        inputs,
        targets[:n_steps],
        scale,
        frame_minutes,
        hide=~test.valid_mask,
        max_frames=args.max_frames,
        panel_size=1.1,
        title=f"test window {window}, analysis time {analysis}",
    )
    paths["strip"] = args.out / "forecast_strip.png"
    fig.savefig(paths["strip"], dpi=args.dpi)

    # scores against lead time on the first test batches
    evaluation["batch_size"] = args.batch_size
    results = score_dataset(
        forecasters, test, evaluation, n_steps, max_batches=args.batches or None
    )
    keys = ["rainfall_mse", "csi", "far", "pod", "correlation"]
    scores = scores_by_lead(results, keys)
    fig = plot_metrics_by_lead_time(
        scores,
        frame_minutes,
        metrics=keys,
        panel_size=(3.0, 2.4),
        bands=lead_bands(results, keys),
    )
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
