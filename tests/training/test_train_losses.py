"""Losses: hand-computed values of BCE / MSE, masks and the HKO-7 balanced weights."""

from __future__ import annotations

import math

import pytest
import torch

from nowcast.evaluation.metrics import dbz_to_grey, rainrate_to_dbz
from nowcast.training.losses import available_losses, balanced_weights, get_loss


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_bce_matches_hand_values():
    # sigmoid(logit(0.75)) = 0.75: -ln 0.75 = 0.287682 for target 1, -ln 0.25 = 1.386294
    # for target 0; mean over the two pixels = 0.836988
    logits = torch.full((1, 1, 1, 1, 2), _logit(0.75))
    targets = torch.tensor([1.0, 0.0]).reshape(1, 1, 1, 1, 2)
    loss = get_loss("bce")(logits, targets)
    assert loss.item() == pytest.approx((0.287682 + 1.386294) / 2, abs=1e-6)


def test_mse_mae_and_mask():
    # logits 0 -> p = 0.5; errors |0.5 - t| = 0.5, 0.5, 0.25, 0.5
    logits = torch.zeros(1, 1, 1, 2, 2)
    targets = torch.tensor([[1.0, 0.0], [0.25, 1.0]]).reshape(1, 1, 1, 2, 2)
    assert get_loss("mse")(logits, targets).item() == pytest.approx(
        (0.25 + 0.25 + 0.0625 + 0.25) / 4
    )
    assert get_loss("mae")(logits, targets).item() == pytest.approx(1.75 / 4)
    mask = torch.tensor([[False, False], [True, False]])  # only the 0.25 pixel counts
    assert get_loss("mse")(logits, targets, mask).item() == pytest.approx(0.0625)


def test_balanced_weights_steps():
    # HKO-7 (Shi et al. 2017): 1 below 2 mm/h, then 2, 5, 10, 30 from 2, 5, 10, 30 mm/h
    rain = torch.tensor([0.0, 1.99, 2.0, 4.99, 5.0, 9.9, 10.0, 29.0, 30.0, 200.0])
    expected = [1, 1, 2, 2, 5, 5, 10, 10, 30, 30]
    assert balanced_weights(rain).tolist() == expected


def test_balanced_mse_and_mae_hand_values():
    # pixel A: observed 3 mm/h (weight 2), predicted 0.1 grey above; pixel B: grey 0
    # (about 0.03 mm/h, weight 1), predicted 0.2 above.
    grey_a = float(dbz_to_grey(rainrate_to_dbz(torch.tensor(3.0)), -10.0, 60.0))
    targets = torch.tensor([grey_a, 0.0]).reshape(1, 1, 1, 1, 2)
    logits = torch.tensor([_logit(grey_a + 0.1), _logit(0.2)]).reshape(1, 1, 1, 1, 2)
    bmse = get_loss("balanced_mse", dbz_min=-10.0, dbz_max=60.0)(logits, targets)
    bmae = get_loss("balanced_mae", dbz_min=-10.0, dbz_max=60.0)(logits, targets)
    assert bmse.item() == pytest.approx((2 * 0.1**2 + 1 * 0.2**2) / 2, rel=1e-4)
    assert bmae.item() == pytest.approx((2 * 0.1 + 1 * 0.2) / 2, rel=1e-4)


def test_losses_have_gradients_and_registry_errors():
    logits = torch.zeros(2, 3, 1, 4, 4, requires_grad=True)
    targets = torch.rand(2, 3, 1, 4, 4)
    for name in available_losses():
        loss = get_loss(name)(logits, targets)
        (grad,) = torch.autograd.grad(loss, logits)
        assert loss.ndim == 0 and torch.isfinite(grad).all() and grad.abs().sum() > 0
    with pytest.raises(
        ValueError, match="unknown loss 'nope'; available: balanced_mae"
    ):
        get_loss("nope")
    with pytest.raises(TypeError, match="bad arguments"):
        get_loss("bce", dbz_min=0.0)
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\) of the same shape"):
        get_loss("bce")(logits, targets[:, :2])
    with pytest.raises(ValueError, match="excludes every pixel"):
        get_loss("bce")(logits, targets, torch.zeros(4, 4, dtype=torch.bool))
