"""Raw radar archive -> processed file: fit on the training split, then stream."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nowcast.data.preprocess._files import PathLike
from nowcast.data.preprocess.fit_split import FIT_ON, check_fit_split
from nowcast.data.preprocess.pipeline import Preprocessor
from nowcast.data.radar import open_radar, radar_paths

__all__ = ["preprocess_archive"]


def preprocess_archive(
    input: PathLike | Sequence[PathLike],
    output: PathLike,
    fit_on: str = "train",
    split_seed: int = 0,
    progress: bool = True,
    fit_block_len: int = 40,
    fit_counts: Sequence[int] = (4, 1, 1),
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    units: str | None = None,
    **params,
) -> Path:
    """Raw radar archive -> processed netCDF (or zarr) + fitted preprocessor.

    Two streamed passes over the archive, each on ``workers`` cores: the fit (monthly
    means of the training frames for the noise mask) and the transform (crop, disk
    filter, resize), results written in time order as they come.

    Parameters
    ----------
    input : path, glob, directory or list
        Raw radar files in the convention (as written by the importers: netCDF or
        ``*.zarr``); opened lazily with :func:`nowcast.data.radar.open_radar`.
    output : path
        Processed ``.nc`` file or ``.zarr`` store, streamed by
        :meth:`Preprocessor.transform_to_file`; the fitted preprocessor goes to
        ``<output stem>_preprocessor.json`` and its noise mask to
        ``<output stem>_preprocessor_noise_mask.nc``.
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
        Progress bars (frames, rate and ETA).
    fit_block_len, fit_counts
        Block length and (train, val, test) blocks per day of the fitting split.
    workers : int or None
        Worker processes; ``None`` or ``0``: every core (serially when the archive
        is too short to repay a pool, :data:`~nowcast.data.preprocess.pipeline.
        MIN_FRAMES_PER_WORKER` frames per worker).
    scheduler : str, optional
        ``"processes"`` (default), ``"threads"``, ``"serial"``, or the address of a
        ``dask.distributed`` scheduler (``"tcp://host:8786"``) whose workers can read
        ``input`` at the same paths.
    units : str, optional
        The units the parameter set's range (``zmin`` / ``zmax``) is in (``"dBZ"`` for
        ``preprocess=hko``, ``"mm/h"`` for ``preprocess=bom``); an archive in other
        units is refused before any work. ``None``: not checked.
    **params
        :class:`Preprocessor` parameters.

    Returns
    -------
    pathlib.Path
        The processed file.
    """
    if fit_on not in FIT_ON:
        raise ValueError(f"unknown fit_on {fit_on!r}; available: {list(FIT_ON)}")
    paths = [str(p) for p in radar_paths(input)]
    ds = open_radar(paths)
    check_units(ds, units, paths[0])
    pre = Preprocessor(progress=progress, **params)
    split, frames = _fit_frames(ds, fit_on, fit_block_len, fit_counts, split_seed)
    pool = {"workers": workers, "scheduler": scheduler, "paths": paths}
    pre.fit(ds, split=split, frames=frames, **pool)
    ds = ds.assign_attrs(preprocess_fitted_on=fit_on)
    output = Path(output)
    pre.transform_to_file(ds, output, **pool)
    pre.save(output.with_name(f"{output.stem}_preprocessor.json"))
    return output


def check_units(ds, units: str | None, where: str) -> None:
    """Refuse an archive whose intensity units differ from the parameter set's.

    Raises
    ------
    ValueError
        Naming the archive's units, the expected ones and the fix.
    """
    from nowcast.data.radar import _normalise_units as normalise_units
    from nowcast.data.radar import intensity_name

    if units is None:
        return
    found = ds[intensity_name(ds)].attrs.get("units")
    if normalise_units(found) != normalise_units(units):
        raise ValueError(
            f"{where} holds {found!r} but this preprocessing is for {units!r} (its range "
            f"zmin/zmax is in {units}). Pick the parameter set of the data's units "
            "(preprocess=hko for dBZ, preprocess=bom for mm/h, preprocess=sevir for "
            "kg m-2), or set preprocess.units and a range in the data's units."
        )


def _fit_frames(
    ds, fit_on: str, block_len: int, counts: Sequence[int], seed: int
) -> tuple[dict, np.ndarray]:
    """The fit split's description and the positions of its frames along ``time``."""
    if fit_on == "all":
        return {"fit_on": "all"}, np.arange(ds.sizes["time"])
    split, frames = _train_fit_frames(ds, block_len, counts, seed)
    if frames is None:
        raise ValueError(
            f"the archive ({ds.sizes['time']} frames) holds no training block "
            f"(block_len={split['block_len']}, counts={split['counts']}) to fit "
            "on; use fit_on=all for an evaluation-only archive"
        )
    return split, frames


def _train_fit_frames(
    ds, block_len: int, counts: Sequence[int], seed: int
) -> tuple[dict, np.ndarray | None]:
    """The training-block fit split and the positions of its frames along ``time``
    (``None`` when the split has no training block)."""
    from nowcast.data.split import block_split

    split = check_fit_split(
        {
            "fit_on": "train",
            "block_len": block_len,
            "counts": list(counts),
            "seed": seed,
        }
    )
    train = block_split(
        ds["time"].values,
        block_len=split["block_len"],
        counts=split["counts"],
        seed=split["seed"],
    )["train"]
    if not train:
        return split, None
    return split, np.concatenate([np.arange(a, b) for a, b in train])
