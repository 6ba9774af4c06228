"""Scores of a sequence classifier: accuracy, per-class precision / recall, confusion.

As for the forecast metrics, raw counts are summed (here a confusion matrix, rows =
true class, columns = predicted class) and the scores computed once at the end:
accuracy ``trace(M) / sum(M)``, precision of class ``k`` ``M[k, k] / sum_i M[i, k]``,
recall ``M[k, k] / sum_j M[k, j]`` (NaN for a class never predicted / never present).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

__all__ = [
    "ConfusionMatrix",
    "classification_report",
    "confusion_table",
    "evaluate_classifier",
    "plot_confusion",
]


class ConfusionMatrix:
    """Accumulated confusion counts of ``n_classes`` classes.

    Parameters
    ----------
    n_classes : int
        Number of classes.
    """

    def __init__(self, n_classes: int) -> None:
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        self.n_classes = n_classes
        self.counts = torch.zeros(n_classes, n_classes, dtype=torch.int64)

    def update(self, logits: Tensor, labels: Tensor) -> None:
        """Add a batch: ``logits`` ``(B, n_classes)``, integer ``labels`` ``(B,)``."""
        if logits.ndim != 2 or logits.shape[1] != self.n_classes:
            raise ValueError(
                f"logits must be (B, {self.n_classes}), got {tuple(logits.shape)}"
            )
        if labels.shape != logits.shape[:1]:
            raise ValueError(
                f"labels must be (B,) = ({logits.shape[0]},), got {tuple(labels.shape)}"
            )
        pred = logits.argmax(dim=1).cpu()
        index = labels.cpu().long() * self.n_classes + pred
        self.counts += torch.bincount(index, minlength=self.n_classes**2).view(
            self.n_classes, self.n_classes
        )

    def compute(self) -> dict[str, Any]:
        """``accuracy``, ``precision`` and ``recall`` (lists per class), ``confusion``,
        ``n`` (clips counted)."""
        m = self.counts.double()
        diag = torch.diagonal(m)
        precision = (diag / m.sum(0)).tolist()  # 0 / 0 -> NaN: never predicted
        recall = (diag / m.sum(1)).tolist()
        n = int(self.counts.sum())
        return {
            "accuracy": float(diag.sum() / n) if n else float("nan"),
            "precision": precision,
            "recall": recall,
            "confusion": self.counts.tolist(),
            "n": n,
        }


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module,
    dataset: Dataset,
    n_classes: int,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    max_batches: int | None = None,
) -> dict[str, Any]:
    """Scores of ``model`` (clips ``(B, T, C, H, W)`` -> logits) on ``(clip, label)``
    items; see :meth:`ConfusionMatrix.compute`."""
    was_training = model.training
    model.eval()
    matrix = ConfusionMatrix(n_classes)
    for i, (clips, labels) in enumerate(DataLoader(dataset, batch_size=batch_size)):
        if max_batches is not None and i >= max_batches:
            break
        matrix.update(model(clips.to(device)), labels)
    model.train(was_training)
    return matrix.compute()


def _fmt(v: float) -> str:
    return "n/a" if v != v else f"{v:.3f}"


def confusion_table(scores: dict[str, Any], classes: Sequence[str]) -> str:
    """Markdown: per-class precision / recall, then the confusion matrix."""
    lines = [
        f"accuracy: {_fmt(scores['accuracy'])} ({scores['n']} clips)",
        "",
        "| class | precision | recall |",
        "|---|---:|---:|",
    ]
    for name, p, r in zip(classes, scores["precision"], scores["recall"], strict=True):
        lines.append(f"| {name} | {_fmt(p)} | {_fmt(r)} |")
    lines += ["", "| true \\ predicted | " + " | ".join(classes) + " |"]
    lines.append("|---|" + "---:|" * len(classes))
    for name, row in zip(classes, scores["confusion"], strict=True):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def plot_confusion(
    confusion: Sequence[Sequence[int]], classes: Sequence[str], title: str = ""
) -> Any:
    """A :class:`matplotlib.figure.Figure` of the row-normalised confusion matrix.

    Cells show the share of each true class (row) given each prediction, with the
    count written in the cell.
    """
    from matplotlib.figure import Figure

    counts = np.asarray(confusion, dtype=float)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    fig = Figure(figsize=(1.1 * n + 2, 1.0 * n + 1.5), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(share, vmin=0, vmax=1, cmap="Blues")
    for i in range(n):
        for j in range(n):
            colour = "white" if share[i, j] > 0.5 else "black"
            ax.text(
                j, i, f"{int(counts[i, j])}", ha="center", va="center", color=colour
            )
    ax.set_xticks(range(n), classes, rotation=40, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="share of the true class")
    return fig


def classification_report(
    scores: dict[str, Any], classes: Sequence[str], out_dir: str | Path, title: str = ""
) -> dict[str, Path]:
    """Write ``classification.md`` (tables), ``classification.json`` and
    ``confusion.png`` under ``out_dir``; returns their paths."""
    import json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "markdown": out_dir / "classification.md",
        "json": out_dir / "classification.json",
        "png": out_dir / "confusion.png",
    }
    paths["markdown"].write_text(confusion_table(scores, classes))
    paths["json"].write_text(json.dumps({"classes": list(classes), **scores}, indent=2))
    plot_confusion(scores["confusion"], classes, title).savefig(paths["png"], dpi=110)
    return paths
