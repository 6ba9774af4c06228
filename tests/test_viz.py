"""Tests of nowcast.viz: the figures' content, not only that they draw.

Each plot is also saved as a PNG (the animation as a GIF) under ``test-artifacts/`` at
the repository root (git-ignored) for a human to look at after the run.
"""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgba
from matplotlib.image import AxesImage
from matplotlib.quiver import Quiver
from PIL import Image

from nowcast import viz

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def hko_dbz(p):
    """HKO-7 grey level -> dBZ (Shi et al. 2017): dBZ = p * 70 - 10."""
    return p * 70.0 - 10.0


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def blob_sequence(n: int, h: int = 24, w: int = 32, start: int = 0) -> np.ndarray:
    """A Gaussian echo moving one pixel right and down per frame, grey levels in [0, 1]."""
    yy, xx = np.mgrid[0:h, 0:w]
    t = np.arange(start, start + n)[:, None, None]
    return np.exp(-((xx - 8 - t) ** 2 + (yy - 6 - t) ** 2) / 18.0).astype(np.float32)


def image_axes(fig):
    """Axes holding a radar image (excludes the colour bar), in creation order."""
    return [ax for ax in fig.axes if ax.images]


# ---------------------------------------------------------------------------------
# Colour maps
# ---------------------------------------------------------------------------------


def test_radar_cmap_dbz_levels_and_extremes():
    cmap, norm = viz.radar_cmap("dBZ")
    # The contract: 0..70 dBZ in 5 dBZ classes -> 15 edges, 14 colours.
    np.testing.assert_array_equal(norm.boundaries, np.arange(0, 75, 5))
    assert cmap.N == 14
    # Class of a value: 2.5 dBZ is in [0, 5) -> 0; 67 dBZ in [65, 70) -> 13.
    assert int(norm(2.5)) == 0 and int(norm(67.0)) == 13
    # Below 0 dBZ transparent, above 70 a colour distinct from the top class.
    assert cmap(norm(-5.0))[3] == 0.0
    assert cmap(norm(80.0)) != cmap(13)
    assert cmap(np.ma.masked_array([1.0], mask=[True]))[0][3] > 0  # grey, visible


def test_radar_cmap_rain_rate_levels_and_aliases():
    cmap, norm = viz.radar_cmap("mm h-1")
    levels = [0.1, 0.5, 1, 2, 5, 10, 20, 30, 50, 100]  # the contract's classes
    np.testing.assert_allclose(norm.boundaries, levels)
    assert cmap.N == len(levels) - 1
    # 0.5 mm/h is the paper's rain / no-rain threshold: it starts class 1.
    assert int(norm(0.49)) == 0 and int(norm(0.5)) == 1
    assert cmap(norm(0.05))[3] == 0.0
    cmap_upper, norm_upper = viz.radar_cmap("DBZ")
    np.testing.assert_array_equal(norm_upper.boundaries, np.arange(0, 75, 5))


def test_radar_cmap_unknown_units():
    with pytest.raises(ValueError, match=r"unknown units 'K'.*available.*dBZ"):
        viz.radar_cmap("K")


# ---------------------------------------------------------------------------------
# Sequence strips
# ---------------------------------------------------------------------------------


def test_plot_sequence_layout_titles_labels_and_data(artifacts):
    inputs = blob_sequence(5)
    truth = torch.from_numpy(blob_sequence(3, start=5))[:, None]  # (T, 1, H, W)
    persistence = np.repeat(inputs[-1:], 3, axis=0)
    model = torch.from_numpy(0.9 * blob_sequence(3, start=5))[None, :, None]  # 5-D
    fig = viz.plot_sequence(
        inputs,
        truth,
        {"persistence": persistence, "ConvLSTM": model},
        frame_minutes=6.0,
        to_physical=hko_dbz,
    )
    fig.savefig(artifacts / "plot_sequence.png", dpi=60)

    imgs = image_axes(fig)
    # 5 input frames + 3 rows (truth, 2 forecasters) x 3 leads, plus one colour bar.
    assert len(imgs) == 5 + 3 * 3
    assert len(fig.axes) == len(imgs) + 1
    titles = [ax.get_title() for ax in imgs]
    # Inputs end at the analysis time, 6 minutes apart; forecasts are 6, 12, 18 ahead.
    assert titles[:5] == ["-24 min", "-18 min", "-12 min", "-6 min", "0 min"]
    assert titles[5:8] == ["+6 min", "+12 min", "+18 min"]
    row_starts = [0, 5, 8, 11]
    assert [imgs[i].get_ylabel() for i in row_starts] == [
        "inputs",
        "truth",
        "persistence",
        "ConvLSTM",
    ]
    expected = [
        *hko_dbz(inputs.astype(np.float64)),
        *hko_dbz(truth[:, 0].numpy().astype(np.float64)),
        *hko_dbz(persistence.astype(np.float64)),
        *hko_dbz(model[0, :, 0].numpy().astype(np.float64)),
    ]
    for ax, want in zip(imgs, expected, strict=True):
        (im,) = ax.images
        assert isinstance(im, AxesImage)
        np.testing.assert_array_equal(np.asarray(im.get_array()), want)
    # One colour bar in physical units with the radar classes as ticks.
    cbar_ax = next(ax for ax in fig.axes if not ax.images)
    assert cbar_ax.get_ylabel() == "reflectivity (dBZ)"
    np.testing.assert_array_equal(cbar_ax.get_yticks(), np.arange(0, 75, 5))


