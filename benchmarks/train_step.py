"""Sequences/s and peak memory of one training step of the encoder-forecaster.

Run: ``python benchmarks/train_step.py`` (``--tiny`` for the smoke test, ``--batch``,
``--repeats``, ``--no-compile``, ``--device cuda``).

One step = forward over ``T_in`` input frames + ``T_out`` forecast frames, per-pixel
cross-entropy (``BCEWithLogitsLoss``, the paper's loss), backward through time and one
RMSProp update (lr 1e-3, decay 0.9; Shi et al. 2015, Sec. 4.1). Two configurations of
the paper:

* ``radar``: 5 + 15 frames of 100x100, patch 2, two ConvLSTM layers of 64, 3x3;
* ``mnist``: 10 + 10 frames of 64x64, patch 4, ConvLSTM 128-64-64, 5x5.

Variants of :class:`nowcast.models.EncoderForecaster`: eager fp32, channels_last,
autocast (bf16 and, on CUDA, fp16 with a grad scaler; bf16 is also measured on the CPU
where it works) and ``torch.compile``. The baseline is :class:`NaiveEncoderForecaster`,
written here from the paper's equations the way most public code does it: one
``nn.Conv2d`` per gate and per input/state (8 per ConvLSTM cell), peephole weights, a
Python loop over time, the output convolution applied step by step, no fusion. It has
exactly the same parameters (checked and printed) and, loaded with our weights, the same
outputs (checked in ``--tiny``).

Timing: all variants run alternately (round ``r`` times every variant once), in one
process, after an untimed warm-up step each (also the memory probe); the speed-up of a variant is the median
over rounds of ``t_reference / t_variant`` (wall time; ``cpu_speedup_vs_ref`` the same
with process CPU time, robust on a busy machine with ``--threads 1``;
``speedup_min_times`` the ratio of the fastest steps); sequences/s uses each
variant's fastest step. Peak memory is the peak of tensor bytes allocated *during* one step on top of
what exists before it (weights, gradients' and optimiser's persistent buffers): on
CUDA ``torch.cuda.max_memory_allocated`` minus ``memory_allocated`` before the step; on
the CPU the running sum of the allocation / free events that ``torch.profiler``
(``profile_memory=True``) records during one untimed step (``resource`` maxrss is
monotonic over the process and cannot separate variants, ``tracemalloc`` does not see
torch's allocator).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_info, write_results  # noqa: E402

from nowcast.data.preprocess import patchify, unpatchify  # noqa: E402
from nowcast.models import EncoderForecaster  # noqa: E402

#: The paper's two configurations (Shi et al. 2015, Sec. 4.1 and 4.2).
CONFIGS: dict[str, dict] = {
    "radar": dict(t_in=5, t_out=15, size=100, patch=2, hidden=[64, 64], kernel=3),
    "mnist": dict(t_in=10, t_out=10, size=64, patch=4, hidden=[128, 64, 64], kernel=5),
}
#: Smoke-test sizes: same structure, tiny tensors.
TINY_CONFIGS: dict[str, dict] = {
    "radar": dict(t_in=2, t_out=3, size=8, patch=2, hidden=[4, 4], kernel=3),
    "mnist": dict(t_in=2, t_out=2, size=8, patch=4, hidden=[4, 2, 2], kernel=5),
}


# ---------------------------------------------------------------- naive reference
class NaiveConvLSTMCell(nn.Module):
    """ConvLSTM cell straight from the paper's equations: 8 separate convolutions.

    ``W_x{i,f,c,o}`` (input-to-state, with the gate biases) and ``W_h{i,f,c,o}``
    (state-to-state, no bias; they carry the biases when the cell has no input),
    per-channel peepholes ``w_c{i,f,o}`` ``(C_hid, 1, 1)``.
    """

    def __init__(self, cin: int, hid: int, k: int) -> None:
        super().__init__()
        self.cin = cin
        pad = k // 2
        for g in "ifco":
            if cin:
                setattr(self, f"W_x{g}", nn.Conv2d(cin, hid, k, padding=pad))
            setattr(self, f"W_h{g}", nn.Conv2d(hid, hid, k, padding=pad, bias=not cin))
        self.w_ci = nn.Parameter(torch.zeros(hid, 1, 1))
        self.w_cf = nn.Parameter(torch.zeros(hid, 1, 1))
        self.w_co = nn.Parameter(torch.zeros(hid, 1, 1))

    def _pre(self, g: str, x: Tensor | None, h: Tensor) -> Tensor:
        out = getattr(self, f"W_h{g}")(h)
        return out if x is None else getattr(self, f"W_x{g}")(x) + out

    def forward(self, x: Tensor | None, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        i = torch.sigmoid(self._pre("i", x, h) + self.w_ci * c)
        f = torch.sigmoid(self._pre("f", x, h) + self.w_cf * c)
        c = f * c + i * torch.tanh(self._pre("c", x, h))
        o = torch.sigmoid(self._pre("o", x, h) + self.w_co * c)
        return o * torch.tanh(c), c


class NaiveEncoderForecaster(nn.Module):
    """The paper's encoder-forecaster wired naively (loop over time, then layers)."""

    def __init__(self, patch: int, hidden: list[int], kernel: int) -> None:
        super().__init__()
        self.patch = patch
        cin = patch * patch
        ins = [cin, *hidden[:-1]]
        self.encoder = nn.ModuleList(
            NaiveConvLSTMCell(c, h, kernel) for c, h in zip(ins, hidden, strict=True)
        )
        self.forecaster = nn.ModuleList(
            NaiveConvLSTMCell(0 if i == 0 else c, h, kernel)
            for i, (c, h) in enumerate(zip(ins, hidden, strict=True))
        )
        self.output = nn.Conv2d(sum(hidden), cin, 1)

    def forward(self, inputs: Tensor, n_steps: int) -> Tensor:
        x = patchify(inputs, self.patch)
        b, t, _, hp, wp = x.shape
        state = [
            (x.new_zeros(b, cell.w_ci.shape[0], hp, wp),) * 2 for cell in self.encoder
        ]
        for k in range(t):
            inp = x[:, k]
            for j, cell in enumerate(self.encoder):
                state[j] = cell(inp, *state[j])
                inp = state[j][0]
        outs = []
        for _ in range(n_steps):
            inp = None
            for j, cell in enumerate(self.forecaster):
                state[j] = cell(inp, *state[j])
                inp = state[j][0]
            outs.append(self.output(torch.cat([s[0] for s in state], dim=1)))
        return unpatchify(torch.stack(outs, dim=1), self.patch)


