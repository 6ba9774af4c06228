"""Preprocess a radar archive as in Shi et al. (2015): raw netCDF -> processed netCDF.

Usage::

    python scripts/preprocess.py preprocess=hko \
        input=data/hko7/raw.nc output=data/hko7/processed.nc
    python scripts/preprocess.py preprocess=hko 'input=fmi_*.nc' output=fmi_proc.nc \
        fit_on=all preprocess.zr_a=223 preprocess.zr_b=1.53
    python scripts/preprocess.py preprocess=hko input=raw.nc output=proc.nc \
        fit_block_len=20 'fit_counts=[4,1,1]' split_seed=0
    python scripts/preprocess.py preprocess=hko input=raw.nc output=proc.zarr \
        workers=2    # or executor=tcp://host:8786 for a dask.distributed cluster

The noise mask is fitted on the training blocks of the split given by
``fit_block_len`` / ``fit_counts`` / ``split_seed`` (the split the datasets will serve;
the processed file records it and ``radar_datasets`` refuses any other split that would
validate or test on fitting frames), or on every frame with ``fit_on=all`` (an
evaluation-only archive; the reports then say so). Both passes (fit, transform) run
on every core by default (``workers=0``), results written in time order as they come.

The work is done by :func:`nowcast.data.preprocess.preprocess_archive`; this script only
reads the hydra config ``configs/preprocess.yaml`` (parameter sets in
``configs/preprocess/``).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from nowcast.cli import hydra_entry
from nowcast.data.preprocess import preprocess_archive


def run(cfg: DictConfig) -> Path:
    """Preprocess ``cfg.input`` into ``cfg.output`` with ``cfg.preprocess``."""
    params = OmegaConf.to_container(cfg.preprocess, resolve=True)
    inputs = cfg.input
    paths = [str(p) for p in inputs] if OmegaConf.is_list(inputs) else str(inputs)
    written = preprocess_archive(
        paths,
        str(cfg.output),
        fit_on=str(cfg.get("fit_on", "train")),
        split_seed=int(cfg.get("split_seed", 0)),
        progress=bool(cfg.get("progress", True)),
        fit_block_len=int(cfg.get("fit_block_len", 40)),
        fit_counts=[int(c) for c in cfg.get("fit_counts", (4, 1, 1))],
        workers=int(cfg.get("workers") or 0),
        scheduler=cfg.get("executor"),
        **params,  # type: ignore[arg-type]
    )
    print(f"wrote {written}")
    return written


main = hydra_entry(run, "preprocess", bad_input=(ValueError,))


if __name__ == "__main__":
    main()
