"""Training: the BPTT loop, checkpoints, losses and multi-process helpers.

``train(cfg)`` runs a whole training from a composed ``configs/train.yaml``;
``load_forecaster(path)`` rebuilds a trained model from a checkpoint for inference.
"""

# registers the "classify" and "series" tasks with the task seam (issue 14)
from nowcast.training import other_tasks as _other_tasks  # noqa: F401
from nowcast.training.checkpoint import (
    load_checkpoint,
    load_forecaster,
    save_checkpoint,
)
from nowcast.training.losses import available_losses, get_loss
from nowcast.training.preemption import EXIT_PREEMPTED, TrainingPreempted
from nowcast.training.trainer import Callbacks, NonFiniteLossError, train

__all__ = [
    "train",
    "Callbacks",
    "NonFiniteLossError",
    "TrainingPreempted",
    "EXIT_PREEMPTED",
    "load_checkpoint",
    "load_forecaster",
    "save_checkpoint",
    "get_loss",
    "available_losses",
]
