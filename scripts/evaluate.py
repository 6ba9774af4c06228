"""Evaluate a checkpoint and the baselines on a test split: `python scripts/evaluate.py`.

Thin hydra entry point; the work is done by nowcast.evaluation.run.evaluate_split
(ROVER baselines get the data set's tuned flow parameters when they exist).
"""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from nowcast.cli import hydra_entry
from nowcast.evaluation.run import evaluate_datasets, model_label, tuned_baselines
from nowcast.training.checkpoint import load_checkpoint, load_forecaster

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
log = logging.getLogger("evaluate")


def _data_config(cfg: DictConfig, ckpt_config: dict | None) -> DictConfig:
    """The data config: `data=...` if given, else the checkpoint's, else the default."""
    if cfg.get("data") is not None:
        return cfg.data
    if ckpt_config is not None and ckpt_config.get("data") is not None:
        return OmegaConf.create({"data": ckpt_config["data"]}).data
    default = OmegaConf.create(
        {"data": OmegaConf.load(CONFIG_DIR / "data" / "synthetic.yaml")}
    )
    return default.data


def _check_compatible(model, dataset, ckpt_path: str) -> None:
    inputs = dataset[0][0]
    c, h, w = inputs.shape[-3:]
    want_c = getattr(model, "in_channels", c)
    p = getattr(model, "patch_size", 1)
    if c != want_c or h % p or w % p:
        raise ValueError(
            f"data frames are {c}x{h}x{w} (C x H x W) but the checkpoint {ckpt_path} "
            f"expects {want_c} channel(s) and H, W divisible by its patch size {p}; "
            "evaluate on the data it was trained on (drop data=...) or preprocess to a "
            "matching size"
        )
    frame_size = getattr(model, "frame_size", None)
    if frame_size is not None and tuple(frame_size) != (h, w):
        raise ValueError(
            f"data frames are {h}x{w} but the checkpoint {ckpt_path} was built for "
            f"{tuple(frame_size)} frames"
        )


def _thresholds_in_data_units(evaluation: dict, data_cfg: DictConfig) -> dict:
    """A data config with its own ``thresholds`` (SEVIR: VIL in kg m-2) replaces the
    mm/h defaults of configs/evaluation/default.yaml; thresholds given otherwise stay."""
    own = data_cfg.get("thresholds")
    default = OmegaConf.load(CONFIG_DIR / "evaluation" / "default.yaml").thresholds
    if own is not None and list(evaluation["thresholds"]) == list(default):
        log.info("thresholds of the data config (%s): %s", data_cfg.get("units"), own)
        evaluation["thresholds"] = [float(t) for t in own]
    return evaluation


def _evaluate_task(ckpt: dict, cfg: DictConfig, out_dir: Path) -> dict:
    """A classification or series checkpoint: its task's test report (issue 14)."""
    from nowcast.training.other_tasks import evaluate_task_checkpoint

    data = None
    if cfg.get("data") is not None:
        data = OmegaConf.to_container(cfg.data, resolve=True)
    out = dict(evaluate_task_checkpoint(ckpt, data, out_dir))
    for report in sorted((out_dir / "evaluation").glob("*.md")):
        print(report.read_text())
    print(f"evaluation written to {(out_dir / 'evaluation').resolve()}")
    return out


def evaluate(cfg: DictConfig, out_dir: Path) -> dict:
    """Run the evaluation described by ``cfg``; returns evaluate_split's output."""
    forecasters = {}
    ckpt_config = None
    if cfg.ckpt_path:
        ckpt = load_checkpoint(cfg.ckpt_path)
        ckpt_config = ckpt["config"]
        if ckpt_config.get("task", "forecast") != "forecast":
            return _evaluate_task(ckpt, cfg, out_dir)
        model = load_forecaster(ckpt)
        forecasters[model_label(ckpt_config)] = model
    data_cfg = _data_config(cfg, ckpt_config)
    datasets = instantiate(data_cfg.datasets)
    test = datasets["test"]
    if len(test) == 0:
        raise ValueError(
            "the test split is empty: the data set is too short to evaluate"
        )
    if cfg.ckpt_path:
        _check_compatible(model, test, cfg.ckpt_path)
    evaluation = _thresholds_in_data_units(
        OmegaConf.to_container(cfg.evaluation, resolve=True), data_cfg
    )
    if ckpt_config and (ckpt_config.get("evaluation") or {}).get("paper_row"):
        evaluation.setdefault("paper_row", ckpt_config["evaluation"]["paper_row"])
    baselines, rover_note = tuned_baselines(evaluation["baselines"], test)
    forecasters.update(baselines)
    out = evaluate_datasets(
        forecasters,
        datasets,
        data_cfg,
        evaluation,
        out_dir,
        n_steps=cfg.n_steps,
        notes=[rover_note] if rover_note else [],
    )
    print((out_dir / "metrics.md").read_text())
    print(f"evaluation written to {out_dir.resolve()}")
    return out


def run(cfg: DictConfig) -> dict:
    """:func:`evaluate` into hydra's run directory."""
    return evaluate(cfg, Path(HydraConfig.get().runtime.output_dir))


main = hydra_entry(run, "evaluate", bad_input=(ValueError,))


if __name__ == "__main__":
    main()
