"""The evaluation: per-lead scores in the data's physical units, intervals, reports.

See :mod:`nowcast.evaluation.metrics` (definitions and aggregation),
:mod:`nowcast.evaluation.bootstrap` (block-bootstrap intervals),
:mod:`nowcast.evaluation.evaluate` (running forecasters over a split) and
:func:`nowcast.evaluation.run.score_dataset` (scoring a data set as the test
evaluation does).
"""

from nowcast.evaluation.bootstrap import bootstrap_intervals
from nowcast.evaluation.evaluate import (
    HKO7_CSI_TABLE,
    PAPER_TABLE,
    evaluate_forecasters,
    markdown_table,
    write_report,
)
from nowcast.evaluation.metrics import (
    MetricAccumulator,
    box_mean,
    dbz_to_grey,
    dbz_to_rainrate,
    grey_to_dbz,
    grey_to_rainrate,
    rainrate_to_dbz,
)

__all__ = [
    "MetricAccumulator",
    "box_mean",
    "bootstrap_intervals",
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
