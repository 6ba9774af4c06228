"""The training loop: BPTT over whole sequences with RMSProp, validation, checkpoints.

:func:`train` builds everything from a (hydra) config and runs :func:`fit`-style flat
loop in the spirit of nanoGPT:

* back-propagation through time over the whole sequence (the encoder reads the input
  frames, the forecaster unrolls ``output_len`` steps, the loss covers every predicted
  frame), the optimiser (RMSProp, lr 1e-3, decay 0.9 in Shi et al. 2015) built from a
  ``_partial_`` config, gradient-norm clipping, ``zero_grad(set_to_none=True)``;
* on CUDA automatic mixed precision (bf16 where supported, else fp16 with a
  :class:`torch.amp.GradScaler`), channels-last weights, optional ``torch.compile``,
  cuDNN benchmark; on the CPU the same code without autocast;
* validation every epoch or every ``val_check_interval`` steps, early stopping with
  ``patience`` validations without improvement, ``best.pt`` and ``last.pt`` written
  atomically (:mod:`nowcast.training.checkpoint`);
* exact resumption (sample order, optimiser, scaler, RNG and early-stopping state);
* non-finite losses stop the run with a clear message or skip the step
  (``trainer.nonfinite``); a diverged model is never checkpointed;
* DistributedDataParallel under torchrun (:mod:`nowcast.training.distributed`):
  sharded sampling, metrics summed over ranks, logging and checkpoints on rank 0;
* a tqdm bar (loss, sequences/s, ETA), ``metrics.csv`` always, TensorBoard when the
  ``tensorboard`` package is importable.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from nowcast.operational.preprocessing import checkpoint_preprocessing
from nowcast.training import checkpoint as ckpt_io
from nowcast.training.distributed import (
    DistEnv,
    ShardedSampler,
    all_reduce_sum,
    broadcast_object,
    cleanup_distributed,
    init_distributed,
)
from nowcast.training.losses import combine_masks, get_loss, masked_mean

__all__ = [
    "train",
    "Callbacks",
    "TrainState",
    "NonFiniteLossError",
    "build_datasets",
    "build_loss",
    "resolve_precision",
    "seed_everything",
    "evaluate_loss",
    "MetricsLogger",
]

log = logging.getLogger("nowcast.training")

#: Columns of ``metrics.csv`` (one row per logged train window or validation).
CSV_COLUMNS = (
    "time_s",
    "step",
    "epoch",
    "split",
    "loss",
    "mse",
    "lr",
    "seq_per_s",
    "grad_norm",
)


class NonFiniteLossError(RuntimeError):
    """Raised when the loss (or gradient norm) becomes NaN/inf and the policy is stop."""


@dataclass
class Callbacks:
    """Optional hooks into the loop (tests use them to inject faults).

    Attributes
    ----------
    on_loss : callable(step, loss) -> loss, optional
        Called with the 1-based number of the step being taken and its loss, before
        the finiteness check; may return a different loss.
    on_step_end : callable(step, model) -> None, optional
        Called after each optimiser step (it may raise to simulate a crash).
    """

    on_loss: Callable[[int, torch.Tensor], torch.Tensor] | None = None
    on_step_end: Callable[[int, nn.Module], None] | None = None


@dataclass
class TrainState:
    """Where training stands; stored in every checkpoint for exact resumption."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_val_loss: float = math.inf
    best_step: int = -1
    bad_validations: int = 0
    nonfinite_skips: int = 0
    stopped_early: bool = False
    first_train_loss: float = math.nan
    train_time_s: float = 0.0
    train_sequences: int = 0
    epoch_times: list[float] = field(default_factory=list)


# --------------------------------------------------------------------------- builders


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds third-party global use
    torch.manual_seed(seed)


