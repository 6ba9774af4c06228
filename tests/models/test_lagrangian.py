"""LagrangianForecaster: untrained = ROVER, frames moved into the motion's frame, BPTT."""

from __future__ import annotations

import pytest
import torch

from nowcast.baselines.advection import advect_fields, departure_grid
from nowcast.baselines.rover import Rover
from nowcast.forecast import Forecaster
from nowcast.models.lagrangian import LagrangianForecaster
from nowcast.signatures import accepted_keywords

ROVER = {"variant": 2, "method": "dis", "alpha": 20.0, "patch_size": 8}


def _blobs(shift: float = 2.0, n: int = 5, size: int = 32) -> torch.Tensor:
    """(2, n, 1, size, size) Gaussian blobs moving ``shift`` px per frame to the right."""
    yy, xx = torch.meshgrid(
        torch.arange(size, dtype=torch.float32),
        torch.arange(size, dtype=torch.float32),
        indexing="ij",
    )
    frames = []
    for k in range(n):
        cx = 8.0 + shift * k
        frames.append(0.8 * torch.exp(-((xx - cx) ** 2 + (yy - 14.0) ** 2) / 18.0))
    seq = torch.stack(frames)[:, None]
    return torch.stack((seq, seq.flip(-2)))


def _model(cell: str = "lstm") -> LagrangianForecaster:
    torch.manual_seed(0)
    return LagrangianForecaster(
        patch_size=2, hidden_channels=[4, 4], cell=cell, rover=ROVER
    )


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_untrained_model_equals_rover(cell):
    x = _blobs()
    model = _model(cell)
    assert isinstance(model, Forecaster)
    rover = Rover(**ROVER).predict(x, 6)
    # equal up to the residual head's clamp of the last frame to [1e-3, 1 - 1e-3]
    torch.testing.assert_close(model.predict(x, 6), rover, atol=1.1e-3, rtol=0)


def test_inputs_are_moved_into_the_frame_of_the_motion():
    # a uniformly translating blob: every input carried to the last frame's time lands
    # on the last frame (away from the boundary)
    x = _blobs(shift=2.0)
    flow = torch.zeros(2, 2, 32, 32)
    flow[:, 0] = 2.0
    model = _model()
    grid = departure_grid(flow, 4)
    aligned = model.to_lagrangian(x, grid)
    assert aligned.shape == x.shape
    inside = (..., slice(10, None))  # columns whose departure points are in the domain
    for k in range(5):
        torch.testing.assert_close(
            aligned[:, k][inside], x[:, -1][inside], atol=1e-4, rtol=0
        )
    # and the raw inputs are not aligned
    assert (x[:, 0] - x[:, -1]).abs().max() > 0.5


def test_advect_fields_moves_each_field_by_its_lead():
    fields = torch.zeros(1, 3, 1, 8, 8)
    fields[0, :, 0, 4, 1] = 1.0  # the same dot in every field
    flow = torch.zeros(1, 2, 8, 8)
    flow[:, 0] = 1.0  # one pixel per step to the right
    out = advect_fields(fields, departure_grid(flow, 3))
    for k in range(3):  # field k moved k + 1 pixels
        assert out[0, k, 0, 4].argmax().item() == 2 + k


def test_gradients_reach_the_recurrent_weights():
    x = _blobs()
    model = _model()
    torch.nn.init.normal_(model.core.output.weight, std=0.1)  # as after a first step
    target = torch.rand(2, 4, 1, 32, 32)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x, 4), target)
    loss.backward()
    for name, p in model.named_parameters():
        if "cells" in name and "weight" in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_training_improves_on_rover_where_rain_grows():
    # rain that intensifies in place: ROVER keeps the last intensity, the network
    # learns the trend in a few steps of its own loss
    torch.manual_seed(0)
    base = _blobs(shift=0.0, n=9)[:1]
    growth = torch.linspace(0.5, 1.0, 9)[None, :, None, None, None]
    seq = (base * growth).clamp(0, 1)
    x, y = seq[:, :5], seq[:, 5:]
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    rover_err = ((Rover(**ROVER).predict(x, 4) - y) ** 2).mean()
    for _ in range(60):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x, 4), y)
        loss.backward()
        opt.step()
    model_err = ((model.predict(x, 4) - y) ** 2).mean()
    assert model_err < 0.5 * rover_err


def test_errors():
    model = _model()
    with pytest.raises(ValueError, match="at least 2"):
        model.predict(torch.rand(1, 1, 1, 8, 8), 2)
    with pytest.raises(ValueError):
        model.predict(torch.rand(1, 3, 1, 8, 8), 0)


def test_core_options_are_the_encoder_forecasters_but_the_fixed_ones():
    with pytest.raises(TypeError, match="residual"):  # always residual=True
        LagrangianForecaster(residual=False)
    with pytest.raises(TypeError, match="hiden_channels"):
        LagrangianForecaster(hiden_channels=(4,))
    known = accepted_keywords(LagrangianForecaster)
    assert {"cell", "peephole", "input_kernel_size", "rover"} <= known
    assert not {"residual", "copy_gate"} & known  # so config validation refuses them