def test_plot_sequence_max_frames_mask_and_rain_units(artifacts):
    truth = blob_sequence(15) * 40.0  # mm/h
    mask = np.zeros(truth.shape[1:], dtype=bool)
    mask[:4, :4] = True
    fig = viz.plot_sequence(
        None, truth, {"copy": truth}, units="mm/h", mask=mask, max_frames=4
    )
    fig.savefig(artifacts / "plot_sequence_rain_masked.png", dpi=60)
    imgs = image_axes(fig)
    assert len(imgs) == 2 * 4
    # Evenly spaced with both ends kept: round(linspace(0, 14, 4)) = 0, 5, 9, 14,
    # i.e. leads (index + 1) * 6 min.
    assert [ax.get_title() for ax in imgs[:4]] == [
        "+6 min",
        "+36 min",
        "+60 min",
        "+90 min",
    ]
    assert imgs[4].get_title() == ""  # forecaster rows share the truth's columns
    for ax, k in zip(imgs[:4], [0, 5, 9, 14], strict=True):
        arr = ax.images[0].get_array()
        np.testing.assert_array_equal(arr.data, truth[k])
        np.testing.assert_array_equal(np.ma.getmaskarray(arr), mask)
    cbar_ax = next(ax for ax in fig.axes if not ax.images)
    assert cbar_ax.get_ylabel() == "rain rate (mm/h)"


def test_plot_sequence_bad_inputs():
    x = blob_sequence(3)
    with pytest.raises(ValueError, match=r"all frames must share one size"):
        viz.plot_sequence(x, x[:, :10], {})
    with pytest.raises(
        ValueError, match=r"forecasts\['model'\] has 2 frames but truth has 3"
    ):
        viz.plot_sequence(x, x, {"model": x[:2]})
    with pytest.raises(ValueError, match=r"must be \(T, H, W\) or \(T, 1, H, W\)"):
        viz.plot_sequence(x, np.stack([x, x]), {})  # a batch of two
    with pytest.raises(ValueError, match=r"unknown units 'dbm'"):
        viz.plot_sequence(x, x, {}, units="dbm")
    with pytest.raises(ValueError, match=r"nothing to plot"):
        viz.plot_sequence(None, None, {})
    with pytest.raises(ValueError, match=r"to_physical must keep the shape"):
        viz.plot_sequence(x, x, {}, to_physical=lambda p: p[0])
    with pytest.raises(ValueError, match=r"mask must be \(H, W\)"):
        viz.plot_sequence(x, x, {}, mask=np.zeros((5, 5), bool))


# ---------------------------------------------------------------------------------
# Animations
# ---------------------------------------------------------------------------------


def test_animate_html_embeds_one_frame_per_lead():
    truth = blob_sequence(4)
    html = viz.animate(truth, {"persistence": np.repeat(truth[:1], 4, axis=0)}, dpi=40)
    assert isinstance(html, str) and "<script" in html
    frames = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=\\\n]+)", html)
    assert len(frames) == 4
    decoded = [
        base64.b64decode(f.replace("\\\n", "").replace("\n", "")) for f in frames
    ]
    pngs = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in decoded]
    # The echo moves in the truth panel, so consecutive frames must differ.
    assert all(not np.array_equal(a, b) for a, b in zip(pngs, pngs[1:], strict=False))


