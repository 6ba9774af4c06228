"""Raw radar archive -> processed file: fit on the training split, then stream."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nowcast.data.preprocess._files import PathLike
from nowcast.data.preprocess.fit_split import FIT_ON, check_fit_split
from nowcast.data.preprocess.pipeline import Preprocessor
from nowcast.data.radar import open_radar

__all__ = ["preprocess_archive"]


def preprocess_archive(
    input: PathLike | Sequence[PathLike],
    output: PathLike,
    fit_on: str = "train",
    split_seed: int = 0,
    progress: bool = True,
    fit_block_len: int = 40,
    fit_counts: Sequence[int] = (4, 1, 1),
    **params,
) -> Path:
    """Raw radar archive -> processed netCDF + fitted preprocessor (JSON + mask).

    Parameters
    ----------
    input : path, glob, directory or list
        Raw radar files in the convention (as written by the importers); opened lazily
        with :func:`nowcast.data.radar.open_radar`.
    output : path
        Processed netCDF, streamed by :meth:`Preprocessor.transform_to_file`; the
        fitted preprocessor goes to ``<output stem>_preprocessor.json`` and its noise
        mask to ``<output stem>_preprocessor_noise_mask.nc``.
    fit_on : {"train", "all"}
        Fit the noise mask (and bounds left as ``None``) on the training blocks of
        :func:`nowcast.data.split.block_split` (``block_len=fit_block_len``,
        ``counts=fit_counts``, ``seed=split_seed``: the split the datasets will
        serve) or on all frames (an evaluation-only archive). The choice is recorded
        in the output (:func:`fit_split_attrs`), and
        :func:`nowcast.data.dataset.radar_datasets` refuses a split whose validation
        or test frames were fitted on.
    split_seed : int
        Seed of the block split.
    progress : bool
        Progress bars.
    fit_block_len, fit_counts
        Block length and (train, val, test) blocks per day of the fitting split.
    **params
        :class:`Preprocessor` parameters.

    Returns
    -------
    pathlib.Path
        The processed file.
    """
    from nowcast.data.split import block_split

    if fit_on not in FIT_ON:
        raise ValueError(f"unknown fit_on {fit_on!r}; available: {list(FIT_ON)}")
    ds = open_radar(input)
    pre = Preprocessor(progress=progress, **params)
    fit_ds = ds
    split: dict = {"fit_on": "all"}
    if fit_on == "train":
        split = check_fit_split(
            {
                "fit_on": "train",
                "block_len": fit_block_len,
                "counts": list(fit_counts),
                "seed": split_seed,
            }
        )
        train = block_split(
            ds["time"].values,
            block_len=split["block_len"],
            counts=split["counts"],
            seed=split["seed"],
        )["train"]
        if not train:
            raise ValueError(
                f"the archive ({ds.sizes['time']} frames) holds no training block "
                f"(block_len={split['block_len']}, counts={split['counts']}) to fit "
                "on; use fit_on=all for an evaluation-only archive"
            )
        fit_ds = ds.isel(time=np.concatenate([np.arange(a, b) for a, b in train]))
    pre.fit(fit_ds, split=split)
    ds = ds.assign_attrs(preprocess_fitted_on=fit_on)
    output = Path(output)
    pre.transform_to_file(ds, output)
    pre.save(output.with_name(f"{output.stem}_preprocessor.json"))
    return output
