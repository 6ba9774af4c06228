import numpy as np
import pytest
import torch

from nowcast.baselines import available_methods, estimate_flow, get_method

# Mean / 95th-percentile end-point error (pixels per step) over raining pixels that
# each method achieves on a 64x64 field of Gaussian blobs translated analytically by
# (1.5, -0.8) px/step (measured: dis 0.01 / 0.03, dis_fast 0.05 / 0.10,
# farneback 0.07 / 0.3; the tolerances leave a margin).
TOLERANCE = {"dis": (0.05, 0.15), "dis_fast": (0.15, 0.3), "farneback": (0.2, 0.6)}


def _epe(flow: torch.Tensor, velocity, where: torch.Tensor) -> torch.Tensor:
    err = ((flow[0, 0] - velocity[0]) ** 2 + (flow[0, 1] - velocity[1]) ** 2).sqrt()
    return err[where]


def test_registry_lists_methods_and_rejects_unknown_names():
    assert {"dis", "dis_fast", "farneback"} <= set(available_methods())
    assert callable(get_method("dis"))
    with pytest.raises(ValueError, match=r"unknown optical-flow method 'tvl1'.*'dis'"):
        get_method("tvl1")


@pytest.mark.parametrize("method", ["dis", "dis_fast", "farneback"])
def test_recovers_known_translation(method, blobs):
    velocity = (1.5, -0.8)  # (u, v): 1.5 px right, 0.8 px up per step
    frames = blobs(size=64, n_frames=3, velocity=velocity)
    flow = estimate_flow(frames[:, :, 0], method=method)
    assert flow.shape == (1, 2, 64, 64) and flow.dtype == torch.float32
    err = _epe(flow, velocity, frames[0, -1, 0] > 0.1)
    mean_tol, p95_tol = TOLERANCE[method]
    assert float(err.mean()) < mean_tol
    assert float(err.quantile(0.95)) < p95_tol


@pytest.mark.parametrize("temporal", ["last", "chain", "mean"])
def test_temporal_modes_and_channel_layout(temporal, blobs):
    # pure motion along x: channel 0 (u) carries it, channel 1 (v) stays ~0
    frames = blobs(size=64, n_frames=5, velocity=(2.0, 0.0), seed=1)
    flow = estimate_flow(frames, method="dis", temporal=temporal)  # (B, T, C, H, W)
    rain = frames[0, -1, 0] > 0.1
    assert abs(float(flow[0, 0][rain].mean()) - 2.0) < 0.05
    assert abs(float(flow[0, 1][rain].mean())) < 0.05


def test_batch_items_are_independent(blobs):
    a = blobs(size=48, n_frames=2, velocity=(1.0, 0.5), seed=2)
    b = blobs(size=48, n_frames=2, velocity=(-1.0, 1.0), seed=3)
    both = estimate_flow(torch.cat([a, b]), method="dis")
    torch.testing.assert_close(both[1:], estimate_flow(b, method="dis"))
    rain = b[0, -1, 0] > 0.1
    assert float(_epe(both[1:], (-1.0, 1.0), rain).mean()) < 0.05


def test_accepts_uint8_numpy_and_keeps_device(blobs):
    frames = blobs(size=32, n_frames=2)[:, :, 0]
    u8 = (frames * 255).round().to(torch.uint8).numpy()
    flow = estimate_flow(u8, method="dis_fast")
    assert isinstance(flow, torch.Tensor) and flow.device.type == "cpu"
    np.testing.assert_allclose(
        flow.numpy(), estimate_flow(frames, method="dis_fast").numpy()
    )


def test_input_errors():
    with pytest.raises(ValueError, match="at least 2 frames"):
        estimate_flow(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, T, H, W\) or \(B, T, C, H, W\)"):
        estimate_flow(torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="temporal must be one of"):
        estimate_flow(torch.zeros(1, 2, 8, 8), temporal="median")


@pytest.mark.parametrize("temporal", ["last", "mean"])
def test_matches_true_motion_of_the_synthetic_data_set(temporal):
    # the embedded synthetic radar stores its true (rotating, shearing) velocity;
    # measured at 96 px, seed 1, frames 20-24: mean end-point error over rain pixels
    # 0.07 (last) / 0.08 (mean) px/step for a mean speed of 0.32 px/step (a zero
    # flow would score 0.32)
    synthetic = pytest.importorskip("nowcast.data.synthetic")
    from nowcast.evaluation.metrics import dbz_to_grey

    ds = synthetic.make_synthetic_radar(n_days=1, frames_per_day=25, size=96, seed=1)
    dbz = ds["intensity"].values[20:25]
    grey = torch.from_numpy(np.nan_to_num(dbz_to_grey(dbz), nan=0.0).clip(0, 1))
    u, v = ds["motion_u"].values[24], ds["motion_v"].values[24]
    rain = (dbz[-1] > 15) & ~ds["clutter_mask"].values
    flow = estimate_flow(grey[None].float(), method="dis", temporal=temporal)[0]
    err = np.hypot(flow[0].numpy() - u, flow[1].numpy() - v)[rain]
    speed = np.hypot(u, v)[rain].mean()
    assert err.mean() < 0.12 and err.mean() < 0.4 * speed


def test_dis_patch_larger_than_small_frames_is_shrunk():
    # the tuned ROVER patch (16 px) must not crash on frames smaller than 2 x 16 px:
    # a blob moved by one pixel to the right is still found
    yy, xx = np.mgrid[0:16, 0:24].astype(np.float32)
    frames = np.stack(
        [np.exp(-((yy - 8) ** 2 + (xx - 10 - k) ** 2) / 8.0) for k in range(2)]
    )
    flow = estimate_flow(torch.from_numpy(frames)[None], method="dis", patch_size=16)
    assert flow.shape == (1, 2, 16, 24)
    assert abs(float(flow[0, 0, 6:11, 8:14].mean()) - 1.0) < 0.35
