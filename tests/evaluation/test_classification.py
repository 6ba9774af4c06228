"""Classification scores from summed confusion counts (hand-computed tables)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from nowcast.evaluation.classification import (
    ConfusionMatrix,
    classification_report,
    confusion_table,
)


def _one_hot_logits(pred):
    return torch.nn.functional.one_hot(torch.tensor(pred), 3).float()


def test_confusion_precision_recall_by_hand():
    m = ConfusionMatrix(3)
    # true 0 0 0 1 1 2 ; predicted 0 0 1 1 1 1 (class 2 never predicted)
    m.update(_one_hot_logits([0, 0, 1]), torch.tensor([0, 0, 0]))
    m.update(_one_hot_logits([1, 1, 1]), torch.tensor([1, 1, 2]))
    s = m.compute()
    assert s["confusion"] == [[2, 1, 0], [0, 2, 0], [0, 1, 0]]
    assert s["accuracy"] == pytest.approx(4 / 6)
    # precision: 2/2, 2/4, 0/0 -> NaN; recall: 2/3, 2/2, 0/1
    assert s["precision"][:2] == pytest.approx([1.0, 0.5]) and math.isnan(
        s["precision"][2]
    )
    assert s["recall"] == pytest.approx([2 / 3, 1.0, 0.0])
    assert s["n"] == 6


def test_report_files(tmp_path):
    m = ConfusionMatrix(3)
    m.update(_one_hot_logits([0, 1, 2, 2]), torch.tensor([0, 1, 2, 1]))
    scores = m.compute()
    table = confusion_table(scores, ["a", "b", "c"])
    assert "accuracy: 0.750 (4 clips)" in table
    assert "| b | 1.000 | 0.500 |" in table  # class b: predicted once (right), 2 true
    assert "| b | 0 | 1 | 1 |" in table  # confusion row of true b
    paths = classification_report(scores, ["a", "b", "c"], tmp_path, "t")
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    assert json.loads(paths["json"].read_text())["classes"] == ["a", "b", "c"]


def test_bad_shapes():
    m = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"logits must be \(B, 3\), got \(2, 4\)"):
        m.update(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))
