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
  validation and the test evaluation run on every rank over its shard, the sums
  reduced across ranks, the report written by rank 0;
* a tqdm bar (loss, sequences/s, ETA), ``metrics.csv`` always, TensorBoard when the
  ``tensorboard`` package is importable.
"""

from __future__ import annotations

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
    barrier,
    broadcast_object,
    cleanup_distributed,
    init_distributed,
)
from nowcast.training.preemption import StopRequest, TrainingPreempted
from nowcast.training.schema import ConfigError, check_patch_size, validate_config
from nowcast.training.tasks import (
    TrainingTask,
    build_loss,
    build_task,
    evaluate_loss,
)

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
    "LoopSettings",
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
    completed: bool = False  # the run reached its end (not crashed or preempted)


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
    columns : tuple of str
        The CSV columns (default :data:`CSV_COLUMNS`; a task may add its metrics).
    """

    def __init__(
        self,
        run_dir: Path,
        enabled: bool = True,
        tensorboard: object = "auto",
        columns: tuple[str, ...] = CSV_COLUMNS,
    ):
        self.enabled = enabled
        self.columns = tuple(columns)
        self.path = Path(run_dir) / "metrics.csv"
        self._tb = None
        if not enabled:
            return
        new = not self.path.exists()
        self._file = open(self.path, "a", newline="")  # noqa: SIM115 - closed in close()
        self._writer = csv.DictWriter(self._file, fieldnames=self.columns)
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
            self._writer.writerow({k: r.get(k, "") for k in self.columns})
        self._file.flush()
        return len(rows)

    def log(self, step: int, epoch: int, split: str, **values: float) -> None:
        """Append one row; ``values`` are a subset of the logger's columns."""
        if not self.enabled:
            return
        row = {"time_s": f"{time.time():.3f}", "step": step, "epoch": epoch}
        row["split"] = split
        for k, v in values.items():
            if k not in self.columns:
                raise ValueError(f"unknown metrics column {k!r}; known: {self.columns}")
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


def _resolve_run_dir(cfg: Mapping[str, Any], run_dir: str | os.PathLike | None) -> Path:
    if run_dir is not None:
        return Path(run_dir)
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except (ImportError, ValueError):
        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        return Path("runs") / str(cfg.get("name", "default")) / stamp


def _resume_mode(value: object) -> bool | str:
    """``trainer.resume`` as False, True or ``"auto"`` (strings from the CLI too)."""
    text = str(value).strip().lower()
    modes = {"false": False, "none": False, "true": True, "auto": "auto"}
    if text not in modes:
        raise ValueError(
            f"trainer.resume must be false, true or auto, got {value!r}: true "
            "continues the newest last.pt of runs/<name>/, auto does so only when that "
            "run was interrupted (and starts fresh otherwise)"
        )
    return modes[text]


def _find_resume_checkpoint(
    trainer_cfg: Mapping[str, Any], run_dir: Path
) -> Path | None:
    """``trainer.ckpt_path`` or, with ``trainer.resume``, the newest ``last.pt``.

    The newest is looked for in this run directory, then in its sibling run
    directories (``runs/<name>/*/checkpoints/last.pt``), since every hydra launch gets a
    fresh timestamped directory. ``resume=true`` continues it whatever it holds (a
    finished run trains further only if the limits were raised); ``resume=auto``
    continues it only when its run did not complete (crashed or preempted), so a
    requeued job resumes and a new launch after a finished run starts fresh.
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
    mode = _resume_mode(trainer_cfg.get("resume", False))
    if not mode:
        return None
    newest = _newest_last_checkpoint(run_dir)
    if newest is None:
        if mode is True:
            log.warning(
                "trainer.resume=true but no last.pt under %s: starting fresh",
                run_dir.parent,
            )
        return None
    if mode == "auto" and _completed(newest):
        log.info("trainer.resume=auto: %s finished its run; starting fresh", newest)
        return None
    return newest


def _newest_last_checkpoint(run_dir: Path) -> Path | None:
    """This run's ``last.pt``, else the newest of its sibling run directories'."""
    own = run_dir / "checkpoints" / "last.pt"
    if own.is_file():
        return own
    siblings = [
        p
        for p in run_dir.parent.glob("*/checkpoints/last.pt")
        if p.parent.parent != run_dir
    ]
    return max(siblings, key=lambda p: p.stat().st_mtime) if siblings else None


def _completed(path: Path) -> bool:
    """Whether the checkpoint at ``path`` was written at the end of a finished run."""
    ck = ckpt_io.load_checkpoint(path, map_location="cpu")
    return bool(ck.get("train_state", {}).get("completed", False))


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

    Raises
    ------
    TrainingPreempted
        On SIGTERM / SIGUSR1 (:mod:`nowcast.training.preemption`): after the step in
        progress, with ``last.pt`` written; rerun with ``trainer.resume=auto``.
    """
    plain = _to_plain(cfg)
    validate_config(plain)
    callbacks = callbacks or Callbacks()
    tcfg = _section(plain, "trainer")
    env = init_distributed(tcfg.get("accelerator", "auto"), tcfg.get("dist_backend"))
    try:
        with StopRequest() as stop_request:
            run = _set_up(cfg, plain, env, run_dir, callbacks)
            metrics = _train(run, stop_request)
    except BaseException:  # a preempted run: every rank stopped at the same step
        cleanup_distributed()
        raise
    cleanup_distributed(synchronize=True)
    return metrics