def load_from_ours(naive: NaiveEncoderForecaster, ours: EncoderForecaster) -> None:
    """Copy our model's weights into the naive one (gate by gate)."""
    with torch.no_grad():
        for nstack, ostack in (
            (naive.encoder, ours.encoder),
            (naive.forecaster, ours.forecaster),
        ):
            for ncell, ocell in zip(nstack, ostack.cells, strict=True):
                gw = ocell.gate_weights()
                for g in "ifco":
                    wh = getattr(ncell, f"W_h{g}")
                    wh.weight.copy_(gw[f"W_h{g}"])
                    if ncell.cin:
                        wx = getattr(ncell, f"W_x{g}")
                        wx.weight.copy_(gw[f"W_x{g}"])
                        wx.bias.copy_(gw[f"b_{g}"])
                    else:
                        wh.bias.copy_(gw[f"b_{g}"])
                for g in "ifo":
                    getattr(ncell, f"w_c{g}").copy_(gw[f"W_c{g}"])
        naive.output.load_state_dict(ours.output.state_dict())


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- one train step
class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise :class:`_Timeout` after ``seconds`` (main thread, POSIX only)."""
    if seconds <= 0 or not hasattr(signal, "SIGALRM"):
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        raise _Timeout

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def make_step(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    amp: torch.dtype | None = None,
) -> Callable[[], float]:
    """One training step closure: forward, BCE-with-logits, BPTT, RMSProp."""
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9)
    dev = x.device.type
    scaler = torch.amp.GradScaler(dev) if amp is torch.float16 else None
    n_out = y.shape[1]

    def step() -> float:
        ctx = torch.autocast(dev, dtype=amp) if amp else contextlib.nullcontext()
        with ctx:
            logits = model(x, n_out)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        return float(loss.detach())

    return step


def timed(step: Callable[[], float], device: torch.device) -> tuple[float, float]:
    """Wall and process CPU time (s) of one step."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, time.process_time() - c0


