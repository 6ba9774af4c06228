"""The verification metrics: the paper's, HKO-7's (HSS, GSS, B-MSE, B-MAE) and FSS.

Forecasts and observations arrive as normalised grey levels ``P`` in [0, 1]. The
data set's :class:`nowcast.data.physical.GreyScale` (``dataset.scale``) says what they
mean and turns them into scoring units (:meth:`GreyScale.to_score`):

* dBZ archives (HKO-7, FMI): ``dBZ = P (vmax - vmin) + vmin`` then ``Z = a R^b`` with
  ``Z = 10 ** (dBZ / 10)`` gives the rain rate R in mm/h (Shi et al. 2015, Sec. 4.2;
  HKO-7: dBZ = 70 P - 10, a = 58.53, b = 1.56);
* rain-rate archives (BOM, mm/h): ``R = P (vmax - vmin) + vmin``, no Z-R relation;
* other units (e.g. VIL): the source units themselves (thresholds in those units).

Scores, per lead time:

* ``rainfall_mse`` / ``rainfall_mae``: mean squared / absolute error of rain rate,
  (mm/h)^2 and mm/h;
* ``bias``: mean of forecast minus observed rain rate, mm/h (additive bias; the
  frequency bias of the rain/no-rain events is ``fbias@thr``);
* contingency scores at a threshold (event = value >= threshold; hits a, false alarms
  b, misses c, correct negatives d, n = a + b + c + d):
  CSI = a / (a + b + c), FAR = b / (a + b), POD = a / (a + c),
  HSS = 2 (ad - bc) / ((a + c)(c + d) + (a + b)(b + d)) (Heidke skill score),
  GSS = (a - a_r) / (a + b + c - a_r), a_r = (a + b)(a + c) / n (Gilbert skill score,
  the equitable threat score);
* ``correlation``: the paper's sum(P*T) / sqrt(sum(P^2) * sum(T^2) + 1e-9) of forecast P
  and truth T, computed on rain rate like the other scores;
* ``b_mse`` / ``b_mae`` (HKO-7, Shi et al. 2017): per frame the sum over pixels of
  ``w * (P_f - P_o)^2`` (``w * |P_f - P_o|``) on the grey-level [0, 1] scale, with the
  weight ``w`` = 1, 1, 2, 5, 10, 30 for an *observed* rain rate below 0.5, then at or
  above 0.5, 2, 5, 10, 30 mm/h, averaged over frames (unitless; they grow with the
  frame size). For scales whose score units are not mm/h the same weight thresholds
  are read in the score units;
* ``fss@thr/n``: the fractions skill score (Roberts and Lean 2008) for ``n x n``
  neighbourhoods: event fields turned into fractions ``P_f``, ``P_o`` by a centred box
  filter with zero padding outside the domain (edge neighbourhoods are divided by
  ``n^2`` all the same); masked pixels count as no-event and are left out of the
  sums; FSS = 1 - sum (P_f - P_o)^2 / sum (P_f^2 + P_o^2), sums pooled over the frames
  of a lead. 1 is perfect; ``fss@thr/1`` compares the raw event fields.

Aggregation. :class:`MetricAccumulator` sums raw counts (hits, misses, false alarms,
squared errors, products, FSS numerators and denominators) per lead time and
threshold over every batch, on the device, and turns them into scores once, in
:meth:`MetricAccumulator.compute`:

* ``"pooled"`` (default): counts pooled over all test sequences per lead time, one score
  per lead, then the mean over lead times. This is what the HKO-7 benchmark (Shi et al.
  2017) states it does. Shi et al. (2015) only say the scores are "averaged over the 15
  predictions" and do not say how the frames of one lead are combined.
* ``"per_frame"``: one score per (sequence, lead) frame, averaged over the frames of
  each lead where it is defined (frames without any event are skipped for
  CSI/FAR/POD/HSS/GSS), then over leads. The paper's epsilon in the correlation
  suggests a per-frame computation; offer both, pick with ``compute(aggregation=...)``.
  FSS and the frequency bias stay ratios of pooled sums; B-MSE / B-MAE are already
  means of per-frame sums, so both are the same in either aggregation.

The sums are also kept per *group* (``update(..., groups=block_ids)``), the independent
units that :mod:`nowcast.evaluation.bootstrap` resamples for confidence intervals.

Scores with a zero denominator (no events at any frame of a lead) are ``NaN``, listed in
the ``"notes"`` of the result and announced with a :class:`RuntimeWarning`; never 0.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "SumAccumulator",
    "HKO7_DBZ_RANGE",
    "HKO7_ZR",
    "MARSHALL_PALMER_ZR",
    "PAPER_THRESHOLD",
    "DEFAULT_THRESHOLDS",
    "CORRELATION_EPS",
    "grey_to_dbz",
    "dbz_to_grey",
    "dbz_to_rainrate",
    "rainrate_to_dbz",
    "grey_to_rainrate",
    "threshold_key",
    "fss_key",
    "box_mean",
    "dbz_scale",
    "DEFAULT_FSS_SIZES",
    "HKO7_BALANCE_THRESHOLDS",
    "HKO7_BALANCE_WEIGHTS",
    "MetricAccumulator",
]

#: dBZ range of HKO-7 grey levels: pixel p in [0, 255] -> dBZ = p / 255 * 70 - 10.
HKO7_DBZ_RANGE = (-10.0, 60.0)
#: Z-R coefficients (a, b) of the HKO-7 benchmark (Shi et al. 2017).
HKO7_ZR = (58.53, 1.56)
#: Marshall-Palmer Z-R coefficients (a, b).
MARSHALL_PALMER_ZR = (200.0, 1.6)
#: The paper's rain / no-rain threshold, mm/h.
PAPER_THRESHOLD = 0.5
#: Default rain thresholds, mm/h (those of the HKO-7 benchmark).
DEFAULT_THRESHOLDS = (0.5, 2.0, 5.0, 10.0, 30.0)
#: The epsilon of the paper's correlation formula.
CORRELATION_EPS = 1e-9

ArrayLike = Any  # torch.Tensor | numpy.ndarray | float


def grey_to_dbz(
    p: ArrayLike, dbz_min: float = -10.0, dbz_max: float = 60.0
) -> ArrayLike:
    """Normalised grey level -> reflectivity, elementwise.

    Parameters
    ----------
    p : torch.Tensor or numpy.ndarray or float
        Grey levels in [0, 1] (min-max normalised reflectivity).
    dbz_min, dbz_max : float
        Reflectivity (dBZ) mapped to grey 0 and 1; HKO-7 uses -10 and 60, so
        ``dBZ = P * 70 - 10``.

    Returns
    -------
    Same type and shape as ``p``, in dBZ.
    """
    return p * (dbz_max - dbz_min) + dbz_min


def dbz_to_grey(
    dbz: ArrayLike, dbz_min: float = -10.0, dbz_max: float = 60.0
) -> ArrayLike:
    """Reflectivity (dBZ) -> normalised grey level, inverse of :func:`grey_to_dbz`."""
    return (dbz - dbz_min) / (dbz_max - dbz_min)


def dbz_to_rainrate(dbz: ArrayLike, a: float = 58.53, b: float = 1.56) -> ArrayLike:
    """Reflectivity -> rain rate through the Z-R relation ``Z = a R^b``, elementwise.

    Parameters
    ----------
    dbz : torch.Tensor or numpy.ndarray or float
        Reflectivity in dBZ, ``Z = 10 ** (dBZ / 10)`` in mm^6 m^-3.
    a, b : float
        Z-R coefficients (HKO-7: 58.53, 1.56; Marshall-Palmer: 200, 1.6).

    Returns
    -------
    Rain rate ``R = (Z / a) ** (1 / b)`` in mm/h, same type and shape as ``dbz``.
    Equivalently ``dBZ = 10 log10 a + 10 b log10 R`` (Shi et al. 2015, Sec. 4.2).
    """
    _check_zr(a, b)
    return 10.0 ** ((dbz - 10.0 * math.log10(a)) / (10.0 * b))


def rainrate_to_dbz(r: ArrayLike, a: float = 58.53, b: float = 1.56) -> ArrayLike:
    """Rain rate (mm/h, > 0) -> dBZ, the inverse of :func:`dbz_to_rainrate`."""
    _check_zr(a, b)
    log10 = torch.log10 if isinstance(r, torch.Tensor) else np.log10
    return 10.0 * math.log10(a) + 10.0 * b * log10(r)


def grey_to_rainrate(
    p: ArrayLike,
    dbz_min: float = -10.0,
    dbz_max: float = 60.0,
    a: float = 58.53,
    b: float = 1.56,
) -> ArrayLike:
    """Normalised grey level -> rain rate in mm/h (:func:`grey_to_dbz` then Z-R)."""
    return dbz_to_rainrate(grey_to_dbz(p, dbz_min, dbz_max), a, b)


def threshold_key(metric: str, threshold: float) -> str:
    """Key of a thresholded score: ``threshold_key("csi", 2.0) == "csi@2"``."""
    return f"{metric}@{float(threshold):g}"


def _check_zr(a: float, b: float) -> None:
    if not (a > 0 and b > 0):
        raise ValueError(f"Z-R coefficients a and b must be > 0, got a={a!r}, b={b!r}")


# --------------------------------------------------------------------------------------
# The accumulator
# --------------------------------------------------------------------------------------

_COUNT_NAMES = ("hits", "misses", "false_alarms")
#: per-(group, lead) sums; valid pixels, scored frames, errors, products, balanced errors
_SUM_NAMES = ("n", "se", "ae", "err", "pt", "pp", "tt")
_BAL_NAMES = ("frames", "bse", "bae")
_FSS_NAMES = ("fss_num", "fss_den")
_FRAME_SCORES = ("mse", "mae", "bias", "correlation")
_FRAME_CAT = ("csi", "far", "pod", "hss", "gss")
#: categorical scores with a plain key (``"csi"`` = ``"csi@0.5"``)
_PLAIN_CAT = ("csi", "far", "pod")
#: B-MSE / B-MAE of HKO-7 (Shi et al. 2017): weight 1 below 0.5 mm/h, then 1, 2, 5, 10, 30
#: at or above 0.5, 2, 5, 10, 30 mm/h of the observation.
HKO7_BALANCE_THRESHOLDS = (0.5, 2.0, 5.0, 10.0, 30.0)
HKO7_BALANCE_WEIGHTS = (1.0, 1.0, 2.0, 5.0, 10.0, 30.0)
#: FSS neighbourhood sizes (pixels, odd) scored by default.
DEFAULT_FSS_SIZES = (1, 5, 11, 21)


def fss_key(threshold: float, size: int) -> str:
    """Key of a fractions skill score: ``fss_key(2.0, 11) == "fss@2/11"``."""
    return f"fss@{float(threshold):g}/{int(size)}"


def box_mean(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over centred ``size x size`` neighbourhoods, zeros outside the domain.

    Computed with an integral image (two cumulative sums), so the cost does not grow
    with ``size``.

    Parameters
    ----------
    x : torch.Tensor, shape (..., H, W)
        Field to smooth (here 0/1 event indicators).
    size : int
        Odd neighbourhood width in pixels; 1 returns ``x`` unchanged.

    Returns
    -------
    torch.Tensor, shape (..., H, W)
        ``sum of x over the window / size**2``: pixels outside the domain count as 0
        (zero padding, the choice of Roberts and Lean 2008 at the domain edge).
    """
    size = _check_fss_size(size)
    if size == 1:
        return x
    r = size // 2
    c = torch.nn.functional.pad(x, (r + 1, r, r + 1, r)).cumsum(-1).cumsum(-2)
    s = (
        c[..., size:, size:]
        - c[..., :-size, size:]
        - c[..., size:, :-size]
        + c[..., :-size, :-size]
    )
    return s / float(size * size)