def test_animate_gif_has_one_frame_per_lead(artifacts):
    truth = torch.from_numpy(blob_sequence(5))
    out = viz.animate(
        truth,
        {"model": truth.numpy()},
        fmt="gif",
        path=artifacts / "animate.gif",
        to_physical=hko_dbz,
        dpi=40,
    )
    assert Path(out) == artifacts / "animate.gif"
    with Image.open(out) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == 5
        gif.seek(0)
        first = np.asarray(gif.convert("RGB"))
        gif.seek(4)
        last = np.asarray(gif.convert("RGB"))
    assert not np.array_equal(first, last)
    Image.fromarray(first).save(artifacts / "animate_first_frame.png")


def test_animate_bad_inputs(tmp_path):
    x = blob_sequence(3)
    with pytest.raises(ValueError, match=r"unknown fmt 'mp4'.*html.*gif"):
        viz.animate(x, {}, fmt="mp4")
    with pytest.raises(ValueError, match=r"pass path="):
        viz.animate(x, {}, fmt="gif")
    with pytest.raises(
        ValueError, match=r"forecasts\['model'\] has shape \(2, 24, 32\)"
    ):
        viz.animate(x, {"model": x[:2]}, fmt="gif", path=tmp_path / "a.gif")
    with pytest.raises(ValueError, match=r"unknown units"):
        viz.animate(x, {}, units="inches")


# ---------------------------------------------------------------------------------
# Scores against lead time
# ---------------------------------------------------------------------------------

# Published lead-averaged values, Shi et al. 2015, Table 2 (see PAPER.md).
PAPER = {
    "ConvLSTM": {"rainfall_mse": 1.420, "csi": 0.577, "far": 0.195, "pod": 0.660,
                 "correlation": 0.908},
    "ROVER2": {"rainfall_mse": 1.684, "csi": 0.522, "far": 0.301, "pod": 0.642,
               "correlation": 0.850},
}  # fmt: skip


def forecaster_lines(ax):
    return [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]


def test_plot_metrics_by_lead_time_panels_lines_and_reference(artifacts):
    # Arbitrary per-lead series (inputs, not results): the plot must hold them exactly.
    scores = {
        "ConvLSTM": {
            "correlation": np.array([0.95, 0.92, 0.9]),
            "mae": [0.5, 0.6, 0.7],
            "csi": torch.tensor([0.7, 0.6, 0.5], dtype=torch.float64),
            "rainfall_mse": [1.0, 1.4, 1.9],
            "csi_by_threshold": np.ones((5, 3)),  # 2-D: skipped by default
        },
        "ROVER2": {
            "rainfall_mse": [1.2, 1.7, 2.2],
            "csi": [0.65, 0.52, 0.41],
            "correlation": [0.9, 0.85, 0.8],
        },
    }
    fig = viz.plot_metrics_by_lead_time(scores, lead_minutes=6.0, reference=PAPER)
    fig.savefig(artifacts / "plot_metrics_by_lead_time.png", dpi=60)
    # Default: metrics common to all forecasters and 1-D, the paper's order first
    # ("mae" is missing for ROVER2, the 2-D entry is skipped).
    assert [ax.get_title() for ax in fig.axes] == [
        "rainfall MSE ((mm/h)$^2$)",
        "CSI",
        "correlation",
    ]
    for ax, key in zip(fig.axes, ["rainfall_mse", "csi", "correlation"], strict=True):
        assert ax.get_xlabel() == "lead time (min)"
        lines = forecaster_lines(ax)
        assert [ln.get_label() for ln in lines] == ["ConvLSTM", "ROVER2"]
        for ln, name in zip(lines, scores, strict=True):
            np.testing.assert_allclose(ln.get_ydata(), np.asarray(scores[name][key]))
            np.testing.assert_array_equal(ln.get_xdata(), [6.0, 12.0, 18.0])
            assert ln.get_marker() == "o"
        dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        assert [ln.get_label() for ln in dashed] == [
            "ConvLSTM (published)",
            "ROVER2 (published)",
        ]
        for ln, name in zip(dashed, PAPER, strict=True):
            np.testing.assert_allclose(ln.get_ydata(), [PAPER[name][key]] * 2)
        # A reference named like a forecaster shares its colour.
        assert to_rgba(dashed[0].get_color()) == to_rgba(lines[0].get_color())
    assert "(mm/h)" in fig.axes[0].get_ylabel()
    legend_texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend_texts == [
        "ConvLSTM",
        "ROVER2",
        "ConvLSTM (published)",
        "ROVER2 (published)",
    ]