@dataclass(frozen=True)
class LoopSettings:
    """The loop's limits and policies, read once from ``trainer`` and ``logging``.

    Attributes
    ----------
    max_epochs, max_steps : float
        Limits (``math.inf``: none); at least one is finite.
    val_interval : int or None
        Validate every this many steps; None: at the end of every epoch.
    ckpt_every : int or None
        Also write ``last.pt`` every this many steps.
    limit_val : int or None
        Validation batches per rank.
    patience : int or None
        Validations without improvement before early stopping (None: never).
    min_delta : float
        Improvement needed to count, in the monitored metric's units.
    clip : float or None
        Gradient-norm clipping threshold.
    nonfinite : {"stop", "skip"}
        Policy for a NaN/inf loss or gradient norm.
    max_skips : int
        With ``nonfinite="skip"``, give up after this many skipped steps.
    log_every : int
        Steps per logged train window.
    """

    max_epochs: float
    max_steps: float
    val_interval: int | None
    ckpt_every: int | None
    limit_val: int | None
    patience: int | None
    min_delta: float
    clip: float | None
    nonfinite: str
    max_skips: int
    log_every: int

    @classmethod
    def from_config(
        cls, tcfg: Mapping[str, Any], log_cfg: Mapping[str, Any]
    ) -> LoopSettings:
        """Read ``trainer`` / ``logging`` sections (None or < 0 limits: unlimited)."""

        def limit(key: str) -> float:
            v = tcfg.get(key)
            return math.inf if v is None or v < 0 else int(v)

        def optional_int(key: str) -> int | None:
            v = tcfg.get(key)
            return None if not v else int(v)

        max_epochs, max_steps = limit("max_epochs"), limit("max_steps")
        if math.isinf(max_epochs) and math.isinf(max_steps):
            raise ValueError(
                "set trainer.max_epochs or trainer.max_steps (both are unlimited)"
            )
        policy = str(tcfg.get("nonfinite", "stop"))
        if policy not in ("stop", "skip"):
            raise ValueError(
                f"trainer.nonfinite must be 'stop' or 'skip', got {policy!r}"
            )
        es_cfg = dict(tcfg.get("early_stopping") or {})
        limit_val = tcfg.get("limit_val_batches")
        patience = es_cfg.get("patience")
        return cls(
            max_epochs=max_epochs,
            max_steps=max_steps,
            val_interval=optional_int("val_check_interval"),
            ckpt_every=optional_int("checkpoint_every_n_steps"),
            limit_val=None if limit_val is None else int(limit_val),
            patience=None if patience is None else int(patience),
            min_delta=float(es_cfg.get("min_delta", 0.0)),
            clip=float(tcfg["grad_clip_norm"]) if tcfg.get("grad_clip_norm") else None,
            nonfinite=policy,
            max_skips=int(tcfg.get("max_nonfinite_skips", 20)),
            log_every=max(int(log_cfg.get("log_every_n_steps", 10)), 1),
        )


@dataclass
class _Run:
    """Everything a training run is made of, built by :func:`_set_up`."""

    cfg: DictConfig | Mapping[str, Any]
    plain: dict[str, Any]
    env: DistEnv
    run_dir: Path
    datasets: dict[str, Dataset]
    batch_size: int
    train_sampler: ShardedSampler
    train_loader: DataLoader
    val_loader: DataLoader
    task: TrainingTask
    model: nn.Module  # the bare module (checkpoints, evaluation)
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    settings: LoopSettings
    callbacks: Callbacks
    train_model: nn.Module | None = None  # compiled / DDP-wrapped, set by _resume
    state: TrainState = field(default_factory=TrainState)
    resume_path: Path | None = None

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"


