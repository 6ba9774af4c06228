"""Area-mean rain series of a region, cut from a radar archive's field windows.

A region (a pixel box or a boolean mask, the clutter pixels of the archive's noise mask
left out) turns every frame into two numbers: the area-mean rain rate (mm/h, the
archive's scoring units through its :class:`~nowcast.data.physical.GreyScale`) and the
wet fraction (share of the region's pixels at or above ``wet_pixel_threshold`` mm/h).
:class:`SeriesWindowDataset` wraps a field window data set
(:class:`~nowcast.data.dataset.RadarWindowDataset`), so the series windows are exactly
the field windows of the same split: the series model, persistence and the field
forecasters' area means are scored on the same region and windows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from nowcast.data.dataset import ProcessedFile
from nowcast.data.physical import GreyScale

__all__ = [
    "SERIES_FEATURES",
    "SeriesWindowDataset",
    "area_series",
    "radar_series_datasets",
    "region_mask",
    "series_datasets",
    "synthetic_series_datasets",
]

SERIES_FEATURES = ("area_mean_mm_h", "wet_fraction")
"""Features computed from the fields, in input order (extra series follow)."""


def region_mask(
    frame_shape: tuple[int, int],
    box: Sequence[int] | None = None,
    mask: np.ndarray | str | os.PathLike | None = None,
) -> np.ndarray:
    """The region as a boolean ``(H, W)`` mask: a box, a mask, or the whole frame.

    Parameters
    ----------
    frame_shape : (int, int)
        ``(H, W)`` of the archive's frames.
    box : (row0, row1, col0, col1), optional
        Half-open pixel ranges ``[row0, row1) x [col0, col1)`` (rows down from the
        top of the frame, as the frames are stored).
    mask : numpy.ndarray or path, optional
        Boolean ``(H, W)`` array, or a ``.npy`` file holding one.

    Raises
    ------
    ValueError
        If both or a malformed box / mask are given, or the region is empty.
    """
    height, width = frame_shape
    if box is not None and mask is not None:
        raise ValueError("give the region as a box or as a mask, not both")
    if box is not None:
        if len(box) != 4:
            raise ValueError(f"box must be (row0, row1, col0, col1), got {box!r}")
        r0, r1, c0, c1 = (int(v) for v in box)
        if not (0 <= r0 < r1 <= height and 0 <= c0 < c1 <= width):
            raise ValueError(
                f"box {tuple(box)} must satisfy 0 <= row0 < row1 <= {height} and "
                f"0 <= col0 < col1 <= {width} (the {height}x{width} frame)"
            )
        region = np.zeros(frame_shape, dtype=bool)
        region[r0:r1, c0:c1] = True
        return region
    if mask is None:
        return np.ones(frame_shape, dtype=bool)
    array = np.load(mask) if isinstance(mask, str | os.PathLike) else np.asarray(mask)
    if array.shape != tuple(frame_shape):
        raise ValueError(
            f"region mask must be (H, W) = {tuple(frame_shape)}, got {array.shape}"
        )
    if not array.any():
        raise ValueError("the region mask selects no pixel")
    return array.astype(bool)


def area_series(
    grey: np.ndarray | Tensor,
    region: np.ndarray | Tensor,
    scale: GreyScale,
    wet_pixel_threshold: float = 0.5,
) -> np.ndarray | Tensor:
    """Area-mean rain rate and wet fraction of frames over a region.

    Parameters
    ----------
    grey : array or tensor, (..., H, W)
        Grey levels in [0, 1] (observed or forecast frames).
    region : bool array or tensor, (H, W)
        Pixels that count (region and not clutter).
    scale : GreyScale
        Grey level -> rain rate (mm/h; :meth:`GreyScale.to_score`).
    wet_pixel_threshold : float
        Rain rate (mm/h) from which a pixel is wet (0.5: the paper's rain / no-rain).

    Returns
    -------
    array or tensor, (..., 2)
        ``[area-mean rain rate (mm/h), wet fraction (0..1)]`` per frame, the type of
        ``grey``. Rates are :meth:`GreyScale.to_score`'s, as in the field metrics
        (grey 0 of a dBZ archive is its floor's rate, 0.017 mm/h for HKO-7's scale).
    """
    is_tensor = isinstance(grey, Tensor)
    region = torch.as_tensor(region) if is_tensor else np.asarray(region)
    rate = scale.to_score(grey)
    n = region.sum()
    flat_region = region.reshape(-1)
    rate = rate.reshape(*rate.shape[:-2], -1)[..., flat_region]
    mean = rate.sum(-1) / n
    wet = (rate >= wet_pixel_threshold).sum(-1) / n
    if is_tensor:
        return torch.stack((mean.float(), wet.float()), dim=-1)
    return np.stack((mean, wet), axis=-1).astype(np.float32)


def _file_series(
    field: Any, region: np.ndarray, wet_pixel_threshold: float, chunk: int = 256
) -> np.ndarray:
    """``(T, 2)`` series of every frame of a field data set's file, read in chunks.

    The file is read through :class:`~nowcast.data.dataset.ProcessedFile`, so a
    processed netCDF and a ``*.zarr`` store both work.
    """
    out = []
    with ProcessedFile(field.path) as pf:
        n_time = pf.shape(field.variable)[0]
        for start in range(0, n_time, chunk):
            grey = pf.read(field.variable, start, start + chunk)
            grey = grey.astype(np.float32, copy=False)
            out.append(area_series(grey, region, field.scale, wet_pixel_threshold))
    return np.concatenate(out)


def _usable_region(field: Any, region: np.ndarray) -> np.ndarray:
    """The region less the clutter pixels of ``field.valid_mask``."""
    valid = np.asarray(field.valid_mask, dtype=bool)
    usable = np.asarray(region, dtype=bool) & valid
    if not usable.any():
        raise ValueError("the region holds no valid (non-clutter) pixel")
    return usable


def _full_series(
    field: Any,
    region: np.ndarray,
    wet_pixel_threshold: float,
    extra: np.ndarray | str | os.PathLike | None,
) -> np.ndarray:
    """``(T, 2 + k)`` features of every frame of ``field``'s file, extra appended."""
    series = _file_series(field, region, wet_pixel_threshold)
    if extra is None:
        return series
    extra = np.load(extra) if isinstance(extra, str | os.PathLike) else extra
    extra = np.asarray(extra, dtype=np.float32)
    if extra.shape[0] != len(series):
        raise ValueError(
            f"extra series must have one row per frame of {field.path} "
            f"({len(series)}), got shape {extra.shape}"
        )
    extra = extra.reshape(len(series), -1)
    return np.concatenate((series, extra), axis=1)


class SeriesWindowDataset(Dataset):
    """The series of a region over the windows of a field window data set.

    Parameters
    ----------
    field : RadarWindowDataset
        Field windows of one split (``path``, ``variable``, ``starts``,
        ``input_len``, ``output_len``, ``scale``, ``valid_mask``).
    region : bool array, (H, W)
        The region (:func:`region_mask`); clutter pixels of ``field.valid_mask`` are
        left out.
    wet_pixel_threshold : float
        Rain rate (mm/h) of a wet pixel, for the wet fraction.
    extra : array (T, k) or path to a ``.npy``, optional
        Extra series aligned with the file's frames (e.g. a gauge), appended to the
        inputs.
    series : numpy.ndarray, (T, 2 + k), optional
        These features of the file's frames, already computed for this region (then
        the file is not read and ``extra`` is not used).

    Attributes
    ----------
    series : numpy.ndarray, (T, 2 + k)
        Per-frame features of the whole file.
    region : numpy.ndarray of bool, (H, W)
        Pixels averaged (region and not clutter).

    Items are ``(inputs (input_len, 2 + k), targets (output_len, 1))`` float32: the
    history and the future area-mean rain rate (mm/h).
    """

    def __init__(
        self,
        field: Any,
        region: np.ndarray,
        wet_pixel_threshold: float = 0.5,
        extra: np.ndarray | str | os.PathLike | None = None,
        *,
        series: np.ndarray | None = None,
    ) -> None:
        self.region = _usable_region(field, region)
        self.field = field
        self.wet_pixel_threshold = float(wet_pixel_threshold)
        if series is None:
            series = _full_series(field, self.region, self.wet_pixel_threshold, extra)
        self.series = series
        self.starts = np.asarray(field.starts)
        self.block_ids = getattr(field, "block_ids", None)
        self.input_len, self.output_len = int(field.input_len), int(field.output_len)
        self.n_features = series.shape[1]

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        start = int(self.starts[index])
        window = self.series[start : start + self.input_len + self.output_len]
        inputs = torch.from_numpy(np.ascontiguousarray(window[: self.input_len]))
        targets = torch.from_numpy(np.ascontiguousarray(window[self.input_len :, :1]))
        return inputs, targets


def series_datasets(
    fields: dict[str, Any],
    box: Sequence[int] | None = None,
    mask: np.ndarray | str | os.PathLike | None = None,
    wet_pixel_threshold: float = 0.5,
    extra: np.ndarray | str | os.PathLike | None = None,
) -> dict[str, SeriesWindowDataset]:
    """Series data sets over the splits of field data sets (one region for all).

    Splits of the same file (as :func:`~nowcast.data.dataset.radar_datasets` gives)
    share one series: the file is read and ``extra`` loaded once, not once a split.
    """
    any_split = next(iter(fields.values()))
    region = region_mask(tuple(any_split.frame_shape), box=box, mask=mask)
    wet_pixel_threshold = float(wet_pixel_threshold)
    computed: dict[tuple, np.ndarray] = {}  # one series per file, variable, region
    out = {}
    for split, field in fields.items():
        usable = _usable_region(field, region)
        key = (Path(field.path), field.variable, field.scale, usable.tobytes())
        if key not in computed:
            computed[key] = _full_series(field, usable, wet_pixel_threshold, extra)
        out[split] = SeriesWindowDataset(
            field, usable, wet_pixel_threshold, series=computed[key]
        )
    return out


def synthetic_series_datasets(
    root: str | os.PathLike,
    input_len: int = 5,
    output_len: int = 10,
    seed: int = 0,
    stride: int = 1,
    box: Sequence[int] | None = None,
    mask: np.ndarray | str | os.PathLike | None = None,
    wet_pixel_threshold: float = 0.5,
    **prepare_kwargs: Any,
) -> dict[str, SeriesWindowDataset]:
    """Series of a region of the embedded synthetic radar set, by its field splits.

    The fields come from :func:`nowcast.data.synthetic.synthetic_datasets` (generated
    and cached under ``root``; ``prepare_kwargs`` such as ``n_days`` go to it), so the
    windows are those the field models are scored on.
    """
    from nowcast.data.synthetic import synthetic_datasets

    fields = synthetic_datasets(
        root,
        input_len=input_len,
        output_len=output_len,
        seed=seed,
        stride=stride,
        **prepare_kwargs,
    )
    return series_datasets(fields, box, mask, wet_pixel_threshold)


def radar_series_datasets(
    path: str | os.PathLike,
    box: Sequence[int] | None = None,
    mask: np.ndarray | str | os.PathLike | None = None,
    wet_pixel_threshold: float = 0.5,
    extra: np.ndarray | str | os.PathLike | None = None,
    **split: Any,
) -> dict[str, SeriesWindowDataset]:
    """Series of a region of any processed radar archive, through its field splits.

    ``path`` is a processed netCDF (``scripts/preprocess.py``); the region arguments
    are :func:`series_datasets`'; ``split`` holds the window and split settings of
    :func:`nowcast.data.dataset.radar_datasets` (``input_len``, ``output_len`` (default
    here 10: one hour of 6-minute frames), ``seed``, ``stride``, ...; 40-frame blocks,
    4 / 1 / 1 a day).
    """
    from nowcast.data.dataset import radar_datasets

    fields = radar_datasets(Path(path), **{"output_len": 10, **split})
    return series_datasets(fields, box, mask, wet_pixel_threshold, extra)
