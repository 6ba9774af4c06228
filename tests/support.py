"""Set-ups shared by tests in several folders: scripts loaded as modules, tiny archives.

``tests/`` is on ``sys.path`` (pytest inserts the folder of ``tests/conftest.py``), so
any test imports these as ``from support import ...``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import xarray as xr

from nowcast.data.radar import make_radar_dataset, write_radar

REPO = Path(__file__).resolve().parents[1]

#: ``preprocess_archive`` / ``Preprocessor`` options that keep every frame's geometry
#: (no crop, no disk filter, no resize) and show no progress bar.
SAME_GEOMETRY = dict(crop_size=None, disk_radius=0, resize_to=None, progress=False)


def load_script(path: str | Path, name: str | None = None) -> ModuleType:
    """Import a script (``scripts/``, ``benchmarks/``: not packages) as a module.

    Parameters
    ----------
    path : str or Path
        The file, absolute or relative to the repository root.
    name : str, optional
        Module name; default ``<stem>_script``.
    """
    path = REPO / path
    spec = importlib.util.spec_from_file_location(name or f"{path.stem}_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def processed_dataset(frames: np.ndarray, *, noise_first_column: bool) -> xr.Dataset:
    """A data set like ``scripts/preprocess.py`` writes, around grey ``frames``.

    Parameters
    ----------
    frames : numpy.ndarray
        Grey levels in [0, 1], shape ``(time, y, x)``; 6-minute frames from
        2015-06-01 00:00.
    noise_first_column : bool
        Flag the first column in the ``noise_mask`` (y, x); else nothing is noise.

    Returns
    -------
    xarray.Dataset
        With ``zmin`` / ``zmax`` (HKO-7 dBZ range) and ``source_units`` attributes.
    """
    n_frames, height, width = frames.shape
    times = np.datetime64("2015-06-01T00:00") + np.arange(n_frames) * np.timedelta64(
        6, "m"
    )
    ds = make_radar_dataset(frames.astype(np.float32), times, units="1")
    noise = np.zeros((height, width), dtype=np.uint8)
    noise[:, 0] = int(noise_first_column)
    ds["noise_mask"] = xr.DataArray(noise, dims=("y", "x"))
    ds.attrs.update(zmin=-10.0, zmax=60.0, source_units="dBZ")
    return ds


def write_moving_blob(path: Path, size: int = 16) -> Path:
    """Write one day (240 frames) of a blob moving one pixel per frame to the right."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    t = np.arange(240, dtype=np.float32)[:, None, None]
    frames = np.exp(-((yy - size / 2) ** 2 + (xx - (t % size)) ** 2) / (2 * 3.0**2))
    return write_radar(processed_dataset(frames, noise_first_column=False), path)


def tiny_run_overrides(
    radar_file: Path, input_len: int = 2, output_len: int = 3
) -> list[str]:
    """Data and model overrides of a seconds-long CPU training on a tiny archive.

    The caller adds its ``trainer.*`` / ``logging.*`` overrides after these.
    """
    return [
        "data=hko",
        f"data.root={radar_file}",
        f"data.input_len={input_len}",
        f"data.output_len={output_len}",
        "data.stride=3",
        "data.batch_size=4",
        "data.num_workers=0",
        "model=convlstm_small",
        "model.hidden_channels=[4]",
        "trainer=debug",
    ]
