"""File helpers shared by the fitted pieces of the preprocessing (save / load)."""

from __future__ import annotations

import json
import os
from pathlib import Path

PathLike = str | os.PathLike


def existing_file(path: PathLike, what: str) -> Path:
    """``path`` as a :class:`~pathlib.Path`, or a ``FileNotFoundError`` naming ``what``.

    Parameters
    ----------
    path : path
        File to read.
    what : str
        What the file holds, for the message (e.g. ``"noise-mask"``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{what} file {path} does not exist; write it with the matching save() "
            "(scripts/preprocess.py writes it next to the processed file)"
        )
    return path


def write_json(path: PathLike, state: dict) -> Path:
    """Write ``state`` as indented JSON, creating parent directories."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=2))
    return path
