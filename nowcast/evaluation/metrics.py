"""The paper's verification metrics: Z-R conversion, contingency scores, rain errors.

Forecasts and observations arrive as normalised grey levels ``P`` in [0, 1]. They are
converted to rain rate in mm/h (Shi et al. 2015, Sec. 4.2; Shi et al. 2017 for HKO-7):

    dBZ = P * (dbz_max - dbz_min) + dbz_min          (HKO-7: dBZ = P * 70 - 10)
    Z   = 10 ** (dBZ / 10) = a * R ** b              (HKO-7: a = 58.53, b = 1.56)

and scored per lead time with

* ``rainfall_mse`` / ``rainfall_mae``: mean squared / absolute error of rain rate,
  (mm/h)^2 and mm/h;
* ``bias``: mean of forecast minus observed rain rate, mm/h (additive bias; the
  frequency bias of the rain/no-rain events is ``fbias@thr``);
* ``csi``, ``far``, ``pod`` at a rain threshold (event = rain rate >= threshold):
  CSI = hits / (hits + misses + false alarms),
  FAR = false alarms / (hits + false alarms),
  POD = hits / (hits + misses);
* ``correlation``: the paper's sum(P*T) / sqrt(sum(P^2) * sum(T^2) + 1e-9) of forecast P
  and truth T, computed on rain rate like the other scores.

Aggregation. :class:`MetricAccumulator` sums raw counts (hits, misses, false alarms,
correct negatives, squared errors, products) per lead time and threshold over every
batch, and turns them into scores once, in :meth:`MetricAccumulator.compute`:

* ``"pooled"`` (default): counts pooled over all test sequences per lead time, one score
  per lead, then the mean over lead times. This is what the HKO-7 benchmark (Shi et al.
  2017) states it does. Shi et al. (2015) only say the scores are "averaged over the 15
  predictions" and do not say how the frames of one lead are combined.
* ``"per_frame"``: one score per (sequence, lead) frame, averaged over the frames of
  each lead where it is defined (frames without any event are skipped for CSI/FAR/POD),
  then over leads. The paper's epsilon in the correlation suggests a per-frame
  computation; offer both, pick with ``compute(aggregation=...)``.

Scores with a zero denominator (no events at any frame of a lead) are ``NaN``, listed in
the ``"notes"`` of the result and announced with a :class:`RuntimeWarning`; never 0.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
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
_SUM_NAMES = ("n", "se", "ae", "err", "pt", "pp", "tt")
_FRAME_SCORES = ("mse", "mae", "bias", "correlation")
_FRAME_CAT = ("csi", "far", "pod")


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

    def merge(self, other: SumAccumulator) -> SumAccumulator:
        """Add another accumulator's sums into this one (in place); return self."""
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
            return self
        if self._state is None:
            self._state = {k: v.clone() for k, v in other._state.items()}
            self._adopt_layout(other)
            return self
        if self._layout() != other._layout():
            raise ValueError(
                "cannot merge accumulators over different lead times / frame shapes: "
                f"{self._layout()} vs {other._layout()}"
            )
        for k, v in self._state.items():
            v += other._state[k].to(device=v.device, dtype=v.dtype)
        return self

    def all_reduce(self) -> SumAccumulator:
        """Sum the state over all processes (``torch.distributed``); no-op otherwise.

        Every rank must have called ``update`` at least once (the state's shape is
        only known then). Returns ``self``.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        if self._state is None:
            raise RuntimeError(
                "all_reduce needs at least one update() on every rank before it is "
                "called"
            )
        for name in sorted(self._state):
            dist.all_reduce(self._state[name], op=dist.ReduceOp.SUM)
        return self


class MetricAccumulator(SumAccumulator):
    """Accumulate the paper's scores per lead time over batches, compute them once.

    Parameters
    ----------
    thresholds : sequence of float
        Rain thresholds in mm/h for CSI/FAR/POD (event = rain rate >= threshold). The
        paper's 0.5 mm/h is always included; plain ``"csi"``/``"far"``/``"pod"`` keys
        refer to it.
    a, b : float
        Z-R coefficients (``Z = a R^b``); HKO-7 defaults.
    dbz_min, dbz_max : float
        dBZ of grey level 0 and 1.
    aggregation : {"pooled", "per_frame"}
        Default aggregation of :meth:`compute` (see the module docstring).

    Notes
    -----
    State lives on the device of the first tensors passed to :meth:`update` (GPU
    included): only per-lead sums of shape ``(T,)`` or ``(K, T)`` are kept, so nothing
    field-sized is ever copied to the host. Merge per-process accumulators with
    :meth:`all_reduce` (``torch.distributed``) or :meth:`merge`.

    Examples
    --------
    >>> acc = MetricAccumulator()
    >>> for inputs, targets in loader:          # doctest: +SKIP
    ...     acc.update(model.predict(inputs, 15), targets)
    >>> scores = acc.compute()                  # doctest: +SKIP
    >>> scores["csi"], scores["csi_by_lead"]    # doctest: +SKIP
    """

    def __init__(
        self,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        a: float = 58.53,
        b: float = 1.56,
        dbz_min: float = -10.0,
        dbz_max: float = 60.0,
        aggregation: str = "pooled",
    ) -> None:
        _check_zr(a, b)
        if not dbz_max > dbz_min:
            raise ValueError(
                f"dbz_max must exceed dbz_min, got dbz_min={dbz_min}, dbz_max={dbz_max}"
            )
        thr = sorted({float(t) for t in thresholds} | {PAPER_THRESHOLD})
        if any(t <= 0 or not math.isfinite(t) for t in thr):
            raise ValueError(
                f"thresholds must be finite and > 0 mm/h, got {thresholds}"
            )
        _check_aggregation(aggregation)
        self.thresholds: tuple[float, ...] = tuple(thr)
        self.a, self.b = float(a), float(b)
        self.dbz_min, self.dbz_max = float(dbz_min), float(dbz_max)
        self.aggregation = aggregation
        self._state: dict[str, torch.Tensor] | None = None

    # -- state -------------------------------------------------------------------------
    def _config(self) -> tuple:
        return (self.thresholds, self.a, self.b, self.dbz_min, self.dbz_max)

    def _init_state(
        self, n_leads: int, device: torch.device
    ) -> dict[str, torch.Tensor]:
        k, dt = len(self.thresholds), _sum_dtype(device)
        state = {
            name: torch.zeros(n_leads, dtype=dt, device=device) for name in _SUM_NAMES
        }
        for name in _COUNT_NAMES:
            state[name] = torch.zeros(k, n_leads, dtype=dt, device=device)
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

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self._state = None

    # -- accumulation ------------------------------------------------------------------
    @torch.no_grad()
    def update(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> None:
        """Add one batch of forecasts and observations.

        Parameters
        ----------
        pred, target : torch.Tensor, shape (B, T, C, H, W)
            Forecast and observed grey levels in [0, 1], lead times ``1 .. T`` along
            axis 1. Same shape and device.
        mask : torch.Tensor of bool, optional
            True where a pixel is valid; shape (H, W) or anything broadcastable to
            (B, T, C, H, W). Invalid (noise / out-of-coverage) pixels are excluded from
            every score.
        """
        pred, target = _as_5d(pred, "pred"), _as_5d(target, "target")
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
        n_leads, device = pred.shape[1], pred.device
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
        dt = st["n"].dtype
        valid = _broadcast_mask(mask, pred.shape, device)  # float 0/1, broadcastable
        p = grey_to_rainrate(pred.float(), self.dbz_min, self.dbz_max, self.a, self.b)
        t = grey_to_rainrate(target.float(), self.dbz_min, self.dbz_max, self.a, self.b)
        dims = (2, 3, 4)  # sum over C, H, W -> per (B, T) frame

        def fsum(x: torch.Tensor) -> torch.Tensor:
            return x.sum(dim=dims, dtype=dt)  # (B, T)

        err = p - t
        if valid is None:
            n = torch.full(
                pred.shape[:2], math.prod(pred.shape[2:]), dtype=dt, device=device
            )
            pv, tv, ev = p, t, err
        else:
            n = fsum(valid.expand_as(pred))
            pv, tv, ev = p * valid, t * valid, err * valid
        se, ae, es = fsum(ev * ev), fsum(ev.abs()), fsum(ev)
        pt, pp, tt = fsum(pv * tv), fsum(pv * pv), fsum(tv * tv)
        for name, frame in zip(_SUM_NAMES, (n, se, ae, es, pt, pp, tt), strict=True):
            st[name] += frame.sum(0)

        has = n > 0  # frames with at least one valid pixel
        nz = n.clamp_min(1)
        corr = pt / torch.sqrt(pp * tt + CORRELATION_EPS)
        for name, val in zip(
            _FRAME_SCORES, (se / nz, ae / nz, es / nz, corr), strict=True
        ):
            st[f"frame_{name}"] += torch.where(has, val, torch.zeros_like(val)).sum(0)
        st["frame_count"] += has.to(dt).sum(0)

        vb = None if valid is None else valid.bool()
        for k, thr in enumerate(self.thresholds):
            pe, te = p >= thr, t >= thr
            if vb is not None:
                pe, te = pe & vb, te & vb
            hits = fsum(pe & te)
            misses = fsum(te) - hits
            fas = fsum(pe) - hits
            st["hits"][k] += hits.sum(0)
            st["misses"][k] += misses.sum(0)
            st["false_alarms"][k] += fas.sum(0)
            for name, num, den in (
                ("csi", hits, hits + misses + fas),
                ("far", fas, hits + fas),
                ("pod", hits, hits + misses),
            ):
                ok = den > 0
                score = num / den.clamp_min(1)
                st[f"frame_{name}"][k] += torch.where(ok, score, 0.0).sum(0)
                st[f"frame_{name}_count"][k] += ok.to(dt).sum(0)

    # -- scores ------------------------------------------------------------------------
    def compute(self, aggregation: str | None = None) -> dict[str, Any]:
        """Turn the accumulated counts into scores.

        Parameters
        ----------
        aggregation : {"pooled", "per_frame"}, optional
            Defaults to the constructor's choice; see the module docstring.

        Returns
        -------
        dict
            For each metric ``m`` in ``rainfall_mse``, ``rainfall_mae``, ``bias``,
            ``correlation``, and for each threshold ``thr`` the keys ``csi@thr``,
            ``far@thr``, ``pod@thr``, ``fbias@thr`` (plain ``csi``, ``far``, ``pod`` at
            0.5 mm/h): ``result[m]`` is the mean over lead times (a float, NaN leads
            skipped; NaN if all are) and ``result[m + "_by_lead"]`` a float64 numpy
            array of shape (T,). Also ``n_leads``, ``n_frames``, ``n_pixels``,
            ``thresholds``, ``aggregation`` and ``notes`` (a list of strings saying
            which scores were undefined and why).
        """
        aggregation = self.aggregation if aggregation is None else aggregation
        _check_aggregation(aggregation)
        if self._state is None:
            raise RuntimeError("compute() called before any update(); nothing to score")
        st = self._state
        by_lead: dict[str, torch.Tensor] = {}
        if aggregation == "pooled":
            n = st["n"]
            by_lead["rainfall_mse"] = _safe_div(st["se"], n)
            by_lead["rainfall_mae"] = _safe_div(st["ae"], n)
            by_lead["bias"] = _safe_div(st["err"], n)
            by_lead["correlation"] = st["pt"] / torch.sqrt(
                st["pp"] * st["tt"] + CORRELATION_EPS
            )
            by_lead["correlation"] = torch.where(
                n > 0, by_lead["correlation"], float("nan")
            )
        else:
            cnt = st["frame_count"]
            for key, name in (
                ("rainfall_mse", "mse"),
                ("rainfall_mae", "mae"),
                ("bias", "bias"),
                ("correlation", "correlation"),
            ):
                by_lead[key] = _safe_div(st[f"frame_{name}"], cnt)
        h, m, f = st["hits"], st["misses"], st["false_alarms"]
        for k, thr in enumerate(self.thresholds):
            if aggregation == "pooled":
                by_lead[threshold_key("csi", thr)] = _safe_div(h[k], h[k] + m[k] + f[k])
                by_lead[threshold_key("far", thr)] = _safe_div(f[k], h[k] + f[k])
                by_lead[threshold_key("pod", thr)] = _safe_div(h[k], h[k] + m[k])
            else:
                for name in _FRAME_CAT:
                    by_lead[threshold_key(name, thr)] = _safe_div(
                        st[f"frame_{name}"][k], st[f"frame_{name}_count"][k]
                    )
            # frequency bias is a ratio of pooled counts in both aggregations
            by_lead[threshold_key("fbias", thr)] = _safe_div(h[k] + f[k], h[k] + m[k])
        for name in _FRAME_CAT:
            by_lead[name] = by_lead[threshold_key(name, PAPER_THRESHOLD)]

        result: dict[str, Any] = {}
        undefined: dict[tuple[int, ...], list[str]] = {}
        for key, val in by_lead.items():
            arr = val.detach().double().cpu().numpy()
            result[f"{key}_by_lead"] = arr
            nan = np.isnan(arr)
            result[key] = float("nan") if nan.all() else float(np.nanmean(arr))
            if nan.any() and key not in _FRAME_CAT:  # plain keys duplicate "@0.5"
                leads = tuple((np.flatnonzero(nan) + 1).tolist())
                undefined.setdefault(leads, []).append(key)
        notes = [
            f"undefined (NaN; lead averages skip them) at lead(s) {list(leads)}: "
            f"{', '.join(keys)}; no observed or forecast events at those thresholds"
            " (or no valid pixels)"
            for leads, keys in undefined.items()
        ]
        if notes:
            warnings.warn("; ".join(notes), RuntimeWarning, stacklevel=2)
        result.update(
            n_leads=int(st["n"].shape[0]),
            n_frames=int(st["frame_count"][0].item()),
            n_pixels=int(st["n"][0].item()),
            thresholds=list(self.thresholds),
            aggregation=aggregation,
            notes=notes,
        )
        return result

    def counts(self) -> dict[str, np.ndarray]:
        """Raw pooled counts as numpy arrays (for inspection and tests).

        ``hits``, ``misses``, ``false_alarms``, ``correct_negatives`` have shape (K, T)
        (thresholds x leads); ``n`` (valid pixels), ``se``, ``ae``, ``err``, ``pt``,
        ``pp``, ``tt`` shape (T,).
        """
        if self._state is None:
            raise RuntimeError("counts() called before any update()")
        out = {
            k: self._state[k].double().cpu().numpy() for k in _SUM_NAMES + _COUNT_NAMES
        }
        out["correct_negatives"] = (
            out["n"][None] - out["hits"] - out["misses"] - out["false_alarms"]
        )
        return out


def _check_aggregation(aggregation: str) -> None:
    if aggregation not in ("pooled", "per_frame"):
        raise ValueError(
            f"aggregation must be 'pooled' or 'per_frame', got {aggregation!r}"
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
