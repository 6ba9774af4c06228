"""Real radar archives -> the radar-sequence convention of :mod:`nowcast.data.radar`.

One module per format, behind one registry of presets:

=========  =============================================  ==================
preset     format                                         module
=========  =============================================  ==================
``hko7``   HKO-7 8-bit PNG (dBZ = p / 255 * 70 - 10)       :mod:`.images`
``fmi``    FMI 8-bit PGM (dBZ = 0.5 p - 32)                :mod:`.images`
``bom``    BOM Rainfields netCDF accumulations -> mm/h     :mod:`.netcdf`
``odim``   ODIM_H5 composites (OPERA and national)        :mod:`.odim`
``knmi``   KNMI HDF5 5-minute composites                   :mod:`.knmi`
``mch``    MeteoSwiss AQC/CPC GIF                          :mod:`.mch`
``mrms``   NOAA MRMS GRIB2 PrecipRate (needs pygrib)       :mod:`.mrms`
``sevir``  SEVIR VIL HDF5 events + CATALOG.csv             :mod:`.sevir`
=========  =============================================  ==================

:func:`read_frames` reads any of them into one time-sorted data set (NaN for no data,
measured zero kept as 0, units / product / source in the attributes, georeferenced when
the format knows its grid, the import recorded with
:func:`~nowcast.data.radar.record_step`); :func:`import_archive` writes an archive to
netCDF, decoding batches of files on several cores (or a dask cluster) and appending
them in time order, so memory stays flat however long the archive. The shared machinery
(file discovery, time parsing, batching, provenance) lives in :mod:`.base`.
"""

from nowcast.data.importers.archive import import_archive
from nowcast.data.importers.base import (
    PRESETS,
    Frames,
    Grid,
    Preset,
    available_presets,
    build_dataset,
    compile_time_pattern,
    expand_paths,
    get_preset,
    iter_frames,
    order_files,
    parse_time,
    read_frames,
    register_preset,
    resolve_preset,
)
from nowcast.data.importers.images import (
    ImagePreset,
    parse_pgm_header,
    pgm_grid,
    pixel_lut,
    read_image_frames,
)
from nowcast.data.importers.knmi import KNMIPreset
from nowcast.data.importers.mch import MCHPreset, mch_lut
from nowcast.data.importers.mrms import MRMSPreset
from nowcast.data.importers.netcdf import NetCDFPreset, read_netcdf_frames
from nowcast.data.importers.odim import ODIMPreset
from nowcast.data.importers.sevir import (
    SEVIRPreset,
    read_sevir_catalog,
    sevir_vil_to_kgm2,
)

__all__ = [
    "PRESETS",
    "Frames",
    "Grid",
    "ImagePreset",
    "KNMIPreset",
    "MCHPreset",
    "MRMSPreset",
    "NetCDFPreset",
    "ODIMPreset",
    "Preset",
    "SEVIRPreset",
    "available_presets",
    "build_dataset",
    "compile_time_pattern",
    "expand_paths",
    "get_preset",
    "import_archive",
    "iter_frames",
    "mch_lut",
    "order_files",
    "parse_pgm_header",
    "parse_time",
    "pgm_grid",
    "pixel_lut",
    "read_frames",
    "read_image_frames",
    "read_netcdf_frames",
    "read_sevir_catalog",
    "register_preset",
    "resolve_preset",
    "sevir_vil_to_kgm2",
]
