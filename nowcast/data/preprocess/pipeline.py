"""The streaming preprocessing pipeline of Shi et al. (2015) over a radar data set.

The paper turns each radar frame of reflectivity ``Z`` (dBZ) into grey levels
``P = (Z - Zmin) / (Zmax - Zmin)``, crops the central 330x330 region of the 480x480
frame, applies a disk filter of radius 10, resizes to 100x100 and removes "noisy"
pixels found by K-Means clustering of the monthly pixel averages (Shi et al. 2015,
Sec. 4.2). This module holds the :class:`Preprocessor` that chains the steps
(:mod:`~nowcast.data.preprocess.imageops`, :mod:`~nowcast.data.preprocess.noise_mask`)
over a radar data set chunk by chunk, in memory or streamed to netCDF / zarr.

Order of the steps in :class:`Preprocessor` (per chunk of frames, raw grid first):

1. NaN (no data) -> ``zmin``; min-max normalisation to [0, 1] (clipped).
2. Noise mask (fitted on the raw grid): masked pixels set to 0 (no echo), so that
   clutter is not smeared into its neighbours by the disk filter.
3. Centre crop, disk filter, resize. The disk filter sees the real data around the
   crop (a margin of ``disk_radius`` pixels is read with the crop when the frame has
   it), so the result equals "filter the whole frame, then crop"; only where the raw
   frame itself ends is the border mirrored.

Coverage (no-data pixels). Raw pixels that are NaN (outside radar coverage, missing)
carry no weight in the disk filter or the resize: both are normalised by the covered
fraction of their footprint (normalised convolution, Knutsson and Westin 1993), so the
fill value is never smeared into observed pixels (a plain disk mean would pull the
echo next to the coverage edge towards "dry"). A processed pixel counts as observed
when at least ``min_coverage`` (default 0.5) of its raw crop/resize footprint had data;
unobserved processed pixels hold grey 0. When any processed pixel of any frame is
unobserved, the output keeps a per-frame ``coverage`` variable ``(time, y, x)``
(uint8, 1 = observed) that the datasets serve as ``target_valid`` and that every
score and masked loss uses; otherwise (no NaN, or NaN only in the filter margin
outside the crop) no such variable is written. Frames without NaN take the plain
path, which gives the same values (the normalisation divides by exactly 1 there).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from nowcast.data.georef import (
    CRS_VARIABLE,
    copy_grid,
    is_georeferenced,
    resized_coordinate,
)
from nowcast.data.parallel import map_ordered, resolve_workers
from nowcast.data.preprocess._files import PathLike, existing_file, write_json
from nowcast.data.preprocess.fit_split import check_fit_split, fit_split_attrs
from nowcast.data.preprocess.imageops import (
    BOUNDARY_MODES,
    MinMaxNormalizer,
    _pair,
    area_weights,
    as_frames,
    center_crop,
    crop_offsets,
    disk_filter,
    disk_kernel,
    resize,
)
from nowcast.data.preprocess.noise_mask import (
    NoiseMask,
    add_month_sums,
    chunk_month_sums,
    means_from_sums,
    month_labels,
)
from nowcast.data.preprocess.stream import FrameChunk, frame_chunks, open_sink
from nowcast.data.radar import (
    intensity_name,
    record_step,
    validate_radar,
)

log = logging.getLogger(__name__)

#: Name of the per-frame coverage variable of a processed file (1 = observed).
COVERAGE = "coverage"

__all__ = ["Preprocessor", "COVERAGE", "MOTION_VARIABLES", "MIN_FRAMES_PER_WORKER"]


MOTION_VARIABLES = ("motion_u", "motion_v")


class Preprocessor:
    """The paper's preprocessing chain over a radar data set, chunk by chunk.

    Steps (each optional, recorded with its parameters in the output's attributes by
    :func:`nowcast.data.radar.record_step`): fill NaN with ``zmin``, min-max
    normalisation, noise mask (raw grid), centre crop, disk filter, resize. See the
    module docstring for the order and the boundary handling.

    Parameters
    ----------
    zmin, zmax : float or None
        Normalisation range in the input's units (HKO-7: -10 and 60 dBZ). ``None``
        fits that bound on the data given to :meth:`fit` (the training split).
    crop_size : int, (h, w) or None
        Centre crop (330 in the paper); ``None`` keeps the whole frame.
    disk_radius : int or None
        Disk-filter radius in raw pixels (10 in the paper); 0 or ``None`` skips it.
    resize_to : int, (h, w) or None
        Output frame size (100 in the paper); ``None`` keeps the crop size.
    noise_mask : bool or dict
        ``True`` fits a :class:`NoiseMask` with default parameters, a dict passes its
        parameters, ``False`` disables masking (the output mask is then all zeros).
    chunk_time : int
        Frames processed at a time (memory ~ ``chunk_time`` raw frames).
    disk_boundary : str
        Border mode of :func:`disk_filter` where the raw frame ends.
    mask_coverage : float
        A processed pixel is marked noisy when at least this fraction of its raw
        footprint (after crop and resize) is masked; 0 marks any overlap. Masked raw
        pixels are zeroed before the disk filter, so a pixel with a small share of
        clutter keeps a usable value.
    min_coverage : float in (0, 1]
        A processed pixel counts as observed when at least this fraction of its raw
        footprint (after crop and resize) had data (was not NaN); 1 requires all of
        it. See the module docstring, "Coverage".
    zr_a, zr_b : float, optional
        Z-R relation ``Z = a R^b`` of a reflectivity archive, recorded in the output
        attributes (``zr_a`` / ``zr_b``) so that the scores use it. Ignored (with a
        warning) for rain-rate archives, whose grey levels need no Z-R relation.
    progress : bool
        Show tqdm progress bars.
    """

    def __init__(
        self,
        zmin: float | None = -10.0,
        zmax: float | None = 60.0,
        crop_size: int | Sequence[int] | None = 330,
        disk_radius: int | None = 10,
        resize_to: int | Sequence[int] | None = 100,
        noise_mask: bool | dict = True,
        chunk_time: int = 64,
        disk_boundary: str = "reflect",
        mask_coverage: float = 0.25,
        min_coverage: float = 0.5,
        zr_a: float | None = None,
        zr_b: float | None = None,
        progress: bool = True,
    ):
        if int(chunk_time) != chunk_time or chunk_time < 1:
            raise ValueError(
                f"chunk_time must be a positive integer, got {chunk_time!r}"
            )
        if disk_boundary not in BOUNDARY_MODES:
            raise ValueError(
                f"unknown disk_boundary {disk_boundary!r}; available: "
                f"{sorted(BOUNDARY_MODES)}"
            )
        if not isinstance(noise_mask, (bool, dict)) and noise_mask is not None:
            try:  # omegaconf DictConfig and other mappings
                noise_mask = dict(noise_mask)
            except (TypeError, ValueError) as err:
                raise TypeError(
                    f"noise_mask must be a bool or a dict of NoiseMask parameters, got "
                    f"{type(noise_mask).__name__}"
                ) from err
        self.normalizer = MinMaxNormalizer(zmin, zmax)
        self.crop_size = None if crop_size is None else _pair(crop_size, "crop_size")
        self.disk_radius = int(disk_radius or 0)
        disk_kernel(self.disk_radius)  # validates the radius
        self.resize_to = None if resize_to is None else _pair(resize_to, "resize_to")
        self.noise_mask_params = (
            {} if noise_mask is True else dict(noise_mask) if noise_mask else None
        )
        self.noise_mask: NoiseMask | None = (
            NoiseMask(**self.noise_mask_params)
            if self.noise_mask_params is not None
            else None
        )
        self.chunk_time = int(chunk_time)
        self.disk_boundary = disk_boundary
        if not 0 <= mask_coverage <= 1:
            raise ValueError(f"mask_coverage must be in [0, 1], got {mask_coverage}")
        self.mask_coverage = float(mask_coverage)
        if not 0 < min_coverage <= 1:
            raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}")
        self.min_coverage = float(min_coverage)
        if (zr_a is None) != (zr_b is None):
            raise ValueError(
                f"give both zr_a and zr_b (Z = a R^b) or neither, got zr_a={zr_a}, "
                f"zr_b={zr_b}"
            )
        self.zr = None if zr_a is None else (float(zr_a), float(zr_b))
        self.progress = bool(progress)
        #: Which frames :meth:`fit` used (see :meth:`fit`); None when not recorded.
        self.fit_split: dict | None = None

    # ---- configuration ------------------------------------------------------------
    def params(self) -> dict:
        """Constructor parameters (JSON-serialisable; fitted values excluded)."""
        zmin = None if "zmin" in self.normalizer.fitted_bounds else self.normalizer.zmin
        zmax = None if "zmax" in self.normalizer.fitted_bounds else self.normalizer.zmax
        return {
            "zmin": zmin,
            "zmax": zmax,
            "crop_size": None if self.crop_size is None else list(self.crop_size),
            "disk_radius": self.disk_radius,
            "resize_to": None if self.resize_to is None else list(self.resize_to),
            "noise_mask": False
            if self.noise_mask_params is None
            else self.noise_mask_params or True,
            "chunk_time": self.chunk_time,
            "disk_boundary": self.disk_boundary,
            "mask_coverage": self.mask_coverage,
            "min_coverage": self.min_coverage,
            "zr_a": None if self.zr is None else self.zr[0],
            "zr_b": None if self.zr is None else self.zr[1],
        }

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`transform` can run (bounds known, mask fitted if enabled)."""
        return self.normalizer.is_fitted and (
            self.noise_mask is None or self.noise_mask.mask is not None
        )

    def _normalize(self, v: np.ndarray) -> np.ndarray:
        """NaN filled with ``zmin``, then :func:`minmax_normalize`, float32.

        Computed in place in three passes: ``fmax`` turns NaN into 0, the grey level
        of ``zmin``, so the result equals ``minmax_normalize(where(isnan(v), zmin,
        v))`` exactly.
        """
        zmin, zmax = self.normalizer._bounds()
        p = np.subtract(v, np.float32(zmin), dtype=np.float32)
        p /= np.float32(zmax - zmin)
        np.fmax(p, np.float32(0.0), out=p)
        return np.fmin(p, np.float32(1.0), out=p)

    # ---- fitting ------------------------------------------------------------------
    def fit(
        self,
        ds: xr.Dataset,
        split: dict | None = None,
        *,
        frames: np.ndarray | None = None,
        workers: int | None = 1,
        scheduler: str | None = None,
        paths: Sequence[str] | None = None,
    ) -> Preprocessor:
        """Fit the missing normalisation bounds and the noise mask.

        Parameters
        ----------
        ds : xarray.Dataset
            Radar data set: the training split (select its frames first, e.g. with
            ``ds.isel(time=train_index)``, or pass ``frames``). Streamed chunk by chunk.
        split : dict, optional
            Which frames are fitted on, recorded in the processed file so that the
            datasets can refuse a split that evaluates on fitting frames:
            ``{"fit_on": "train", "block_len": 40, "counts": [4, 1, 1], "seed": 0}``
            (the training blocks of :func:`nowcast.data.split.block_split`) or
            ``{"fit_on": "all"}``. See :func:`fit_split_attrs`.
        frames : numpy.ndarray of int, optional
            Positions along ``time`` of the frames to fit on (default: all of ``ds``).
        workers, scheduler
            Where the monthly means of the noise mask are summed, as in
            :func:`nowcast.data.parallel.map_ordered` (default: serially here).
        paths : sequence of str, optional
            The files ``ds`` was opened from (:func:`nowcast.data.radar.open_radar`), so
            that workers read their chunks themselves.
        """
        self.fit_split = None if split is None else check_fit_split(split)
        validate_radar(ds, allow_nan=True, check_values=False)
        index = np.arange(ds.sizes["time"]) if frames is None else np.asarray(frames)
        if not self.normalizer.is_fitted:
            self.normalizer.fit(as_frames(ds).isel(time=index), self.chunk_time)
        if self.noise_mask is not None:
            da = as_frames(ds)
            months, labels = month_labels(ds["time"].values[index])
            sums = np.zeros((months.size, *da.shape[1:]))
            counts = np.zeros((months.size, *da.shape[1:]))
            chunks = frame_chunks(da, index, self.chunk_time, paths=paths)
            tasks = (
                (
                    self,
                    chunk,
                    labels[k * self.chunk_time : k * self.chunk_time + len(chunk)],
                )
                for k, chunk in enumerate(chunks)
            )
            for parts in self._map(
                _month_sums_task, tasks, index.size, "fit", workers, scheduler
            ):
                add_month_sums(sums, counts, parts)
            self.noise_mask.fit_means(means_from_sums(sums, counts), months)
        return self

    def _map(self, func, tasks, n_frames, desc, workers, scheduler):
        """:func:`~nowcast.data.parallel.map_ordered` over chunk tasks (``task[1]``
        is the chunk), with a frame-counting progress bar."""
        return map_ordered(
            func,
            tasks,
            workers=_pool_workers(workers, n_frames),
            scheduler=scheduler,
            progress=self.progress,
            desc=desc,
            total=n_frames,
            count=lambda task: len(task[1]),
        )

    # ---- geometry -----------------------------------------------------------------
    def _geometry(self, shape: tuple[int, int]) -> dict:
        hh, ww = shape
        ch, cw = self.crop_size or (hh, ww)
        top, left = crop_offsets((hh, ww), (ch, cw))
        r = self.disk_radius
        # margin of real data read around the crop for the disk filter
        mt, ml = min(r, top), min(r, left)
        mb, mr = min(r, hh - top - ch), min(r, ww - left - cw)
        return {
            "crop": (ch, cw),
            "offset": (top, left),
            "window": (
                slice(top - mt, top + ch + mb),
                slice(left - ml, left + cw + mr),
            ),
            "inner": (slice(mt, mt + ch), slice(ml, ml + cw)),
            "out": self.resize_to or (ch, cw),
        }

    def processed_mask(self, shape: tuple[int, int]) -> np.ndarray:
        """Noise mask on the output grid: a processed pixel is noisy when at least
        ``mask_coverage`` of its raw footprint is masked (any overlap when 0).

        Parameters
        ----------
        shape : (H, W)
            Raw frame size.

        Returns
        -------
        numpy.ndarray of uint8, shape of the output frames (all zeros without mask).
        """
        g = self._geometry(shape)
        if self.noise_mask is None:
            return np.zeros(g["out"], dtype=np.uint8)
        raw = self.noise_mask._mask()
        if raw.shape != tuple(shape):
            raise ValueError(
                f"the noise mask was fitted on {raw.shape[0]}x{raw.shape[1]} frames but "
                f"the data have {shape[0]}x{shape[1]}; fit on the same archive"
            )
        cropped = center_crop(raw.astype(np.float32), g["crop"])
        coverage = resize(cropped, g["out"])
        return (coverage >= max(self.mask_coverage, 1e-6)).astype(np.uint8)

    def _transform_frames(
        self, v: np.ndarray, g: dict, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(t, window) raw chunk -> (t, out) processed chunk and its coverage.

        The coverage (bool, (t, out), True = observed) is None when every processed
        pixel of the chunk is observed. With NaN, the disk filter and the resize are normalised by the covered
        fraction (the NaN pixels are filled with grey 0 and given weight 0), see the
        module docstring.
        """
        ok = ~np.isnan(v)
        p = self._normalize(v)
        if mask is not None:
            np.copyto(p, np.float32(0.0), where=mask)
        if ok.all():
            if self.disk_radius:
                p = disk_filter(p, self.disk_radius, self.disk_boundary)
            p = p[:, g["inner"][0], g["inner"][1]]
            return resize(p, g["out"]), None
        w = ok.astype(np.float32)
        if self.disk_radius:
            # normalised convolution: p is 0 where w is 0, so filter(p) = filter(p w)
            num = disk_filter(p, self.disk_radius, self.disk_boundary)
            den = disk_filter(w, self.disk_radius, self.disk_boundary)
            p = np.where(den > 1e-6, num / np.maximum(den, 1e-6), np.float32(0.0))
        inner = (slice(None), g["inner"][0], g["inner"][1])
        p, w = p[inner] * w[inner], w[inner]
        num, den = resize(p, g["out"]), resize(w, g["out"])
        covered = den >= np.float32(self.min_coverage) - 1e-6
        out = np.where(covered, num / np.maximum(den, 1e-6), np.float32(0.0))
        out = np.clip(out, 0.0, 1.0).astype(np.float32)
        return out, (None if covered.all() else covered)

    # ---- transform ----------------------------------------------------------------
    def transform(
        self,
        ds: xr.Dataset,
        *,
        workers: int | None = 1,
        scheduler: str | None = None,
        paths: Sequence[str] | None = None,
    ) -> xr.Dataset:
        """Preprocess a radar data set into memory.

        Parameters
        ----------
        ds : xarray.Dataset
            Radar data set in the convention (lazy or in memory); only the crop window
            (plus the disk-filter margin) is read, ``chunk_time`` frames at a time.
        workers, scheduler, paths
            As in :meth:`transform_to_file`.

        Returns
        -------
        xarray.Dataset
            In memory: ``intensity`` (time, y, x) float32 in [0, 1] (units "1", attrs
            ``zmin``, ``zmax``, ``source_units``), ``noise_mask`` (y, x) uint8 (1 =
            noisy, exclude), ``motion_u`` / ``motion_v`` rescaled to processed pixels
            per step when the input has them; the grid (x/y coordinates of the
            processed cells and the ``crs`` grid mapping) when the input is
            georeferenced; provenance in the attributes.

        See Also
        --------
        transform_to_file : the same output streamed to netCDF or zarr, for archives
            larger than memory (``float32`` output of ``T x H x W`` frames takes
            ``4 T H W`` bytes: about 0.9 GB for 97 days of 100x100 frames at 6 min).
        """
        da, g, mask_window = self._prepare(ds)
        out = np.empty((da.shape[0], *g["out"]), dtype=np.float32)
        coverage: np.ndarray | None = None
        n_nan = 0
        chunks = self._processed_chunks(da, g, mask_window, workers, scheduler, paths)
        for sl, chunk, nans, covered in chunks:
            out[sl] = chunk
            n_nan += nans
            if covered is not None:
                if coverage is None:
                    coverage = np.ones(out.shape, dtype=np.uint8)
                coverage[sl] = covered
        result = self._result(ds, da, g)
        result["intensity"] = (("time", "y", "x"), out, self._frame_attrs(result, da))
        if coverage is not None:
            attrs = self._frame_attrs(result)
            result[COVERAGE] = (("time", "y", "x"), coverage, attrs)
        result = result[
            ["intensity", *(v for v in result.data_vars if v != "intensity")]
        ]
        n_uncovered = 0 if coverage is None else int(coverage.size - coverage.sum())
        self._record(result, g, da.shape[1:], n_nan, da.attrs.get("units"), n_uncovered)
        return result

    def transform_to_file(
        self,
        ds: xr.Dataset,
        path: PathLike,
        chunk_time: int = 16,
        complevel: int = 4,
        *,
        workers: int | None = 1,
        scheduler: str | None = None,
        paths: Sequence[str] | None = None,
    ) -> Path:
        """Preprocess a radar data set straight into a netCDF file or zarr store.

        Memory stays at about ``chunk_time`` (of the preprocessor) raw frames per
        worker whatever the archive's length: the processed frames are written as they
        are made, in time order, never held together. The file equals what
        :meth:`transform` followed by :func:`nowcast.data.radar.write_radar` writes
        (same variables, attributes and encoding), and appears atomically: it is
        written next to ``path`` and renamed when complete, so an interrupted run
        leaves no partial file.

        Parameters
        ----------
        ds : xarray.Dataset
            Radar data set in the convention, typically lazy
            (:func:`nowcast.data.radar.open_radar` over many files).
        path : path
            Destination ``.nc`` file, or a ``.zarr`` store; parent directories are
            created.
        chunk_time : int
            Frames per chunk of the output.
        complevel : int
            zlib compression level, 0-9 (netCDF).
        workers : int or None
            Processes (or threads) that read and process chunks, as in
            :func:`nowcast.data.parallel.map_ordered`; ``None`` or ``0``: every core
            (serially for archives too short to repay starting a pool,
            :data:`MIN_FRAMES_PER_WORKER`). Default 1: this process.
        scheduler : str, optional
            ``"processes"`` (default), ``"threads"``, ``"serial"`` or the address of a
            ``dask.distributed`` scheduler.
        paths : sequence of str, optional
            The files ``ds`` was opened from; workers then read their chunks from
            them (parallel decoding, nothing large sent between processes).

        Returns
        -------
        pathlib.Path
            The written file.

        Notes
        -----
        The true motion of synthetic data sets (``motion_u`` / ``motion_v``), when
        present, is preprocessed in memory.
        """
        da, g, mask_window = self._prepare(ds)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        result = self._result(ds, da, g)  # everything but the frames
        sink = open_sink(path, result, da.shape[0], chunk_time, complevel)
        try:
            sink.create("intensity", "f4", self._frame_attrs(result, da), np.nan)
            chunks = self._processed_chunks(
                da, g, mask_window, workers, scheduler, paths
            )
            n_nan, n_uncovered = self._write_chunks(sink, chunks, result)
            self._record(
                result, g, da.shape[1:], n_nan, da.attrs.get("units"), n_uncovered
            )
            return sink.close(result.attrs)
        except BaseException:
            sink.discard()
            raise

    def _write_chunks(self, sink, chunks, result: xr.Dataset) -> tuple[int, int]:
        """Write processed chunks into ``sink``; return the NaN count of the raw frames
        and the number of unobserved processed pixels."""
        n_nan = n_uncovered = 0
        has_coverage = False
        for sl, frames, nans, covered in chunks:
            sink.write("intensity", sl, frames)
            n_nan += nans
            if covered is not None and not has_coverage:
                # created at the first chunk with no-data pixels; the frames before it
                # were fully observed
                sink.create(COVERAGE, "u1", self._frame_attrs(result))
                if sl.start:
                    ones = np.ones((sl.start, *frames.shape[1:]), np.uint8)
                    sink.write(COVERAGE, slice(0, sl.start), ones)
                has_coverage = True
            if has_coverage:
                cov = np.ones(frames.shape, bool) if covered is None else covered
                sink.write(COVERAGE, sl, cov.astype(np.uint8))
                n_uncovered += int(cov.size - cov.sum())
        return n_nan, n_uncovered

    def _prepare(self, ds: xr.Dataset) -> tuple[xr.DataArray, dict, np.ndarray | None]:
        """Check the input; return the frames (time, y, x), geometry, raw mask window."""
        if not self.is_fitted:
            raise RuntimeError(
                "Preprocessor is not fitted; call fit(training_data) first (needed for "
                "the noise mask or for zmin/zmax left as None)"
            )
        validate_radar(ds, allow_nan=True, check_values=False)
        da = ds[intensity_name(ds)].transpose("time", "y", "x")
        g = self._geometry(tuple(da.shape[1:]))
        mask_window = None
        if self.noise_mask is not None:
            self.processed_mask(tuple(da.shape[1:]))  # checks the grid
            mask_window = self.noise_mask.mask[g["window"]]
        return da, g, mask_window

    def _processed_chunks(
        self,
        da: xr.DataArray,
        g: dict,
        mask: np.ndarray | None,
        workers: int | None = 1,
        scheduler: str | None = None,
        paths: Sequence[str] | None = None,
    ) -> Iterator[tuple[slice, np.ndarray, int, np.ndarray | None]]:
        """Yield ``(time slice, processed frames, NaN count, coverage or None)`` in time
        order, ``chunk_time`` frames at a time, reading only the crop window (plus the
        filter margin); the chunks are processed by ``workers``."""
        n_t = da.shape[0]
        chunks = frame_chunks(da, np.arange(n_t), self.chunk_time, g["window"], paths)
        tasks = ((self, chunk, g, mask) for chunk in chunks)
        results = self._map(
            _transform_task, tasks, n_t, "preprocess", workers, scheduler
        )
        for a, (frames, nans, covered) in zip(
            range(0, n_t, self.chunk_time), results, strict=True
        ):
            yield slice(a, a + frames.shape[0]), frames, nans, covered

    def _frame_attrs(self, result: xr.Dataset, da: xr.DataArray | None = None) -> dict:
        """Attributes of a ``(time, y, x)`` output variable: the intensity's when ``da``
        (the raw intensity) is given, else the coverage's; plus the grid mapping."""
        attrs = self._intensity_attrs(da) if da is not None else self._coverage_attrs()
        if CRS_VARIABLE in result.variables:
            attrs["grid_mapping"] = CRS_VARIABLE
        return attrs

    def _coverage_attrs(self) -> dict:
        return {
            "long_name": "observed pixels (data before the NaN fill)",
            "flag_values": "0 1",
            "flag_meanings": "no_data observed",
            "min_coverage": self.min_coverage,
        }

    def _zr_attrs(self, source_units: object) -> dict:
        """``zr_a`` / ``zr_b`` for a dBZ archive when given; none otherwise."""
        from nowcast.data.physical import normalise_units  # imports torch: only here

        if self.zr is None:
            return {}
        if normalise_units(source_units) != "dBZ":
            log.warning(
                "zr_a/zr_b ignored: the archive is in %s, not dBZ (no Z-R relation "
                "applies to it)",
                source_units,
            )
            return {}
        return {"zr_a": self.zr[0], "zr_b": self.zr[1]}

    def _intensity_attrs(self, da: xr.DataArray) -> dict:
        zmin, zmax = self.normalizer._bounds()
        return {
            "units": "1",
            "long_name": "normalised radar intensity (grey level)",
            "zmin": zmin,
            "zmax": zmax,
            "source_units": str(da.attrs.get("units")),
        }

    def _result(self, ds: xr.Dataset, da: xr.DataArray, g: dict) -> xr.Dataset:
        """The output data set without its frames: coordinates, noise mask, motion,
        attributes (the provenance is added by :meth:`_record`)."""
        zmin, zmax = self.normalizer._bounds()
        hh, ww = da.shape[1:]
        top, left = g["offset"]
        (ch, cw), (oh, ow) = g["crop"], g["out"]
        y = _processed_coordinate(ds["y"], top, ch, oh)
        x = _processed_coordinate(ds["x"], left, cw, ow)
        attrs = {k: v for k, v in ds.attrs.items() if k not in ("intensity_variable",)}
        result = xr.Dataset(
            {
                "noise_mask": (
                    ("y", "x"),
                    self.processed_mask((hh, ww)),
                    {
                        "long_name": "noisy pixels to exclude (K-Means noise mask)",
                        "flag_values": "0 1",
                        "flag_meanings": "valid noisy",
                        "enabled": int(self.noise_mask is not None),
                    },
                ),
            },
            coords={"time": ds["time"].values, "y": y, "x": x},
            attrs=attrs,
        )
        result.attrs["intensity_variable"] = "intensity"
        result.attrs["zmin"] = zmin
        result.attrs["zmax"] = zmax
        result.attrs["source_units"] = str(da.attrs.get("units"))
        result.attrs.update(self._zr_attrs(da.attrs.get("units")))
        result.attrs.update(fit_split_attrs(self.fit_split, self._fits_data()))
        self._carry_motion(ds, result, g)
        for var in ds.data_vars:  # per-frame labels, e.g. the SEVIR event_id
            if ds[var].dims == ("time",):
                result[var] = ds[var].reset_coords(drop=True)
        if is_georeferenced(ds):  # the processed cells on the same map
            grid = xr.Dataset(coords={"x": x, "y": y})
            grid[CRS_VARIABLE] = ds[CRS_VARIABLE].reset_coords(drop=True)
            result = copy_grid(grid, result)
        return result

    def _fits_data(self) -> bool:
        """Whether anything (noise mask, a bound) was fitted on data."""
        return self.noise_mask is not None or bool(self.normalizer.fitted_bounds)

    def _carry_motion(self, ds: xr.Dataset, result: xr.Dataset, g: dict) -> None:
        """Crop + resize the true motion and rescale it to processed pixels per step."""
        (ch, cw), (oh, ow) = g["crop"], g["out"]
        scale = {"motion_u": ow / cw, "motion_v": oh / ch}
        for var in MOTION_VARIABLES:
            if var not in ds.data_vars:
                continue
            m = ds[var]
            if set(m.dims) == {"y", "x"}:
                m = m.transpose("y", "x")
                vals = resize(
                    center_crop(np.asarray(m.values, np.float32), (ch, cw)), (oh, ow)
                )
                dims: tuple = ("y", "x")
            elif set(m.dims) == {"time", "y", "x"}:
                m = m.transpose("time", "y", "x")
                vals = np.empty((m.shape[0], oh, ow), dtype=np.float32)
                for a in range(0, m.shape[0], self.chunk_time):
                    chunk = np.asarray(m[a : a + self.chunk_time].values, np.float32)
                    vals[a : a + self.chunk_time] = resize(
                        center_crop(chunk, (ch, cw)), (oh, ow)
                    )
                dims = ("time", "y", "x")
            else:
                raise ValueError(
                    f"{var} must have dims (time, y, x) or (y, x), got {m.dims}"
                )
            attrs = dict(m.attrs)
            attrs["units"] = "processed pixels per step"
            attrs["rescaled_by"] = scale[var]
            result[var] = (dims, vals * np.float32(scale[var]), attrs)

    def _record(
        self, result, g, raw_shape, n_nan, source_units, n_uncovered: int = 0
    ) -> None:
        """Append every step and its parameters to the output's provenance."""
        for step, params in self._steps(result, g, raw_shape, n_nan, source_units):
            record_step(result, step, **params)
        if n_nan:
            record_step(
                result,
                "coverage",
                variable=COVERAGE if n_uncovered else None,
                min_coverage=self.min_coverage,
                n_unobserved_processed=n_uncovered,
                method="no-data pixels carry no weight in the disk filter and the "
                "resize (normalised convolution); unobserved processed pixels = 0",
            )
        for var in MOTION_VARIABLES:
            if var in result:
                factor = result[var].attrs["rescaled_by"]
                record_step(result, f"rescale_{var}", factor=factor)

    def _steps(self, result, g, raw_shape, n_nan, source_units) -> list:
        """``(step, parameters)`` of the chain, in order (see :meth:`_record`)."""
        zmin, zmax = self.normalizer._bounds()
        fitted = self.normalizer.fitted_bounds
        mask: dict = {"enabled": False}
        if self.noise_mask is not None:
            n_processed = int(result["noise_mask"].values.sum())
            mask = {
                **self.noise_mask.provenance(),
                "mask_coverage": self.mask_coverage,
                "n_masked_processed": n_processed,
                "fill": 0.0,
            }
        boundary = f"real data around the crop, else {self.disk_boundary}"
        return [
            ("fill_nan", {"value": zmin, "n_filled": n_nan}),
            (
                "minmax_normalize",
                {
                    "zmin": zmin,
                    "zmax": zmax,
                    "source_units": source_units,
                    "fitted": fitted,
                },
            ),
            ("noise_mask", mask),
            (
                "center_crop",
                {"size": g["crop"], "offset": g["offset"], "raw": raw_shape},
            ),
            ("disk_filter", {"radius": self.disk_radius, "boundary": boundary}),
            ("resize", {"size": g["out"], "method": "area"}),
        ]

    def fit_transform(self, ds: xr.Dataset) -> xr.Dataset:
        """:meth:`fit` then :meth:`transform` on the same data."""
        return self.fit(ds).transform(ds)

    # ---- persistence --------------------------------------------------------------
    def save(self, path: PathLike) -> Path:
        """Write the configuration and fitted bounds as JSON; the fitted noise mask
        goes next to it as ``<stem>_noise_mask.nc``."""
        path = Path(path)
        state = {
            "params": self.params(),
            "normalizer": self.normalizer.to_dict(),
            "fit_split": self.fit_split,
        }
        if self.noise_mask is not None and self.noise_mask.mask is not None:
            mask_path = path.with_name(f"{path.stem}_noise_mask.nc")
            self.noise_mask.save(mask_path)
            state["noise_mask_file"] = mask_path.name
        return write_json(path, state)

    @classmethod
    def load(cls, path: PathLike) -> Preprocessor:
        """Read a preprocessor written by :meth:`save`."""
        path = existing_file(path, "preprocessor")
        state = json.loads(path.read_text())
        obj = cls(**state["params"])
        obj.normalizer = MinMaxNormalizer.from_dict(state["normalizer"])
        obj.fit_split = state.get("fit_split")
        if "noise_mask_file" in state:
            obj.noise_mask = NoiseMask.load(path.with_name(state["noise_mask_file"]))
        return obj


#: Frames per worker below which ``workers=None`` runs serially: starting a pool of
#: processes (a second or two each) costs more than it saves on a short archive.
MIN_FRAMES_PER_WORKER = 512


def _pool_workers(workers: int | None, n_frames: int) -> int:
    """The worker count to use: an explicit count as given, ``None``/``0`` every core
    unless the archive is too short to repay the pool."""
    if workers:
        return resolve_workers(workers)
    n = resolve_workers(None)
    return n if n_frames >= MIN_FRAMES_PER_WORKER * n else 1


def _processed_coordinate(
    coord: xr.DataArray, start: int, n_crop: int, n_out: int
) -> xr.DataArray:
    """A ``y``/``x`` coordinate after the crop (``n_crop`` cells from ``start``) and
    the resize to ``n_out`` cells: the new cells' centres for a regular coordinate
    (outer edges kept, :func:`~nowcast.data.georef.resized_coordinate`), the
    area-weighted mean of the cropped ones otherwise; attributes kept."""
    values = np.asarray(coord.values[start : start + n_crop], dtype=np.float64)
    if n_out != n_crop:
        try:
            values = resized_coordinate(values, n_out)
        except ValueError:  # irregular or a single cell
            values = area_weights(n_crop, n_out) @ values
    return xr.DataArray(values, dims=coord.dims, attrs=dict(coord.attrs))


def _transform_task(
    task: tuple[Preprocessor, FrameChunk, dict, np.ndarray | None],
) -> tuple[np.ndarray, int, np.ndarray | None]:
    """Worker job: read a raw chunk and process it (see :meth:`Preprocessor._transform_frames`).

    Returns the processed frames ``(t, h, w)``, the raw chunk's NaN count and its
    coverage (or None)."""
    pre, chunk, g, mask = task
    v = chunk.load()
    frames, covered = pre._transform_frames(v, g, mask)
    return frames, int(np.isnan(v).sum()), covered


def _month_sums_task(task: tuple[Preprocessor, FrameChunk, np.ndarray]) -> list:
    """Worker job: per-month sums of a normalised raw chunk (the noise-mask fit)."""
    pre, chunk, labels = task
    return chunk_month_sums(pre._normalize(chunk.load()), labels)
