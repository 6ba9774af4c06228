import pytest
import torch

from nowcast.baselines import semi_lagrangian


def _shift(frame: torch.Tensor, dx: int, dy: int, fill: float = 0.0) -> torch.Tensor:
    """Frame (..., H, W) moved dx columns right, dy rows down, ``fill`` entering."""
    out = torch.full_like(frame, fill)
    h, w = frame.shape[-2:]
    ys, yd = (
        (slice(0, h - dy), slice(dy, h))
        if dy >= 0
        else (slice(-dy, h), slice(0, h + dy))
    )
    xs, xd = (
        (slice(0, w - dx), slice(dx, w))
        if dx >= 0
        else (slice(-dx, w), slice(0, w + dx))
    )
    out[..., yd, xd] = frame[..., ys, xs]
    return out


@pytest.mark.parametrize("fill", [0.0, 0.25])
def test_integer_shift_is_exact(fill):
    torch.manual_seed(0)
    frame = torch.rand(2, 3, 17, 23)
    flow = torch.zeros(2, 2, 17, 23)
    flow[0, 0], flow[0, 1] = 2.0, -1.0  # 2 px right, 1 px up per step
    flow[1, 0], flow[1, 1] = -1.0, 3.0
    out = semi_lagrangian(frame, flow, 4, fill_value=fill)
    assert out.shape == (2, 4, 3, 17, 23)
    for k in range(1, 5):
        # expected: the frame moved by k times the flow, fill entering upwind
        torch.testing.assert_close(out[0, k - 1], _shift(frame[0], 2 * k, -k, fill))
        torch.testing.assert_close(out[1, k - 1], _shift(frame[1], -k, 3 * k, fill))


def test_nonuniform_path_matches_shift_in_the_interior():
    # flow of 1 px/step right everywhere but two far-away rows: the general
    # (trajectory-integrating) path must still shift an interior blob exactly.
    frame = torch.zeros(1, 1, 40, 40)
    frame[0, 0, 18:22, 10:14] = torch.arange(16.0).view(4, 4) / 16
    flow = torch.zeros(1, 2, 40, 40)
    flow[:, 0] = 1.0
    flow[:, :, :2] = 0.0
    out = semi_lagrangian(frame, flow, 5)
    torch.testing.assert_close(out[0, 4, 0, 10:30], _shift(frame, 5, 0)[0, 0, 10:30])


@pytest.mark.parametrize("velocity", [(0.37, 0.81), (-1.6, 0.45)])
def test_interior_blob_mass_is_conserved(velocity):
    # bilinear backward advection by a uniform flow conserves the sum of a field that
    # stays inside the domain (each source pixel's weights sum to 1)
    y, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    r2 = (x - 32) ** 2 + (y - 30) ** 2
    frame = (torch.exp(-r2 / (2 * 4.0**2)) * (r2 < 14**2))[None, None]  # support 16..46
    flow = torch.tensor(velocity).view(1, 2, 1, 1).expand(1, 2, 64, 64).contiguous()
    out = semi_lagrangian(frame.double(), flow, 6)
    mass = out.sum(dim=(2, 3, 4))[0]
    torch.testing.assert_close(mass, frame.double().sum().expand(6), rtol=1e-5, atol=0)


def test_rotation_keeps_values_in_range_and_moves_mass():
    frame = torch.zeros(1, 1, 32, 32)
    frame[..., 14:18, 22:26] = 1.0
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    w = 0.1  # rad per step, counter-clockwise on screen (y down)
    flow = torch.stack((w * (y - 15.5), -w * (x - 15.5)))[None]
    out = semi_lagrangian(frame, flow, 8)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    # the blob's centre of mass moves up (negative y) under this rotation
    cy = (out[0, -1, 0] * y).sum() / out[0, -1, 0].sum()
    assert cy < 15.5 - 2


def test_input_errors():
    frame, flow = torch.zeros(1, 1, 8, 8), torch.zeros(1, 2, 8, 8)
    with pytest.raises(ValueError, match=r"frame must be \(B, C, H, W\)"):
        semi_lagrangian(frame[0], flow, 2)
    with pytest.raises(ValueError, match=r"flow must be \(B, 2, H, W\)"):
        semi_lagrangian(frame, flow[:, :1], 2)
    with pytest.raises(ValueError, match="n_steps must be a positive integer"):
        semi_lagrangian(frame, flow, 0)
    with pytest.raises(ValueError, match="interpolation must be one of"):
        semi_lagrangian(frame, flow, 2, interpolation="spline")


@pytest.mark.gpu
def test_runs_on_the_gpu_like_on_the_cpu():
    torch.manual_seed(0)
    frame = torch.rand(2, 1, 32, 40)
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(40.0), indexing="ij")
    flow = torch.stack((0.7 + 0.02 * y, -0.3 + 0.01 * x))[None].repeat(2, 1, 1, 1)
    cpu = semi_lagrangian(frame, flow, 5)
    gpu = semi_lagrangian(frame.cuda(), flow.cuda(), 5)
    assert gpu.is_cuda
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)
