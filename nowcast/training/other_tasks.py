"""The other ConvRNN uses as training tasks: clip classification and rain series.

Both plug into the one training loop through the task seam of
:mod:`nowcast.training.tasks` (selected by the config key ``task``):

* ``task: classify`` -- :class:`ClassificationTask`: ``model(clips) -> logits``,
  cross-entropy, validation loss and accuracy, ``best.pt`` by validation accuracy; the
  test report (accuracy, per-class precision / recall, confusion matrix table and PNG)
  by :mod:`nowcast.evaluation.classification`.
* ``task: series`` -- :class:`SeriesTask`: ``model(history) -> area-mean rain``
  (mm/h), MSE or MAE, validation loss / MAE / RMSE, ``best.pt`` by validation loss;
  the test report compares the model with persistence and the field forecasters'
  area means (:mod:`nowcast.evaluation.series`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from nowcast.evaluation.evaluate import is_main_process
from nowcast.training.schema import TASK_SCHEMAS, EvaluationSchema, LossSchema, spec
from nowcast.training.tasks import (
    Batch,
    DeviceTask,
    Report,
    RunConfig,
    Splits,
    TaskSetup,
    register_task,
)

__all__ = [
    "ClassificationTask",
    "SeriesEvaluationSchema",
    "SeriesLossSchema",
    "SeriesTask",
    "evaluate_task_checkpoint",
    "warmup_cosine",
]

log = logging.getLogger("nowcast.training")

SERIES_LOSSES = {"mse": F.mse_loss, "mae": F.l1_loss}


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int = 200,
    total_steps: int = 1000,
    final_fraction: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the optimiser's rate, then cosine decay (stepped per batch).

    The factor of the base rate is ``(s + 1) / warmup_steps`` for the first
    ``warmup_steps`` steps ``s``, then ``f + (1 - f) (1 + cos(pi p)) / 2`` with ``p``
    the fraction of the remaining ``total_steps - warmup_steps`` steps done (``f`` =
    ``final_fraction``; it stays at ``f`` after ``total_steps``). KTH reference: 200
    warm-up steps, cosine over 30 epochs.
    """
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"need 0 <= warmup_steps < total_steps, got {warmup_steps} and {total_steps}"
        )

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        done = min((step - warmup_steps) / (total_steps - warmup_steps), 1.0)
        return final_fraction + (1 - final_fraction) * 0.5 * (
            1 + math.cos(math.pi * done)
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class _TaskBase(DeviceTask):
    """Shared part of the tasks: ``test_evaluation``'s skip of a missing test split
    (``evaluate``'s loop of per-batch sums is :class:`DeviceTask`'s)."""

    def _test_report(
        self, model: nn.Module, test: Dataset, cfg: RunConfig, out_dir: Path
    ) -> Report:
        raise NotImplementedError

    def test_evaluation(
        self, model: nn.Module, datasets: Splits, cfg: RunConfig, run_dir: Path
    ) -> Report:
        """The task's report on the test split; rank 0 writes it to ``run_dir/evaluation``."""
        if len(datasets.get("test", ())) == 0:
            log.info("test evaluation skipped: no test split")
            return {}
        return self._test_report(
            model, datasets["test"], cfg, Path(run_dir) / "evaluation"
        )


class ClassificationTask(_TaskBase):
    """Clips ``(B, T, C, H, W)`` and labels ``(B,)``; cross-entropy on the logits.

    Parameters
    ----------
    device : torch.device
    amp_dtype : torch.dtype, optional
        Autocast dtype of the forward passes.
    classes : sequence of str
        Class names (for the report), in label order.
    label_smoothing : float
        Of the cross-entropy (0: plain).
    """

    monitor = "accuracy"
    higher_is_better = True
    metric_columns = ("loss", "accuracy")

    def __init__(
        self,
        device: torch.device,
        amp_dtype: torch.dtype | None,
        classes: tuple[str, ...],
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(device, amp_dtype)
        self.classes = tuple(classes)
        self.label_smoothing = float(label_smoothing)

    def _forward(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, ...]:
        clips, labels = self.on_device(batch[:2])
        with self.autocast():
            logits = model(clips)
        loss = F.cross_entropy(
            logits.float(), labels, label_smoothing=self.label_smoothing
        )
        return loss, logits, labels

    def training_loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
        """Mean cross-entropy of the batch and its number of clips."""
        loss, _, labels = self._forward(model, batch)
        return loss, int(labels.shape[0])

    def _batch_sums(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        loss, logits, labels = self._forward(model, batch)
        n = labels.shape[0]
        correct = (logits.argmax(1) == labels).sum()
        values = [float(loss) * n, float(correct), float(n)]
        return torch.tensor(values, dtype=torch.float64, device=self.device)

    def evaluate(
        self, model: nn.Module, loader: DataLoader, limit_batches: int | None = None
    ) -> dict[str, float]:
        """``loss`` (mean cross-entropy), ``accuracy`` and ``n`` over all ranks."""
        loss_sum, correct, n = self._sums(model, loader, limit_batches, 3).tolist()
        if n == 0:
            return {"loss": math.nan, "accuracy": math.nan, "n": 0.0}
        return {"loss": loss_sum / n, "accuracy": correct / n, "n": n}

    def _test_report(
        self, model: nn.Module, test: Dataset, cfg: RunConfig, out_dir: Path
    ) -> Report:
        """Accuracy, per-class precision / recall and the confusion matrix (table,
        JSON, PNG)."""
        from nowcast.evaluation.classification import (
            classification_report,
            evaluate_classifier,
        )

        evaluation = dict(cfg.get("evaluation") or {})
        scores = evaluate_classifier(
            model,
            test,
            len(self.classes),
            batch_size=int(evaluation.get("batch_size", 32)),
            device=self.device,
            max_batches=evaluation.get("max_batches"),
        )
        if is_main_process():
            paths = classification_report(
                scores, self.classes, out_dir, str(cfg.get("name"))
            )
            log.info(
                "test accuracy %.4f; report %s", scores["accuracy"], paths["markdown"]
            )
        per_class = {
            f"recall_{name}": r
            for name, r in zip(self.classes, scores["recall"], strict=True)
        }
        return {"accuracy": scores["accuracy"], "n_clips": scores["n"], **per_class}


@register_task("classify")
def _classification_task(setup: TaskSetup) -> ClassificationTask:
    """The classification task; class names from the training split's ``classes``."""
    classes = getattr(setup.datasets["train"], "classes", None)
    if classes is None:
        n = int(setup.cfg["model"]["num_classes"])
        classes = tuple(str(k) for k in range(n))
    smoothing = float(
        dict(setup.cfg.get("task_options") or {}).get("label_smoothing", 0)
    )
    return ClassificationTask(setup.device, setup.amp_dtype, tuple(classes), smoothing)


class SeriesTask(_TaskBase):
    """Series histories ``(B, T, F)`` and future area means ``(B, L, 1)`` in mm/h.

    Parameters
    ----------
    device : torch.device
    amp_dtype : torch.dtype, optional
        Autocast dtype of the forward passes.
    loss : {"mse", "mae"}
        Training loss on the raw outputs (no sigmoid: the targets are in mm/h).
    """

    monitor = "loss"
    higher_is_better = False
    metric_columns = ("loss", "mae", "rmse")

    def __init__(
        self, device: torch.device, amp_dtype: torch.dtype | None, loss: str = "mse"
    ) -> None:
        if loss not in SERIES_LOSSES:
            raise ValueError(
                f"the series task trains with loss.name mse or mae, got {loss!r}"
            )
        super().__init__(device, amp_dtype)
        self.loss_name = loss
        self.loss_fn = SERIES_LOSSES[loss]

    def _forward(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, ...]:
        inputs, targets = self.on_device(batch[:2])
        with self.autocast():
            out = model(inputs, targets.shape[1])
        return out.float(), targets.float()

    def training_loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
        """The configured loss of the batch (mm/h) and its number of windows."""
        out, targets = self._forward(model, batch)
        return self.loss_fn(out, targets), int(targets.shape[0])

    def _batch_sums(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        out, targets = self._forward(model, batch)
        n, per_window = targets.shape[0], targets[0].numel()
        err = out - targets
        values = [
            float(self.loss_fn(out, targets)) * n,
            float(err.abs().sum()) / per_window,  # window means, summed
            float((err**2).sum()) / per_window,
            float(n),
        ]
        return torch.tensor(values, dtype=torch.float64, device=self.device)

    def evaluate(
        self, model: nn.Module, loader: DataLoader, limit_batches: int | None = None
    ) -> dict[str, float]:
        """``loss``, ``mae`` and ``rmse`` (mm/h, over all leads) and ``n``."""
        loss_sum, abs_sum, sq_sum, n = self._sums(model, loader, limit_batches, 4)
        n = float(n)
        if n == 0:
            return {"loss": math.nan, "mae": math.nan, "rmse": math.nan, "n": 0.0}
        return {
            "loss": float(loss_sum) / n,
            "mae": float(abs_sum) / n,
            "rmse": math.sqrt(float(sq_sum) / n),
            "n": n,
        }

    def _test_report(
        self, model: nn.Module, test: Dataset, cfg: RunConfig, out_dir: Path
    ) -> Report:
        """The series table (model, persistence, field forecasters)."""
        from nowcast.evaluation.series import run_series_evaluation

        return run_series_evaluation(model, test, cfg, out_dir, is_main_process())


@register_task("series")
def _series_task(setup: TaskSetup) -> SeriesTask:
    """The series task with ``loss.name`` (``mse`` or ``mae``; default ``mse``)."""
    loss_name = str(dict(setup.cfg.get("loss") or {}).get("name", "mse"))
    return SeriesTask(setup.device, setup.amp_dtype, loss_name)


def evaluate_task_checkpoint(
    ckpt: Mapping[str, Any],
    data_cfg: Mapping[str, Any] | None,
    out_dir: str | Path,
    device: torch.device | str = "cpu",
) -> Mapping[str, Any]:
    """The test report of a classification or series checkpoint (``scripts/evaluate.py``).

    Rebuilds the model and the data (``data_cfg``, default the checkpoint's own), then
    runs the task's ``test_evaluation`` exactly as at the end of training; files go
    to ``out_dir/evaluation``.
    """
    from nowcast.training.checkpoint import build_model
    from nowcast.training.tasks import build_task
    from nowcast.training.trainer import build_datasets

    config = dict(ckpt["config"])
    if data_cfg is not None:
        config["data"] = dict(data_cfg)
    device = torch.device(device)
    datasets = build_datasets(config["data"])
    model = build_model(config["model"])
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    task = build_task(config, datasets, device, None)
    return task.test_evaluation(model, datasets, config, Path(out_dir))


@dataclass
class SeriesEvaluationSchema(EvaluationSchema):
    """``evaluation`` of a series run: the forecast keys (the shared evaluation group's;
    the series report reads ``batch_size`` and ``max_batches``) and its own."""

    field_forecasters: dict[str, Any] | None = None
    wet_threshold: float = spec(
        0.1, lambda v: v > 0, "a rain rate > 0 (mm/h) for a wet area mean"
    )


@dataclass
class SeriesLossSchema(LossSchema):
    """``loss`` of a series run: plain MSE or MAE on the mm/h outputs."""

    name: Literal["mse", "mae"] = "mse"


# the classification run's evaluation keys are the shared group's (it reads
# batch_size and max_batches); its loss section is null (cross-entropy)
TASK_SCHEMAS["classify"] = {"evaluation": EvaluationSchema}
TASK_SCHEMAS["series"] = {
    "evaluation": SeriesEvaluationSchema,
    "loss": SeriesLossSchema,
}
