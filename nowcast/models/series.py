"""RNN / LSTM / GRU nowcasts of a region's area-mean rain rate (issue 14, part 3).

Hydrologists need the next hour of rain over a catchment, not a field: a recurrent
network reads the region's recent history (area-mean rain rate, wet fraction, optional
extra series; :mod:`nowcast.data.series`) and a linear head on its last hidden state
gives every lead at once.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["SERIES_CELLS", "SeriesForecaster", "get_series_cell"]

SERIES_CELLS: dict[str, type[nn.RNNBase]] = {
    "rnn": nn.RNN,
    "lstm": nn.LSTM,
    "gru": nn.GRU,
}
"""Recurrent layers of :class:`SeriesForecaster` by name (``torch.nn`` classes)."""


def get_series_cell(name: str) -> type[nn.RNNBase]:
    """The ``torch.nn`` recurrent class called ``name`` (``"rnn"``, ``"lstm"``, ``"gru"``).

    Raises
    ------
    ValueError
        For any other name; the message lists the available ones.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in SERIES_CELLS:
        raise ValueError(
            f"unknown series cell {name!r}; available: {', '.join(sorted(SERIES_CELLS))}"
        )
    return SERIES_CELLS[key]


class SeriesForecaster(nn.Module):
    """A recurrent network and a linear head: series history -> the next leads.

    Parameters
    ----------
    cell : {"rnn", "lstm", "gru"}
        ``torch.nn.RNN`` (tanh), ``torch.nn.LSTM`` or ``torch.nn.GRU``.
    input_size : int
        Features per time step (2 for area-mean rain rate and wet fraction, plus the
        extra series).
    hidden_size : int
        Hidden units per layer.
    num_layers : int
        Stacked recurrent layers.
    output_len : int
        Leads predicted (10 for one hour at 6-minute frames).
    output_size : int
        Values per lead (1: the area-mean rain rate).
    dropout : float
        Dropout between recurrent layers (``num_layers > 1`` only).
    residual : bool
        Predict changes from persistence: the head's output is added to the last
        input step's first ``output_size`` features (the last observed area-mean rain
        rate), so an untrained head (started at zero) forecasts persistence.

    Notes
    -----
    ``model(x)`` takes ``x`` ``(batch, input_len, input_size)`` and returns
    ``(batch, output_len, output_size)`` in the units of the training targets (mm/h for
    :mod:`nowcast.data.series`); :meth:`predict` clips at zero (no negative rain).
    """

    def __init__(
        self,
        cell: str = "lstm",
        input_size: int = 2,
        hidden_size: int = 32,
        num_layers: int = 1,
        output_len: int = 10,
        output_size: int = 1,
        dropout: float = 0.0,
        residual: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (
            ("input_size", input_size),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
            ("output_len", output_len),
            ("output_size", output_size),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.cell = cell
        self.input_size = input_size
        self.output_len = output_len
        self.output_size = output_size
        self.rnn = get_series_cell(cell)(
            input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.head = nn.Linear(hidden_size, output_len * output_size)
        if output_size > input_size and residual:
            raise ValueError(
                f"residual=True adds the last input's first output_size={output_size} "
                f"features, but there are only input_size={input_size}"
            )
        self.residual = bool(residual)
        if self.residual:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor, n_steps: int | None = None) -> Tensor:
        """Forecast ``(batch, output_len, output_size)`` from ``x`` ``(batch, T, F)``.

        ``n_steps`` (optional, for the trainer's ``model(inputs, n_steps)`` call) must
        equal ``output_len``: the head predicts a fixed number of leads.
        """
        if x.ndim != 3 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"x must be (batch, input_len, {self.input_size}), got {tuple(x.shape)}"
            )
        if n_steps is not None and int(n_steps) != self.output_len:
            raise ValueError(
                f"this model predicts output_len={self.output_len} leads, asked for "
                f"{n_steps}; train a model with output_len={n_steps}"
            )
        outputs, _ = self.rnn(x)
        out = self.head(outputs[:, -1]).unflatten(
            1, (self.output_len, self.output_size)
        )
        if self.residual:
            out = out + x[:, -1:, : self.output_size]
        return out

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """Forecast in eval mode, clipped at 0: ``(batch, output_len, output_size)``."""
        was_training = self.training
        self.eval()
        out = self(x).clamp_min(0.0)
        self.train(was_training)
        return out