def test_plot_metrics_explicit_leads_and_selection():
    scores = {"a": {"csi_2": [0.3, 0.2], "far": [0.1, 0.2]}}
    fig = viz.plot_metrics_by_lead_time(scores, lead_minutes=[5, 10], metrics=["csi_2"])
    (ax,) = fig.axes
    assert ax.get_ylabel() == "CSI 2"
    (ln,) = ax.get_lines()
    np.testing.assert_array_equal(ln.get_xdata(), [5, 10])
    np.testing.assert_array_equal(ln.get_ydata(), [0.3, 0.2])


def test_plot_metrics_bad_inputs():
    scores = {"a": {"csi": [0.3, 0.2]}}
    with pytest.raises(ValueError, match=r"scores is empty"):
        viz.plot_metrics_by_lead_time({})
    with pytest.raises(ValueError, match=r"scores\['a'\] has no metric 'pod'.*csi"):
        viz.plot_metrics_by_lead_time(scores, metrics=["pod"])
    with pytest.raises(ValueError, match=r"has 2 values but lead_minutes has 3"):
        viz.plot_metrics_by_lead_time(scores, lead_minutes=[6, 12, 18])
    with pytest.raises(ValueError, match=r"must be a 1-D per-lead series"):
        viz.plot_metrics_by_lead_time({"a": {"csi": np.ones((2, 2))}}, metrics=["csi"])
    with pytest.raises(ValueError, match=r"no metric is held as a 1-D"):
        viz.plot_metrics_by_lead_time({"a": {"csi": [1.0]}, "b": {"far": [1.0]}})
    with pytest.raises(ValueError, match=r"frame_minutes must be a positive"):
        viz.plot_metrics_by_lead_time(scores, lead_minutes=0)


# ---------------------------------------------------------------------------------
# Motion fields
# ---------------------------------------------------------------------------------


def quiver_of(fig) -> Quiver:
    (q,) = [c for c in fig.axes[0].collections if isinstance(c, Quiver)]
    return q


def test_plot_flow_quiver_holds_sampled_flow(artifacts):
    h, w, step = 24, 32, 8
    rows, cols = np.mgrid[0:h, 0:w]
    flow = np.stack([cols / 10.0, rows / 20.0 - 0.5])  # varies in space, both signs
    fig = viz.plot_flow(
        torch.from_numpy(blob_sequence(1))[0], torch.from_numpy(flow), step=step,
        to_physical=hko_dbz,
    )  # fmt: skip
    fig.savefig(artifacts / "plot_flow_quiver.png", dpi=60)
    q = quiver_of(fig)
    # Samples at pixel centres step // 2 + k * step: rows 4, 12, 20; cols 4, 12, 20, 28.
    sub_r, sub_c = np.meshgrid([4, 12, 20], [4, 12, 20, 28], indexing="ij")
    np.testing.assert_array_equal(q.X, sub_c.ravel())
    np.testing.assert_array_equal(q.Y, sub_r.ravel())
    np.testing.assert_allclose(q.U, flow[0][sub_r, sub_c].ravel())
    np.testing.assert_allclose(q.V, flow[1][sub_r, sub_c].ravel())
    np.testing.assert_array_equal(
        fig.axes[0].images[0].get_array(), hko_dbz(blob_sequence(1)[0].astype(float))
    )


@pytest.mark.parametrize(
    ("u", "v"), [(0.0, 2.0), (0.0, -2.0), (2.0, 0.0), (1.5, 1.5)]
)  # fmt: skip
def test_plot_flow_arrows_point_where_the_field_moves(u, v):
    """Arrow tips land at (x + u / s, y + v / s) in image (row-down) coordinates."""
    flow = np.empty((2, 16, 16))
    flow[0], flow[1] = u, v
    fig = viz.plot_flow(np.zeros((16, 16)), flow, step=8)
    fig.draw_without_rendering()
    q, ax = quiver_of(fig), fig.axes[0]
    assert ax.yaxis_inverted()  # rows go down on screen
    verts = q.get_paths()[0].vertices  # arrow polygon relative to its tail
    tip = verts[np.argmax(np.hypot(*verts.T))]
    tail_px = ax.transData.transform([q.X[0], q.Y[0]])
    tip_data = ax.transData.inverted().transform(
        tail_px + q.get_transform().transform(tip)
    )
    # Expected tip: tail + (u, v) / scale in data units (scale_units="xy").
    want = np.array([q.X[0] + u / q.scale, q.Y[0] + v / q.scale])
    np.testing.assert_allclose(tip_data, want, atol=0.05)
    # On screen (display y grows upwards) v > 0 must point down.
    screen = ax.transData.transform(want) - tail_px
    assert np.sign(screen[1]) == -np.sign(v) and np.sign(screen[0]) == np.sign(u)


