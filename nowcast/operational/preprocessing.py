"""The preprocessing a forecaster was trained with, carried by its checkpoint.

A forecast must prepare the latest raw frames exactly as the training frames were
prepared: the same normalisation range, crop, disk filter, resize and K-Means noise
mask. The fitted :class:`~nowcast.data.preprocess.Preprocessor` is saved next to the
processed file (``<stem>_preprocessor.json`` + its noise mask); this module turns it into
a plain state (dicts, lists and numpy arrays) that the trainer stores in the checkpoint
under :data:`CHECKPOINT_KEY` (:func:`checkpoint_preprocessing`), and back
(:func:`preprocessor_from_state`).

For a forecast, :func:`resolve_preprocessing` picks, in this order: a fitted preprocessor
file given by the user, the checkpoint's state, a preprocessing config given by the user,
and for checkpoints that carry none (older ones, e.g. the shipped synthetic one) the
training data named by the checkpoint's data config (the preprocessor file next to the
processed file, else the steps recorded in its attributes, else the synthetic data
set's defaults). Without any of these it says what to pass.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nowcast.data.preprocess import (
    BOUNDARY_MODES,
    MinMaxNormalizer,
    NoiseMask,
    Preprocessor,
)
from nowcast.data.radar import infer_cadence, is_zarr

__all__ = [
    "CHECKPOINT_KEY",
    "STATE_FORMAT",
    "Preprocessing",
    "preprocessor_state",
    "preprocessor_from_state",
    "preprocessor_from_config",
    "preprocessor_from_steps",
    "find_preprocessor_file",
    "recorded_steps",
    "checkpoint_preprocessing",
    "resolve_preprocessing",
]

#: Key of the preprocessing state in a checkpoint written by the trainer.
CHECKPOINT_KEY = "preprocessing"
#: Version tag of the state written by :func:`preprocessor_state`.
STATE_FORMAT = "nowcast.preprocessor/1"

PathLike = str | os.PathLike


@dataclass
class Preprocessing:
    """A ready preprocessor and what is known about the data it was made for.

    Attributes
    ----------
    preprocessor : Preprocessor
        Fitted (bounds known; noise mask fitted or disabled).
    origin : str
        Where it came from, one sentence for the forecast's provenance.
    source_units : str or None
        Units of the training archive (``"dBZ"``, ``"mm/h"``, ...), when known.
    frame_minutes : float or None
        Cadence of the training frames, when known.
    notes : list of str
        Caveats for the provenance (e.g. "noise mask not applied").
    """

    preprocessor: Preprocessor
    origin: str
    source_units: str | None = None
    frame_minutes: float | None = None
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------ state <-> Preprocessor
def _noise_mask_state(mask: NoiseMask) -> dict[str, Any]:
    return {
        "params": mask.params(),
        "mask": np.asarray(mask.mask, dtype=np.uint8),
        "centroids": np.asarray(mask.centroids, dtype=np.float64),
        "months": [str(m) for m in np.asarray(mask.months, dtype="datetime64[M]")],
        "noise_clusters": [int(c) for c in mask.noise_clusters],
        "threshold": float(mask.threshold),
    }


def preprocessor_state(pre: Preprocessor) -> dict[str, Any]:
    """A fitted preprocessor as a plain state (dicts, lists, numpy arrays).

    Parameters
    ----------
    pre : Preprocessor
        Fitted (:attr:`Preprocessor.is_fitted`).

    Returns
    -------
    dict
        ``format`` (:data:`STATE_FORMAT`), ``params`` (:meth:`Preprocessor.params`),
        ``normalizer`` (bounds), ``fit_split``, and ``noise_mask``: None, or the fitted
        mask (``mask`` uint8 (H, W) on the raw grid, 1 = noisy; ``centroids``
        (clusters, months); ``months`` as ``"YYYY-MM"``; ``noise_clusters``;
        ``threshold``; ``params``).
    """
    if not pre.is_fitted:
        raise ValueError(
            "the preprocessor is not fitted (bounds or noise mask missing); fit it on "
            "the training split first (Preprocessor.fit)"
        )
    mask = pre.noise_mask
    return {
        "format": STATE_FORMAT,
        "params": pre.params(),
        "normalizer": pre.normalizer.to_dict(),
        "fit_split": pre.fit_split,
        "noise_mask": None if mask is None else _noise_mask_state(mask),
    }


def preprocessor_from_state(state: Mapping[str, Any]) -> Preprocessor:
    """Inverse of :func:`preprocessor_state` (progress bars off).

    Raises
    ------
    ValueError
        When ``state`` is not a preprocessor state of a known format.
    """
    if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
        found = state.get("format") if isinstance(state, Mapping) else type(state)
        raise ValueError(
            f"not a preprocessor state of format {STATE_FORMAT!r} (got {found!r}); "
            "write it with nowcast.operational.preprocessor_state"
        )
    pre = Preprocessor(**{**state["params"], "progress": False})
    pre.normalizer = MinMaxNormalizer.from_dict(state["normalizer"])
    pre.fit_split = state.get("fit_split")
    saved = state.get("noise_mask")
    if saved is None:
        pre.noise_mask = None
        return pre
    mask = NoiseMask(**saved["params"])
    mask.mask = np.asarray(saved["mask"]).astype(bool)
    mask.centroids = np.asarray(saved["centroids"], dtype=np.float64)
    mask.months = np.asarray(saved["months"], dtype="datetime64[M]")
    mask.noise_clusters = [int(c) for c in saved["noise_clusters"]]
    mask.threshold = float(saved["threshold"])
    pre.noise_mask = mask
    return pre


def preprocessor_from_config(params: Mapping[str, Any]) -> Preprocessor:
    """An unfitted-safe preprocessor from a ``configs/preprocess/*.yaml`` node.

    A forecast has a handful of frames, too few to fit anything, so the normalisation
    bounds must be given and the K-Means noise mask (which needs months of data) is
    left out.

    Raises
    ------
    ValueError
        When ``zmin`` or ``zmax`` is missing (None means "fit on the training split").
    """
    params = dict(params)
    missing = [k for k in ("zmin", "zmax") if params.get(k) is None]
    if missing:
        raise ValueError(
            f"preprocess.{missing[0]} is null (fit on the training split), but a "
            "forecast cannot fit it on a few frames; give the archive's range, e.g. "
            "preprocess.zmin=-10 preprocess.zmax=60 (dBZ)"
        )
    params.pop("units", None)  # the parameter set's units: checked on archives only
    params.update(noise_mask=False, progress=False)
    return Preprocessor(**params)


def _step(steps: list[dict], name: str) -> dict:
    found = [s for s in steps if s.get("step") == name]
    return found[-1] if found else {}


def preprocessor_from_steps(steps: list[dict]) -> Preprocessor:
    """The preprocessing a processed file records in its attributes, without the mask.

    Parameters
    ----------
    steps : list of dict
        :func:`nowcast.data.radar.processing_steps` of the processed file.

    Returns
    -------
    Preprocessor
        Bounds, crop, disk filter, resize and coverage as recorded; noise mask
        disabled (the raw-grid mask is not in the processed file).
    """
    norm = _step(steps, "minmax_normalize")
    if "zmin" not in norm or "zmax" not in norm:
        raise ValueError(
            "the processed file records no minmax_normalize step (zmin, zmax); it was "
            "not written by scripts/preprocess.py"
        )
    boundary = str(_step(steps, "disk_filter").get("boundary", "reflect")).split()[-1]
    return Preprocessor(
        zmin=norm["zmin"],
        zmax=norm["zmax"],
        crop_size=_step(steps, "center_crop").get("size"),
        disk_radius=_step(steps, "disk_filter").get("radius", 0),
        resize_to=_step(steps, "resize").get("size"),
        noise_mask=False,
        disk_boundary=boundary if boundary in BOUNDARY_MODES else "reflect",
        min_coverage=_step(steps, "coverage").get("min_coverage", 0.5),
        progress=False,
    )


# -------------------------------------------------------------- the trainer's hook
RADAR_SUFFIXES = (".nc", ".zarr")


def find_preprocessor_file(processed: PathLike) -> Path | None:
    """The fitted preprocessor saved with a processed file, if there is one.

    ``scripts/preprocess.py`` writes ``<stem>_preprocessor.json`` next to
    ``<stem>.nc`` (or ``<stem>.zarr``); the synthetic data set writes
    ``preprocessor.json`` into its folder. A folder that is not a zarr store is
    searched for ``preprocessor.json``.
    """
    processed = Path(processed)
    if processed.is_dir() and processed.suffix not in RADAR_SUFFIXES:
        candidates = [processed / "preprocessor.json"]
    else:
        candidates = [
            processed.with_name(f"{processed.stem}_preprocessor.json"),
            processed.parent / "preprocessor.json",
        ]
    return next((c for c in candidates if c.is_file()), None)


@functools.lru_cache(maxsize=8)
def _cached_state(
    path: str, mtime_ns: int, cadence_minutes: float | None
) -> dict[str, Any] | None:
    found = _saved_preprocessor(Path(path), path)
    if found is None:  # a processed file made by hand: nothing known to carry
        return None
    pre, pre_file = found
    if pre_file is not None:
        origin = f"the fitted preprocessor {pre_file}"
    else:
        origin = f"the steps recorded in {path} (no fitted noise mask)"
    return {
        **preprocessor_state(pre),
        "origin": origin,
        "processed_file": path,
        "frame_minutes": cadence_minutes,
    }


def _saved_preprocessor(
    processed: Path, where: PathLike
) -> tuple[Preprocessor, Path | None] | None:
    """The preprocessor saved beside ``where`` (with its file), else the one rebuilt
    from the steps ``processed`` records (file ``None``), else ``None``."""
    pre_file = find_preprocessor_file(where)
    if pre_file is not None:
        return Preprocessor.load(pre_file), pre_file
    steps = recorded_steps(processed) if processed.exists() else []
    if _step(steps, "minmax_normalize"):
        return preprocessor_from_steps(steps), None
    return None


def _file_attrs(path: PathLike) -> dict[str, Any]:
    """The global attributes of a radar netCDF file or zarr store (nothing else)."""
    path = Path(path)
    if is_zarr(path):
        import xarray as xr

        with xr.open_zarr(path, consolidated=None) as ds:
            return dict(ds.attrs)
    import netCDF4

    with netCDF4.Dataset(path) as nc:
        return {k: nc.getncattr(k) for k in nc.ncattrs()}


def recorded_steps(path: PathLike) -> list[dict]:
    """The processing steps a netCDF file records (``nowcast_steps``), oldest first.

    The file's attributes alone are read (see :func:`nowcast.data.radar.record_step`).
    """
    raw = _file_attrs(path).get("nowcast_steps")
    return list(json.loads(raw)) if raw else []


def checkpoint_preprocessing(dataset: object) -> dict[str, Any] | None:
    """The state the trainer stores under :data:`CHECKPOINT_KEY` in each checkpoint.

    Parameters
    ----------
    dataset : object
        The training dataset; one over a processed radar file has ``path`` (and
        ``times`` and ``scale``), e.g. :class:`nowcast.data.dataset.RadarWindowDataset`.

    Returns
    -------
    dict or None
        :func:`preprocessor_state` of the preprocessor saved with the processed file
        (or rebuilt from its recorded steps), plus ``origin``, ``processed_file``,
        ``frame_minutes`` (the training cadence) and ``grey_scale``
        (:meth:`GreyScale.to_dict`); None for data sets without a processed radar file
        (``.nc`` or ``.zarr``; Moving MNIST, ...) or whose file records no
        preprocessing (written by hand).
        Read once per file (cached).
    """
    path = getattr(dataset, "path", None)
    if path is None or Path(path).suffix not in RADAR_SUFFIXES:
        return None  # not a processed radar file (e.g. Moving MNIST's .npy)
    if not Path(path).exists():
        return None
    times = getattr(dataset, "times", None)
    cadence = None
    if times is not None and len(times) > 1:
        cadence = float(infer_cadence(times) / np.timedelta64(1, "m"))
    path = str(Path(path).resolve())
    state = _cached_state(path, os.stat(path).st_mtime_ns, cadence)
    if state is None:
        return None
    state = dict(state)
    scale = getattr(dataset, "scale", None)
    state["grey_scale"] = None if scale is None else scale.to_dict()
    return state


# ------------------------------------------------------------------- the forecast's
def _from_checkpoint(state: Mapping[str, Any]) -> Preprocessing:
    scale = state.get("grey_scale") or {}
    return Preprocessing(
        preprocessor_from_state(state),
        f"the checkpoint (from {state.get('origin', 'its training data')})",
        source_units=scale.get("units"),
        frame_minutes=state.get("frame_minutes"),
    )


def _training_data(data_cfg: Mapping[str, Any]) -> Path | None:
    datasets = data_cfg.get("datasets") or {}
    root = datasets.get("path") or datasets.get("root") or data_cfg.get("root")
    return None if root is None else Path(str(root))


def _from_training_file(root: Path, minutes: float | None) -> Preprocessing | None:
    """The preprocessing saved with (or recorded in) the processed training data."""
    processed = root
    if root.is_dir() and root.suffix not in RADAR_SUFFIXES:
        processed = root / "processed.nc"  # the synthetic data set's cache folder
    found = _saved_preprocessor(processed, root)
    if found is None:
        return None
    pre, pre_file = found
    units = _file_attrs(processed).get("source_units") if processed.exists() else None
    if pre_file is not None:
        origin, notes = f"the fitted preprocessor of the training data, {pre_file}", []
    else:
        origin = f"the steps recorded in the training data {processed}"
        notes = ["noise mask not applied (not saved with the training data)"]
    return Preprocessing(
        pre, origin, source_units=units, frame_minutes=minutes, notes=notes
    )


def _from_synthetic(data_cfg: Mapping[str, Any], minutes: float | None):
    """The embedded synthetic data set's preprocessing (dBZ), without the mask."""
    from nowcast.data.synthetic import DEFAULT_PREPROCESS

    params = {
        **DEFAULT_PREPROCESS,
        **dict(data_cfg["datasets"].get("preprocess") or {}),
    }
    return Preprocessing(
        preprocessor_from_config(params),
        "the synthetic data set's preprocessing (nowcast.data.synthetic."
        "DEFAULT_PREPROCESS)",
        source_units="dBZ",
        frame_minutes=minutes,
        notes=["noise mask not applied (the training data's fitted mask is not here)"],
    )


def _from_data_config(data_cfg: Mapping[str, Any]) -> Preprocessing | None:
    """The preprocessing of the data a checkpoint names, when they are here."""
    root = _training_data(data_cfg)
    minutes = data_cfg.get("frame_minutes")
    if root is not None and root.exists():
        found = _from_training_file(root, minutes)
        if found is not None:
            return found
    target = str((data_cfg.get("datasets") or {}).get("_target_", ""))
    if target.endswith("synthetic_datasets"):
        return _from_synthetic(data_cfg, minutes)
    return None


def resolve_preprocessing(
    checkpoint: Mapping[str, Any] | None = None,
    preprocessor_file: PathLike | None = None,
    preprocess: Mapping[str, Any] | None = None,
) -> Preprocessing:
    """The preprocessing a forecast applies to its input frames.

    Parameters
    ----------
    checkpoint : mapping, optional
        A checkpoint read with :func:`nowcast.training.checkpoint.load_checkpoint`.
    preprocessor_file : path, optional
        A fitted preprocessor (``<stem>_preprocessor.json``); wins over everything.
    preprocess : mapping, optional
        A ``configs/preprocess/*.yaml`` node (:func:`preprocessor_from_config`); wins
        over the data the checkpoint names, not over the state it carries.

    Returns
    -------
    Preprocessing

    Raises
    ------
    ValueError
        When none of them gives a preprocessing; the message says what to pass.
    """
    if preprocessor_file is not None:
        return Preprocessing(
            Preprocessor.load(preprocessor_file),
            f"the fitted preprocessor {preprocessor_file}",
        )
    state = None if checkpoint is None else checkpoint.get(CHECKPOINT_KEY)
    if state is not None:
        found = _from_checkpoint(state)
        if preprocess is not None:
            found.notes.append(
                "the preprocess config given was ignored: the checkpoint carries the "
                "preprocessing it was trained with (pass preprocessor=<file> to "
                "replace it)"
            )
        return found
    if preprocess is not None:
        return Preprocessing(
            preprocessor_from_config(preprocess),
            "the preprocess config given",
            notes=["noise mask not applied (a forecast cannot fit one)"],
        )
    data_cfg = (
        {} if checkpoint is None else (checkpoint.get("config") or {}).get("data")
    )
    found = _from_data_config(data_cfg or {})
    if found is not None:
        return found
    root = _training_data(data_cfg or {})
    raise ValueError(
        "no preprocessing for the input frames: the checkpoint carries none and its "
        f"training data ({root}) are not here. Pass preprocessor=<processed stem>"
        "_preprocessor.json (written by scripts/preprocess.py next to the processed "
        "file) or preprocess=<hko|bom|synthetic> (configs/preprocess/)"
        if checkpoint is not None
        else "no preprocessing for the input frames: pass preprocess=<hko|bom|"
        "synthetic> (configs/preprocess/) or preprocessor=<stem>_preprocessor.json"
    )
