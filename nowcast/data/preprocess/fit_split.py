"""Which frames the fitted preprocessing saw: recorded in the processed file, read back.

The noise mask (and any bound left to fit) is fitted on the training blocks of
:func:`nowcast.data.split.block_split` or on every frame; the processed file records
which (:func:`fit_split_attrs`), so that :func:`nowcast.data.dataset.radar_datasets`
can refuse a split that validates or tests on fitting frames (:func:`read_fit_split`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["FIT_ON", "check_fit_split", "fit_split_attrs", "read_fit_split"]

FIT_ON = ("train", "all")
_FIT_PREFIX = "noise_mask_fit_"


def check_fit_split(split: Mapping) -> dict:
    """Validate a fit-split description (see :meth:`Preprocessor.fit`)."""
    fit_on = split.get("fit_on")
    if fit_on == "all":
        return {"fit_on": "all"}
    if fit_on != "train":
        raise ValueError(
            f"fit split must say fit_on='train' or 'all', got {dict(split)!r}"
        )
    counts = [int(c) for c in split.get("counts", (4, 1, 1))]
    if len(counts) != 3:
        raise ValueError(f"fit split counts must be (train, val, test), got {counts}")
    return {
        "fit_on": "train",
        "block_len": int(split.get("block_len", 40)),
        "counts": counts,
        "seed": int(split.get("seed", 0)),
    }


def fit_split_attrs(split: Mapping | None, fitted: bool = True) -> dict:
    """Global attributes recording which frames the noise mask was fitted on.

    Parameters
    ----------
    split : mapping or None
        ``{"fit_on": "train", "block_len", "counts", "seed"}`` or ``{"fit_on": "all"}``;
        None records nothing (unknown).
    fitted : bool
        Whether anything was fitted on data; if not, ``noise_mask_fit_on = "none"``
        (nothing to leak, whatever the split).

    Returns
    -------
    dict
        ``noise_mask_fit_on`` and, for ``"train"``, ``noise_mask_fit_block_len``,
        ``noise_mask_fit_counts`` (3 ints), ``noise_mask_fit_seed``.
    """
    if split is None:
        return {}
    if not fitted:
        return {f"{_FIT_PREFIX}on": "none"}
    split = check_fit_split(split)
    out = {f"{_FIT_PREFIX}on": split["fit_on"]}
    if split["fit_on"] == "train":
        out[f"{_FIT_PREFIX}block_len"] = split["block_len"]
        out[f"{_FIT_PREFIX}counts"] = np.asarray(split["counts"], dtype=np.int32)
        out[f"{_FIT_PREFIX}seed"] = split["seed"]
    return out


def read_fit_split(attrs: Mapping) -> dict | None:
    """Inverse of :func:`fit_split_attrs`: the recorded fit split, or None.

    Returns ``{"fit_on": "train", "block_len", "counts", "seed"}``,
    ``{"fit_on": "all"}``, ``{"fit_on": "none"}`` or None when the file records none.
    """
    fit_on = attrs.get(f"{_FIT_PREFIX}on")
    if fit_on is None:
        return None
    if str(fit_on) != "train":
        return {"fit_on": str(fit_on)}
    counts = np.atleast_1d(np.asarray(attrs[f"{_FIT_PREFIX}counts"])).tolist()
    return {
        "fit_on": "train",
        "block_len": int(attrs[f"{_FIT_PREFIX}block_len"]),
        "counts": [int(c) for c in counts],
        "seed": int(attrs[f"{_FIT_PREFIX}seed"]),
    }
