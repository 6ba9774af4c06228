"""How close the train step's convolutions run to the machine's peak, and what is left.

Run: ``python benchmarks/conv_efficiency.py`` (``--tiny`` for the smoke test,
``--threads``, ``--batch``).

Why this exists: the train-step benchmark (``train_step.py``) compares our fused
ConvLSTM with a naive 8-convolution reference. Both do the same floating-point work, so
on a CPU the ratio can only move if (a) the convolutions run at a better fraction of the
peak, or (b) the work outside the convolutions shrinks. This script measures both
bounds, as ratios taken in one process:

* ``sgemm``: GFLOP/s of a large ``torch.mm`` (MKL SGEMM), the practical peak of a core;
* ``conv``: GFLOP/s of forward + backward (input and weight gradients) of the gate
  convolutions at the paper's radar shapes (our fused ``[x, h] -> 4 C_hid`` and the
  reference's per-gate ``C -> C_hid``) and Moving-MNIST shapes; ``of_sgemm`` is the
  fraction of the SGEMM rate;
* ``conv_share``: the share of one eager fp32 radar train step spent in convolution
  ops (``torch.profiler``, self CPU time of ``aten::*conv*`` ops). By Amdahl's law
  ``bound_free_elementwise = 1 / share`` bounds what fusing (or even removing) every
  non-convolution op could give, and ``bound_winograd = 1 / (1 - share + share / s)``
  what the Winograd convolution below (speed-up ``s`` on the fused radar shape) could;
* ``winograd F(4x4,3x3)``: a Winograd convolution (Lavin & Gray 2016) written here with
  ``torch`` ops (tile transforms as matrix products, 36 batched GEMMs), the one
  algorithmic way to do fewer multiplications for 3x3 kernels, with its speed ratio to
  the direct convolution and its rounding error against float64 (the direct
  convolution's shown beside it).

FLOPs: ``2 N H W C_out C_in k^2`` per convolution, times 3 for forward + both backward
products. ``--threads 1`` (default) keeps the figures comparable with the single-core
peak and robust on a shared machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_info, write_results  # noqa: E402

from nowcast.models import EncoderForecaster  # noqa: E402

#: (label, batch multiplier applied to --batch, C_in, C_out, H=W, kernel)
SHAPES = [
    ("radar fused [x,h]->4h, layer 2", 128, 256, 50, 3),
    ("radar per-gate h->h (reference)", 64, 64, 50, 3),
    ("mnist fused [x,h]->4h, layer 1", 144, 512, 16, 5),
    ("mnist per-gate h->h (reference)", 128, 128, 16, 5),
]
TINY_SHAPES = [
    ("radar fused [x,h]->4h, layer 2", 8, 16, 10, 3),
    ("mnist fused [x,h]->4h, layer 1", 8, 16, 8, 5),
]

# Winograd F(4x4, 3x3) with interpolation points 0, +-1, +-2, inf (Lavin & Gray 2016).
_BT = [
    [4, 0, -5, 0, 1, 0],
    [0, -4, -4, 1, 1, 0],
    [0, 4, -4, -1, 1, 0],
    [0, -2, -1, 2, 1, 0],
    [0, 2, -1, -2, 1, 0],
    [0, 4, 0, -5, 0, 1],
]
_G = [
    [1 / 4, 0, 0],
    [-1 / 6, -1 / 6, -1 / 6],
    [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6],
    [1 / 24, -1 / 12, 1 / 6],
    [0, 0, 1],
]
_AT = [
    [1, 1, 1, 1, 1, 0],
    [0, 1, -1, 2, -2, 0],
    [0, 1, 1, 4, 4, 0],
    [0, 1, -1, 8, -8, 1],
]


def _kron(rows: list[list[float]]) -> Tensor:
    m = torch.tensor(rows, dtype=torch.float64)
    return torch.kron(m, m).float()


K_IN, K_WEIGHT, K_OUT = _kron(_BT), _kron(_G), _kron(_AT)  # (36,36) (36,9) (16,36)


def winograd_conv3x3(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.conv2d(x, weight, bias, padding=1)`` by Winograd F(4x4, 3x3).

    ``x`` ``(N, C, H, W)``, ``weight`` ``(O, C, 3, 3)``; returns ``(N, O, H, W)``.
    Differentiable (autograd through the transforms and the batched GEMM).
    """
    n, c, h, w = x.shape
    o = weight.shape[0]
    th, tw = (h + 3) // 4, (w + 3) // 4  # output tiles of 4x4
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 4 * tw + 1 - w, 1, 4 * th + 1 - h))
    tiles = xp.unfold(1, 6, 4).unfold(2, 6, 4)  # (N, th, tw, C, 6, 6), stride 4
    rows = n * th * tw * c
    v = (K_IN @ tiles.reshape(rows, 36).T).view(36, n * th * tw, c)
    u = (K_WEIGHT @ weight.reshape(o * c, 9).T).view(36, o, c).transpose(1, 2)
    m = torch.bmm(v, u)  # (36, tiles, O): one GEMM per transformed tile element
    y = (K_OUT @ m.view(36, -1)).view(4, 4, n, th, tw, o)
    y = y.permute(2, 5, 3, 0, 4, 1).reshape(n, o, 4 * th, 4 * tw)[:, :, :h, :w]
    return y if bias is None else y + bias.view(1, -1, 1, 1)