def _train(run: _Run, stop_request: StopRequest) -> dict[str, float]:
    """Resume, fit, wrap up, test a set-up run: the loop from top to bottom."""
    plain, env = run.plain, run.env
    _resume(run)
    log_cfg = _section(plain, "logging")
    logger = MetricsLogger(
        run.run_dir,
        env.is_main,
        log_cfg.get("tensorboard", "auto"),
        columns=(*CSV_COLUMNS, *_extra_columns(run.task)),
    )
    if run.resume_path is not None and run.resume_path.parent.name == "checkpoints":
        # a resumed run's metrics.csv starts with the history it continues
        logger.carry_over(run.resume_path.parent.parent / "metrics.csv", run.state.step)
    show_bar = env.is_main and bool(log_cfg.get("progress_bar", True))
    loop = _Loop(run, logger, show_bar, stop_request)
    try:
        loop.fit()
        metrics = loop.wrap_up()
    finally:
        logger.close()
    if plain.get("evaluate_after_training", False):
        metrics.update(_test_evaluation(run))
    if env.is_main and log_cfg.get("print_summary", True):
        _print_summary(metrics, run.run_dir, monitor=run.task.monitor)
    return metrics


def _extra_columns(task: TrainingTask) -> tuple[str, ...]:
    return tuple(c for c in task.metric_columns if c not in CSV_COLUMNS)


# --------------------------------------------------------------------------- set-up


def _set_up(
    cfg: DictConfig | Mapping[str, Any],
    plain: dict[str, Any],
    env: DistEnv,
    run_dir_arg: str | os.PathLike | None,
    callbacks: Callbacks,
) -> _Run:
    """Run directory, data and samplers, task, model, optimiser, precision."""
    from hydra.utils import instantiate

    tcfg = _section(plain, "trainer")
    data_cfg = _section(plain, "data")
    settings = LoopSettings.from_config(tcfg, _section(plain, "logging"))
    device = env.device
    run_dir = Path(broadcast_object(str(_resolve_run_dir(plain, run_dir_arg))))
    seed = int(plain.get("seed", 0))

    datasets = build_datasets(data_cfg)  # before any file is written: a run whose
    _check_frames(plain.get("model") or {}, datasets["train"])  # data fail leaves none
    if env.is_main:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(plain), run_dir / "config.yaml")
    batch_size = int(data_cfg.get("batch_size", 8))
    train_sampler, val_sampler = _samplers(datasets, env, batch_size, seed, tcfg)
    num_workers = int(data_cfg.get("num_workers", 0))
    loaders = [
        _loader(datasets[k], s, batch_size, num_workers, device, seed)
        for k, s in (("train", train_sampler), ("val", val_sampler))
    ]
    amp_dtype = resolve_precision(tcfg.get("precision", "auto"), device)
    task = build_task(plain, datasets, device, amp_dtype)

    seed_everything(seed)
    model = ckpt_io.build_model(plain["model"]).to(device)
    model = _tune_for_device(model, device, tcfg)
    optimizer = instantiate(plain["optimizer"])(params=model.parameters())
    scheduler = None
    if plain.get("scheduler"):
        scheduler = instantiate(plain["scheduler"])(optimizer=optimizer)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    return _Run(
        cfg, plain, env, run_dir, datasets, batch_size, train_sampler, *loaders,
        task, model, optimizer, scheduler, scaler, settings, callbacks,
    )  # fmt: skip


def _check_frames(model_cfg: Mapping[str, Any], train_set: Dataset) -> None:
    """Refuse a ``model.patch_size`` that does not divide the data's frames."""
    if "patch_size" not in model_cfg or len(train_set) == 0:
        return
    first = train_set[0][0]
    if isinstance(first, torch.Tensor) and first.ndim >= 3:
        source = f"the training split ({type(train_set).__name__})"
        problem = check_patch_size(model_cfg["patch_size"], first.shape[-2:], source)
        if problem:
            raise ConfigError(f"invalid config: {problem}.")