def peak_step_bytes(
    steps: dict[str, Callable[[], float]], device: torch.device
) -> dict[str, float]:
    """Run every step once; peak bytes allocated during it beyond those live before.

    One ``torch.profiler`` session for all variants on the CPU (its start-up costs
    seconds), each step inside a ``record_function`` range that tells them apart.
    """
    peaks: dict[str, float] = {}
    if device.type == "cuda":
        for v, step in steps.items():
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            step()
            torch.cuda.synchronize()
            peaks[v] = float(torch.cuda.max_memory_allocated() - before)
        return peaks
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for v, step in steps.items():
            with record_function(f"probe::{v}"):
                step()
    events = prof.events()
    ranges = {
        e.name.removeprefix("probe::"): e.time_range
        for e in events
        if e.name.startswith("probe::")
    }
    # Allocations are attributed to the innermost op (self memory), frees to the op or
    # to "[memory]" events; their running sum in time order is the live-bytes curve at
    # op granularity (temporaries freed inside one op are not seen).
    mem = sorted(
        (
            e
            for e in events
            if e.self_cpu_memory_usage and not e.name.startswith("probe::")
        ),
        key=lambda e: e.time_range.start,
    )
    for v, r in ranges.items():
        live = peak = 0
        for e in mem:
            if r.start <= e.time_range.start <= r.end:
                live += e.self_cpu_memory_usage
                peak = max(peak, live)
        peaks[v] = float(peak)
    return peaks


def build_variants(
    cfg: dict,
    device: torch.device,
    batch: int,
    compile_: bool,
    compile_timeout: float,
    amp: bool = True,
) -> tuple[dict[str, Callable[[], float]], dict[str, str], dict]:
    """Step closures by variant name, skipped variants with the reason, facts."""
    torch.manual_seed(0)
    x = torch.rand(batch, cfg["t_in"], 1, cfg["size"], cfg["size"], device=device)
    y = torch.rand(batch, cfg["t_out"], 1, cfg["size"], cfg["size"], device=device)

    def ours() -> EncoderForecaster:
        torch.manual_seed(1)
        return EncoderForecaster(
            1, cfg["patch"], cfg["hidden"], cfg["kernel"], cfg["kernel"]
        ).to(device)

    naive = NaiveEncoderForecaster(cfg["patch"], cfg["hidden"], cfg["kernel"])
    naive = naive.to(device)
    ref_model = ours()
    load_from_ours(naive, ref_model)
    facts = {"params_ours": n_params(ref_model), "params_reference": n_params(naive)}
    with torch.no_grad():
        n = min(batch, 2)
        diff = (naive(x[:n], 2) - ref_model(x[:n], 2)).abs().max()
    facts["max_abs_diff_logits"] = float(diff)
    print(
        f"  parameters: ours {facts['params_ours']:,}, reference "
        f"{facts['params_reference']:,}; same weights -> max |logit diff| {diff:.2e}"
    )

    steps: dict[str, Callable[[], float]] = {
        "reference (naive eager fp32)": make_step(naive, x, y)
    }
    skipped: dict[str, str] = {}
    steps["ours eager fp32"] = make_step(ours(), x, y)
    cl = ours().to(memory_format=torch.channels_last)
    steps["ours channels_last"] = make_step(cl, x, y)
    amp_dtypes = [torch.bfloat16] if amp else []
    if amp and device.type == "cuda":
        amp_dtypes.append(torch.float16)
    for dt in amp_dtypes:
        name = f"ours AMP {str(dt).split('.')[-1]}"
        step = make_step(ours(), x, y, amp=dt)
        try:
            step()  # does autocast work here at all?
            steps[name] = step
        except Exception as exc:  # noqa: BLE001 - report and go on
            skipped[name] = f"failed: {type(exc).__name__}: {exc}"[:200]
    name = "ours torch.compile"
    if not compile_:
        skipped[name] = "skipped (--no-compile / --tiny)"
    else:
        step = make_step(torch.compile(ours()), x, y)
        t0 = time.perf_counter()
        try:
            with _time_limit(compile_timeout):
                step()
                step()  # second call: recompiles (if any) happen here too
            steps[name] = step
            facts["compile_s"] = time.perf_counter() - t0
        except _Timeout:
            skipped[name] = f"skipped: compile took > {compile_timeout:.0f} s"
        except Exception as exc:  # noqa: BLE001
            skipped[name] = f"failed: {type(exc).__name__}: {exc}"[:200]
    return steps, skipped, facts


