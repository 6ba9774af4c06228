"""What a processed file's grey levels mean physically: the one grey-level conversion.

Preprocessing min-max normalises an archive's intensity to grey levels ``P`` in
``[0, 1]`` and records, in the processed file's global attributes, what those grey
levels were: ``source_units`` (``"dBZ"``, ``"mm/h"``, ...), the range ``zmin`` /
``zmax`` (source units at grey 0 and 1) and, for reflectivity archives, optionally the
Z-R relation ``zr_a`` / ``zr_b``. :class:`GreyScale` reads those attributes and is the
only place where grey levels become physical units: the evaluation, the balanced
losses, the plots and the notebook all go through it.

* dBZ archives: ``dBZ = P (vmax - vmin) + vmin``, then the Z-R relation ``Z = a R^b``
  (``Z = 10^(dBZ / 10)`` in mm^6 m^-3) gives the rain rate ``R`` in mm/h
  (Shi et al. 2015, Sec. 4.2; the HKO-7 benchmark uses ``a = 58.53``, ``b = 1.56``).
* rain-rate archives (mm/h): ``R = P (vmax - vmin) + vmin``; no Z-R relation applies.
* any other units (e.g. ``"kg m-2"`` for vertically integrated liquid): scores are in
  the source units themselves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from nowcast.data.radar import _UNIT_ALIASES

__all__ = ["GreyScale", "HKO7_ZR", "normalise_units"]

#: The HKO-7 benchmark's Z-R relation ``Z = 58.53 R^1.56`` (Shi et al. 2017).
HKO7_ZR = (58.53, 1.56)

ArrayLike = TypeVar("ArrayLike", torch.Tensor, np.ndarray, float)


def normalise_units(units: object) -> str:
    """Canonical spelling of an intensity unit (``"dbz"`` -> ``"dBZ"``, ``"mm h-1"`` -> ``"mm/h"``).

    Parameters
    ----------
    units : object
        The ``source_units`` attribute of a processed file (or a config value).

    Returns
    -------
    str
        ``"dBZ"``, ``"mm/h"``, or the stripped input for any other unit.

    Raises
    ------
    ValueError
        When ``units`` is missing or empty: the grey levels' meaning is then unknown.
    """
    text = "" if units is None else str(units).strip()
    if not text:
        raise ValueError(
            f"the grey levels' source units are missing (got {units!r}); the processed "
            "file must record source_units ('dBZ' or 'mm/h'): re-run "
            "`python scripts/preprocess.py ...` on the archive"
        )
    return _UNIT_ALIASES.get(text.lower()) or text


def _log10(x: ArrayLike) -> ArrayLike:
    if isinstance(x, torch.Tensor):
        return torch.log10(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log10(x)
    return out if isinstance(x, np.ndarray) else float(out)


def _pow10(x: ArrayLike) -> ArrayLike:
    if isinstance(x, torch.Tensor):
        return torch.pow(10.0, x)
    out = np.power(10.0, x)
    return out if isinstance(x, np.ndarray) else float(out)


def _num(v: float) -> str:
    return f"{float(v):g}"


@dataclass(frozen=True)
class GreyScale:
    """What a processed file's grey levels ``P`` in ``[0, 1]`` mean physically.

    Parameters
    ----------
    units : str
        Source units: ``"dBZ"``, ``"mm/h"``, or anything else (e.g. ``"kg m-2"``).
        Aliases such as ``"dbz"`` or ``"mm h-1"`` are normalised.
    vmin, vmax : float
        Physical value (source units) at grey 0 and grey 1; ``vmax > vmin``.
    zr_a, zr_b : float or None
        Z-R relation ``Z = a R^b`` (Z in mm^6 m^-3, R in mm/h), used only when
        ``units == "dBZ"``, where both are required. For any other units they are
        dropped (set to None), so that no Z-R relation is ever applied to a
        rain-rate archive.

    Notes
    -----
    Every method works elementwise on torch tensors, numpy arrays and floats and
    returns the type it was given.
    """

    units: str
    vmin: float
    vmax: float
    zr_a: float | None = None
    zr_b: float | None = None

    def __post_init__(self) -> None:
        units = normalise_units(self.units)
        vmin, vmax = float(self.vmin), float(self.vmax)
        if not (math.isfinite(vmin) and math.isfinite(vmax) and vmax > vmin):
            raise ValueError(
                f"grey-level range must be finite with vmax > vmin, got vmin={self.vmin!r}, "
                f"vmax={self.vmax!r} ({units}); check the processed file's zmin / zmax"
            )
        zr_a, zr_b = self.zr_a, self.zr_b
        if units == "dBZ":
            if zr_a is None or zr_b is None:
                raise ValueError(
                    f"a dBZ grey scale needs a Z-R relation, got zr_a={zr_a!r}, "
                    f"zr_b={zr_b!r}; give both (HKO-7: zr_a=58.53, zr_b=1.56)"
                )
            zr_a, zr_b = float(zr_a), float(zr_b)
            if not (zr_a > 0 and zr_b > 0 and math.isfinite(zr_a * zr_b)):
                raise ValueError(
                    f"Z-R coefficients must be positive and finite, got zr_a={zr_a}, "
                    f"zr_b={zr_b}"
                )
        else:
            zr_a = zr_b = None
        object.__setattr__(self, "units", units)
        object.__setattr__(self, "vmin", vmin)
        object.__setattr__(self, "vmax", vmax)
        object.__setattr__(self, "zr_a", zr_a)
        object.__setattr__(self, "zr_b", zr_b)

    # -- conversions ---------------------------------------------------------------
    def to_source(self, p: ArrayLike) -> ArrayLike:
        """Grey level -> source units, linear: ``p (vmax - vmin) + vmin``."""
        return p * (self.vmax - self.vmin) + self.vmin

    def from_source(self, v: ArrayLike) -> ArrayLike:
        """Source units -> grey level, the inverse of :meth:`to_source`."""
        return (v - self.vmin) / (self.vmax - self.vmin)

    def to_score(self, p: ArrayLike) -> ArrayLike:
        """Grey level -> scoring units (:attr:`score_units`).

        dBZ archives: :meth:`to_source` then ``R = (Z / a)^(1 / b)`` with
        ``Z = 10^(dBZ / 10)``, in mm/h. Rain-rate archives: :meth:`to_source` (mm/h,
        no Z-R). Other units: :meth:`to_source`.
        """
        v = self.to_source(p)
        if self.units != "dBZ":
            return v
        return _pow10((v - 10.0 * math.log10(self.zr_a)) / (10.0 * self.zr_b))

    def from_score(self, v: ArrayLike) -> ArrayLike:
        """Scoring units -> grey level, the inverse of :meth:`to_score`.

        For dBZ archives ``dBZ = 10 log10 a + 10 b log10 R``; a rain rate of 0 maps to
        grey ``-inf`` (no reflectivity gives exactly no rain).
        """
        if self.units == "dBZ":
            v = 10.0 * math.log10(self.zr_a) + 10.0 * self.zr_b * _log10(v)
        return self.from_source(v)

    # -- description ---------------------------------------------------------------
    @property
    def score_units(self) -> str:
        """``"mm/h"`` for dBZ and rain-rate archives, else the source units."""
        return "mm/h" if self.units in ("dBZ", "mm/h") else self.units

    def describe(self) -> str:
        """One line for reports, e.g. ``grey P -> dBZ = 70 P - 10 -> R (mm/h) by Z = 58.53 R^1.56``."""
        span = self.vmax - self.vmin
        lin = f"{_num(span)} P"
        if self.vmin:
            lin += f" {'-' if self.vmin < 0 else '+'} {_num(abs(self.vmin))}"
        if self.units == "dBZ":
            return (
                f"grey P -> dBZ = {lin} -> R (mm/h) by Z = {_num(self.zr_a)} "
                f"R^{_num(self.zr_b)}"
            )
        if self.units == "mm/h":
            return f"grey P -> R (mm/h) = {lin} (rain-rate archive, no Z-R relation)"
        return f"grey P -> {self.units} = {lin} (scored in {self.units})"

    # -- (de)serialisation ---------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``units``, ``vmin``, ``vmax``, ``zr_a``, ``zr_b``), e.g. for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GreyScale:
        """Inverse of :meth:`to_dict`."""
        return cls(
            units=d["units"],
            vmin=d["vmin"],
            vmax=d["vmax"],
            zr_a=d.get("zr_a"),
            zr_b=d.get("zr_b"),
        )

    @classmethod
    def from_attrs(
        cls,
        attrs: Mapping[str, Any],
        zr_a: float | None = None,
        zr_b: float | None = None,
    ) -> GreyScale:
        """Grey scale of a processed file from its global attributes.

        Parameters
        ----------
        attrs : mapping
            The processed file's attributes: ``source_units``, ``zmin``, ``zmax`` and,
            when preprocessing recorded them, ``zr_a`` / ``zr_b``.
        zr_a, zr_b : float, optional
            The data config's Z-R relation. It applies only to dBZ archives and only
            where the file records none (the file's own relation wins); for rain-rate
            archives it is ignored without error. With neither, a dBZ archive gets the
            HKO-7 relation ``Z = 58.53 R^1.56``.

        Raises
        ------
        ValueError
            When ``source_units`` or the range is missing or invalid.
        """
        missing = [k for k in ("source_units", "zmin", "zmax") if k not in attrs]
        if missing:
            raise ValueError(
                f"processed file lacks the attribute(s) {missing} that say what its grey "
                "levels mean; re-run `python scripts/preprocess.py ...` on the archive"
            )
        units = normalise_units(attrs["source_units"])
        a, b = None, None
        if units == "dBZ":
            file_a, file_b = attrs.get("zr_a"), attrs.get("zr_b")
            if file_a is not None and file_b is not None:
                a, b = float(file_a), float(file_b)
            elif zr_a is not None and zr_b is not None:
                a, b = float(zr_a), float(zr_b)
            else:
                a, b = HKO7_ZR
        return cls(units, float(attrs["zmin"]), float(attrs["zmax"]), a, b)

    @classmethod
    def hko7(cls) -> GreyScale:
        """The HKO-7 benchmark's scale: dBZ from -10 to 60, ``Z = 58.53 R^1.56``."""
        return cls("dBZ", -10.0, 60.0, *HKO7_ZR)