def _samplers(
    datasets: Mapping[str, Dataset],
    env: DistEnv,
    batch_size: int,
    seed: int,
    tcfg: Mapping[str, Any],
) -> tuple[ShardedSampler, ShardedSampler]:
    """This rank's shuffled (padded) training and ordered validation samplers."""
    limit_train = tcfg.get("limit_train_batches")
    train = ShardedSampler(
        len(datasets["train"]),
        env.world_size,
        env.rank,
        shuffle=True,
        seed=seed,
        pad=True,
        max_samples=None if limit_train is None else int(limit_train) * batch_size,
    )
    val = ShardedSampler(
        len(datasets["val"]), env.world_size, env.rank, shuffle=False, pad=False
    )
    return train, val


def _tune_for_device(
    model: nn.Module, device: torch.device, tcfg: Mapping[str, Any]
) -> nn.Module:
    """On CUDA: cuDNN benchmark, TF32 matmuls and channels-last weights."""
    if device.type != "cuda":
        return model
    torch.backends.cudnn.benchmark = bool(tcfg.get("cudnn_benchmark", True))
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    if tcfg.get("channels_last", "auto") in ("auto", True):
        model = model.to(memory_format=torch.channels_last)
    return model


# --------------------------------------------------------------------------- resume


def _resume(run: _Run) -> None:
    """Load the checkpoint to continue from (if any), wrap the model, restore RNGs.

    Sets ``run.state``, ``run.resume_path`` and ``run.train_model`` (compiled and/or
    DDP-wrapped). The RNG state is restored last, after everything that might draw.
    """
    tcfg = _section(run.plain, "trainer")
    run.resume_path = _find_resume_checkpoint(tcfg, run.run_dir)
    rng_state = None
    if run.resume_path is not None:
        rng_state = _load_training_state(run, run.resume_path)
    model = torch.compile(run.model) if tcfg.get("compile", False) else run.model
    if run.env.distributed:
        device = run.env.device
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    run.train_model = model
    if rng_state is not None:
        ckpt_io.restore_rng_state(rng_state)


def _load_training_state(run: _Run, path: Path) -> Any:
    """Weights, optimiser, scaler, scheduler and loop state from ``path``; its RNG."""
    ck = ckpt_io.load_checkpoint(path, map_location=run.env.device)
    run.model.load_state_dict(ck["model"])
    run.optimizer.load_state_dict(ck["optimizer"])
    if ck.get("scaler") is not None:
        run.scaler.load_state_dict(ck["scaler"])
    if run.scheduler is not None and ck.get("scheduler") is not None:
        run.scheduler.load_state_dict(ck["scheduler"])
    run.state = TrainState(**ck["train_state"])
    run.state.completed = False  # set again when this run reaches its end
    if ck["config"].get("model") != run.plain["model"]:
        warnings.warn(
            f"resuming from {path} whose model config differs from this run's",
            stacklevel=3,
        )
    if run.env.is_main:
        log.info(
            "resumed from %s at step %d (epoch %d)",
            path,
            run.state.step,
            run.state.epoch,
        )
    return ck.get("rng")


# --------------------------------------------------------------------------- the loop


