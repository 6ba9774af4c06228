"""Sequence classification with ConvRNN features (the KTH action set up of issue 14).

A :class:`~nowcast.models.convrnn.ConvRNN` stack reads the clip; the last layer's final
hidden state ``H_T`` ``(B, C_hid, H, W)`` is max-pooled (5x5, stride 2, padding 2),
flattened and mapped by one linear layer to class logits (train with cross-entropy).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from nowcast.models.convrnn import ConvRNN, KernelArg

__all__ = ["SequenceClassifier", "pooled_size"]

POOL_KERNEL, POOL_STRIDE, POOL_PADDING = 5, 2, 2


def pooled_size(height: int, width: int) -> tuple[int, int]:
    """Frame size after the 5x5 / stride 2 / padding 2 max-pool: ``ceil(n / 2)``.

    ``floor((n + 2 * 2 - 5) / 2) + 1``; e.g. 60x80 -> 30x40.
    """
    return tuple(  # type: ignore[return-value]
        (n + 2 * POOL_PADDING - POOL_KERNEL) // POOL_STRIDE + 1 for n in (height, width)
    )


class SequenceClassifier(nn.Module):
    """ConvLSTM / ConvGRU stack, max-pool of the last hidden state, linear classifier.

    Parameters
    ----------
    cell : {"lstm", "gru", "lstm_gn", "gru_gn"}
        Recurrent cell (:func:`nowcast.models.cells.resolve_cell`).
    in_channels : int
        Channels of the frames (1 for grey video).
    hidden_channels : int or list of int
        Hidden channels per layer (KTH reference: ``[32, 32]``).
    kernel_size : int or list
        Kernel per layer (odd; KTH reference: 3).
    num_classes : int
        Number of classes (KTH: 6).
    frame_size : (int, int)
        ``(H, W)`` of the frames the model is built for (KTH reference: ``(60, 80)``);
        the linear layer has ``C_hid * ceil(H / 2) * ceil(W / 2)`` inputs.
    peephole : bool
        ConvLSTM peepholes (ignored for ConvGRU).

    Notes
    -----
    ``model(x)`` takes ``x`` of shape ``(B, T, C, H, W)`` (any ``T >= 1``) and returns
    logits ``(B, num_classes)``.
    """

    def __init__(
        self,
        cell: str = "lstm",
        in_channels: int = 1,
        hidden_channels: int | Sequence[int] = (32, 32),
        kernel_size: KernelArg = 3,
        num_classes: int = 6,
        frame_size: Sequence[int] = (60, 80),
        peephole: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        if len(frame_size) != 2 or any(int(n) < 1 for n in frame_size):
            raise ValueError(f"frame_size must be (H, W) > 0, got {frame_size!r}")
        if not isinstance(hidden_channels, int):
            hidden_channels = [int(h) for h in hidden_channels]  # hydra ListConfig
        if isinstance(kernel_size, Sequence) and not isinstance(kernel_size, tuple):
            kernel_size = list(kernel_size)
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.num_classes = num_classes
        self.rnn = ConvRNN(
            cell,
            in_channels=in_channels,
            hidden_channels=hidden_channels,
            kernel_size=kernel_size,
            peephole=peephole,
        )
        self.pool = nn.MaxPool2d(POOL_KERNEL, POOL_STRIDE, POOL_PADDING)
        ph, pw = pooled_size(*self.frame_size)
        self.head = nn.Linear(self.rnn.hidden_channels[-1] * ph * pw, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Pooled, flattened last hidden state ``(B, C_hid * H' * W')`` of ``x``."""
        if x.ndim != 5 or tuple(x.shape[-2:]) != self.frame_size:
            raise ValueError(
                f"x must be (B, T, {self.rnn.in_channels}, {self.frame_size[0]}, "
                f"{self.frame_size[1]}) (the model's frame_size), got {tuple(x.shape)}"
            )
        outputs, _ = self.rnn(x)
        return self.pool(outputs[-1][:, -1]).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)`` of clips ``x`` ``(B, T, C, H, W)``."""
        return self.head(self.features(x))
