"""Losses: hand-computed values of BCE / MSE, masks and the HKO-7 balanced weights."""

from __future__ import annotations

import math

import pytest
import torch

from nowcast.data.physical import GreyScale
from nowcast.training.losses import (
    available_losses,
    balanced_weights,
    combine_masks,
    get_loss,
)
from nowcast.training.trainer import build_loss


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
    hko = GreyScale.hko7()
    grey_a = float(hko.from_score(3.0))
    targets = torch.tensor([grey_a, 0.0]).reshape(1, 1, 1, 1, 2)
    logits = torch.tensor([_logit(grey_a + 0.1), _logit(0.2)]).reshape(1, 1, 1, 1, 2)
    bmse = get_loss("balanced_mse", scale=hko)(logits, targets)
    bmae = get_loss("balanced_mae", scale=hko)(logits, targets)
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


def test_balanced_loss_uses_the_rain_rate_archive_scale():
    # mm/h archive 0..50: grey 0.2 is 10 mm/h (weight 10), grey 0.02 is 1 mm/h (weight
    # 1). Read as HKO-7 dBZ, grey 0.2 would be 4 dBZ ~ 0.13 mm/h (weight 1).
    targets = torch.tensor([0.2, 0.02]).reshape(1, 1, 1, 1, 2)
    logits = torch.tensor([_logit(0.3), _logit(0.12)]).reshape(1, 1, 1, 1, 2)
    mmh = get_loss("balanced_mse", scale=GreyScale("mm/h", 0.0, 50.0))
    assert mmh(logits, targets).item() == pytest.approx((10 * 0.01 + 1 * 0.01) / 2)
    hko = get_loss("balanced_mse", scale=GreyScale.hko7())
    assert hko(logits, targets).item() == pytest.approx((0.01 + 0.01) / 2)


def test_rain_mse_hand_values_and_scale():
    # HKO-7: grey 0.5 is 25 dBZ, R = (10^2.5 / 58.53)^(1 / 1.56) = 2.9486 mm/h; grey 0.6
    # is 32 dBZ, R = (10^3.2 / 58.53)^(1 / 1.56) = 8.2857 mm/h
    r25 = (10**2.5 / 58.53) ** (1 / 1.56)
    r32 = (10**3.2 / 58.53) ** (1 / 1.56)
    targets = torch.full((1, 1, 1, 1, 1), 0.6)
    logits = torch.zeros(1, 1, 1, 1, 1)  # sigmoid 0.5
    loss = get_loss("rain_mse", scale=GreyScale.hko7(), rain_weight=1e-3)
    assert loss(logits, targets).item() == pytest.approx(0.01 + 1e-3 * (r32 - r25) ** 2)
    # a mm/h archive 0..50: 0.1 grey apart is 5 mm/h apart
    mmh = get_loss("rain_mse", scale=GreyScale("mm/h", 0.0, 50.0), rain_weight=1e-3)
    assert mmh(logits, targets).item() == pytest.approx(0.01 + 1e-3 * 25.0)
    assert build_loss({"name": "rain_mse"}, _Train()).scale == _Train.scale
    with pytest.raises(ValueError, match="rain_weight must be > 0"):
        get_loss("rain_mse", rain_weight=0.0)


class _Train:
    scale = GreyScale("mm/h", 0.0, 50.0)


def test_build_loss_takes_the_training_set_scale_not_the_config_range():
    # a config's legacy dBZ range is ignored; the training set's scale wins
    cfg = {"name": "balanced_mae", "dbz_min": -10.0, "dbz_max": 60.0, "a": 1.0}
    assert build_loss(cfg, _Train()).scale == _Train.scale
    assert build_loss({"name": "balanced_mae"}).scale == GreyScale.hko7()
    with pytest.raises(ValueError, match="dataset.scale"):
        build_loss({"name": "balanced_mse"}, object())


@pytest.mark.parametrize(
    "name", ["bce", "mse", "mae", "balanced_mse", "balanced_mae", "rain_mse"]
)
def test_masked_pixel_with_huge_error_changes_no_loss(name):
    # pixel (0, 0) is clutter (valid_mask False); pixel (1, 1) has no data in frame 1
    # (target_valid False). Wrecking both predictions and targets there, even with
    # inf / NaN, leaves every loss unchanged.
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 1, 4, 4, generator=gen)
    targets = torch.rand(2, 3, 1, 4, 4, generator=gen)
    valid = torch.ones(4, 4, dtype=torch.bool)
    valid[0, 0] = False
    cover = torch.ones(2, 3, 1, 4, 4, dtype=torch.bool)
    cover[:, 1, 0, 1, 1] = False
    mask = combine_masks(valid, cover)
    loss_fn = get_loss(name)
    before = loss_fn(logits, targets, mask)
    bad_logits, bad_targets = logits.clone(), targets.clone()
    bad_logits[..., 0, 0] = 1e4
    bad_targets[..., 0, 0] = 0.0
    bad_logits[:, 1, 0, 1, 1] = -1e4
    bad_targets[:, 1, 0, 1, 1] = float("nan")  # as an unobserved target may hold
    after = loss_fn(bad_logits, bad_targets, mask)
    torch.testing.assert_close(after, before)
    # and the same wreck without the masks does change it (the test can fail)
    assert not torch.isclose(loss_fn(bad_logits, bad_targets), loss_fn(logits, targets))


def test_combine_masks():
    valid = torch.tensor([[True, False]])
    cover = torch.tensor([[True, True], [False, True]]).reshape(1, 2, 1, 1, 2)
    both = combine_masks(valid, cover)
    assert both.shape == (1, 2, 1, 1, 2)
    assert both.flatten().tolist() == [True, False, False, False]
    assert combine_masks(valid, None) is valid
    assert combine_masks(None, cover).equal(cover)
    assert combine_masks(None, None) is None
    # a batch wholly outside coverage contributes zero, not an error
    none = torch.zeros(1, 2, 1, 1, 2, dtype=torch.bool)
    assert (
        get_loss("mse")(torch.zeros(1, 2, 1, 1, 2), torch.ones(1, 2, 1, 1, 2), none)
        == 0
    )