class _Loop:
    """The epoch loop over a set-up :class:`_Run`; :meth:`fit`, then :meth:`wrap_up`.

    Holds what changes while training and is not part of the checkpointed
    :class:`TrainState`: the loss window being averaged for the log, the last
    validation and train losses, and timers.
    """

    def __init__(
        self,
        run: _Run,
        logger: MetricsLogger,
        show_bar: bool,
        stop_request: StopRequest | None = None,
    ):
        self.run, self.state, self.s = run, run.state, run.settings
        self.logger, self.show_bar = logger, show_bar
        self.stop_request = stop_request or StopRequest()
        self.stop_agreed = False  # a preemption signal reached some rank (DDP)
        self.device = run.env.device
        self.last_val: dict[str, float] = {}
        self.window = torch.zeros(2, dtype=torch.float64, device=self.device)
        self.last_train_loss = math.nan
        self.last_grad_norm: float | None = None
        self.validated_at = -1
        self.val_time = 0.0  # validation seconds inside the current epoch
        self.t_window, self.seq_window = time.perf_counter(), 0

    # ---- the loop, top to bottom

    def fit(self) -> None:
        """Train epoch after epoch until a limit or early stopping."""
        self.run.train_model.train()
        self.run.optimizer.zero_grad(set_to_none=True)
        # a resumed run that had already finished trains no further
        stop = self.state.step >= self.s.max_steps or self._patience_ran_out()
        while not stop and self.state.epoch < self.s.max_epochs:
            stop = self.run_epoch()
        self.state.stopped_early = self._patience_ran_out()

    def run_epoch(self) -> bool:
        """One (possibly resumed) epoch; True when training should stop."""
        state, run = self.state, self.run
        run.train_sampler.set_epoch(
            state.epoch, skip=state.batch_in_epoch * run.batch_size
        )
        n_batches = _ceil_div(run.train_sampler.epoch_size(), run.batch_size)
        bar = tqdm(
            total=n_batches,
            initial=state.batch_in_epoch,
            desc=f"epoch {state.epoch}",
            disable=not self.show_bar,
            dynamic_ncols=True,
            leave=False,
        )
        t_epoch, self.val_time = time.perf_counter(), 0.0
        full_epoch = state.batch_in_epoch == 0
        self.t_window, self.seq_window = time.perf_counter(), 0
        stop = False
        for batch in run.train_loader:
            stop = self.train_step(batch, n_batches, bar)
            if stop:
                break
        bar.close()
        epoch_time = time.perf_counter() - t_epoch - self.val_time
        state.train_time_s += epoch_time
        if stop:
            return True
        if full_epoch:
            state.epoch_times.append(epoch_time)
        return self.end_epoch()

    def train_step(self, batch: Any, n_batches: int, bar: tqdm) -> bool:
        """Optimise on one batch, log, validate or checkpoint; True to stop."""
        state = self.state
        loss_value, n_local = self.optimise(batch)
        state.step += 1
        state.batch_in_epoch += 1
        n_seq = n_local * self.run.env.world_size
        state.train_sequences += n_seq
        self.seq_window += n_seq
        if self.run.callbacks.on_step_end is not None:
            self.run.callbacks.on_step_end(state.step, self.run.model)
        if self.show_bar:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", seq_s=f"{self._speed():.1f}")
        # (the window's step count is the same on every rank: skips are agreed)
        if state.step % self.s.log_every == 0 and self.window[1] > 0:
            self.log_train_window(with_speed=True)
        mid_epoch = state.batch_in_epoch < n_batches
        stop = False
        if self.s.val_interval and state.step % self.s.val_interval == 0:
            stop = self.validate()
        elif self.s.ckpt_every and state.step % self.s.ckpt_every == 0:
            self.save("last.pt")
        self.stop_if_preempted()
        return stop or (state.step >= self.s.max_steps and mid_epoch)

    def stop_if_preempted(self) -> None:
        """After a completed step: on a preemption signal, save ``last.pt`` and raise.

        Every rank takes the decision together (:meth:`_agreed_finite`); the step's
        scheduled validation and checkpoint have run, so the saved state is the one
        an uninterrupted run has after this step.
        """
        name = self.stop_request.signal_name
        if self.run.env.distributed:
            if not self.stop_agreed:
                return
            name = name or "a preemption signal (on another rank)"
        elif name is None:
            return
        self.save("last.pt")
        barrier()
        stopped = TrainingPreempted(
            name, self.state.step, self.state.epoch, self.run.ckpt_dir / "last.pt"
        )
        if self.run.env.is_main:
            log.warning("%s", stopped)
        raise stopped

    def end_epoch(self) -> bool:
        """Count the completed epoch, log it, validate; True to stop."""
        self.state.epoch += 1
        self.state.batch_in_epoch = 0
        if self.window[1] > 0:
            self.log_train_window(with_speed=False)
        stop = self.validate() if not self.s.val_interval else False
        return stop or self.state.step >= self.s.max_steps

    # ---- one optimiser step

    def optimise(self, batch: Any) -> tuple[float, int]:
        """Forward, backward, clip, step (or skip a non-finite step).

        Returns the loss value (NaN/inf when skipped) and this rank's batch size.
        """
        run, state = self.run, self.state
        loss, n_local = run.task.training_loss(run.train_model, batch)
        if run.callbacks.on_loss is not None:
            loss = run.callbacks.on_loss(state.step + 1, loss)
        value = float(loss.detach())
        if not self._agreed_finite(value):
            self.nonfinite("loss", value)
            return value, n_local
        run.scaler.scale(loss).backward()
        if self.s.clip:
            run.scaler.unscale_(run.optimizer)
            norm = nn.utils.clip_grad_norm_(run.model.parameters(), self.s.clip)
            self.last_grad_norm = float(norm)
            if not run.scaler.is_enabled() and not math.isfinite(self.last_grad_norm):
                self.nonfinite("gradient norm", self.last_grad_norm)
                return value, n_local
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.optimizer.zero_grad(set_to_none=True)
        if run.scheduler is not None and not _is_plateau(run.scheduler):
            run.scheduler.step()
        self.window += torch.tensor(
            [value, 1.0], dtype=torch.float64, device=self.device
        )
        if math.isnan(state.first_train_loss):
            state.first_train_loss = value
        return value, n_local

    def _agreed_finite(self, value: float) -> bool:
        """Whether the loss ``value`` is finite on every rank (one decision for all).

        Under DDP the same (one) all-reduce also tells every rank whether any of
        them received a preemption signal (:attr:`stop_agreed`).
        """
        finite = math.isfinite(value)
        if not self.run.env.distributed:
            return finite
        stopping = self.stop_request.signal_name is not None
        flags = torch.tensor(
            [float(finite), float(stopping)], dtype=torch.float32, device=self.device
        )
        flags = all_reduce_sum(flags)
        self.stop_agreed = bool(flags[1] > 0)
        return float(flags[0]) >= self.run.env.world_size

    def nonfinite(self, what: str, value: float) -> None:
        """Apply ``trainer.nonfinite`` to a non-finite value: raise or skip the step."""
        state = self.state
        msg = (
            f"non-finite {what} ({value}) at step {state.step + 1} (epoch {state.epoch}); "
            "the last good checkpoint is in "
            f"{self.run.ckpt_dir}. Lower optimizer.lr, set trainer.grad_clip_norm, or "
            "use trainer.precision=32"
        )
        if self.s.nonfinite == "stop":
            raise NonFiniteLossError(
                msg + "; or trainer.nonfinite=skip to skip such steps"
            )
        state.nonfinite_skips += 1
        warnings.warn(msg + "; skipping the step", RuntimeWarning, stacklevel=4)
        self.run.optimizer.zero_grad(set_to_none=True)
        if state.nonfinite_skips > self.s.max_skips:
            raise NonFiniteLossError(
                f"{state.nonfinite_skips} non-finite steps (more than "
                f"trainer.max_nonfinite_skips={self.s.max_skips}); training diverged. "
                + msg
            )

    # ---- logging

    def _speed(self) -> float:
        return self.seq_window / max(time.perf_counter() - self.t_window, 1e-9)

    def log_train_window(self, with_speed: bool) -> None:
        """Log the mean training loss since the last log (over all ranks), reset it.

        ``with_speed``: also the throughput and gradient norm of the window (the
        within-epoch logs; the end-of-epoch row has the loss and learning rate only).
        """
        totals = all_reduce_sum(self.window.clone())
        self.last_train_loss = float(totals[0] / totals[1])
        extra = {}
        if with_speed:
            extra = {"seq_per_s": self._speed(), "grad_norm": self.last_grad_norm}
        self.logger.log(
            self.state.step,
            self.state.epoch,
            "train",
            loss=self.last_train_loss,
            lr=self.run.optimizer.param_groups[0]["lr"],
            **extra,
        )
        self.window.zero_()
        if with_speed:
            self.t_window, self.seq_window = time.perf_counter(), 0

    # ---- validation and checkpoints

    def measure_val(self) -> dict[str, float]:
        """The task's validation metrics of the current weights (all ranks), logged."""
        task = self.run.task
        res = task.evaluate(self.run.model, self.run.val_loader, self.s.limit_val)
        self.last_val = {f"val_{k}": res[k] for k in task.metric_columns}
        values = {k: res[k] for k in task.metric_columns}
        self.logger.log(self.state.step, self.state.epoch, "val", **values)
        return res

    def validate(self) -> bool:
        """Validate, checkpoint, update early stopping; True when patience ran out."""
        t0, state = time.perf_counter(), self.state
        self.validated_at = state.step
        res = self.measure_val()
        value = res[self.run.task.monitor]
        if self.run.scheduler is not None and _is_plateau(self.run.scheduler):
            self.run.scheduler.step(value)
        improved = self._improves(value)
        if improved:
            state.best_val_loss, state.best_step = value, state.step
            state.bad_validations = 0
        else:
            state.bad_validations += 1
        self.save("last.pt")
        if improved:
            self.save("best.pt")
        if self.run.env.is_main:
            log.info(
                "step %d epoch %d: %s (best %s %.5f at step %d)",
                state.step,
                state.epoch,
                " ".join(f"{k} {v:.5f}" for k, v in self.last_val.items()),
                self.run.task.monitor,
                state.best_val_loss,
                state.best_step,
            )
        self.val_time += time.perf_counter() - t0
        return self._patience_ran_out()

    def _improves(self, value: float) -> bool:
        """Whether the monitored validation value beats the best by ``min_delta``.

        ``TrainState.best_val_loss`` holds the best value of the task's monitored
        metric (the loss for forecasting); for a higher-is-better metric the first
        validation always counts as an improvement.
        """
        best, delta = self.state.best_val_loss, self.s.min_delta
        if self.run.task.higher_is_better:
            return self.state.best_step < 0 or value > best + delta
        return value < best - delta

    def _patience_ran_out(self) -> bool:
        patience = self.s.patience
        return patience is not None and self.state.bad_validations >= patience

    def checkpoint(self) -> dict[str, Any]:
        """The checkpoint dict (weights, optimiser, loop and RNG state, config)."""
        run, state = self.run, self.state
        return {
            "model": ckpt_io.unwrap_model(run.model).state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else None,
            "scheduler": run.scheduler.state_dict() if run.scheduler else None,
            "config": run.plain,
            "step": state.step,
            "epoch": state.epoch,
            "train_state": asdict(state),
            "early_stopping": {
                "best_val_loss": state.best_val_loss,
                "best_step": state.best_step,
                "bad_validations": state.bad_validations,
                "patience": self.s.patience,
            },
            "rng": ckpt_io.capture_rng_state(),
            "metrics": dict(self.last_val, train_loss=self.last_train_loss),
            # issue 16: the fitted preprocessor travels with the checkpoint
            "preprocessing": checkpoint_preprocessing(run.datasets["train"]),
        }

    def save(self, name: str) -> None:
        """Write ``checkpoints/<name>`` atomically (rank 0 only)."""
        if self.run.env.is_main:
            ckpt_io.save_checkpoint(self.checkpoint(), self.run.ckpt_dir / name)

    # ---- wrap-up

    def wrap_up(self) -> dict[str, float]:
        """A last (reporting-only) validation, final checkpoints, the run's metrics."""
        state = self.state
        if self.validated_at != state.step:
            # a reporting-only validation: does not touch the early-stopping state
            self.measure_val()
        state.completed = True
        self.save("last.pt")
        if self.run.env.is_main and not (self.run.ckpt_dir / "best.pt").exists():
            self.save("best.pt")
        return {
            "step": float(state.step),
            "epoch": float(state.epoch),
            "train_loss": self.last_train_loss,
            "train_loss_first": state.first_train_loss,
            **self.last_val,
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


def _is_plateau(scheduler: Any) -> bool:
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


# --------------------------------------------------------------------------- test


def _test_evaluation(run: _Run) -> dict[str, float]:
    """The task's test evaluation of the best weights; numeric results as ``test_*``.

    Runs on every rank (each scores its shard of the test split, the sums are
    reduced across ranks, rank 0 writes the report): after a barrier, so that rank
    0's final ``best.pt`` is on disk, every rank loads it (the run directory is on a
    file system all ranks share, as for resuming).
    """
    barrier()
    best = ckpt_io.load_checkpoint(
        run.ckpt_dir / "best.pt", map_location=run.env.device
    )
    model = ckpt_io.unwrap_model(run.model)
    model.load_state_dict(best["model"])
    model.eval()
    result = run.task.test_evaluation(model, run.datasets, run.cfg, run.run_dir)
    if not isinstance(result, Mapping):
        return {}
    out = {}
    for k, v in result.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k if k.startswith("test_") else f"test_{k}"] = float(v)
    return out


def _print_summary(
    metrics: Mapping[str, float], run_dir: Path, monitor: str = "loss"
) -> None:
    """Print the end-of-run summary; ``monitor`` names the value ``best.pt`` follows."""
    lines = [
        "",
        f"Training finished after {int(metrics['step'])} steps "
        f"({int(metrics['epoch'])} full epochs"
        + (", stopped early" if metrics.get("stopped_early") else "")
        + ").",
        f"  train loss: first step {metrics['train_loss_first']:.4f}, "
        f"last {metrics['train_loss']:.4f}",
        f"  val {monitor}: last {metrics.get(f'val_{monitor}', math.nan):.4f}, "
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
