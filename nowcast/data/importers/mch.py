"""MeteoSwiss composites as GIF palette images (``mch``): AQC (AcQuire) and CPC
(CombiPrecip) 5-minute precipitation accumulations.

The pixel of such a GIF is an index into the product's colour table, and the value of
each index comes from the product definition, not from the GIF. For AQC/CPC (as in the
pysteps MeteoSwiss reader): indices 0 and 1 and 251-254 are 0 (no precipitation
measured), 255 is no data (outside the radar coverage), and index ``i`` in 2..250 is an
amount of ``(10 ** ((i - 71.5) / 20) / 316) ** (1 / 1.5)`` mm over the accumulation
interval (5 minutes: ``ACCUm`` in the GIF comment, ``_00005`` in the name), converted to
mm/h. The valid time (end of the interval) is in the file name, ``AQCyyjjjHHMM...``
(year, day of year, hour, minute). The grid is the CCS4 domain in the Swiss CH1903/LV03
projection (EPSG:21781): 710 x 640 cells of 1 km, x from 255 to 965 km, y from -160 to
480 km (MeteoSwiss product documentation, as in pysteps).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from nowcast.data.importers.base import (
    Frames,
    Grid,
    Preset,
    parse_time,
    register_preset,
)

__all__ = ["MCHPreset", "mch_lut", "mch_grid", "MCH_PRODUCTS"]

#: Products whose palette index follows the AQC/CPC table of :func:`mch_lut`.
MCH_PRODUCTS = ("AQC", "CPC")
_CCS4_X = (255_000.0, 965_000.0)  # outer edges, m (CH1903/LV03)
_CCS4_Y = (-160_000.0, 480_000.0)
_CCS4_CELL = 1000.0


@lru_cache(maxsize=1)
def mch_lut() -> np.ndarray:
    """Amount (mm per accumulation interval) of each AQC/CPC palette index.

    Returns
    -------
    numpy.ndarray, shape (256,), float64
        0 for indices 0, 1 and 251-254, NaN for 255 (no data), else
        ``(10 ** ((i - 71.5) / 20) / 316) ** (1 / 1.5)``.
    """
    i = np.arange(256, dtype=np.float64)
    lut = (10.0 ** ((i - 71.5) / 20.0) / 316.0) ** (1.0 / 1.5)
    lut[:2] = 0.0
    lut[251:255] = 0.0
    lut[255] = np.nan
    lut.flags.writeable = False
    return lut


def mch_grid(shape: tuple[int, int] = (640, 710)) -> Grid:
    """The CCS4 Swiss grid (EPSG:21781, cell centres in m, row 0 = north)."""
    h, w = shape
    if (h, w) != (640, 710):
        raise ValueError(f"the CCS4 grid is 640 x 710 (H x W), got {h} x {w}")
    x = _CCS4_X[0] + _CCS4_CELL * (np.arange(w) + 0.5)
    y = _CCS4_Y[1] - _CCS4_CELL * (np.arange(h) + 0.5)
    return Grid(x=x, y=y, crs="EPSG:21781", units="m")


@dataclass(frozen=True, kw_only=True)
class MCHPreset(Preset):
    """How to read MeteoSwiss GIF composites.

    Attributes
    ----------
    accumulation_minutes : float or None
        Accumulation interval; ``None`` reads it from the GIF comment (``ACCUm``) or the
        file name (``_00005``).
    """

    glob: str = "*.gif"
    pattern: str | None = (
        r"^[A-Z]{3}(?P<year2>\d{2})(?P<doy>\d{3})(?P<hour>\d{2})(?P<minute>\d{2})"
    )
    accumulation_minutes: float | None = None

    step: ClassVar[str] = "import_mch_gif"

    def read_file(self, path: Path) -> Frames:
        """One GIF, ``(1, 640, 710)`` in mm/h, on the Swiss grid."""
        product = path.name[:3].upper()
        if product not in MCH_PRODUCTS:
            raise ValueError(
                f"{path}: product {product!r} (from the file name) has no known colour "
                f"table; supported: {list(MCH_PRODUCTS)}"
            )
        index, comment = _read_palette_gif(path)
        minutes = self.accumulation_minutes or _interval_minutes(comment, path)
        values = (mch_lut()[index] * (60.0 / minutes)).astype(np.float32)
        return Frames.one(
            values,
            parse_time(path, self.pattern),  # type: ignore[arg-type]
            "mm/h",
            path,
            grid=mch_grid(index.shape),
            attrs={
                "product": product,
                "accumulation_minutes": float(minutes),
                "gif_comment": comment,
            },
            var_attrs={"long_name": "rain rate", "standard_name": "rainfall_rate"},
        )


def _read_palette_gif(path: Path) -> tuple[np.ndarray, str]:
    if not path.exists():
        raise FileNotFoundError(f"radar file {path} does not exist")
    try:
        with Image.open(path) as im:
            if im.mode != "P":
                raise ValueError(
                    f"{path} is not a palette (colour-table) GIF (PIL mode {im.mode!r})"
                )
            comment = im.info.get("comment", b"")
            index = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"cannot decode MeteoSwiss GIF {path}: {err}") from err
    return index, comment.decode("latin-1") if isinstance(comment, bytes) else str(
        comment
    )


def _interval_minutes(comment: str, path: Path) -> float:
    m = re.search(r"ACCUm=(\d+)", comment) or re.search(r"_(\d{5})\.", path.name)
    if m is None or int(m.group(1)) <= 0:
        raise ValueError(
            f"{path}: no accumulation interval in the GIF comment (ACCUm=) or the name "
            "(_00005.); pass accumulation_minutes=..."
        )
    return float(int(m.group(1)))


register_preset(
    MCHPreset(
        name="mch",
        attrs={
            "description": "MeteoSwiss radar precipitation composite (AQC/CPC GIF, 1 km "
            "CCS4 Swiss grid, 5-minute accumulations)",
            "institution": "MeteoSwiss",
            "source": "MeteoSwiss AQC/CPC GIF composite",
            "conversion": "index i -> (10**((i - 71.5) / 20) / 316)**(1/1.5) mm per "
            "interval (0 for i in 0, 1, 251-254; NaN for 255) * 60 / interval minutes",
        },
    )
)