def _cpu_time(fn, repeats: int) -> float:
    """Fastest process CPU time of ``repeats`` calls (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def sgemm_gflops(size: int, repeats: int) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / _cpu_time(lambda: torch.mm(a, b), repeats) / 1e9


def conv_rows(shapes: list, batch: int, repeats: int, peak: float) -> list[dict]:
    rows = []
    for label, cin, cout, size, k in shapes:
        torch.manual_seed(0)
        x = torch.rand(batch, cin, size, size, requires_grad=True)
        w = (torch.randn(cout, cin, k, k) / (cin * k * k) ** 0.5).requires_grad_()
        b = torch.zeros(cout, requires_grad=True)
        flops = 3 * 2 * batch * size * size * cout * cin * k * k

        def direct(x=x, w=w, b=b, k=k):
            F.conv2d(x, w, b, padding=k // 2).sum().backward()

        t = _cpu_time(direct, repeats)
        row = {
            "what": f"conv {label}",
            "shape": f"{batch}x{cin}x{size}x{size} -> {cout}, {k}x{k}",
            "ms": 1e3 * t,
            "gflops": flops / t / 1e9,
            "of_sgemm": flops / t / 1e9 / peak,
        }
        rows.append(row)
        if k != 3:
            continue

        def wino(x=x, w=w, b=b):
            winograd_conv3x3(x, w, b).sum().backward()

        tw = _cpu_time(wino, repeats)
        with torch.no_grad():
            exact = F.conv2d(x.double(), w.double(), b.double(), padding=1)
            scale = exact.abs().max()
            err_w = (winograd_conv3x3(x, w, b) - exact).abs().max() / scale
            err_d = (F.conv2d(x, w, b, padding=1) - exact).abs().max() / scale
        rows.append(
            {
                "what": f"winograd F(4x4,3x3) {label}",
                "shape": row["shape"],
                "ms": 1e3 * tw,
                "speedup_vs_direct": t / tw,
                "rel_err": float(err_w),
                "rel_err_direct": float(err_d),
            }
        )
    return rows


def conv_share(config: dict, batch: int) -> float:
    """Share of one eager fp32 train step's CPU time spent in convolution ops."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    model = EncoderForecaster(1, config["patch"], config["hidden"], 3, 3)
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9)
    size, t_in, t_out = config["size"], config["t_in"], config["t_out"]
    x, y = (
        torch.rand(batch, t_in, 1, size, size),
        torch.rand(batch, t_out, 1, size, size),
    )

    def step():
        loss = F.binary_cross_entropy_with_logits(model(x, t_out), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up: oneDNN primitives, optimiser state
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    conv = sum(e.self_cpu_time_total for e in events if "conv" in e.key.lower())
    return conv / total


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="smoke-test size")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--batch", type=int, default=None, help="default 2 (tiny: 1)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    batch = args.batch or (1 if args.tiny else 2)
    repeats = args.repeats or (1 if args.tiny else 3)
    peak = sgemm_gflops(256 if args.tiny else 2048, repeats)
    rows: list[dict] = [{"what": "sgemm (torch.mm)", "gflops": peak, "of_sgemm": 1.0}]
    rows += conv_rows(TINY_SHAPES if args.tiny else SHAPES, batch, repeats, peak)
    radar = (
        dict(t_in=2, t_out=3, size=8, patch=2, hidden=[4, 4])
        if args.tiny
        else dict(t_in=5, t_out=15, size=100, patch=2, hidden=[64, 64])
    )
    share = conv_share(radar, batch)
    s_wino = next(r["speedup_vs_direct"] for r in rows if "winograd" in r["what"])
    rows.append(
        {
            "what": "radar train step: convolution share of CPU time",
            "shape": f"batch {batch}, 5+15 frames of 100x100" if not args.tiny else "",
            "conv_share": share,
            "bound_free_elementwise": 1 / share,
            "bound_winograd": 1 / (1 - share + share / s_wino),
        }
    )
    write_results("conv_efficiency", machine_info("cpu"), rows, args.out)
    return rows


if __name__ == "__main__":
    main()
