"""SEVIR vertically integrated liquid (``sevir``): the HDF5 event files plus CATALOG.csv.

SEVIR (Veillette et al. 2020, "SEVIR: A Storm Event Imagery Dataset for Deep Learning
Applications in Radar and Satellite Meteorology") stores 4-hour events of 49 VIL frames
(5 minutes apart) of 384 x 384 cells at 1 km in HDF5 files: ``id`` (N,) event ids and
``vil`` (N, 384, 384, 49) uint8. ``CATALOG.csv`` lists, for each event and image type,
the file (``file_name``), its row in it (``file_index``), the event time (``time_utc``)
with the frames' offsets in minutes (``minute_offsets``, ``-120:-115:...``), and the
event's grid (``proj``, ``llcrnrlat/lon``, ``urcrnrlat/lon``, ``width_m``, ``size_x``).

VIL bytes ``X`` are decoded to kg/m2 as SEVIR documents: 0 for ``X <= 5``,
``(X - 2) / 90.66`` for ``5 < X <= 18`` and ``exp((X - 83.9) / 38.9)`` above. Scores are
then in kg/m2 (the data's own units, no Z-R relation). The SEVIR nowcasting benchmark
thresholds 16, 74, 133, 160, 181, 219 are in VIL *byte* units; :func:`sevir_vil_to_kgm2`
converts them. Events are separate sequences: all selected events of one file form one
time axis (each frame carries its ``event_id``), so events that overlap in time must be
read separately (``event_ids=[...]``). A single event is georeferenced (Lambert azimuthal
equal-area, row 0 = north); several events have several grids and are not.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np

from nowcast.data.importers.base import Frames, Preset, corner_grid, register_preset
from nowcast.data.importers.hdf5 import open_hdf5

__all__ = ["SEVIRPreset", "sevir_vil_to_kgm2", "read_sevir_catalog", "SEVIR_THRESHOLDS"]

#: The SEVIR benchmark's VIL thresholds, in VIL byte units.
SEVIR_THRESHOLDS = (16, 74, 133, 160, 181, 219)


def sevir_vil_to_kgm2(x: np.ndarray | float) -> np.ndarray:
    """SEVIR VIL bytes -> kg/m2 (the SEVIR documentation's piecewise decoding).

    Parameters
    ----------
    x : array-like of int in [0, 255]

    Returns
    -------
    numpy.ndarray, float32
        0 where ``x <= 5``; ``(x - 2) / 90.66`` where ``5 < x <= 18``;
        ``exp((x - 83.9) / 38.9)`` where ``x > 18``.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.where(x <= 18, (x - 2.0) / 90.66, np.exp((x - 83.9) / 38.9))
    out = np.where(x <= 5, 0.0, out)
    return out.astype(np.float32)


@lru_cache(maxsize=1)
def _byte_lut() -> np.ndarray:
    return sevir_vil_to_kgm2(np.arange(256))


@lru_cache(maxsize=4)
def read_sevir_catalog(path: str, img_type: str = "vil") -> tuple[dict, ...]:
    """The rows of a SEVIR ``CATALOG.csv`` for one image type, as dicts of strings.

    Raises
    ------
    ValueError
        Naming the file when a required column is missing.
    """
    need = {"id", "file_name", "file_index", "img_type", "time_utc", "minute_offsets"}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = need - set(reader.fieldnames or ())
        if missing:
            raise ValueError(
                f"SEVIR catalogue {path} lacks the column(s) {sorted(missing)}"
            )
        return tuple(row for row in reader if row["img_type"] == img_type)


@dataclass(frozen=True, kw_only=True)
class SEVIRPreset(Preset):
    """How to read SEVIR VIL event files.

    Attributes
    ----------
    catalog : str or None
        ``CATALOG.csv``; ``None`` looks for it next to each file and in its parents.
    event_ids : tuple of str or None
        Events to read; ``None``: every VIL event of the file.
    """

    glob: str = "*.h5"
    catalog: str | None = None
    event_ids: tuple[str, ...] | None = None

    step: ClassVar[str] = "import_sevir"

    def __post_init__(self) -> None:
        if self.event_ids is not None:
            ids = (
                (self.event_ids,) if isinstance(self.event_ids, str) else self.event_ids
            )
            object.__setattr__(self, "event_ids", tuple(str(i) for i in ids))

    def read_file(self, path: Path) -> Frames:
        """The selected VIL events of one SEVIR file, ``(49 * n_events, 384, 384)``."""
        rows = self._rows(path)
        with open_hdf5(path) as f:
            if "vil" not in f:
                raise ValueError(f"{path} holds no 'vil' data (keys {sorted(f)})")
            cubes = [f["vil"][int(r["file_index"])] for r in rows]
        times = [_event_times(r, path) for r in rows]
        _check_no_overlap(rows, times, path)
        values = np.concatenate([_byte_lut()[c.transpose(2, 0, 1)] for c in cubes])
        ids = np.concatenate(
            [np.full(len(t), r["id"]) for r, t in zip(rows, times, strict=True)]
        )
        return Frames(
            values,
            np.concatenate(times),
            "kg m-2",
            path,
            grid=_event_grid(rows[0], values.shape[1:]) if len(rows) == 1 else None,
            attrs={
                "product": "SEVIR VIL",
                "sevir_events": " ".join(r["id"] for r in rows),
            },
            var_attrs={"long_name": "vertically integrated liquid"},
            extra={"event_id": ids.astype(str)},
        )

    def _rows(self, path: Path) -> list[dict]:
        catalog = self.catalog or _find_catalog(path)
        rows = [
            r
            for r in read_sevir_catalog(str(catalog))
            if Path(r["file_name"]).name == path.name
        ]
        if self.event_ids is not None:
            rows = [r for r in rows if r["id"] in self.event_ids]
        if not rows:
            raise ValueError(
                f"the SEVIR catalogue {catalog} lists no VIL event of {path.name}"
                + (f" among event_ids={list(self.event_ids)}" if self.event_ids else "")
            )
        return sorted(rows, key=lambda r: r["time_utc"])


def _find_catalog(path: Path) -> Path:
    for folder in (path.parent, *path.parents):
        if (folder / "CATALOG.csv").exists():
            return folder / "CATALOG.csv"
    raise FileNotFoundError(
        f"no CATALOG.csv next to {path} or in its parent folders; pass catalog=<path>"
    )


def _event_times(row: dict, path: Path) -> np.ndarray:
    try:
        t0 = np.datetime64(row["time_utc"].replace(" ", "T"), "s")
        offsets = np.array([int(m) for m in row["minute_offsets"].split(":")])
    except ValueError as err:
        raise ValueError(
            f"{path}: event {row['id']} has unreadable times ({err})"
        ) from err
    return (t0 + offsets.astype("timedelta64[m]")).astype("datetime64[ns]")


def _check_no_overlap(rows: list[dict], times: list[np.ndarray], path: Path) -> None:
    pairs = list(zip(rows, times, strict=True))
    for (a, ta), (b, tb) in zip(pairs[:-1], pairs[1:], strict=True):
        if tb[0] <= ta[-1]:
            raise ValueError(
                f"{path}: events {a['id']} and {b['id']} overlap in time ({tb[0]} <= "
                f"{ta[-1]}); a radar data set is one time axis, so read them separately "
                "with event_ids=[...]"
            )


def _event_grid(row: dict, shape: tuple[int, int]):
    if not row.get("proj"):
        return None
    corners = {
        "LL": (float(row["llcrnrlon"]), float(row["llcrnrlat"])),
        "UR": (float(row["urcrnrlon"]), float(row["urcrnrlat"])),
    }
    dx = float(row["width_m"]) / float(row["size_x"]) if row.get("width_m") else None
    dy = float(row["height_m"]) / float(row["size_y"]) if row.get("height_m") else None
    return corner_grid(row["proj"], corners, shape, (dx, dy))


register_preset(
    SEVIRPreset(
        name="sevir",
        attrs={
            "description": "SEVIR storm event imagery: NEXRAD vertically integrated liquid "
            "(VIL), 384 x 384 at 1 km, 49 frames per event every 5 minutes",
            "institution": "MIT Lincoln Laboratory (SEVIR, Veillette et al. 2020)",
            "source": "SEVIR VIL HDF5 + CATALOG.csv",
            "conversion": "kg/m2 = 0 (X <= 5), (X - 2) / 90.66 (5 < X <= 18), "
            "exp((X - 83.9) / 38.9) (X > 18)",
        },
    )
)
