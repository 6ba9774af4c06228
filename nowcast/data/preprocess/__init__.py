"""Radar-echo preprocessing of Shi et al. (2015), as pure functions and small classes.

The paper turns each radar frame of reflectivity ``Z`` (dBZ) into grey levels, crops
the central 330x330 region of the 480x480 frame, applies a disk filter of radius 10,
resizes to 100x100 and removes "noisy" pixels found by K-Means clustering of the
monthly pixel averages (Shi et al. 2015, Sec. 4.2). The package is split by job:

* :mod:`~nowcast.data.preprocess.imageops`: normalisation and image operations on
  ``(..., H, W)`` arrays (:func:`minmax_normalize`, :class:`MinMaxNormalizer`,
  :func:`center_crop`, :func:`disk_filter`, :func:`resize`);
* :mod:`~nowcast.data.preprocess.noise_mask`: the K-Means :class:`NoiseMask` and the
  :func:`monthly_means` it is fitted on;
* :mod:`~nowcast.data.preprocess.pipeline`: the :class:`Preprocessor` that chains the
  steps over a radar data set, streamed chunk by chunk, and
  :mod:`~nowcast.data.preprocess.archive`: :func:`preprocess_archive`, the whole job
  from a raw archive (fit on the training split, transform on all cores);
* :mod:`~nowcast.data.preprocess.fit_split`: which frames the fit saw, recorded in
  the processed file.

Every name is importable from ``nowcast.data.preprocess`` itself; :func:`patchify` /
:func:`unpatchify` live in :mod:`nowcast.patches` (the models import them from there)
and are re-exported here.
"""

from nowcast.data.preprocess.archive import preprocess_archive
from nowcast.data.preprocess.fit_split import FIT_ON, fit_split_attrs, read_fit_split
from nowcast.data.preprocess.imageops import (
    BOUNDARY_MODES,
    MinMaxNormalizer,
    center_crop,
    disk_filter,
    disk_kernel,
    minmax_denormalize,
    minmax_normalize,
    resize,
)
from nowcast.data.preprocess.noise_mask import NoiseMask, monthly_means
from nowcast.data.preprocess.pipeline import COVERAGE, MOTION_VARIABLES, Preprocessor
from nowcast.patches import patchify, unpatchify

__all__ = [
    "minmax_normalize",
    "minmax_denormalize",
    "MinMaxNormalizer",
    "center_crop",
    "disk_kernel",
    "disk_filter",
    "BOUNDARY_MODES",
    "resize",
    "monthly_means",
    "NoiseMask",
    "Preprocessor",
    "FIT_ON",
    "COVERAGE",
    "MOTION_VARIABLES",
    "fit_split_attrs",
    "read_fit_split",
    "preprocess_archive",
    "patchify",
    "unpatchify",
]