def resolve_precision(precision: str | int, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``trainer.precision`` on ``device`` (None: plain float32).

    ``"auto"`` gives bf16 on CUDA devices that support it, fp16 on other CUDA devices
    and float32 on the CPU; ``"32"``, ``"bf16"`` and ``"fp16"`` force a choice (fp16
    needs CUDA).
    """
    p = str(precision).lower()
    if p == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if p in ("32", "fp32", "float32"):
        return None
    if p in ("bf16", "bfloat16"):
        return torch.bfloat16
    if p in ("16", "fp16", "float16"):
        if device.type != "cuda":
            raise ValueError(
                "trainer.precision=fp16 needs a CUDA device; use 32 or bf16 on the CPU"
            )
        return torch.float16
    raise ValueError(
        f"trainer.precision must be auto, 32, bf16 or fp16, got {precision!r}"
    )


def build_datasets(data_cfg: Mapping[str, Any]) -> dict[str, Dataset]:
    """Instantiate ``data.datasets`` -> ``{"train", "val", "test"}`` datasets.

    A data config whose ``root`` must exist beforehand (an archive you prepare
    yourself, like HKO-7) sets ``require_root: true`` and a ``missing_hint``; a missing
    ``root`` then raises :class:`FileNotFoundError` naming it with the hint.
    """
    from hydra.utils import instantiate

    if "datasets" not in data_cfg:
        raise ValueError(
            "the data config needs a 'datasets' node with a '_target_' factory returning "
            f"{{'train', 'val', 'test'}} datasets; got keys {sorted(data_cfg)}"
        )
    root = data_cfg.get("root")
    if data_cfg.get("require_root", False) and root and not Path(root).exists():
        hint = str(data_cfg.get("missing_hint", "")).strip()
        raise FileNotFoundError(
            f"data.root={root} does not exist (cwd {os.getcwd()}). {hint}".strip()
        )
    datasets = instantiate(data_cfg["datasets"], _convert_="all")
    if not isinstance(datasets, Mapping) or not {"train", "val"} <= set(datasets):
        raise ValueError(
            "data.datasets must build a dict with keys 'train', 'val', 'test', got "
            f"{type(datasets).__name__} "
            f"{sorted(datasets) if isinstance(datasets, Mapping) else ''}"
        )
    for name in ("train", "val"):
        if len(datasets[name]) == 0:
            raise ValueError(
                f"the {name!r} split is empty; the data set is too small for "
                f"input_len + output_len (check data.root and the split settings)"
            )
    return dict(datasets)


def build_loss(
    loss_cfg: Mapping[str, Any], train_set: Dataset | None = None
) -> nn.Module:
    """The loss named by ``loss.name`` with its parameters.

    The balanced losses get the training set's grey scale (``train_set.scale``, a
    :class:`~nowcast.data.physical.GreyScale` read from the processed file), so their
    rain-rate thresholds are in the data's own scoring units; without a training set
    they use HKO-7's. Legacy ``dbz_min`` / ``dbz_max`` / ``a`` / ``b`` keys of a loss
    config are ignored: the data, not the config, say what grey levels mean.
    """
    legacy = ("dbz_min", "dbz_max", "a", "b")
    cfg = {
        k: v for k, v in dict(loss_cfg).items() if k not in ("name", "masked", *legacy)
    }
    name = str(loss_cfg.get("name", "bce"))
    if name.startswith("balanced"):
        if any(k in loss_cfg for k in legacy):
            log.info(
                "balanced loss: config keys %s ignored (the data's scale wins)", legacy
            )
        if train_set is not None:
            scale = getattr(train_set, "scale", None)
            if scale is None:
                raise ValueError(
                    f"loss {name!r} needs a training set with a grey scale "
                    f"(dataset.scale), got {type(train_set).__name__}; use loss=bce "
                    "or loss=mse for data without physical units"
                )
            cfg["scale"] = scale
            log.info("balanced loss: %s", scale.describe())
    return get_loss(name, **cfg)


def _to_plain(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    return OmegaConf.to_container(OmegaConf.create(dict(cfg)), resolve=True)


def _section(cfg: Mapping[str, Any], name: str) -> dict[str, Any]:
    node = cfg.get(name) or {}
    return dict(node)


# --------------------------------------------------------------------------- logging


class MetricsLogger:
    """Rows of metrics to ``metrics.csv`` (always) and TensorBoard (when importable).

    Parameters
    ----------
    run_dir : pathlib.Path
        Where ``metrics.csv`` (and ``tensorboard/``) go.
    enabled : bool
        False on non-zero ranks: nothing is written.
    tensorboard : {"auto", True, False}
        ``"auto"`` writes TensorBoard events when ``tensorboard`` is installed.
    """

    def __init__(
        self, run_dir: Path, enabled: bool = True, tensorboard: object = "auto"
    ):
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.csv"
        self._tb = None
        if not enabled:
            return
        new = not self.path.exists()
        self._file = open(self.path, "a", newline="")  # noqa: SIM115 - closed in close()
        self._writer = csv.DictWriter(self._file, fieldnames=CSV_COLUMNS)
        if new:
            self._writer.writeheader()
        if tensorboard in ("auto", True, "true"):
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                if tensorboard is True or tensorboard == "true":
                    log.warning("tensorboard requested but not installed; CSV only")
            else:
                self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def carry_over(self, previous: Path, up_to_step: int) -> int:
        """Copy the rows of an earlier run's ``metrics.csv`` up to ``up_to_step``.

        Used when a run resumes from another run's checkpoint, so that its own
        ``metrics.csv`` holds the whole history. Rows logged after the checkpoint (the
        steps the interrupted run lost) are left out; the row count copied is returned.
        Does nothing (returns 0) on non-zero ranks, when ``previous`` is missing or is
        this run's own file.
        """
        previous = Path(previous)
        if (
            not self.enabled
            or not previous.is_file()
            or previous.resolve() == self.path.resolve()
        ):
            return 0
        with open(previous, newline="") as f:
            rows = [
                r
                for r in csv.DictReader(f)
                if r.get("step", "").isdigit() and int(r["step"]) <= up_to_step
            ]
        for r in rows:
            self._writer.writerow({k: r.get(k, "") for k in CSV_COLUMNS})
        self._file.flush()
        return len(rows)

    def log(self, step: int, epoch: int, split: str, **values: float) -> None:
        """Append one row; ``values`` are a subset of :data:`CSV_COLUMNS`."""
        if not self.enabled:
            return
        row = {"time_s": f"{time.time():.3f}", "step": step, "epoch": epoch}
        row["split"] = split
        for k, v in values.items():
            if k not in CSV_COLUMNS:
                raise ValueError(f"unknown metrics column {k!r}; known: {CSV_COLUMNS}")
            row[k] = "" if v is None else f"{float(v):.6g}"
            if self._tb is not None and v is not None:
                self._tb.add_scalar(f"{split}/{k}", float(v), step)
        self._writer.writerow(row)
        self._file.flush()

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            if self._tb is not None:
                self._tb.close()


# --------------------------------------------------------------------------- loop parts


def _autocast(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def evaluate_loss(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: nn.Module,
    device: torch.device,
    mask: torch.Tensor | None = None,
    amp_dtype: torch.dtype | None = None,
    limit_batches: int | None = None,
    use_coverage: bool = True,
) -> dict[str, float]:
    """Mean loss and MSE of ``sigmoid(logits)`` over a loader, summed over all ranks.

    Parameters
    ----------
    model : torch.nn.Module
        ``model(inputs, n_steps) -> logits (B, n_steps, C, H, W)``; the bare module
        (not DDP-wrapped), put in eval mode here and back in train mode afterwards.
    loader : DataLoader
        Yields ``(inputs, targets)`` ``(B, T_in, C, H, W)``, ``(B, T_out, C, H, W)``,
        or ``(inputs, targets, target_valid)`` with the per-frame coverage.
    loss_fn : torch.nn.Module
        The training loss.
    device : torch.device
    mask : torch.Tensor of bool, (H, W), optional
        Pixels that count.
    amp_dtype : torch.dtype, optional
        Autocast dtype.
    limit_batches : int, optional
        Evaluate only this many batches per rank.
    use_coverage : bool
        Also leave out target pixels without data (``target_valid``) when batches
        carry it.

    Returns
    -------
    dict
        ``{"loss": ..., "mse": ..., "n": sequences}`` (means weighted by batch size).
    """
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    for i, batch in enumerate(loader):
        if limit_batches is not None and i >= limit_batches:
            break
        inputs, targets, *cover = (t.to(device, non_blocking=True) for t in batch)
        with _autocast(device, amp_dtype):
            logits = model(inputs, targets.shape[1])
        n = inputs.shape[0]
        batch_mask = combine_masks(mask, cover[0] if cover and use_coverage else None)
        loss = loss_fn(logits, targets, batch_mask)
        mse = masked_mean((torch.sigmoid(logits.float()) - targets) ** 2, batch_mask)
        totals += torch.tensor(
            [float(loss) * n, float(mse) * n, n], dtype=torch.float64, device=device
        )
    all_reduce_sum(totals)
    model.train(was_training)
    n = float(totals[2])
    if n == 0:
        return {"loss": math.nan, "mse": math.nan, "n": 0.0}
    return {"loss": float(totals[0]) / n, "mse": float(totals[1]) / n, "n": n}


def _resolve_run_dir(cfg: Mapping[str, Any], run_dir: str | os.PathLike | None) -> Path:
    if run_dir is not None:
        return Path(run_dir)
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except (ImportError, ValueError):
        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        return Path("runs") / str(cfg.get("name", "default")) / stamp


def _find_resume_checkpoint(
    trainer_cfg: Mapping[str, Any], run_dir: Path
) -> Path | None:
    """``trainer.ckpt_path`` or, with ``trainer.resume``, the newest ``last.pt``.

    The newest is looked for in this run directory, then in its sibling run
    directories (``runs/<name>/*/checkpoints/last.pt``), since every hydra launch gets a
    fresh timestamped directory.
    """
    explicit = trainer_cfg.get("ckpt_path")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(
                f"trainer.ckpt_path={path} does not exist; point it at a last.pt or "
                "best.pt, or use trainer.resume=true to pick the newest run's last.pt"
            )
        return path
    if not trainer_cfg.get("resume", False):
        return None
    own = run_dir / "checkpoints" / "last.pt"
    if own.is_file():
        return own
    siblings = [
        p
        for p in run_dir.parent.glob("*/checkpoints/last.pt")
        if p.parent.parent != run_dir
    ]
    if not siblings:
        log.warning(
            "trainer.resume=true but no last.pt under %s: starting fresh",
            run_dir.parent,
        )
        return None
    return max(siblings, key=lambda p: p.stat().st_mtime)


