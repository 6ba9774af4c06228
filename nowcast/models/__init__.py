"""Learned forecasters of Shi et al. (2015): ConvLSTM / ConvGRU cells, the stateful
:class:`ConvRNN` stack, the :class:`EncoderForecaster` and the :class:`FCLSTM` baseline;
and the other uses of the cells (issue 14): the :class:`SequenceClassifier` and the
:class:`SeriesForecaster` of area-mean rain.
"""

from nowcast.models.cells import (
    CELLS,
    ConvGRUCell,
    ConvLSTMCell,
    get_cell,
    resolve_cell,
)
from nowcast.models.classifier import SequenceClassifier
from nowcast.models.convrnn import ConvRNN
from nowcast.models.encoder_forecaster import EncoderForecaster
from nowcast.models.fc_lstm import FCLSTM, FCLSTMCell
from nowcast.models.series import SeriesForecaster

__all__ = [
    "CELLS",
    "ConvGRUCell",
    "ConvLSTMCell",
    "ConvRNN",
    "EncoderForecaster",
    "FCLSTM",
    "FCLSTMCell",
    "SequenceClassifier",
    "SeriesForecaster",
    "get_cell",
    "resolve_cell",
]
