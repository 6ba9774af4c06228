"""Convert a real radar archive to the nowcast radar convention.

Usage (every preset of ``nowcast.data.importers.available_presets()``)::

    python scripts/import_radar.py preset=fmi \
        input='/work/shared/data/radar/fmi-finland-5min/*.pgm.gz' output=fmi.nc
    python scripts/import_radar.py preset=bom \
        input=/work/shared/data/radar/bom-melbourne-6min output=bom.nc batch_size=20
    python scripts/import_radar.py preset=odim \
        input=/work/shared/data/radar/opera-odim-15min output=opera.nc
    python scripts/import_radar.py preset=mrms input=<dir> output=mrms.nc \
        '+options.bbox=[-100,-95,35,40]'
    python scripts/import_radar.py preset=hko7 input=<png dir> output=hko.nc workers=2

The work is done by :func:`nowcast.data.importers.import_archive`; this script only
reads the hydra config ``configs/importer/import_radar.yaml``.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from nowcast.cli import hydra_entry
from nowcast.data.importers import import_archive


def run(cfg: DictConfig) -> list[Path]:
    """Import ``cfg.input`` with preset ``cfg.preset`` into ``cfg.output``."""
    options = cfg.get("options")
    options = OmegaConf.to_container(options, resolve=True) if options else {}
    inputs = cfg.input
    paths = [str(p) for p in inputs] if OmegaConf.is_list(inputs) else str(inputs)
    written = import_archive(
        paths,
        str(cfg.preset),
        str(cfg.output),
        batch_size=cfg.get("batch_size"),
        workers=cfg.get("workers"),
        scheduler=cfg.get("scheduler"),
        progress=bool(cfg.get("progress", True)),
        complevel=int(cfg.get("complevel", 4)),
        **options,  # type: ignore[arg-type]
    )
    for path in written:
        print(f"wrote {path}")
    return written


main = hydra_entry(
    run, "import_radar", config_path="../configs/importer", bad_input=(ValueError,)
)


if __name__ == "__main__":
    main()