def _loader(
    dataset: Dataset,
    sampler: ShardedSampler,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    seed: int,
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
        drop_last=False,
        # own generator: creating iterators never consumes the global torch RNG
        generator=torch.Generator().manual_seed(seed),
    )


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# --------------------------------------------------------------------------- train


def train(
    cfg: DictConfig | Mapping[str, Any],
    run_dir: str | os.PathLike | None = None,
    callbacks: Callbacks | None = None,
) -> dict[str, float]:
    """Train a forecaster as configured and return the final metrics.

    Parameters
    ----------
    cfg : DictConfig or mapping
        The composed ``configs/train.yaml``: ``data`` (with a ``datasets`` factory,
        ``batch_size``, ``num_workers``), ``model`` (``_target_``), ``optimizer``
        (``_partial_`` optimiser), optional ``scheduler``, ``loss`` (``name`` and
        parameters), ``trainer`` (see ``configs/trainer/default.yaml``), ``logging``,
        ``seed``, ``name``, ``evaluate_after_training``.
    run_dir : path, optional
        Output directory; default hydra's run directory, else
        ``runs/<name>/<timestamp>``.
    callbacks : Callbacks, optional
        Test hooks.

    Returns
    -------
    dict of str to float
        ``step``, ``epoch``, ``train_loss`` (mean of the last logged window),
        ``train_loss_first`` (the first step's loss), ``val_loss``, ``val_mse`` (last
        validation), ``best_val_loss``, ``best_step``, ``stopped_early``,
        ``nonfinite_skips``, ``seq_per_s`` (training throughput, all ranks),
        ``epoch_time_s`` (mean wall time of the completed epochs' training), plus
        ``test_*`` entries when the test evaluation ran.
    """
    plain = _to_plain(cfg)
    callbacks = callbacks or Callbacks()
    tcfg = _section(plain, "trainer")
    data_cfg = _section(plain, "data")
    log_cfg = _section(plain, "logging")
    env = init_distributed(tcfg.get("accelerator", "auto"), tcfg.get("dist_backend"))
    try:
        metrics = _train(cfg, plain, tcfg, data_cfg, log_cfg, env, run_dir, callbacks)
    except BaseException:
        cleanup_distributed()
        raise
    cleanup_distributed(synchronize=True)
    return metrics


