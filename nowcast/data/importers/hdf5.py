"""Small helpers shared by the HDF5 formats (ODIM, KNMI, SEVIR): opening a file with an
error that names it, and reading attributes as text or numbers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = ["open_hdf5", "attr_text", "attr_number"]


def open_hdf5(path: Path):
    """Open ``path`` read-only with h5py; errors name the file.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When it is not a readable HDF5 file.
    """
    import h5py

    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise FileNotFoundError(f"radar file {path} does not exist") from None
    except OSError as err:
        if not Path(path).exists():
            raise FileNotFoundError(f"radar file {path} does not exist") from None
        raise ValueError(f"cannot open HDF5 file {path}: {err}") from err


def attr_text(attrs: Mapping, key: str, default: str | None = None) -> str | None:
    """An HDF5 attribute as ``str`` (bytes decoded, one-element arrays unwrapped)."""
    if key not in attrs:
        return default
    value = attrs[key]
    if isinstance(value, np.ndarray):
        value = value.ravel()[0] if value.size else ""
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("latin-1").strip()
    return str(value).strip()


def attr_number(attrs: Mapping, key: str, default: float | None = None) -> float | None:
    """An HDF5 attribute as ``float`` (one-element arrays unwrapped)."""
    if key not in attrs:
        return default
    return float(np.ravel(attrs[key])[0])
