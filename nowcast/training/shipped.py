"""Scores of a shipped checkpoint on the embedded default test split.

One function used by ``scripts/ship_checkpoint.py`` (which records the scores in the
shipped file) and ``tests/test_shipped_checkpoint.py`` (which recomputes and checks
them), so both score exactly the same way: the checkpoint's model next to the baselines
of its run's evaluation settings (ROVER with the data set's tuned parameters when
``<stem>_rover.yaml`` exists, the built-in defaults otherwise), on the test split of
:func:`nowcast.data.synthetic.synthetic_datasets` with its defaults, through
:func:`nowcast.evaluation.run.score_dataset`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["score_on_embedded_test", "SHIPPED_KEYS"]

#: Scores recorded per forecaster (lead means): recorded name -> result key.
SHIPPED_KEYS = {
    "csi": "csi",
    "rainfall_mse": "rainfall_mse",
    "hss": "hss@0.5",
    "correlation": "correlation",
}


def score_on_embedded_test(
    ckpt: Mapping[str, Any], root: str | os.PathLike = "data_cache/synthetic"
) -> dict[str, dict[str, Any]]:
    """Score a loaded checkpoint and its baselines on the embedded default test split.

    Parameters
    ----------
    ckpt : mapping
        A checkpoint read with :func:`nowcast.training.checkpoint.load_checkpoint`.
    root : path
        Cache directory of the embedded default data set (generated when missing).

    Returns
    -------
    dict
        Forecaster name -> ``{"csi", "rainfall_mse", "hss", "correlation"`` (lead
        means), ``"csi_by_lead"`` (list), ``"n_windows"``, ``"rover_note"}``.
    """
    from nowcast.data.synthetic import synthetic_datasets
    from nowcast.evaluation.run import (
        evaluation_settings,
        model_label,
        score_dataset,
        tuned_baselines,
    )
    from nowcast.training.checkpoint import load_forecaster

    config = ckpt["config"]
    data = config["data"]
    test = synthetic_datasets(
        root, input_len=int(data["input_len"]), output_len=int(data["output_len"])
    )["test"]
    evaluation = {**evaluation_settings(config), "bootstrap": {"n_resamples": 0}}
    baselines, note = tuned_baselines(evaluation["baselines"], test)
    forecasters = {model_label(config): load_forecaster(ckpt), **baselines}
    results = score_dataset(forecasters, test, evaluation)
    out: dict[str, dict[str, Any]] = {}
    for name, res in results.items():
        row = {name: float(res[key]) for name, key in SHIPPED_KEYS.items()}
        row["csi_by_lead"] = np.asarray(res["csi_by_lead"], dtype=float).tolist()
        row["n_windows"] = int(len(test))
        row["rover_note"] = note
        out[name] = row
    return out