def test_plot_flow_streamplot_follows_the_flow(artifacts):
    flow = np.zeros((2, 32, 32))
    flow[1] = 1.0  # straight down the rows
    fig = viz.plot_flow(
        blob_sequence(1, 32, 32)[0] * 50, flow, step=4, kind="streamplot"
    )
    fig.savefig(artifacts / "plot_flow_streamplot.png", dpi=60)
    (lc,) = [c for c in fig.axes[0].collections if isinstance(c, LineCollection)]
    segs = np.array([s for s in lc.get_segments() if len(s) == 2])
    d = segs[:, 1] - segs[:, 0]  # streamline segments run along the trajectory
    assert len(d) > 10
    # Downwards (+rows) everywhere: no segment goes up or sideways.
    assert np.all(d[:, 1] >= 0) and np.mean(d[:, 1] > 0) > 0.9
    np.testing.assert_allclose(d[:, 0], 0.0, atol=1e-9)


def test_plot_flow_bad_inputs():
    img = np.zeros((16, 16))
    with pytest.raises(ValueError, match=r"flow must be \(2, H, W\) = \(2, 16, 16\)"):
        viz.plot_flow(img, np.zeros((16, 16, 2)))
    with pytest.raises(ValueError, match=r"unknown kind 'arrows'.*quiver"):
        viz.plot_flow(img, np.zeros((2, 16, 16)), kind="arrows")
    with pytest.raises(ValueError, match=r"step must be a positive integer"):
        viz.plot_flow(img, np.zeros((2, 16, 16)), step=0)
    bad = np.zeros((2, 16, 16))
    bad[0, 3, 3] = np.nan
    with pytest.raises(ValueError, match=r"flow contains NaN"):
        viz.plot_flow(img, bad)
    with pytest.raises(ValueError, match=r"unknown units"):
        viz.plot_flow(img, np.zeros((2, 16, 16)), units="K")


def test_viz_never_touches_pyplot():
    """No window can pop up: the module draws on bare Figures, pyplot never loads."""
    code = (
        "import sys, numpy as np\n"
        "from nowcast import viz\n"
        "x = np.zeros((2, 4, 4))\n"
        "viz.plot_sequence(x, x, {'m': x}).savefig('/dev/null', format='png')\n"
        "viz.animate(x, {'m': x})\n"
        "viz.plot_flow(x[0], np.zeros((2, 4, 4)), step=2)\n"
        "viz.plot_metrics_by_lead_time({'m': {'csi': [0.5, 0.4]}})\n"
        "print('matplotlib.pyplot' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_animate_mask_hides_pixels():
    truth = blob_sequence(3)  # the echo moves, so unmasked panels change every frame

    def first_and_last(mask):
        html = viz.animate(
            truth, {}, dpi=40, mask=mask, to_physical=hko_dbz
        )  # PNG frames
        frames = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=\\\n]+)", html)
        pngs = [
            np.asarray(
                Image.open(
                    io.BytesIO(
                        base64.b64decode(f.replace("\\\n", "").replace("\n", ""))
                    )
                ).convert("RGB")
            )
            for f in (frames[0], frames[-1])
        ]
        # below the title (0.6 in = 24 px at dpi 40), only the panels are drawn
        return pngs[0][30:], pngs[1][30:]

    a, b = first_and_last(None)
    assert not np.array_equal(a, b)
    a, b = first_and_last(np.ones(truth.shape[1:], bool))  # everything hidden
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match=r"mask must be \(H, W\)"):
        viz.animate(truth, {}, mask=np.zeros((5, 5), bool))


def test_plot_metrics_draws_the_given_bands():
    from matplotlib.collections import PolyCollection

    scores = {"a": {"csi": [0.5, 0.4]}, "b": {"csi": [0.3, 0.2]}}
    bands = {"a": {"csi": {"lo": [0.45, 0.3], "hi": [0.55, 0.5]}}}  # none for "b"
    fig = viz.plot_metrics_by_lead_time(scores, lead_minutes=6.0, bands=bands)
    (ax,) = fig.axes
    (poly,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    xy = poly.get_paths()[0].vertices
    # the shaded area spans the given lows and highs at leads 6 and 12 min
    assert {tuple(v) for v in xy} >= {
        (6.0, 0.45),
        (12.0, 0.3),
        (6.0, 0.55),
        (12.0, 0.5),
    }
    with pytest.raises(ValueError, match=r"two series of 2 values"):
        viz.plot_metrics_by_lead_time(scores, bands={"a": {"csi": ([0.1], [0.2])}})
