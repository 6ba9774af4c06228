"""The paper's evaluation: Z-R conversion, per-lead scores, reports.

See :mod:`nowcast.evaluation.metrics` (definitions and aggregation) and
:mod:`nowcast.evaluation.evaluate` (running forecasters over a split).
"""

from nowcast.evaluation.evaluate import (
    HKO7_CSI_TABLE,
    PAPER_TABLE,
    evaluate_forecasters,
    markdown_table,
    write_report,
)
from nowcast.evaluation.metrics import (
    MetricAccumulator,
    dbz_to_grey,
    dbz_to_rainrate,
    grey_to_dbz,
    grey_to_rainrate,
    rainrate_to_dbz,
)

__all__ = [
    "MetricAccumulator",
    "grey_to_dbz",
    "dbz_to_grey",
    "dbz_to_rainrate",
    "rainrate_to_dbz",
    "grey_to_rainrate",
    "evaluate_forecasters",
    "write_report",
    "markdown_table",
    "PAPER_TABLE",
    "HKO7_CSI_TABLE",
]