def _check_fss_size(size: int) -> int:
    if int(size) != size or size < 1 or size % 2 == 0:
        raise ValueError(
            f"FSS neighbourhood sizes must be odd positive integers (a centred "
            f"window), got {size!r}"
        )
    return int(size)


def _sum_dtype(device: torch.device) -> torch.dtype:
    # float64 keeps sums of ~1e9 squared errors exact enough; MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den with NaN where den == 0 (never a silent 0)."""
    out = num / den.clamp_min(1e-300 if den.dtype == torch.float64 else 1e-30)
    return torch.where(den > 0, out, torch.full_like(out, float("nan")))


class SumAccumulator:
    """Base of the accumulators: a state of summed tensors, merged by addition.

    Subclasses keep ``self._state`` (``None`` before the first update, else a dict of
    tensors with the lead time as last axis and a ``"n"`` entry of shape ``(T,)``),
    define :meth:`_config` (settings that must agree to merge) and may extend
    :meth:`_layout` (shapes that must agree) and :meth:`_adopt_layout`.
    """

    _state: dict[str, torch.Tensor] | None

    @property
    def n_leads(self) -> int | None:
        """Number of lead times seen so far (``None`` before the first update)."""
        return None if self._state is None else int(self._state["n"].shape[0])

    def _config(self) -> tuple:
        raise NotImplementedError

    def _layout(self) -> tuple:
        return (self.n_leads,)

    def _adopt_layout(self, other: SumAccumulator) -> None:
        """Copy layout attributes kept outside ``_state`` (none by default)."""

    def _merge_trivially(self, other: SumAccumulator) -> bool:
        """Check that ``other`` can be merged; merge it when that is a copy (one side
        empty) and return True, else return False (both hold sums to add)."""
        if not isinstance(other, type(self)):
            raise TypeError(
                f"can only merge a {type(self).__name__}, got {type(other).__name__}"
            )
        if other._config() != self._config():
            raise ValueError(
                "cannot merge accumulators with different settings: "
                f"{self._config()} vs {other._config()}"
            )
        if other._state is None:
            return True
        if self._state is None:
            self._state = {k: v.clone() for k, v in other._state.items()}
            self._adopt_layout(other)
            return True
        if self._layout() != other._layout():
            raise ValueError(
                "cannot merge accumulators over different lead times / frame shapes: "
                f"{self._layout()} vs {other._layout()}"
            )
        return False

    def merge(self, other: SumAccumulator) -> SumAccumulator:
        """Add another accumulator's sums into this one (in place); return self."""
        if self._merge_trivially(other):
            return self
        for k, v in self._state.items():
            v += other._state[k].to(device=v.device, dtype=v.dtype)
        return self

    def _process_group(self) -> Any:
        """``torch.distributed`` when a process group is up (None otherwise), after
        checking this rank has state to reduce."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return None
        if self._state is None:
            raise RuntimeError(
                "all_reduce needs at least one update() on every rank before it is "
                "called"
            )
        return dist

    def all_reduce(self) -> SumAccumulator:
        """Sum the state over all processes (``torch.distributed``); no-op otherwise.

        Every rank must have called ``update`` at least once (the state's shape is
        only known then). Returns ``self``.
        """
        dist = self._process_group()
        if dist is None:
            return self
        for name in sorted(self._state):
            dist.all_reduce(self._state[name], op=dist.ReduceOp.SUM)
        return self


class MetricAccumulator(SumAccumulator):
    """Accumulate the paper's and HKO-7's scores per lead time, compute them once.

    Parameters
    ----------
    thresholds : sequence of float
        Event thresholds in the scale's :attr:`~GreyScale.score_units` (mm/h for dBZ
        and rain-rate archives) for CSI / FAR / POD / HSS / GSS / FSS (event = value
        >= threshold). For rain (mm/h) the paper's 0.5 mm/h is always included and the
        plain ``"csi"`` / ``"far"`` / ``"pod"`` keys refer to it; in other units the
        plain keys refer to the smallest threshold.
    a, b, dbz_min, dbz_max : float
        Backward-compatible way to give a dBZ scale (Z = a R^b; dBZ at grey 0 and 1);
        ignored when ``scale`` is given.
    aggregation : {"pooled", "per_frame"}
        Default aggregation of :meth:`compute` (see the module docstring).
    scale : GreyScale, optional
        What the grey levels mean (:class:`nowcast.data.physical.GreyScale`, normally
        ``dataset.scale``); default the dBZ scale of ``a, b, dbz_min, dbz_max``.
    fss_sizes : sequence of int
        Odd FSS neighbourhood widths in pixels (default 1, 5, 11, 21).
    balance_thresholds, balance_weights : sequence of float
        B-MSE / B-MAE pixel weights by the *observed* value in score units: weight
        ``balance_weights[i]`` where ``i`` thresholds are <= the observation (HKO-7:
        1, 1, 2, 5, 10, 30 at 0.5, 2, 5, 10, 30 mm/h). For non-rain units the same
        numbers are read in the scale's score units.

    Notes
    -----
    State lives on the device of the first tensors passed to :meth:`update` (GPU
    included): only sums of shape ``(G, T)``, ``(G, K, T)`` or ``(G, K, S, T)`` are
    kept (``G`` groups given to :meth:`update`, ``K`` thresholds, ``S`` FSS sizes,
    ``T`` leads), so nothing field-sized is ever copied to the host. The per-group
    sums feed the block bootstrap of :mod:`nowcast.evaluation.bootstrap`. Merge
    per-process accumulators with :meth:`all_reduce` (``torch.distributed``) or
    :meth:`merge`.

    Examples
    --------
    >>> acc = MetricAccumulator(scale=dataset.scale)          # doctest: +SKIP
    >>> for inputs, targets in loader:                       # doctest: +SKIP
    ...     acc.update(model.predict(inputs, 15), targets, mask)
    >>> scores = acc.compute()                               # doctest: +SKIP
    >>> scores["csi"], scores["hss@2_by_lead"], scores["fss@2/11"]  # doctest: +SKIP
    """

    def __init__(
        self,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        a: float = 58.53,
        b: float = 1.56,
        dbz_min: float = -10.0,
        dbz_max: float = 60.0,
        aggregation: str = "pooled",
        scale: Any | None = None,
        fss_sizes: Sequence[int] = DEFAULT_FSS_SIZES,
        balance_thresholds: Sequence[float] = HKO7_BALANCE_THRESHOLDS,
        balance_weights: Sequence[float] = HKO7_BALANCE_WEIGHTS,
    ) -> None:
        if scale is None:
            _check_zr(a, b)
            if not dbz_max > dbz_min:
                raise ValueError(
                    f"dbz_max must exceed dbz_min, got dbz_min={dbz_min}, "
                    f"dbz_max={dbz_max}"
                )
            scale = dbz_scale(a, b, dbz_min, dbz_max)
        if not callable(getattr(scale, "to_score", None)):
            raise TypeError(
                "scale must be a nowcast.data.physical.GreyScale (with to_score), got "
                f"{type(scale).__name__}"
            )
        self.scale = scale
        rain = scale.score_units == "mm/h"
        thr = {float(t) for t in thresholds} | ({PAPER_THRESHOLD} if rain else set())
        thr = sorted(thr)
        if not thr or any(not math.isfinite(t) or (rain and t <= 0) for t in thr):
            raise ValueError(
                f"thresholds must be finite and > 0 mm/h, got {list(thresholds)}"
            )
        _check_aggregation(aggregation)
        self.thresholds: tuple[float, ...] = tuple(thr)
        self.primary_threshold = PAPER_THRESHOLD if rain else self.thresholds[0]
        self.fss_sizes: tuple[int, ...] = tuple(
            sorted({_check_fss_size(s) for s in fss_sizes})
        )
        bt, bw = (
            tuple(map(float, balance_thresholds)),
            tuple(map(float, balance_weights)),
        )
        if len(bw) != len(bt) + 1 or list(bt) != sorted(bt):
            raise ValueError(
                "balance_weights needs one weight more than balance_thresholds "
                f"(sorted), got thresholds {bt} and weights {bw}"
            )
        self.balance_thresholds, self.balance_weights = bt, bw
        # kept for callers that read them (dBZ scales only)
        self.a, self.b = scale.zr_a, scale.zr_b
        self.dbz_min, self.dbz_max = scale.vmin, scale.vmax
        self.aggregation = aggregation
        self._state: dict[str, torch.Tensor] | None = None
        self._group_ids: list[int] = []
        self._group_index: dict[int, int] = {}

    # -- state -------------------------------------------------------------------------
    @property
    def n_leads(self) -> int | None:
        """Number of lead times seen so far (``None`` before the first update)."""
        return None if self._state is None else int(self._state["frame_count"].shape[0])

    @property
    def group_ids(self) -> list[int]:
        """Ids of the groups seen so far, in the order of the state's group axis."""
        return list(self._group_ids)

    def _config(self) -> tuple:
        return (
            self.thresholds,
            tuple(sorted(self.scale.to_dict().items(), key=str)),
            self.fss_sizes,
            self.balance_thresholds,
            self.balance_weights,
        )

    def _grouped_shapes(self, n_leads: int) -> dict[str, tuple[int, ...]]:
        k, s = len(self.thresholds), len(self.fss_sizes)
        shapes = {name: (n_leads,) for name in _SUM_NAMES + _BAL_NAMES}
        shapes.update({name: (k, n_leads) for name in _COUNT_NAMES})
        shapes.update({name: (k, s, n_leads) for name in _FSS_NAMES})
        return shapes

    def _init_state(
        self, n_leads: int, device: torch.device
    ) -> dict[str, torch.Tensor]:
        k, dt = len(self.thresholds), _sum_dtype(device)
        state = {
            name: torch.zeros(0, *shape, dtype=dt, device=device)
            for name, shape in self._grouped_shapes(n_leads).items()
        }
        # per-frame aggregation: sums of defined per-frame scores and their counts
        for name in _FRAME_SCORES:
            state[f"frame_{name}"] = torch.zeros(n_leads, dtype=dt, device=device)
        state["frame_count"] = torch.zeros(n_leads, dtype=dt, device=device)
        for name in _FRAME_CAT:
            state[f"frame_{name}"] = torch.zeros(k, n_leads, dtype=dt, device=device)
            state[f"frame_{name}_count"] = torch.zeros(
                k, n_leads, dtype=dt, device=device
            )
        return state

    def _is_grouped(self, name: str) -> bool:
        return name in _SUM_NAMES + _BAL_NAMES + _COUNT_NAMES + _FSS_NAMES

    def _add_groups(self, ids: Sequence[int]) -> None:
        """Append zero rows to the grouped sums for ids not seen yet."""
        new = [i for i in dict.fromkeys(ids) if i not in self._group_index]
        if not new:
            return
        for i in new:
            self._group_index[i] = len(self._group_ids)
            self._group_ids.append(i)
        assert self._state is not None
        for name, v in self._state.items():
            if self._is_grouped(name):
                pad = v.new_zeros(len(new), *v.shape[1:])
                self._state[name] = torch.cat([v, pad])

    def _relayout(self, ids: Sequence[int]) -> None:
        """Reorder the group axis to ``ids`` (a superset of the groups held)."""
        assert self._state is not None
        ids = [int(i) for i in ids]
        index = {g: j for j, g in enumerate(ids)}
        src = torch.tensor(
            [index[g] for g in self._group_ids],
            dtype=torch.long,
            device=self._state["n"].device,
        )
        for name, v in self._state.items():
            if self._is_grouped(name):
                out = v.new_zeros(len(ids), *v.shape[1:])
                self._state[name] = out.index_add_(0, src, v)
        self._group_ids, self._group_index = ids, index

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self._state = None
        self._group_ids, self._group_index = [], {}

    def _adopt_layout(self, other: SumAccumulator) -> None:
        self._group_ids = list(other._group_ids)
        self._group_index = dict(other._group_index)

    def merge(self, other: SumAccumulator) -> MetricAccumulator:
        """Add another accumulator's sums into this one (in place); return self.

        Groups are matched by id (a group seen by both is summed).
        """
        if self._merge_trivially(other):
            return self
        self._add_groups(other._group_ids)
        device = self._state["n"].device
        idx = torch.tensor(
            [self._group_index[g] for g in other._group_ids],
            dtype=torch.long,
            device=device,
        )
        for k, v in self._state.items():
            o = other._state[k].to(device=device, dtype=v.dtype)
            if self._is_grouped(k):
                v.index_add_(0, idx, o)
            else:
                v += o
        return self

    def all_reduce(self) -> MetricAccumulator:
        """Sum the state over all processes (``torch.distributed``); no-op otherwise.

        The union of every rank's group ids (sorted) becomes the group axis on all
        ranks before the sums are reduced. Every rank must have called ``update`` at
        least once. Returns ``self``.
        """
        dist = self._process_group()
        if dist is None:
            return self
        gathered: list[list[int] | None] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, self._group_ids)
        self._relayout(sorted({g for ids in gathered for g in (ids or [])}))
        for name in sorted(self._state):
            dist.all_reduce(self._state[name], op=dist.ReduceOp.SUM)
        return self

    # -- accumulation ------------------------------------------------------------------
    def _group_indices(
        self, groups: Any, batch: int, device: torch.device
    ) -> torch.Tensor:
        """Local group-axis indices (B,) for the batch's group ids, adding new ones."""
        if groups is None:
            ids = [-1] * batch
        elif isinstance(groups, int | np.integer):
            ids = [int(groups)] * batch
        else:
            ids = [int(g) for g in np.asarray(torch.as_tensor(groups).cpu()).ravel()]
            if len(ids) != batch:
                raise ValueError(
                    f"groups must hold one id per window of the batch ({batch}), got "
                    f"{len(ids)}"
                )
        self._add_groups(ids)
        return torch.tensor(
            [self._group_index[g] for g in ids], dtype=torch.long, device=device
        )

    @torch.no_grad()
    def update(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None = None,
        groups: Any = None,
    ) -> None:
        """Add one batch of forecasts and observations.

        Parameters
        ----------
        pred, target : torch.Tensor, shape (B, T, C, H, W)
            Forecast and observed grey levels in [0, 1], lead times ``1 .. T`` along
            axis 1. Same shape and device.
        mask : torch.Tensor of bool, optional
            True where a pixel is scored: shape (H, W) (a static clutter mask) or
            anything broadcastable to (B, T, C, H, W) (e.g. the static mask AND the
            per-frame coverage). Masked pixels are excluded from every score (for FSS
            they count as no-event and are left out of the sums).
        groups : int or sequence of int, optional
            The independent unit (e.g. the test block) of each window, shape (B,) or
            one id for the whole batch; default one group (id -1). Sums are kept per
            group for the bootstrap of :mod:`nowcast.evaluation.bootstrap`.
        """
        check_pair(pred, target)
        n_leads, device = pred.shape[1], pred.device
        valid = _broadcast_mask(mask, pred.shape, device)  # float 0/1, broadcastable
        if self._state is None:
            self._state = self._init_state(n_leads, device)
        elif self.n_leads != n_leads:
            raise ValueError(
                "every batch must have the same number of lead times; this accumulator "
                f"holds {self.n_leads}, got {n_leads} (shape {tuple(pred.shape)})"
            )
        st = self._state
        if st["n"].device != device:
            raise ValueError(
                f"this accumulator lives on {st['n'].device}, got tensors on {device}"
            )
        gi = self._group_indices(groups, pred.shape[0], device)
        st = self._state  # _group_indices may have grown the grouped tensors
        dt = st["n"].dtype
        pred, target = pred.float(), target.float()
        p, t = self.scale.to_score(pred), self.scale.to_score(target)
        vmask = (
            torch.ones((1,) * 5, device=device) if valid is None else valid
        ).expand_as(pred)

        def fsum(x: torch.Tensor) -> torch.Tensor:
            return x.sum(dim=(2, 3, 4), dtype=dt)  # (B, T): sum over C, H, W

        def add(name: str, frame: torch.Tensor, *index: int) -> None:
            st[name][(slice(None), *index)].index_add_(0, gi, frame)

        err = (p - t) * vmask
        pv, tv = p * vmask, t * vmask
        n = fsum(vmask)
        sums = (n, fsum(err * err), fsum(err.abs()), fsum(err), fsum(pv * tv))
        sums += (fsum(pv * pv), fsum(tv * tv))
        for name, frame in zip(_SUM_NAMES, sums, strict=True):
            add(name, frame)
        self._update_frame_scores(*sums)
        self._update_balanced(pred, target, t, vmask, n, add, fsum)

        vb = vmask.bool()
        for k, thr in enumerate(self.thresholds):
            pe, te = (p >= thr) & vb, (t >= thr) & vb
            hits = fsum(pe & te)
            misses, fas = fsum(te) - hits, fsum(pe) - hits
            for name, val in zip(_COUNT_NAMES, (hits, misses, fas), strict=True):
                add(name, val, k)
            self._update_frame_categorical(k, hits, misses, fas, n)
            pe_f, te_f = pe.to(torch.float32), te.to(torch.float32)
            for j, size in enumerate(self.fss_sizes):
                pf, po = box_mean(pe_f, size), box_mean(te_f, size)
                add("fss_num", fsum((pf - po).square() * vmask), k, j)
                add("fss_den", fsum((pf.square() + po.square()) * vmask), k, j)

    def _update_balanced(self, pred, target, t, vmask, n, add, fsum) -> None:
        """B-MSE / B-MAE sums: weighted grey-level errors by the observed value."""
        bounds = torch.tensor(self.balance_thresholds, device=t.device)
        weights = torch.tensor(self.balance_weights, device=t.device)
        w = weights[torch.bucketize(t.contiguous(), bounds, right=True)] * vmask
        e = pred - target
        add("bse", fsum(w * e * e))
        add("bae", fsum(w * e.abs()))
        add("frames", (n > 0).to(n.dtype))

    def _update_frame_scores(self, n, se, ae, es, pt, pp, tt) -> None:
        st = self._state
        has = n > 0  # frames with at least one valid pixel
        nz = n.clamp_min(1)
        corr = pt / torch.sqrt(pp * tt + CORRELATION_EPS)
        for name, val in zip(
            _FRAME_SCORES, (se / nz, ae / nz, es / nz, corr), strict=True
        ):
            st[f"frame_{name}"] += torch.where(has, val, torch.zeros_like(val)).sum(0)
        st["frame_count"] += has.to(n.dtype).sum(0)

    def _update_frame_categorical(self, k, hits, misses, fas, n) -> None:
        st = self._state
        for name, (num, den) in _categorical(hits, fas, misses, n).items():
            ok = den > 0
            score = num / den.clamp_min(1e-300 if den.dtype == torch.float64 else 1e-30)
            st[f"frame_{name}"][k] += torch.where(ok, score, 0.0).sum(0)
            st[f"frame_{name}_count"][k] += ok.to(n.dtype).sum(0)

    # -- scores ------------------------------------------------------------------------
    def grouped_sums(self) -> tuple[list[int], dict[str, torch.Tensor]]:
        """The per-group raw sums: ``(group ids, {name: (G, ...) tensor})``.

        Feed any weighted combination over the group axis (e.g. bootstrap resamples,
        shape (R, ...)) to :meth:`pooled_scores`.
        """
        if self._state is None:
            raise RuntimeError("grouped_sums() called before any update()")
        sums = {k: v for k, v in self._state.items() if self._is_grouped(k)}
        return list(self._group_ids), sums

    def pooled_scores(
        self, sums: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Pooled per-lead scores from summed counts.

        Parameters
        ----------
        sums : mapping of str to torch.Tensor
            The sums of :meth:`grouped_sums` reduced over the group axis, with any
            leading batch shape ``L``: ``(*L, T)``, ``(*L, K, T)``, ``(*L, K, S, T)``.

        Returns
        -------
        dict of str to torch.Tensor, each of shape (*L, T)
            ``rainfall_mse``, ``rainfall_mae``, ``bias``, ``correlation``, ``b_mse``,
            ``b_mae`` and per threshold ``csi@thr`` ... ``gss@thr``, ``fbias@thr`` and
            ``fss@thr/size``; NaN where a denominator is 0.
        """
        s, out = sums, {}
        n = s["n"]
        out["rainfall_mse"] = _safe_div(s["se"], n)
        out["rainfall_mae"] = _safe_div(s["ae"], n)
        out["bias"] = _safe_div(s["err"], n)
        corr = s["pt"] / torch.sqrt(s["pp"] * s["tt"] + CORRELATION_EPS)
        out["correlation"] = torch.where(n > 0, corr, float("nan"))
        out["b_mse"] = _safe_div(s["bse"], s["frames"])
        out["b_mae"] = _safe_div(s["bae"], s["frames"])
        for k, thr in enumerate(self.thresholds):
            h, f, m = (s[c][..., k, :] for c in ("hits", "false_alarms", "misses"))
            for name, (num, den) in _categorical(h, f, m, n).items():
                out[threshold_key(name, thr)] = _safe_div(num, den)
            out[threshold_key("fbias", thr)] = _safe_div(h + f, h + m)
            for j, size in enumerate(self.fss_sizes):
                num, den = s["fss_num"][..., k, j, :], s["fss_den"][..., k, j, :]
                out[fss_key(thr, size)] = 1.0 - _safe_div(num, den)
        return out

    def compute(self, aggregation: str | None = None) -> dict[str, Any]:
        """Turn the accumulated counts into scores.

        Parameters
        ----------
        aggregation : {"pooled", "per_frame"}, optional
            Defaults to the constructor's choice; see the module docstring. FSS,
            B-MSE / B-MAE and the frequency bias are the same in both (FSS and
            ``fbias`` are ratios of pooled sums; B-MSE / B-MAE are defined as means of
            per-frame sums).

        Returns
        -------
        dict
            For each metric ``m`` in ``rainfall_mse``, ``rainfall_mae``, ``bias``,
            ``correlation``, ``b_mse``, ``b_mae``, and for each threshold ``thr`` the
            keys ``csi@thr``, ``far@thr``, ``pod@thr``, ``hss@thr``, ``gss@thr``,
            ``fbias@thr`` and ``fss@thr/size`` (plain ``csi``, ``far``, ``pod`` at
            :attr:`primary_threshold`): ``result[m]`` is the mean over lead times (a
            float, NaN leads skipped; NaN if all are) and ``result[m + "_by_lead"]`` a
            float64 numpy array of shape (T,). Also ``n_leads``, ``n_frames``,
            ``n_pixels`` (scored pixels of lead 1), ``n_groups``, ``event_pixels``
            (observed events per threshold key, all leads), ``thresholds``,
            ``fss_sizes``, ``score_units``, ``scale`` (dict), ``conversion``
            (:meth:`GreyScale.describe`), ``aggregation`` and ``notes``.
        """
        aggregation = self.aggregation if aggregation is None else aggregation
        _check_aggregation(aggregation)
        if self._state is None:
            raise RuntimeError("compute() called before any update(); nothing to score")
        st = self._state
        _, grouped = self.grouped_sums()
        total = {k: v.sum(0) for k, v in grouped.items()}
        by_lead = self.pooled_scores(total)
        if aggregation == "per_frame":
            by_lead.update(self._per_frame_scores())
        for name in _PLAIN_CAT:
            by_lead[name] = by_lead[threshold_key(name, self.primary_threshold)]
        result, notes = _lead_means(by_lead)
        if notes:
            warnings.warn("; ".join(notes), RuntimeWarning, stacklevel=2)
        events = total["hits"] + total["misses"]  # (K, T) observed events
        result.update(
            n_leads=int(st["frame_count"].shape[0]),
            n_frames=int(st["frame_count"][0].item()),
            n_pixels=int(total["n"][0].item()),
            n_groups=len(self._group_ids),
            event_pixels={
                threshold_key("events", thr): int(events[k].sum().item())
                for k, thr in enumerate(self.thresholds)
            },
            thresholds=list(self.thresholds),
            fss_sizes=list(self.fss_sizes),
            score_units=self.scale.score_units,
            scale=self.scale.to_dict(),
            conversion=self.scale.describe(),
            aggregation=aggregation,
            notes=notes,
        )
        return result

    def _per_frame_scores(self) -> dict[str, torch.Tensor]:
        """Per-lead means of the per-frame scores (``aggregation="per_frame"``)."""
        st, out = self._state, {}
        for key, name in (
            ("rainfall_mse", "mse"),
            ("rainfall_mae", "mae"),
            ("bias", "bias"),
            ("correlation", "correlation"),
        ):
            out[key] = _safe_div(st[f"frame_{name}"], st["frame_count"])
        for k, thr in enumerate(self.thresholds):
            for name in _FRAME_CAT:
                out[threshold_key(name, thr)] = _safe_div(
                    st[f"frame_{name}"][k], st[f"frame_{name}_count"][k]
                )
        return out

    def counts(self) -> dict[str, np.ndarray]:
        """Raw pooled counts as numpy arrays (for inspection and tests).

        ``hits``, ``misses``, ``false_alarms``, ``correct_negatives`` have shape (K, T)
        (thresholds x leads); ``n`` (valid pixels), ``se``, ``ae``, ``err``, ``pt``,
        ``pp``, ``tt``, ``frames``, ``bse``, ``bae`` shape (T,); ``fss_num``,
        ``fss_den`` shape (K, S, T). All summed over groups.
        """
        _, grouped = self.grouped_sums()
        out = {k: v.sum(0).double().cpu().numpy() for k, v in grouped.items()}
        out["correct_negatives"] = (
            out["n"][None] - out["hits"] - out["misses"] - out["false_alarms"]
        )
        return out


def _categorical(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, n: torch.Tensor
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Numerator and denominator of each contingency score.

    ``a`` hits, ``b`` false alarms, ``c`` misses, ``n`` all scored pixels (so the
    correct negatives are ``d = n - a - b - c``); any common shape.

    * CSI = a / (a + b + c); FAR = b / (a + b); POD = a / (a + c)
    * HSS = 2 (a d - b c) / ((a + c)(c + d) + (a + b)(b + d))  (Heidke)
    * GSS = (a - a_r) / (a + b + c - a_r), a_r = (a + b)(a + c) / n  (Gilbert, ETS)
    """
    d = n - a - b - c
    a_r = (a + b) * (a + c) / n.clamp_min(1)
    return {
        "csi": (a, a + b + c),
        "far": (b, a + b),
        "pod": (a, a + c),
        "hss": (2 * (a * d - b * c), (a + c) * (c + d) + (a + b) * (b + d)),
        "gss": (a - a_r, a + b + c - a_r),
    }


def dbz_scale(
    a: float = 58.53, b: float = 1.56, dbz_min: float = -10.0, dbz_max: float = 60.0
) -> Any:
    """The :class:`~nowcast.data.physical.GreyScale` of a dBZ archive (HKO-7 defaults)."""
    from nowcast.data.physical import GreyScale

    return GreyScale("dBZ", float(dbz_min), float(dbz_max), float(a), float(b))


def _check_aggregation(aggregation: str) -> None:
    if aggregation not in ("pooled", "per_frame"):
        raise ValueError(
            f"aggregation must be 'pooled' or 'per_frame', got {aggregation!r}"
        )


def _lead_means(
    by_lead: Mapping[str, torch.Tensor],
) -> tuple[dict[str, Any], list[str]]:
    """``{key_by_lead: array (T,), key: NaN-skipping lead mean}`` and the notes
    naming the leads where a score is undefined (NaN)."""
    result: dict[str, Any] = {}
    undefined: dict[tuple[int, ...], list[str]] = {}
    for key, val in by_lead.items():
        arr = val.detach().double().cpu().numpy()
        result[f"{key}_by_lead"] = arr
        nan = np.isnan(arr)
        result[key] = float("nan") if nan.all() else float(np.nanmean(arr))
        if nan.any() and key not in _PLAIN_CAT:  # plain keys duplicate "@thr"
            leads = tuple((np.flatnonzero(nan) + 1).tolist())
            undefined.setdefault(leads, []).append(key)
    notes = [
        f"undefined (NaN; lead averages skip them) at lead(s) {list(leads)}: "
        f"{', '.join(keys)}; no observed or forecast events at those thresholds"
        " (or no valid pixels)"
        for leads, keys in undefined.items()
    ]
    return result, notes


def check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    """Refuse a forecast / observation pair that is not two (B, T, C, H, W) tensors
    of one shape on one device (the accumulators' ``update`` input)."""
    _as_5d(pred, "pred")
    _as_5d(target, "target")
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    if pred.device != target.device:
        raise ValueError(
            f"pred and target must be on the same device, got {pred.device} and "
            f"{target.device}; move one with .to(...)"
        )


def _as_5d(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 5:
        raise ValueError(f"{name} must be (B, T, C, H, W), got shape {tuple(x.shape)}")
    return x


def _broadcast_mask(
    mask: torch.Tensor | None, shape: torch.Size, device: torch.device
) -> torch.Tensor | None:
    """Validity mask as a float 0/1 tensor broadcastable to ``shape``, or None."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        mask = torch.as_tensor(np.asarray(mask))
    m = mask.to(device=device)
    try:
        torch.broadcast_shapes(m.shape, shape)
    except RuntimeError:
        raise ValueError(
            f"mask must be (H, W) or broadcastable to {tuple(shape)}, got "
            f"{tuple(m.shape)}"
        ) from None
    if m.dtype != torch.bool:
        m = m != 0
    return m.to(torch.float32)
