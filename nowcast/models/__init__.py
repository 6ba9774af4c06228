"""Learned forecasters of Shi et al. (2015): ConvLSTM / ConvGRU cells, the stateful
:class:`ConvRNN` stack, the :class:`EncoderForecaster` and the :class:`FCLSTM` baseline.
"""

from nowcast.models.cells import CELLS, ConvGRUCell, ConvLSTMCell, get_cell
from nowcast.models.convrnn import ConvRNN
from nowcast.models.encoder_forecaster import EncoderForecaster
from nowcast.models.fc_lstm import FCLSTM, FCLSTMCell

__all__ = [
    "CELLS",
    "ConvGRUCell",
    "ConvLSTMCell",
    "ConvRNN",
    "EncoderForecaster",
    "FCLSTM",
    "FCLSTMCell",
    "get_cell",
]
