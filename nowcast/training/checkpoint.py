"""Atomic checkpoint save / load, and a trained forecaster rebuilt for inference.

A checkpoint is a ``torch.save`` dictionary with (at least)

``model``       state dict of the bare model (no DDP / ``torch.compile`` prefixes);
``optimizer``   optimiser state dict; ``scaler`` / ``scheduler`` when used;
``config``      the resolved run configuration as a plain dict (model, data, trainer,
                loss, ...), enough to rebuild the model and the test split;
``step``, ``epoch``, ``batch_in_epoch``  where training stood;
``early_stopping``  best validation loss, its step, validations without improvement;
``rng``         Python / numpy / torch (CPU and CUDA) random states;
``metrics``     the latest metrics;
``preprocessing``  the fitted preprocessor of the processed training data, or None
                (:func:`nowcast.operational.checkpoint_preprocessing`; forecasts use it).

Writes go to a temporary file in the same directory followed by :func:`os.replace`, so a
crash mid-write never leaves a truncated ``last.pt`` behind, and a model holding NaN or
inf is refused, so no checkpoint ever carries a diverged model.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "REQUIRED_KEYS",
    "save_checkpoint",
    "load_checkpoint",
    "slim_checkpoint",
    "load_forecaster",
    "build_model",
    "unwrap_model",
    "capture_rng_state",
    "restore_rng_state",
]

#: Keys every checkpoint written by the trainer holds.
REQUIRED_KEYS = ("model", "optimizer", "config", "step", "epoch", "metrics")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare module inside DistributedDataParallel and/or ``torch.compile``."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module  # DataParallel / DistributedDataParallel
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod  # torch.compile
        else:
            return model


def _nonfinite_tensors(state: Mapping[str, Any]) -> list[str]:
    return [
        k
        for k, v in state.items()
        if isinstance(v, torch.Tensor)
        and v.is_floating_point()
        and not bool(torch.isfinite(v).all())
    ]


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write a checkpoint atomically (temporary file, then :func:`os.replace`).

    Parameters
    ----------
    state : mapping
        The checkpoint dictionary; ``state["model"]``, if present, is a state dict.
    path : str or os.PathLike
        Destination; parent directories are created.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If a model tensor holds NaN or inf (a diverged model is never checkpointed).
    """
    path = Path(path)
    bad = _nonfinite_tensors(state.get("model", {}))
    if bad:
        raise ValueError(
            f"refusing to write checkpoint {path}: model tensors {bad[:5]} hold NaN or "
            "inf (training diverged); lower the learning rate or enable gradient "
            "clipping (trainer.grad_clip_norm)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(dict(state), tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.pt`` file (e.g. ``runs/<name>/<time>/checkpoints/best.pt``).
    map_location : str or torch.device
        Where tensors are loaded.

    Returns
    -------
    dict
        With the keys of :data:`REQUIRED_KEYS` and any others that were saved.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a readable checkpoint or lacks required keys.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist; train one with `python scripts/train.py` "
            "(it writes <run dir>/checkpoints/last.pt and best.pt)"
        )
    try:
        # weights_only=False: the checkpoint holds RNG states and the config dict
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means corrupt
        raise ValueError(
            f"checkpoint {path} is corrupt or not a torch checkpoint ({err}); "
            "use another one (e.g. best.pt instead of last.pt) or retrain"
        ) from err
    if not isinstance(ckpt, dict):
        raise ValueError(
            f"checkpoint {path} holds a {type(ckpt).__name__}, expected a dict written "
            "by nowcast.training.checkpoint.save_checkpoint"
        )
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise ValueError(
            f"checkpoint {path} lacks keys {missing}; it was not written by "
            "nowcast's trainer"
        )
    return ckpt


def slim_checkpoint(ckpt: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """A checkpoint for inference and sharing: weights, config and provenance only.

    Drops the optimiser, scaler, scheduler and RNG states (which only resuming needs;
    a slim checkpoint cannot be resumed) and casts nothing, so the model's outputs are
    unchanged. Keeps the fitted preprocessing (``preprocessing``) that forecasts use.

    Parameters
    ----------
    ckpt : mapping
        A checkpoint read with :func:`load_checkpoint`.
    **extra
        Entries to add (e.g. ``shipped={"scores": ..., "command": ...}``).

    Returns
    -------
    dict
        Loadable by :func:`load_checkpoint` / :func:`load_forecaster`; its
        ``optimizer`` entry is ``None``.
    """
    keep = {k: ckpt[k] for k in ("model", "config", "step", "epoch", "metrics")}
    keep["preprocessing"] = ckpt.get("preprocessing")  # issue 16: kept for forecasts
    return {**keep, "optimizer": None, "train_state": ckpt.get("train_state"), **extra}


def build_model(model_config: Mapping[str, Any]) -> nn.Module:
    """Instantiate a model from its config node (a mapping with ``_target_``)."""
    from hydra.utils import instantiate  # config-building helper: hydra stays here

    if "_target_" not in model_config:
        raise ValueError(
            f"model config needs a '_target_' naming the model class, got keys "
            f"{sorted(model_config)}"
        )
    return instantiate(dict(model_config), _convert_="all")


def load_forecaster(
    path: str | os.PathLike | Mapping[str, Any],
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """Rebuild a trained forecaster from a checkpoint, for inference.

    Parameters
    ----------
    path : str, os.PathLike or dict
        Checkpoint written by the trainer, or one already read with
        :func:`load_checkpoint` (callers that also need its config read it once).
    map_location : str or torch.device
        Device of the returned model.

    Returns
    -------
    torch.nn.Module
        The model in eval mode with the stored weights; call
        ``model.predict(inputs, n_steps)`` for forecasts in [0, 1].
    """
    ckpt = (
        path
        if isinstance(path, Mapping)
        else load_checkpoint(path, map_location=map_location)
    )
    if isinstance(path, Mapping):
        path = "(loaded checkpoint)"
    config = ckpt["config"]
    if not isinstance(config, Mapping) or "model" not in config:
        raise ValueError(
            f"checkpoint {path} stores no model config (config keys: "
            f"{sorted(config) if isinstance(config, Mapping) else type(config)})"
        )
    model = build_model(config["model"])
    model.load_state_dict(ckpt["model"])
    return model.to(map_location).eval()


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU, and CUDA when present) random states."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 - the legacy global state
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the states captured by :func:`capture_rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8).cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
