"""What the training loop computes per batch: the seam between the loop and a task.

The loop in :mod:`nowcast.training.trainer` knows nothing about radar frames: it asks
a *task* for the loss of a training batch, for the validation metrics of a loader and
for the test evaluation after training. :class:`ForecastTask` is the nowcasting task
(BPTT over whole sequences, logits -> frames, the configured loss, MSE of
``sigmoid(logits)``). Another task (action classes with cross-entropy and accuracy, a
rain series) implements the same four members and registers a builder with
:func:`register_task`; the run then selects it with the top-level config key
``task`` (default ``forecast``).

Interface of a task (duck-typed, see :class:`TrainingTask`):

* ``training_loss(model, batch) -> (loss, n_samples)``: forward under autocast, the
  scalar loss to back-propagate and the number of samples of this rank's batch;
* ``evaluate(model, loader, limit_batches) -> dict``: metrics over a loader, summed
  over all ranks (every rank calls it on its shard), with ``"n"`` the sample count;
* ``monitor`` (a key of that dict) and ``higher_is_better``: what early stopping and
  ``best.pt`` follow (the forecast task: ``"loss"``, lower is better);
* ``metric_columns``: the keys of that dict logged to ``metrics.csv``;
* ``test_evaluation(model, datasets, cfg, run_dir) -> mapping``: the report after
  training (called on every rank; rank 0 writes files).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from nowcast.registry import Registry
from nowcast.training.distributed import all_reduce_sum
from nowcast.training.losses import combine_masks, get_loss, masked_mean

__all__ = [
    "TrainingTask",
    "TaskSetup",
    "DeviceTask",
    "ForecastTask",
    "register_task",
    "build_task",
    "available_tasks",
    "build_loss",
    "evaluate_loss",
    "autocast",
]

log = logging.getLogger("nowcast.training")

Batch = tuple[torch.Tensor, ...] | list[torch.Tensor]
#: The whole plain run config (``loss``, ``data``, ``evaluation``, ... sections).
RunConfig = Mapping[str, Any]
#: The built ``{"train", "val", "test"}`` splits.
Splits = Mapping[str, Dataset]
#: A test report: scores by name (what ``test_evaluation`` returns).
Report = Mapping[str, Any]


class TrainingTask(Protocol):
    """The per-batch computations the training loop delegates (see the module text)."""

    monitor: str
    higher_is_better: bool
    metric_columns: tuple[str, ...]

    def training_loss(
        self, model: nn.Module, batch: Batch
    ) -> tuple[torch.Tensor, int]: ...

    def evaluate(
        self, model: nn.Module, loader: DataLoader, limit_batches: int | None
    ) -> dict[str, float]: ...

    def test_evaluation(
        self, model: nn.Module, datasets: Splits, cfg: RunConfig, run_dir: Path
    ) -> Report: ...


@dataclass(frozen=True)
class TaskSetup:
    """What a task builder gets: the run's config, splits, device and precision.

    Attributes
    ----------
    cfg : mapping
        The whole plain run config.
    datasets : mapping
        The built ``{"train", "val", "test"}`` splits.
    device : torch.device
        Where the model runs.
    amp_dtype : torch.dtype or None
        Autocast dtype of the forward passes (None: full precision).
    """

    cfg: RunConfig
    datasets: Splits
    device: torch.device
    amp_dtype: torch.dtype | None = None


TaskBuilder = Callable[[TaskSetup], TrainingTask]
_TASKS: Registry[TaskBuilder] = Registry("training task")


# register_task(name) decorates a builder(setup: TaskSetup) -> task; the ``task``
# config key accepts available_tasks().
register_task = _TASKS.register
available_tasks = _TASKS.names


def build_task(
    cfg: RunConfig,
    datasets: Splits,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
) -> TrainingTask:
    """The task named by ``cfg["task"]`` (default ``"forecast"``), built for a run."""
    builder = _TASKS.lookup(str(cfg.get("task") or "forecast"))
    return builder(TaskSetup(cfg, datasets, device, amp_dtype))


def autocast(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``dtype`` on ``device``; a no-op context for None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class DeviceTask:
    """Base of the tasks: where the forward passes run and in which precision.

    Parameters
    ----------
    device : torch.device
    amp_dtype : torch.dtype, optional
        Autocast dtype of the forward passes (None: full precision).
    """

    def __init__(self, device: torch.device, amp_dtype: torch.dtype | None = None):
        self.device = device
        self.amp_dtype = amp_dtype

    def on_device(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        """The batch's tensors on :attr:`device` (non-blocking copies)."""
        return tuple(t.to(self.device, non_blocking=True) for t in batch)

    def autocast(self) -> contextlib.AbstractContextManager:
        """:func:`autocast` with this task's device and dtype."""
        return autocast(self.device, self.amp_dtype)

    def _batch_sums(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The batch's sums behind the validation metrics (float64, on the device)."""
        raise NotImplementedError

    @torch.no_grad()
    def _sums(
        self, model: nn.Module, loader: DataLoader, limit_batches: int | None, n: int
    ) -> torch.Tensor:
        """``n`` sums of :meth:`_batch_sums` over a loader (at most ``limit_batches``
        batches per rank) and over all ranks, in eval mode."""
        was_training = model.training
        model.eval()
        totals = torch.zeros(n, dtype=torch.float64, device=self.device)
        for i, batch in enumerate(loader):
            if limit_batches is not None and i >= limit_batches:
                break
            totals += self._batch_sums(model, batch)
        all_reduce_sum(totals)
        model.train(was_training)
        return totals


#: Losses that need the training set's grey scale besides the balanced ones.
SCALED_LOSSES = ("rain_mse",)


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
    if name.startswith("balanced") or name in SCALED_LOSSES:
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
            log.info("%s loss: %s", name, scale.describe())
    return get_loss(name, **cfg)


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
        ``{"loss": ..., "mse": ..., "n": sequences}`` (means weighted by batch size,
        over the sequences of every rank).
    """
    task = ForecastTask(loss_fn, device, amp_dtype, mask, use_coverage)
    return task.evaluate(model, loader, limit_batches)


class ForecastTask(DeviceTask):
    """Nowcasting: ``model(inputs, n_steps) -> logits`` scored against target frames.

    Parameters
    ----------
    loss_fn : torch.nn.Module
        ``loss_fn(logits, targets, mask) -> scalar``.
    device : torch.device
    amp_dtype : torch.dtype, optional
        Autocast dtype of the forward passes.
    mask : torch.Tensor of bool, (H, W), optional
        Pixels that count (the data's noise mask).
    use_coverage : bool
        Leave out target pixels without data (``target_valid`` of a batch).
    """

    monitor = "loss"
    higher_is_better = False
    metric_columns = ("loss", "mse")

    def __init__(
        self,
        loss_fn: nn.Module,
        device: torch.device,
        amp_dtype: torch.dtype | None = None,
        mask: torch.Tensor | None = None,
        use_coverage: bool = True,
    ):
        super().__init__(device, amp_dtype)
        self.loss_fn = loss_fn
        self.mask = mask
        self.use_coverage = use_coverage

    def _forward(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, ...]:
        """Logits, targets and the pixels that count (mask and coverage) of a batch."""
        inputs, targets, *cover = self.on_device(batch)
        with self.autocast():
            logits = model(inputs, targets.shape[1])
        cover = cover[0] if cover and self.use_coverage else None
        return logits, targets, combine_masks(self.mask, cover)

    def training_loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
        """Loss over every predicted frame of ``(inputs, targets[, target_valid])``."""
        logits, targets, mask = self._forward(model, batch)
        return self.loss_fn(logits, targets, mask), int(targets.shape[0])

    def _batch_sums(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        logits, targets, mask = self._forward(model, batch)
        n = targets.shape[0]
        loss = self.loss_fn(logits, targets, mask)
        mse = masked_mean((torch.sigmoid(logits.float()) - targets) ** 2, mask)
        values = [float(loss) * n, float(mse) * n, n]
        return torch.tensor(values, dtype=torch.float64, device=self.device)

    def evaluate(
        self, model: nn.Module, loader: DataLoader, limit_batches: int | None = None
    ) -> dict[str, float]:
        """``loss`` and ``mse`` of ``sigmoid(logits)`` (batch-size weighted means over
        every rank's sequences) and ``n``; see :func:`evaluate_loss`."""
        loss_sum, mse_sum, n = self._sums(model, loader, limit_batches, 3).tolist()
        if n == 0:
            return {"loss": math.nan, "mse": math.nan, "n": 0.0}
        return {"loss": loss_sum / n, "mse": mse_sum / n, "n": n}

    def test_evaluation(
        self, model: nn.Module, datasets: Splits, cfg: RunConfig, run_dir: Path
    ) -> Report:
        """Skill scores on the test split (``nowcast.evaluation.run``), if present."""
        try:
            from nowcast.evaluation.run import run_test_evaluation
        except ModuleNotFoundError as err:
            if err.name not in ("nowcast.evaluation.run", "nowcast.evaluation"):
                raise
            log.info("test evaluation skipped: nowcast.evaluation.run is not available")
            return {}
        return run_test_evaluation(model, datasets, cfg, run_dir)


@register_task("forecast")
def _forecast_task(setup: TaskSetup) -> ForecastTask:
    """The nowcasting task from the ``loss`` section and the training split's mask."""
    loss_cfg = dict(setup.cfg.get("loss") or {})
    masked = bool(loss_cfg.get("masked", True))
    train = setup.datasets["train"]
    mask = getattr(train, "valid_mask", None)
    if mask is not None and masked:
        mask = torch.as_tensor(mask, dtype=torch.bool, device=setup.device)
    else:
        mask = None
    loss_fn = build_loss(loss_cfg, train)
    return ForecastTask(loss_fn, setup.device, setup.amp_dtype, mask, masked)