def bench_config(
    name: str,
    cfg: dict,
    device: torch.device,
    batch: int,
    repeats: int,
    compile_: bool,
    compile_timeout: float,
    amp: bool = True,
) -> list[dict]:
    print(f"[{name}] batch {batch}, {cfg}")
    steps, skipped, facts = build_variants(
        cfg, device, batch, compile_, compile_timeout, amp
    )
    if facts["params_ours"] != facts["params_reference"]:
        raise RuntimeError(f"parameter counts differ: {facts}")
    # the untimed warm-up step of every variant (allocator, oneDNN primitives,
    # optimiser state) is also the one whose memory is measured
    peaks = peak_step_bytes(steps, device)
    times: dict[str, list[tuple[float, float]]] = {v: [] for v in steps}
    for r in range(repeats):
        for v, step in steps.items():
            times[v].append(timed(step, device))
        print(
            f"  round {r + 1}/{repeats}: "
            + ", ".join(
                f"{v.split(' ', 1)[-1]} {t[-1][0]:.2f}s" for v, t in times.items()
            )
        )
    ref = "reference (naive eager fp32)"
    rows = []
    for v, ts in times.items():
        pairs = list(zip(times[ref], ts, strict=True))
        wall, cpu = (min(x) for x in zip(*ts, strict=True))
        ref_wall = min(t[0] for t in times[ref])
        rows.append(
            {
                "config": name,
                "variant": v,
                "batch": batch,
                "step_s": wall,
                "cpu_s": cpu,
                "seq_per_s": batch / wall,
                "speedup_vs_ref": statistics.median(a[0] / b[0] for a, b in pairs),
                "speedup_min_times": ref_wall / wall,
                "cpu_speedup_vs_ref": statistics.median(a[1] / b[1] for a, b in pairs),
                "peak_step_MiB": peaks[v] / 2**20,
                "params": facts["params_reference" if v == ref else "params_ours"],
            }
        )
    for v, why in skipped.items():
        rows.append({"config": name, "variant": v, "batch": batch, "note": why})
    if "compile_s" in facts:
        rows[list(steps).index("ours torch.compile")]["note"] = (
            f"compile + 2 steps {facts['compile_s']:.0f} s"
        )
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="smoke-test size")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=None,
        help="sequences per step (default 16 on CUDA, 1 on CPU)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed rounds (default 10 on CUDA, 2 on CPU)",
    )
    parser.add_argument("--configs", default="radar,mnist")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument(
        "--no-amp",
        action="store_true",
        help="skip the autocast variants (bf16 is emulated, slow, on "
        "CPUs without AVX512-BF16 / AMX)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0: torch's default); with 1 thread the "
        "CPU-time columns are robust on a busy machine",
    )
    parser.add_argument(
        "--compile-timeout",
        type=float,
        default=240.0,
        help="seconds allowed for torch.compile's first steps",
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    elif args.tiny and device.type == "cpu":
        # tiny ops on a busy shared machine: OpenMP barriers dominate, use one thread
        torch.set_num_threads(1)
    cuda = device.type == "cuda"
    batch = args.batch or (2 if args.tiny else 16 if cuda else 1)
    repeats = args.repeats or (1 if args.tiny else 10 if cuda else 2)
    table = TINY_CONFIGS if args.tiny else CONFIGS
    names = [c for c in args.configs.split(",") if c]
    for c in names:
        if c not in table:
            raise ValueError(f"unknown config {c!r}; available: {sorted(table)}")
    rows = []
    for c in names:
        rows += bench_config(
            c,
            table[c],
            device,
            batch,
            repeats,
            not (args.no_compile or args.tiny),
            args.compile_timeout,
            not args.no_amp,
        )
    info = machine_info(str(device))
    info["memory_measure"] = (
        "torch.cuda.max_memory_allocated - memory_allocated before the step"
        if cuda
        else "torch.profiler(profile_memory=True): peak of the running sum of "
        "allocations during one step"
    )
    write_results("train_step", info, rows, args.out)
    return rows


if __name__ == "__main__":
    main()
