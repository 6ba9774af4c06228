"""ROVER flow parameters tuned for one processed data set, stored next to it.

Shi et al. (2015, Sec. 4.2) tune ROVER's optical-flow parameters on the validation
set. The tuned values belong to the data they were tuned on, so they live beside the
processed file (``<stem>_rover.yaml``, written by ``scripts/tune_rover.py``) rather
than in a tracked config: the evaluation of ``data/x/processed.nc`` uses
``data/x/processed_rover.yaml`` when it exists and the built-in defaults of
``configs/baseline/rover*.yaml`` otherwise, and its report says which
(:func:`apply_tuned_params`).

File layout (YAML)::

    params:          # keyword arguments of nowcast.baselines.Rover (all variants)
      method: dis
      alpha: 20.0
      patch_size: 16
      ...
    provenance:      # how they were found
      data: /abs/path/processed.nc
      split: {name: val, block_len: 40, counts: [4, 1, 1], seed: 0, ...}
      date: '2026-01-01T00:00:00+00:00'
      variant: 1
      grid: {alpha: [5.0, 20.0, 50.0], patch_size: [8, 16]}
      score: {csi@0.5: 0.4966, rainfall_mse: 1.23, windows: 63}
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ROVER_TARGETS",
    "TUNED_SUFFIX",
    "apply_tuned_params",
    "is_rover_spec",
    "load_tuned_file",
    "load_tuned_params",
    "save_tuned_params",
    "tuned_params_path",
]

#: Suffix added to the processed file's stem: ``processed.nc -> processed_rover.yaml``.
TUNED_SUFFIX = "_rover.yaml"

#: ``_target_`` values that build a :class:`nowcast.baselines.Rover`.
ROVER_TARGETS = frozenset({"nowcast.baselines.Rover", "nowcast.baselines.rover.Rover"})

# Keys a tuned file may not set: they choose the variant / forecaster, not the flow.
_RESERVED = frozenset({"_target_", "variant"})


def tuned_params_path(data_path: str | Path) -> Path:
    """Where the tuned ROVER parameters of a processed file live.

    Parameters
    ----------
    data_path : str or Path
        The processed radar netCDF (e.g. ``data/hko7/processed.nc``).

    Returns
    -------
    Path
        ``<stem>_rover.yaml`` in the same folder (``data/hko7/processed_rover.yaml``).
    """
    p = Path(data_path)
    return p.with_name(p.stem + TUNED_SUFFIX)


def load_tuned_file(data_path: str | Path) -> dict[str, Any] | None:
    """The whole tuned file (``params`` and ``provenance``) of a data set, or None.

    Raises
    ------
    ValueError
        If the file exists but holds no ``params`` mapping of Rover keyword
        arguments (or sets ``variant`` / ``_target_``); the message names the file and
        how to rewrite it.
    """
    path = tuned_params_path(data_path)
    if not path.is_file():
        return None
    content = yaml.safe_load(path.read_text()) or {}
    params = content.get("params") if isinstance(content, Mapping) else None
    fix = f"re-run `python scripts/tune_rover.py --data {data_path}` or delete {path}"
    if not isinstance(params, Mapping) or not params:
        raise ValueError(
            f"{path} holds no 'params' mapping of ROVER flow parameters; {fix}"
        )
    bad = sorted(_RESERVED & set(params))
    if bad:
        raise ValueError(
            f"{path}: 'params' may hold only flow parameters, not {bad}; {fix}"
        )
    return {
        "params": dict(params),
        "provenance": dict(content.get("provenance") or {}),
    }


def load_tuned_params(data_path: str | Path) -> dict[str, Any] | None:
    """The tuned ROVER keyword arguments of a data set, or None when it has none.

    Parameters
    ----------
    data_path : str or Path
        The processed radar netCDF.

    Returns
    -------
    dict or None
        Keyword arguments of :class:`~nowcast.baselines.Rover` shared by the three
        variants (``method`` and the flow method's parameters, e.g. ``alpha``,
        ``patch_size``), read from :func:`tuned_params_path`; None if that file does
        not exist.
    """
    content = load_tuned_file(data_path)
    return None if content is None else content["params"]


def save_tuned_params(
    data_path: str | Path,
    params: Mapping[str, Any],
    provenance: Mapping[str, Any],
    out: str | Path | None = None,
) -> Path:
    """Write tuned ROVER parameters (``<stem>_rover.yaml`` by default).

    Parameters
    ----------
    data_path : str or Path
        The processed file the parameters were tuned on.
    params : mapping
        Rover keyword arguments (no ``variant`` / ``_target_``).
    provenance : mapping
        Plain data (str, numbers, lists, dicts): data file, split, date, grid, score.
    out : str or Path, optional
        Where to write instead of :func:`tuned_params_path` (e.g. a run directory).

    Returns
    -------
    Path
        The written file.
    """
    bad = sorted(_RESERVED & set(params))
    if bad:
        raise ValueError(f"params may hold only flow parameters, not {bad}")
    path = Path(out) if out is not None else tuned_params_path(data_path)
    score = dict(provenance.get("score") or {})
    header = (
        "# ROVER flow parameters tuned by scripts/tune_rover.py on the validation\n"
        f"# split of {Path(data_path).name}; read by the evaluation of that file only\n"
        f"# (nowcast.baselines.tuning). Score: {_fmt_score(score)}.\n"
    )
    body = yaml.safe_dump(
        {"params": dict(params), "provenance": dict(provenance)}, sort_keys=False
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(header + body)
    tmp.replace(path)
    return path


def is_rover_spec(spec: Any) -> bool:
    """Whether a baseline spec (``{_target_: ..., **kwargs}``) builds a Rover."""
    return isinstance(spec, Mapping) and spec.get("_target_") in ROVER_TARGETS


def _plain(spec: Any) -> Any:
    """A DictConfig as plain containers; anything else deep-copied."""
    try:
        from omegaconf import DictConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf ships with hydra
        return copy.deepcopy(spec)
    if isinstance(spec, DictConfig):
        return OmegaConf.to_container(spec, resolve=True)
    return copy.deepcopy(spec)


def _fmt_score(score: Mapping[str, Any]) -> str:
    parts = []
    for key, value in score.items():
        if isinstance(value, float):
            parts.append(f"{key} {value:.4f}")
        else:
            parts.append(f"{key} {value}")
    return ", ".join(parts) if parts else "not recorded"


def apply_tuned_params(
    baseline_specs: Mapping[str, Any] | None, data_path: str | Path | None
) -> tuple[dict[str, Any], str]:
    """Baseline specs with the data set's tuned ROVER parameters, and a report note.

    Parameters
    ----------
    baseline_specs : mapping
        ``{display name: {_target_: ..., **kwargs}}`` (plain dicts or a DictConfig),
        e.g. the ``evaluation.baselines`` node.
    data_path : str or Path or None
        The processed file being evaluated (``dataset.path``); None for data not read
        from a file (built-in defaults then).

    Returns
    -------
    specs : dict
        A copy of ``baseline_specs``; every Rover spec (``_target_`` in
        :data:`ROVER_TARGETS`) whose ``method`` matches the tuned one gets the tuned
        parameters (its ``variant`` is kept); other specs are unchanged.
    note : str
        For the report: ``"ROVER flow parameters tuned on <file> (validation split,
        ...)"`` or ``"ROVER flow parameters: built-in defaults (no <stem>_rover.yaml
        next to the data)"``.
    """
    specs = {str(k): _plain(v) for k, v in (baseline_specs or {}).items()}
    rovers = [k for k, v in specs.items() if is_rover_spec(v)]
    if data_path is None:
        return specs, "ROVER flow parameters: built-in defaults (data not from a file)"
    path = tuned_params_path(data_path)
    content = load_tuned_file(data_path)
    if content is None:
        return specs, (
            f"ROVER flow parameters: built-in defaults (no {path.name} next to the data)"
        )
    params, prov = content["params"], content["provenance"]
    tuned_method = params.get("method", "dis")
    skipped = []
    for name in rovers:
        if specs[name].get("method", "dis") != tuned_method:
            skipped.append(name)
            continue
        specs[name].update(params)
    kv = ", ".join(f"{k}={v}" for k, v in params.items())
    variant = prov.get("variant")
    via = f" with ROVER{variant}" if variant is not None else ""
    note = (
        f"ROVER flow parameters tuned on {Path(data_path).name} (validation split"
        f"{via}, {_fmt_score(dict(prov.get('score') or {}))}; from {path.name}): {kv}"
    )
    if skipped:
        note += (
            f"; not applied to {', '.join(skipped)} (flow method differs from the "
            f"tuned {tuned_method!r}: built-in defaults)"
        )
    return specs, note