def _train(
    cfg: DictConfig | Mapping[str, Any],
    plain: dict[str, Any],
    tcfg: dict[str, Any],
    data_cfg: dict[str, Any],
    log_cfg: dict[str, Any],
    env: DistEnv,
    run_dir_arg: str | os.PathLike | None,
    callbacks: Callbacks,
) -> dict[str, float]:
    from hydra.utils import instantiate

    device = env.device
    run_dir = Path(broadcast_object(str(_resolve_run_dir(plain, run_dir_arg))))
    ckpt_dir = run_dir / "checkpoints"
    if env.is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(plain), run_dir / "config.yaml")
    seed = int(plain.get("seed", 0))

    # ---- data
    datasets = build_datasets(data_cfg)
    batch_size = int(data_cfg.get("batch_size", 8))
    num_workers = int(data_cfg.get("num_workers", 0))
    limit_train = tcfg.get("limit_train_batches")
    train_sampler = ShardedSampler(
        len(datasets["train"]),
        env.world_size,
        env.rank,
        shuffle=True,
        seed=seed,
        pad=True,
        max_samples=None if limit_train is None else int(limit_train) * batch_size,
    )
    val_sampler = ShardedSampler(
        len(datasets["val"]), env.world_size, env.rank, shuffle=False, pad=False
    )
    train_loader = _loader(
        datasets["train"], train_sampler, batch_size, num_workers, device, seed
    )
    val_loader = _loader(
        datasets["val"], val_sampler, batch_size, num_workers, device, seed
    )
    loss_cfg = _section(plain, "loss")
    loss_fn = build_loss(loss_cfg, datasets["train"])
    mask = getattr(datasets["train"], "valid_mask", None)
    if mask is not None and loss_cfg.get("masked", True):
        mask = torch.as_tensor(mask, dtype=torch.bool, device=device)
    else:
        mask = None
    use_coverage = bool(loss_cfg.get("masked", True))  # and target_valid of batches

    # ---- model, optimiser, precision
    seed_everything(seed)
    model = ckpt_io.build_model(plain["model"]).to(device)
    amp_dtype = resolve_precision(tcfg.get("precision", "auto"), device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = bool(tcfg.get("cudnn_benchmark", True))
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        if tcfg.get("channels_last", "auto") in ("auto", True):
            model = model.to(memory_format=torch.channels_last)
    optimizer = instantiate(plain["optimizer"])(params=model.parameters())
    scheduler = None
    if plain.get("scheduler"):
        scheduler = instantiate(plain["scheduler"])(optimizer=optimizer)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    # ---- resume
    state = TrainState()
    resume_path = _find_resume_checkpoint(tcfg, run_dir)
    rng_state = None
    if resume_path is not None:
        ck = ckpt_io.load_checkpoint(resume_path, map_location=device)
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        if ck.get("scaler") is not None:
            scaler.load_state_dict(ck["scaler"])
        if scheduler is not None and ck.get("scheduler") is not None:
            scheduler.load_state_dict(ck["scheduler"])
        state = TrainState(**ck["train_state"])
        rng_state = ck.get("rng")
        if ck["config"].get("model") != plain["model"]:
            warnings.warn(
                f"resuming from {resume_path} whose model config differs from this run's",
                stacklevel=2,
            )
        if env.is_main:
            log.info(
                "resumed from %s at step %d (epoch %d)",
                resume_path,
                state.step,
                state.epoch,
            )

    raw_model = model
    if tcfg.get("compile", False):
        model = torch.compile(model)
    train_model: nn.Module = model
    if env.distributed:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if rng_state is not None:
        ckpt_io.restore_rng_state(rng_state)

    # ---- settings
    max_epochs = tcfg.get("max_epochs")
    max_epochs = math.inf if max_epochs is None or max_epochs < 0 else int(max_epochs)
    max_steps = tcfg.get("max_steps")
    max_steps = math.inf if max_steps is None or max_steps < 0 else int(max_steps)
    if math.isinf(max_epochs) and math.isinf(max_steps):
        raise ValueError(
            "set trainer.max_epochs or trainer.max_steps (both are unlimited)"
        )
    val_interval = tcfg.get("val_check_interval")
    ckpt_every = tcfg.get("checkpoint_every_n_steps")
    limit_val = tcfg.get("limit_val_batches")
    es_cfg = dict(tcfg.get("early_stopping") or {})
    patience = es_cfg.get("patience")
    min_delta = float(es_cfg.get("min_delta", 0.0))
    clip = tcfg.get("grad_clip_norm")
    policy = str(tcfg.get("nonfinite", "stop"))
    if policy not in ("stop", "skip"):
        raise ValueError(f"trainer.nonfinite must be 'stop' or 'skip', got {policy!r}")
    max_skips = int(tcfg.get("max_nonfinite_skips", 20))
    log_every = max(int(log_cfg.get("log_every_n_steps", 10)), 1)
    logger = MetricsLogger(run_dir, env.is_main, log_cfg.get("tensorboard", "auto"))
    if resume_path is not None and resume_path.parent.name == "checkpoints":
        # a resumed run's metrics.csv starts with the history it continues
        logger.carry_over(resume_path.parent.parent / "metrics.csv", state.step)
    show_bar = env.is_main and bool(log_cfg.get("progress_bar", True))
    config_for_ckpt = plain

    last_val: dict[str, float] = {}
    window = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, count
    last_train_loss = math.nan
    last_grad_norm: float | None = None
    validated_at = -1
    val_time = 0.0  # validation seconds inside the current epoch

    def make_checkpoint() -> dict[str, Any]:
        return {
            "model": ckpt_io.unwrap_model(raw_model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "config": config_for_ckpt,
            "step": state.step,
            "epoch": state.epoch,
            "train_state": asdict(state),
            "early_stopping": {
                "best_val_loss": state.best_val_loss,
                "best_step": state.best_step,
                "bad_validations": state.bad_validations,
                "patience": patience,
            },
            "rng": ckpt_io.capture_rng_state(),
            "metrics": dict(last_val, train_loss=last_train_loss),
            # issue 16: the fitted preprocessor travels with the checkpoint
            "preprocessing": checkpoint_preprocessing(datasets["train"]),
        }

    def save(name: str) -> None:
        if env.is_main:
            ckpt_io.save_checkpoint(make_checkpoint(), ckpt_dir / name)

    def measure_val() -> dict[str, float]:
        """Validation loss and MSE of the current weights, logged and kept."""
        nonlocal last_val
        res = evaluate_loss(
            raw_model,
            val_loader,
            loss_fn,
            device,
            mask,
            amp_dtype,
            None if limit_val is None else int(limit_val),
            use_coverage=use_coverage,
        )
        last_val = {"val_loss": res["loss"], "val_mse": res["mse"]}
        logger.log(state.step, state.epoch, "val", loss=res["loss"], mse=res["mse"])
        return res

    def validate() -> bool:
        """Validate, checkpoint, update early stopping; True when patience ran out."""
        nonlocal validated_at, val_time
        t0 = time.perf_counter()
        validated_at = state.step
        res = measure_val()
        if scheduler is not None and isinstance(
            scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau
        ):
            scheduler.step(res["loss"])
        improved = res["loss"] < state.best_val_loss - min_delta
        if improved:
            state.best_val_loss, state.best_step = res["loss"], state.step
            state.bad_validations = 0
        else:
            state.bad_validations += 1
        save("last.pt")
        if improved:
            save("best.pt")
        if env.is_main:
            log.info(
                "step %d epoch %d: val_loss %.5f val_mse %.5f (best %.5f at step %d)",
                state.step,
                state.epoch,
                res["loss"],
                res["mse"],
                state.best_val_loss,
                state.best_step,
            )
        val_time += time.perf_counter() - t0
        return patience is not None and state.bad_validations >= int(patience)

    def nonfinite(what: str, value: float) -> bool:
        """Apply the policy; True to skip this step."""
        msg = (
            f"non-finite {what} ({value}) at step {state.step + 1} (epoch {state.epoch}); "
            "the last good checkpoint is in "
            f"{ckpt_dir}. Lower optimizer.lr, set trainer.grad_clip_norm, or use "
            "trainer.precision=32"
        )
        if policy == "stop":
            raise NonFiniteLossError(
                msg + "; or trainer.nonfinite=skip to skip such steps"
            )
        state.nonfinite_skips += 1
        warnings.warn(msg + "; skipping the step", RuntimeWarning, stacklevel=3)
        optimizer.zero_grad(set_to_none=True)
        if state.nonfinite_skips > max_skips:
            raise NonFiniteLossError(
                f"{state.nonfinite_skips} non-finite steps (more than "
                f"trainer.max_nonfinite_skips={max_skips}); training diverged. " + msg
            )
        return True

    # ---- loop
    train_model.train()
    optimizer.zero_grad(set_to_none=True)
    # a resumed run that had already finished trains no further
    stop = state.step >= max_steps or (
        patience is not None and state.bad_validations >= int(patience)
    )
    while not stop and state.epoch < max_epochs:
        train_sampler.set_epoch(state.epoch, skip=state.batch_in_epoch * batch_size)
        n_batches = _ceil_div(train_sampler.epoch_size(), batch_size)
        bar = tqdm(
            total=n_batches,
            initial=state.batch_in_epoch,
            desc=f"epoch {state.epoch}",
            disable=not show_bar,
            dynamic_ncols=True,
            leave=False,
        )
        t_epoch, val_time = time.perf_counter(), 0.0
        full_epoch = state.batch_in_epoch == 0
        t_window, seq_window = time.perf_counter(), 0
        for batch in train_loader:
            inputs, targets, *cover = (t.to(device, non_blocking=True) for t in batch)
            with _autocast(device, amp_dtype):
                logits = train_model(inputs, targets.shape[1])
            cover = cover[0] if cover and use_coverage else None
            loss = loss_fn(logits, targets, combine_masks(mask, cover))
            if callbacks.on_loss is not None:
                loss = callbacks.on_loss(state.step + 1, loss)
            finite = torch.isfinite(loss.detach()).to(torch.float32)
            if env.distributed:  # every rank must take the same decision
                finite = all_reduce_sum(finite) / env.world_size
            skip = False
            if float(finite) < 1.0:
                skip = nonfinite("loss", float(loss.detach()))
            if not skip:
                scaler.scale(loss).backward()
                if clip:
                    scaler.unscale_(optimizer)
                    norm = nn.utils.clip_grad_norm_(raw_model.parameters(), float(clip))
                    last_grad_norm = float(norm)
                    if not scaler.is_enabled() and not math.isfinite(last_grad_norm):
                        skip = nonfinite("gradient norm", last_grad_norm)
            if not skip:
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                if scheduler is not None and not isinstance(
                    scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau
                ):
                    scheduler.step()
                value = float(loss.detach())
                window += torch.tensor([value, 1.0], dtype=torch.float64, device=device)
                if math.isnan(state.first_train_loss):
                    state.first_train_loss = value
            state.step += 1
            state.batch_in_epoch += 1
            n_seq = inputs.shape[0] * env.world_size
            state.train_sequences += n_seq
            seq_window += n_seq
            if callbacks.on_step_end is not None:
                callbacks.on_step_end(state.step, raw_model)
            if show_bar:
                bar.update(1)
                bar.set_postfix(
                    loss=f"{float(loss.detach()):.4f}",
                    seq_s=f"{seq_window / max(time.perf_counter() - t_window, 1e-9):.1f}",
                )
            # (the window's step count is the same on every rank: skips are agreed)
            if state.step % log_every == 0 and window[1] > 0:
                totals = all_reduce_sum(window.clone())
                elapsed = max(time.perf_counter() - t_window, 1e-9)
                last_train_loss = float(totals[0] / totals[1])
                logger.log(
                    state.step,
                    state.epoch,
                    "train",
                    loss=last_train_loss,
                    lr=optimizer.param_groups[0]["lr"],
                    seq_per_s=seq_window / elapsed,
                    grad_norm=last_grad_norm,
                )
                window.zero_()
                t_window, seq_window = time.perf_counter(), 0
            mid_epoch = state.batch_in_epoch < n_batches
            if val_interval and state.step % int(val_interval) == 0:
                stop = validate()
            elif ckpt_every and state.step % int(ckpt_every) == 0:
                save("last.pt")
            if state.step >= max_steps and mid_epoch:
                stop = True
            if stop:
                break
        bar.close()
        epoch_time = time.perf_counter() - t_epoch - val_time
        state.train_time_s += epoch_time
        if stop:
            break
        if full_epoch:
            state.epoch_times.append(epoch_time)
        # the epoch is complete
        state.epoch += 1
        state.batch_in_epoch = 0
        if window[1] > 0:
            totals = all_reduce_sum(window.clone())
            last_train_loss = float(totals[0] / totals[1])
            logger.log(
                state.step,
                state.epoch,
                "train",
                loss=last_train_loss,
                lr=optimizer.param_groups[0]["lr"],
            )
            window.zero_()
        if not val_interval:
            stop = validate()
        if state.step >= max_steps:
            stop = True
    state.stopped_early = bool(
        patience is not None and state.bad_validations >= int(patience)
    )

    # ---- wrap up
    if validated_at != state.step:
        # a reporting-only validation: does not touch the early-stopping state
        measure_val()
    save("last.pt")
    if env.is_main and not (ckpt_dir / "best.pt").exists():
        save("best.pt")
    logger.close()

    metrics: dict[str, float] = {
        "step": float(state.step),
        "epoch": float(state.epoch),
        "train_loss": last_train_loss,
        "train_loss_first": state.first_train_loss,
        **last_val,
        "best_val_loss": state.best_val_loss,
        "best_step": float(state.best_step),
        "stopped_early": float(state.stopped_early),
        "nonfinite_skips": float(state.nonfinite_skips),
        "seq_per_s": state.train_sequences / state.train_time_s
        if state.train_time_s > 0
        else math.nan,
        "epoch_time_s": float(np.mean(state.epoch_times))
        if state.epoch_times
        else math.nan,
    }
    if env.is_main and plain.get("evaluate_after_training", False):
        metrics.update(
            _test_evaluation(raw_model, ckpt_dir, datasets, cfg, run_dir, device)
        )
    if env.is_main and log_cfg.get("print_summary", True):
        _print_summary(metrics, run_dir)
    return metrics


def _test_evaluation(
    model: nn.Module,
    ckpt_dir: Path,
    datasets: dict[str, Dataset],
    cfg: DictConfig | Mapping[str, Any],
    run_dir: Path,
    device: torch.device,
) -> dict[str, float]:
    """Evaluate the best weights on the test split with the lead's hook, if present."""
    try:
        from nowcast.evaluation.run import run_test_evaluation
    except ModuleNotFoundError as err:
        if err.name not in ("nowcast.evaluation.run", "nowcast.evaluation"):
            raise
        log.info("test evaluation skipped: nowcast.evaluation.run is not available")
        return {}
    best = ckpt_io.load_checkpoint(ckpt_dir / "best.pt", map_location=device)
    model = ckpt_io.unwrap_model(model)
    model.load_state_dict(best["model"])
    model.eval()
    result = run_test_evaluation(model, datasets, cfg, run_dir)
    if not isinstance(result, Mapping):
        return {}
    out = {}
    for k, v in result.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k if k.startswith("test_") else f"test_{k}"] = float(v)
    return out


def _print_summary(metrics: Mapping[str, float], run_dir: Path) -> None:
    lines = [
        "",
        f"Training finished after {int(metrics['step'])} steps "
        f"({int(metrics['epoch'])} full epochs"
        + (", stopped early" if metrics.get("stopped_early") else "")
        + ").",
        f"  train loss: first step {metrics['train_loss_first']:.4f}, "
        f"last {metrics['train_loss']:.4f}",
        f"  val loss: last {metrics.get('val_loss', math.nan):.4f}, "
        f"best {metrics['best_val_loss']:.4f} at step {int(metrics['best_step'])}",
        f"  throughput: {metrics['seq_per_s']:.1f} sequences/s",
        f"Results in {run_dir}:",
        f"  checkpoints  {run_dir / 'checkpoints' / 'best.pt'} (and last.pt)",
        f"  metrics      {run_dir / 'metrics.csv'}",
        f"  config       {run_dir / 'config.yaml'}",
        "Evaluate again: python scripts/evaluate.py "
        f"ckpt_path={run_dir / 'checkpoints' / 'best.pt'}",
        "Load in Python: nowcast.training.checkpoint.load_forecaster"
        f"('{run_dir / 'checkpoints' / 'best.pt'}')",
    ]
    print("\n".join(lines), flush=True)
