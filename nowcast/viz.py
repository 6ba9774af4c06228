"""Pictures of radar sequences, forecasts, motion fields and verification scores.

Researchers look at forecasts before they trust numbers. This module draws them with
plain matplotlib, without pyplot: every function builds a
:class:`matplotlib.figure.Figure` and returns it (or an animation's HTML / GIF path),
so nothing ever opens a window, any backend (including Agg) works, and a notebook shows
the returned figure exactly once. Callers own the figures they get.

* :func:`radar_cmap` -- discrete radar colour maps in dBZ, mm/h or normalised grey;
* :func:`plot_sequence` -- a strip of inputs | truth | each forecaster, one row each,
  lead time in minutes as column titles, one colour bar in physical units;
* :func:`animate` -- truth and forecasts side by side, as a self-contained HTML
  (``jshtml``) animation or a GIF written with Pillow;
* :func:`plot_metrics_by_lead_time` -- the paper's score-versus-lead-time figure
  (Shi et al. 2015, Fig. 5): one panel per metric, one line per forecaster, optional
  published lead-averaged values as dashed lines;
* :func:`plot_flow` -- an estimated motion field (quiver or streamlines) over the radar
  image.

Arrays may be numpy arrays or torch tensors (detached and moved to the CPU here).
Frames are drawn with ``origin="upper"``: row 0 at the top, rows growing downwards, the
usual image convention of radar composites and of the ``(H, W)`` tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import rcParams
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import (
    BoundaryNorm,
    LinearSegmentedColormap,
    ListedColormap,
    to_hex,
)
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = [
    "radar_cmap",
    "available_units",
    "plot_sequence",
    "animate",
    "plot_metrics_by_lead_time",
    "plot_flow",
    "lead_time_labels",
    "metric_label",
]

ToPhysical = Callable[[np.ndarray], Any]

# ---------------------------------------------------------------------------------
# Colour scales
# ---------------------------------------------------------------------------------

# A classic radar palette (light blue -> green -> yellow -> red -> magenta), one colour
# per 5 dBZ class from 0 to 70 dBZ.
_DBZ_COLOURS = (
    "#c6e9fb",  # 0-5
    "#7fd3f6",  # 5-10
    "#2c9ef0",  # 10-15
    "#1d55d8",  # 15-20
    "#20d63a",  # 20-25
    "#12a62a",  # 25-30
    "#0b7420",  # 30-35
    "#f5ee2a",  # 35-40
    "#e9bd12",  # 40-45
    "#f68b10",  # 45-50
    "#f0361b",  # 50-55
    "#c8121a",  # 55-60
    "#92091d",  # 60-65
    "#e22ddc",  # 65-70
)
_RAIN_COLOURS = (
    "#a8dcf7",  # 0.1-0.5 mm/h
    "#3aa2ef",  # 0.5-1
    "#1d55d8",  # 1-2
    "#20c43a",  # 2-5
    "#0b7420",  # 5-10
    "#f2e52a",  # 10-20
    "#f68b10",  # 20-30
    "#e1231b",  # 30-50
    "#92091d",  # 50-100
)


@dataclass(frozen=True)
class _Scale:
    """A discrete colour scale: class boundaries, one colour per class, a label."""

    levels: tuple[float, ...]
    colours: tuple[str, ...]
    over: str
    label: str


def _grey_colours(n: int) -> tuple[str, ...]:
    """``n`` colours spread over the dBZ palette, for normalised grey levels."""
    ramp = LinearSegmentedColormap.from_list("radar", list(_DBZ_COLOURS))
    return tuple(to_hex(ramp(x)) for x in np.linspace(0.0, 1.0, n))


_SCALES: dict[str, _Scale] = {
    "dBZ": _Scale(
        levels=tuple(float(v) for v in range(0, 75, 5)),
        colours=_DBZ_COLOURS,
        over="#6a0dad",
        label="reflectivity (dBZ)",
    ),
    "mm/h": _Scale(
        levels=(0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 50.0, 100.0),
        colours=_RAIN_COLOURS,
        over="#e22ddc",
        label="rain rate (mm/h)",
    ),
    "1": _Scale(
        levels=tuple(np.round(np.linspace(0.1, 1.0, 10), 2).tolist()),
        colours=_grey_colours(9),
        over="#6a0dad",
        label="normalised intensity",
    ),
}
_UNIT_ALIASES = {
    "dbz": "dBZ",
    "mm/h": "mm/h",
    "mm/hr": "mm/h",
    "mm h-1": "mm/h",
    "mm hr-1": "mm/h",
    "1": "1",
}
_UNDER = (1.0, 1.0, 1.0, 0.0)  # below the lowest level: transparent (white page)
_BAD = "#b0b0b0"  # masked pixels / NaN: grey


def available_units() -> tuple[str, ...]:
    """Names of the colour scales :func:`radar_cmap` knows."""
    return tuple(_SCALES)


def _scale(units: str) -> tuple[str, _Scale]:
    key = (
        _UNIT_ALIASES.get(str(units).strip().lower())
        if isinstance(units, str)
        else None
    )
    if key is None:
        raise ValueError(
            f"unknown units {units!r}; available: {list(_SCALES)} "
            "(convert the data first, e.g. with to_physical=lambda p: p * 70 - 10 for "
            "HKO grey levels in dBZ)"
        )
    return key, _SCALES[key]


def radar_cmap(units: str = "dBZ") -> tuple[ListedColormap, BoundaryNorm]:
    """A discrete radar colour map and the matching norm.

    Parameters
    ----------
    units : {"dBZ", "mm/h", "1"}
        Physical units of the data to colour (case-insensitive; ``"mm h-1"`` etc. are
        accepted). ``"dBZ"``: 14 classes of 5 dBZ from 0 to 70 dBZ. ``"mm/h"``: the
        classes 0.1, 0.5, 1, 2, 5, 10, 20, 30, 50, 100 mm/h (0.5 mm/h is the paper's
        rain / no-rain threshold, Shi et al. 2015, Sec. 4.2). ``"1"``: normalised grey
        levels in [0, 1], 9 classes of 0.1 from 0.1.

    Returns
    -------
    cmap : matplotlib.colors.ListedColormap
        One colour per class; values below the lowest level are transparent (the white
        page shows through), values above the highest take a distinct "over" colour, and
        masked / NaN pixels are grey.
    norm : matplotlib.colors.BoundaryNorm
        Maps values to classes; ``norm.boundaries`` are the class edges in ``units``.

    Raises
    ------
    ValueError
        If ``units`` is not one of :func:`available_units`.
    """
    key, scale = _scale(units)
    cmap = ListedColormap(list(scale.colours), name=f"radar_{key}").with_extremes(
        under=_UNDER, over=scale.over, bad=_BAD
    )
    norm = BoundaryNorm(list(scale.levels), ncolors=len(scale.colours))
    return cmap, norm


def _colorbar(fig: Figure, cax: Any, units: str) -> Any:
    """One colour bar in physical units, drawn into the axes ``cax``."""
    key, scale = _scale(units)
    cmap, norm = radar_cmap(key)
    return fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap),
        cax=cax,
        extend="max",
        ticks=list(scale.levels),
        label=scale.label,
        format="%g",
    )


def _image_grid(
    nrows: int,
    ncols: int,
    hw: tuple[int, int],
    panel_size: float,
    row_gap: float = 0.28,
    top: float = 0.3,
    dpi: float | None = None,
) -> tuple[Figure, np.ndarray, Any]:
    """A figure of ``nrows x ncols`` image panels and a colour bar axes on the right.

    The layout is computed here in inches (panel size, fixed margins for titles, row
    labels and the colour bar) rather than by a layout engine: constrained layout
    costs seconds for strips of ~100 panels and would run again on every animation
    frame.
    """
    h, w = hw
    ph = panel_size
    pw = panel_size * min(max(w / h, 0.25), 4.0)
    left, right, bottom, col_gap = 0.35, 1.05, 0.1, 0.06
    width = left + ncols * pw + (ncols - 1) * col_gap + right
    height = top + nrows * ph + (nrows - 1) * row_gap + bottom
    fig = Figure(figsize=(width, height), dpi=dpi)
    gs = fig.add_gridspec(
        nrows,
        ncols,
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=col_gap / pw,
        hspace=row_gap / ph,
    )
    axes = np.array(
        [[fig.add_subplot(gs[r, c]) for c in range(ncols)] for r in range(nrows)]
    )
    span = height - top - bottom
    cax = fig.add_axes(
        (
            (width - right + 0.15) / width,
            (bottom + 0.05 * span) / height,
            0.14 / width,
            0.9 * span / height,
        )
    )
    return fig, axes, cax


# ---------------------------------------------------------------------------------
# Array helpers
# ---------------------------------------------------------------------------------


def _to_numpy(x: Any, name: str) -> np.ndarray:
    """A float numpy copy of a numpy array or torch tensor (detached, on the CPU)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing it
        x = x.detach().cpu().float().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{name} must be a numpy array or torch tensor of numbers, "
            f"got {type(x).__name__}"
        ) from err
    return arr


def _frames(x: Any, name: str) -> np.ndarray:
    """``x`` as a ``(T, H, W)`` float array.

    Accepts ``(T, H, W)``, ``(T, 1, H, W)`` and a single-sample, single-channel
    ``(1, T, 1, H, W)`` forecaster output.
    """
    a = _to_numpy(x, name)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    elif a.ndim == 5 and a.shape[0] == 1 and a.shape[2] == 1:
        a = a[0, :, 0]
    if a.ndim != 3 or min(a.shape) < 1:
        raise ValueError(
            f"{name} must be (T, H, W) or (T, 1, H, W), got shape {a.shape}; "
            "pick one sample and channel of a batch with x[b, :, c]"
        )
    return a


def _physical(a: np.ndarray, to_physical: ToPhysical | None, name: str) -> np.ndarray:
    """Apply ``to_physical`` (normalised grey -> plotted units), keeping the shape."""
    if to_physical is None:
        return a
    if not callable(to_physical):
        raise TypeError(
            "to_physical must be a callable mapping normalised values to the plotted "
            f"units (e.g. lambda p: p * 70 - 10), got {type(to_physical).__name__}"
        )
    out = _to_numpy(to_physical(a), f"to_physical({name})")
    if out.shape != a.shape:
        raise ValueError(
            f"to_physical must keep the shape of {name}: got {out.shape} from {a.shape}"
        )
    return out


def lead_time_labels(
    n: int, frame_minutes: float = 6.0, inputs: bool = False
) -> list[str]:
    """Column titles in minutes.

    Parameters
    ----------
    n : int
        Number of frames.
    frame_minutes : float
        Minutes between frames (6 for HKO).
    inputs : bool
        If true, label observed input frames ending at the analysis time:
        ``"-24 min" ... "0 min"`` for ``n = 5``; otherwise forecast leads
        ``"+6 min" ... `` for ``1 .. n`` steps ahead.

    Returns
    -------
    list of str
        ``n`` labels; whole minutes print without decimals (``"+6 min"``), others with
        one (``"+2.5 min"``).
    """

    def fmt(m: float, sign: str) -> str:
        text = f"{m:.0f}" if float(m).is_integer() else f"{m:.1f}"
        return f"{sign}{text} min"

    if inputs:
        return [fmt(-(n - 1 - i) * frame_minutes + 0.0, "") for i in range(n)]
    return [fmt((i + 1) * frame_minutes, "+") for i in range(n)]


def _check_frame_minutes(frame_minutes: float) -> float:
    if not np.isfinite(frame_minutes) or frame_minutes <= 0:
        raise ValueError(
            f"frame_minutes must be a positive number, got {frame_minutes!r}"
        )
    return float(frame_minutes)


def _pick(n: int, max_frames: int | None) -> np.ndarray:
    """Indices of at most ``max_frames`` evenly spaced frames, first and last kept."""
    if max_frames is None or max_frames >= n:
        return np.arange(n)
    if int(max_frames) != max_frames or max_frames < 1:
        raise ValueError(f"max_frames must be a positive integer, got {max_frames!r}")
    if max_frames == 1:
        return np.array([n - 1])
    return np.unique(np.round(np.linspace(0, n - 1, int(max_frames))).astype(int))


def _mask(mask: Any, hw: tuple[int, int]) -> np.ndarray | None:
    if mask is None:
        return None
    m = _to_numpy(mask, "mask")
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.shape != hw:
        raise ValueError(
            f"mask must be (H, W) = {hw} like the frames, got shape {m.shape}"
        )
    return m.astype(bool)


def _show(ax: Any, img: np.ndarray, units: str) -> Any:
    """Draw one frame with the radar colour map, without ticks (labels stay visible)."""
    cmap, norm = radar_cmap(units)
    im = ax.imshow(img, cmap=cmap, norm=norm, origin="upper", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    return im


# ---------------------------------------------------------------------------------
# Sequence strips
# ---------------------------------------------------------------------------------


def plot_sequence(
    inputs: Any,
    truth: Any,
    forecasts: Mapping[str, Any] | None = None,
    frame_minutes: float = 6.0,
    units: str = "dBZ",
    to_physical: ToPhysical | None = None,
    mask: Any = None,
    max_frames: int | None = None,
    panel_size: float = 1.4,
    title: str | None = None,
) -> Figure:
    """A strip of radar frames: inputs | truth | each forecaster, one row each.

    Parameters
    ----------
    inputs : array or tensor, (T_in, H, W) or (T_in, 1, H, W), or None
        Observed frames ending at the analysis time; columns titled ``"-24 min"`` ...
        ``"0 min"``. ``None`` leaves the row out.
    truth : array or tensor, (T_out, H, W) or (T_out, 1, H, W), or None
        Observed frames 1 .. T_out steps after the last input; columns titled
        ``"+6 min"`` .... ``None`` leaves the row out.
    forecasts : dict of str to array or tensor, each (T_out, H, W) or (T_out, 1, H, W)
        One row per forecaster, labelled with its name, in the dict's order. A
        forecaster's ``predict`` output ``(1, T_out, 1, H, W)`` is accepted as is.
    frame_minutes : float
        Minutes between frames (6 for HKO, Shi et al. 2015).
    units : {"dBZ", "mm/h", "1"}
        Units of the plotted values: picks the colour scale (:func:`radar_cmap`) and the
        colour bar label.
    to_physical : callable, optional
        Maps the given arrays (e.g. normalised grey in [0, 1]) to ``units``, e.g.
        ``lambda p: p * 70 - 10`` for HKO-7 dBZ. ``None``: arrays are already in
        ``units``.
    mask : array or tensor, (H, W), bool, optional
        True where a pixel is to be hidden (noise / clutter / outside coverage, the
        pixels excluded from verification); drawn grey. Pass ``~valid`` if you hold a
        mask of valid pixels.
    max_frames : int, optional
        Show at most this many evenly spaced frames per row (the first and the last are
        kept; column titles give the true times).
    panel_size : float
        Size of one frame in inches.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        Rows in the order inputs, truth, forecasters; the first panel of each row is
        labelled (y label) ``"inputs"``, ``"truth"`` or the forecaster's name; the inputs
        row and the first forecast-time row carry the time titles; one shared colour
        bar (the last axes) in physical units. Unused cells are removed.

    Raises
    ------
    ValueError
        On arrays that are not ``(T, H, W)``, frames of different sizes, forecasts of a
        length other than the truth's, unknown ``units`` or nothing to plot.
    """
    frame_minutes = _check_frame_minutes(frame_minutes)
    _scale(units)
    rows = _sequence_rows(inputs, truth, forecasts)
    hw = rows[0][1].shape[1:]
    m = _mask(mask, hw)

    picks = [_pick(a.shape[0], max_frames) for _, a, _ in rows]
    fig, grid, cax = _strip_grid(picks, hw, panel_size, titled=bool(title))
    titled = _titled_rows([is_input for _, _, is_input in rows])
    for r, ((label, a, is_input), idx) in enumerate(zip(rows, picks, strict=True)):
        phys = _physical(a[idx], to_physical, label)
        times = lead_time_labels(a.shape[0], frame_minutes, inputs=is_input)
        titles = [times[i] for i in idx] if titled[r] else None
        _draw_row(fig, grid[r], phys, label, titles, m, units)
    _colorbar(fig, cax, units)
    if title:
        fig.suptitle(title, y=1 - 0.08 / fig.get_figheight(), va="top")
    return fig


def _strip_grid(
    picks: Sequence[Sequence[int]],
    hw: tuple[int, int],
    panel_size: float,
    titled: bool,
) -> tuple[Figure, np.ndarray, Any]:
    """The panel grid of a strip: one row per frame selection in ``picks``.

    As many columns as the longest row; ``titled`` leaves room for a figure title.
    """
    ncols = max(len(p) for p in picks)
    top = 0.3 + (0.3 if titled else 0.0)
    return _image_grid(len(picks), ncols, hw, panel_size, top=top)


def _titled_rows(is_input: Sequence[bool]) -> list[bool]:
    """Rows of a strip that carry time titles: the inputs, and the first output row."""
    titled, output_titled = [], False
    for inp in is_input:
        titled.append(inp or not output_titled)
        output_titled = output_titled or not inp
    return titled


def _draw_row(
    fig: Figure,
    axes: Sequence[Axes],
    frames: np.ndarray,
    label: str,
    titles: Sequence[str] | None,
    hide: np.ndarray | None,
    units: str,
) -> None:
    """Draw ``frames`` (n, H, W) into the first n ``axes`` and remove the rest.

    The first panel is labelled ``label``; panel i is titled ``titles[i]`` when given;
    pixels where ``hide`` (H, W) is True are masked (drawn grey).
    """
    for c, ax in enumerate(axes):
        if c >= len(frames):
            fig.delaxes(ax)
            continue
        img = frames[c] if hide is None else np.ma.masked_array(frames[c], mask=hide)
        _show(ax, img, units)
        if titles is not None:
            ax.set_title(titles[c], fontsize="small")
        if c == 0:
            ax.set_ylabel(label)


def _sequence_rows(
    inputs: Any, truth: Any, forecasts: Mapping[str, Any] | None
) -> list[tuple[str, np.ndarray, bool]]:
    """``(label, frames (T, H, W), is_input)`` rows of :func:`plot_sequence`, checked:
    one frame size for all, one frame count for the forecast-time rows."""
    rows: list[tuple[str, np.ndarray, bool]] = []
    if inputs is not None:
        rows.append(("inputs", _frames(inputs, "inputs"), True))
    if truth is not None:
        rows.append(("truth", _frames(truth, "truth"), False))
    for name, fc in dict(forecasts or {}).items():
        rows.append((str(name), _frames(fc, f"forecasts[{name!r}]"), False))
    if not rows:
        raise ValueError("nothing to plot: inputs, truth and forecasts are all empty")

    def where(label: str) -> str:
        return label if label in ("inputs", "truth") else f"forecasts[{label!r}]"

    hw = rows[0][1].shape[1:]
    first_out = None
    for label, a, is_input in rows:
        if a.shape[1:] != hw:
            raise ValueError(
                f"all frames must share one size (H, W): {where(label)} is "
                f"{a.shape[1:]} but {where(rows[0][0])} is {hw}"
            )
        if is_input:
            continue
        if first_out is None:
            first_out = (label, a.shape[0])
        elif a.shape[0] != first_out[1]:
            raise ValueError(
                f"{where(label)} has {a.shape[0]} frames but {where(first_out[0])} "
                f"has {first_out[1]}; every forecast-time row must cover the same leads"
            )
    return rows


# ---------------------------------------------------------------------------------
# Animations
# ---------------------------------------------------------------------------------

_ANIMATION_FORMATS = ("html", "gif")


def animate(
    truth: Any,
    forecasts: Mapping[str, Any] | None = None,
    frame_minutes: float = 6.0,
    units: str = "dBZ",
    to_physical: ToPhysical | None = None,
    fmt: str = "html",
    path: str | Path | None = None,
    interval_ms: int = 500,
    dpi: int = 72,
    panel_size: float = 3.0,
    mask: Any = None,
) -> str | Path:
    """Animate truth and forecasts side by side, one frame per lead time.

    Parameters
    ----------
    truth : array or tensor, (T, H, W) or (T, 1, H, W), or None
        Observed frames 1 .. T steps after the analysis time (left panel).
        ``None`` animates the forecasts only.
    forecasts : dict of str to array or tensor, each (T, H, W) or (T, 1, H, W)
        One panel per forecaster, titled with its name.
    frame_minutes : float
        Minutes between frames; the figure title shows the lead (``"lead +6 min"``).
    units, to_physical
        As in :func:`plot_sequence`.
    fmt : {"html", "gif"}
        ``"html"``: return a self-contained JavaScript (``jshtml``) animation, frames
        embedded as base64 PNG (display it with ``IPython.display.HTML``); also written
        to ``path`` if given. ``"gif"``: write a GIF with matplotlib's Pillow writer to
        ``path`` (required) and return the path.
    path : str or Path, optional
        Output file.
    interval_ms : int
        Milliseconds between frames.
    dpi : int
        Resolution of the frames.
    panel_size : float
        Size of one panel in inches.
    mask : array or tensor of bool, (H, W), optional
        Pixels to hide (True = hide: noise, clutter, outside coverage), drawn grey
        as in :func:`plot_sequence`.

    Returns
    -------
    str or pathlib.Path
        The HTML string (``fmt="html"``) or the GIF's path (``fmt="gif"``).

    Raises
    ------
    ValueError
        On an unknown ``fmt`` or ``units``, a GIF without ``path``, arrays of different
        shapes, or nothing to animate.
    """
    _check_animation_format(fmt, path)
    frame_minutes = _check_frame_minutes(frame_minutes)
    _scale(units)
    panels = _animation_panels(truth, forecasts)
    shape = panels[0][1].shape
    data = [_physical(a, to_physical, label) for label, a in panels]
    data = _hidden(data, _mask(mask, shape[1:]))
    n_frames = shape[0]
    leads = lead_time_labels(n_frames, frame_minutes)
    labels = [label for label, _ in panels]
    fig, images, suptitle = _animation_figure(
        labels, data, leads[0], units, panel_size, dpi
    )

    def update(t: int) -> list[Any]:
        for im, d in zip(images, data, strict=True):
            im.set_data(d[t])
        suptitle.set_text(f"lead {leads[t]}")
        return [*images, suptitle]

    anim = FuncAnimation(fig, update, frames=n_frames, interval=interval_ms, blit=False)
    return _write_animation(anim, fmt, path, interval_ms, dpi)


def _check_animation_format(fmt: str, path: str | Path | None) -> None:
    """Refuse an unknown animation ``fmt``, or a GIF without a ``path`` to write."""
    if fmt not in _ANIMATION_FORMATS:
        raise ValueError(f"unknown fmt {fmt!r}; available: {list(_ANIMATION_FORMATS)}")
    if fmt == "gif" and path is None:
        raise ValueError("fmt='gif' writes a file: pass path='forecast.gif'")


def _hidden(data: list[np.ndarray], hide: np.ndarray | None) -> list[np.ndarray]:
    """Each (T, H, W) array masked where ``hide`` (H, W) is True (as is without it)."""
    if hide is None:
        return data
    return [np.ma.masked_array(d, mask=np.broadcast_to(hide, d.shape)) for d in data]


def _animation_figure(
    labels: Sequence[str],
    data: Sequence[np.ndarray],
    first_lead: str,
    units: str,
    panel_size: float,
    dpi: int,
) -> tuple[Figure, list[Any], Any]:
    """The first frame of an animation: one titled panel per (T, H, W) array.

    Returns the figure, the panels' images and the figure title (``"lead ..."``), the
    artists :func:`animate` updates frame by frame.
    """
    fig, grid, cax = _image_grid(
        1, len(labels), data[0].shape[1:], panel_size, top=0.6, dpi=dpi
    )
    images = []
    for ax, label, d in zip(grid[0], labels, data, strict=True):
        images.append(_show(ax, d[0], units))
        ax.set_title(label)
    _colorbar(fig, cax, units)
    suptitle = fig.suptitle(
        f"lead {first_lead}", y=1 - 0.06 / fig.get_figheight(), va="top"
    )
    return fig, images, suptitle


def _animation_panels(
    truth: Any, forecasts: Mapping[str, Any] | None
) -> list[tuple[str, np.ndarray]]:
    """``(title, frames (T, H, W))`` of :func:`animate`, all of one shape."""
    panels: list[tuple[str, np.ndarray]] = []  # (title, frames)
    where: list[str] = []  # how the caller named each panel, for error messages
    if truth is not None:
        panels.append(("truth", _frames(truth, "truth")))
        where.append("truth")
    for name, fc in (forecasts or {}).items():
        where.append(f"forecasts[{name!r}]")
        panels.append((str(name), _frames(fc, where[-1])))
    if not panels:
        raise ValueError("nothing to animate: truth is None and forecasts is empty")
    shape = panels[0][1].shape
    for (_, a), desc in zip(panels, where, strict=True):
        if a.shape != shape:
            raise ValueError(
                f"{desc} has shape {a.shape} (T, H, W) but {where[0]} has {shape}; "
                "all panels must cover the same lead times and grid"
            )
    return panels


def _write_animation(
    anim: FuncAnimation, fmt: str, path: Any, interval_ms: float, dpi: float
) -> str | Path:
    """Save ``anim`` as a GIF at ``path`` (returned), or return (and write) HTML."""
    if fmt == "gif":
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        anim.save(out, writer=PillowWriter(fps=1000.0 / interval_ms), dpi=dpi)
        return out
    html = anim.to_jshtml(fps=1000.0 / interval_ms, default_mode="loop")
    if path is not None:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(html, encoding="utf-8")
    return html


# ---------------------------------------------------------------------------------
# Scores against lead time
# ---------------------------------------------------------------------------------

# The paper's order (Shi et al. 2015, Table 2 and Fig. 5), then other common scores:
# key -> (display name, units or "").
_METRIC_LABELS: dict[str, tuple[str, str]] = {
    "rainfall_mse": ("rainfall MSE", "(mm/h)$^2$"),
    "csi": ("CSI", ""),
    "far": ("FAR", ""),
    "pod": ("POD", ""),
    "correlation": ("correlation", ""),
    "rainfall_mae": ("rainfall MAE", "mm/h"),
    "mae": ("MAE", "mm/h"),
    "mse": ("MSE", ""),
    "bias": ("bias", "mm/h"),
    "hss": ("HSS", ""),
    "b_mse": ("B-MSE", ""),
    "b_mae": ("B-MAE", ""),
    "skill": ("skill vs persistence", ""),
}
_PAPER_ORDER = ("rainfall_mse", "csi", "far", "pod", "correlation")


def metric_label(name: str) -> str:
    """Axis label for a metric key, with units: ``"rainfall MSE ((mm/h)$^2$)"``.

    Thresholded variants such as ``"csi_2"`` or ``"csi@2.0"`` take the family's label
    followed by the suffix (``"CSI 2"``); unknown keys are shown as they are.
    """
    key = name.lower()
    for family in sorted(_METRIC_LABELS, key=len, reverse=True):
        if key == family or (key.startswith(family) and not key[len(family)].isalnum()):
            display, unit = _METRIC_LABELS[family]
            rest = name[len(family) :].lstrip("_@ -=:")
            text = f"{display} {rest}".strip()
            return f"{text} ({unit})" if unit else text
    return name


def _series(v: Any, where: str) -> np.ndarray | None:
    """A 1-D float series or None when ``v`` is not 1-D."""
    try:
        a = _to_numpy(v, where)
    except TypeError:
        return None
    return a if a.ndim == 1 and a.size >= 1 else None


def plot_metrics_by_lead_time(
    scores: Mapping[str, Mapping[str, Sequence[float]]],
    lead_minutes: float | Sequence[float] = 6.0,
    metrics: Sequence[str] | None = None,
    reference: Mapping[str, Mapping[str, float]] | None = None,
    ncols: int | None = None,
    panel_size: tuple[float, float] = (3.4, 2.8),
    bands: Mapping[str, Mapping[str, Any]] | None = None,
) -> Figure:
    """Scores against lead time: one panel per metric, one line per forecaster.

    Reproduces the layout of Shi et al. (2015), Fig. 5 (CSI, FAR, POD and correlation
    against lead time for ConvLSTM, FC-LSTM and ROVER).

    Parameters
    ----------
    scores : dict of str to dict of str to 1-D sequence
        ``scores[forecaster][metric][k]`` is the score at the (k+1)-th lead time, e.g.
        the per-lead output of the evaluation (a list, numpy array or tensor).
    lead_minutes : float or sequence of float
        Either the step between frames in minutes (leads ``step, 2 step, ...``; 6 for
        HKO) or the explicit lead times in minutes, one per score.
    metrics : sequence of str, optional
        Metrics to draw, in this order. Default: every metric that all forecasters hold
        as a 1-D series, the paper's ``rainfall_mse, csi, far, pod, correlation`` first
        and the rest in the order of the first forecaster.
    reference : dict of str to dict of str to float, optional
        Published lead-averaged values, e.g.
        ``{"ConvLSTM (paper)": {"csi": 0.577, "far": 0.195}}`` (Shi et al. 2015,
        Table 2), drawn as dashed horizontal lines in panels whose metric they hold; a
        reference named like a forecaster takes its colour.
    ncols : int, optional
        Panels per row; default ``min(n_metrics, 3)``.
    panel_size : (float, float)
        Width and height of one panel in inches.
    bands : dict of str to dict of str to (lo, hi), optional
        Per-lead confidence bands, ``bands[forecaster][metric] = (lo, hi)`` with two
        1-D series as long as the scores (or ``{"lo": ..., "hi": ...}``, as in the
        evaluation's ``ci_per_lead``), drawn as shaded areas in the forecaster's
        colour; metrics or forecasters without a band are drawn without one.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per metric (titled and y-labelled with the metric's name and units,
        x label ``"lead time (min)"``), solid lines with markers for forecasters (their
        y-data are the given scores), shaded bands (``PolyCollection``) where given,
        dashed lines for references, one legend for the figure (``fig.legends[0]``).

    Raises
    ------
    ValueError
        On empty ``scores``, a requested metric missing or not 1-D for a forecaster,
        no common 1-D metric, or lead times that do not match the scores' length.
    """
    if not scores:
        raise ValueError("scores is empty; expected {forecaster: {metric: per-lead}}")
    names = [str(n) for n in scores]
    metrics = _choose_metrics(scores, metrics)
    table = _score_table(scores, metrics)
    leads_for = _lead_axis(lead_minutes)
    fig, grid = _panel_grid(len(metrics), ncols, panel_size, extra_width=1.8)
    colour = _line_colours([*names, *map(str, reference or {})])
    for ax, k in zip(grid, metrics, strict=False):
        for n in names:
            y = table[n][k]
            x = leads_for(n, k, y.size)
            ax.plot(x, y, marker="o", ms=3.5, lw=1.5, color=colour[n], label=n)
            band = _band((bands or {}).get(n, {}), k, y.size, f"bands[{n!r}][{k!r}]")
            if band is not None:
                ax.fill_between(x, *band, color=colour[n], alpha=0.2, lw=0)
        for r, vals in (reference or {}).items():
            if k in vals and np.isfinite(float(vals[k])):
                label = f"{r} (published)" if str(r) in names else str(r)
                ax.axhline(
                    float(vals[k]), ls="--", lw=1.2, color=colour[str(r)], label=label
                )
        _label_lead_panel(ax, metric_label(k))
    _figure_legend(fig, grid[: len(metrics)])
    return fig


def _line_colours(names: Sequence[str]) -> dict[str, str]:
    """One colour of matplotlib's cycle per distinct name, in order."""
    cycle = [c["color"] for c in rcParams["axes.prop_cycle"]]
    colour: dict[str, str] = {}
    for n in names:
        colour.setdefault(n, cycle[len(colour) % len(cycle)])
    return colour


def _choose_metrics(
    scores: Mapping[str, Mapping[str, Any]], metrics: Sequence[str] | None
) -> list[str]:
    """The metrics to draw: as given, or every 1-D one all forecasters hold."""
    if metrics is None:
        first = next(iter(scores.values()))
        common = [
            k
            for k in first
            if all(
                k in s and _series(s[k], f"scores[{n!r}][{k!r}]") is not None
                for n, s in scores.items()
            )
        ]
        metrics = [k for k in _PAPER_ORDER if k in common] + [
            k for k in common if k not in _PAPER_ORDER
        ]
        if not metrics:
            raise ValueError(
                "no metric is held as a 1-D per-lead series by every forecaster; "
                f"got {{{', '.join(f'{n!r}: {list(s)}' for n, s in scores.items())}}}"
            )
    metrics = list(metrics)
    if not metrics:
        raise ValueError("metrics is empty; name at least one, e.g. ['csi']")
    return metrics


def _score_table(
    scores: Mapping[str, Mapping[str, Any]], metrics: Sequence[str]
) -> dict[str, dict[str, np.ndarray]]:
    """``{forecaster: {metric: 1-D array}}``, refusing missing or non-1-D scores."""
    table: dict[str, dict[str, np.ndarray]] = {}
    for n, s in scores.items():
        table[str(n)] = {}
        for k in metrics:
            if k not in s:
                raise ValueError(
                    f"scores[{n!r}] has no metric {k!r}; it holds {sorted(s)}"
                )
            a = _series(s[k], f"scores[{n!r}][{k!r}]")
            if a is None:
                raise ValueError(
                    f"scores[{n!r}][{k!r}] must be a 1-D per-lead series, got shape "
                    f"{np.shape(_to_numpy(s[k], k))}; split thresholds into keys "
                    "such as 'csi_2'"
                )
            table[str(n)][k] = a
    return table


def _lead_axis(
    lead_minutes: float | Sequence[float],
) -> Callable[[str, str, int], np.ndarray]:
    """``leads_for(forecaster, metric, length)``: lead times (min) of a series."""
    if np.ndim(lead_minutes) == 0:
        step = _check_frame_minutes(float(lead_minutes))  # type: ignore[arg-type]
        return lambda n, k, length: step * np.arange(1, length + 1)
    lead_axis = _to_numpy(lead_minutes, "lead_minutes")
    if lead_axis.ndim != 1:
        raise ValueError(
            f"lead_minutes must be a number or a 1-D sequence, got {lead_axis.shape}"
        )

    def leads_for(n: str, k: str, length: int) -> np.ndarray:
        if length != lead_axis.size:
            raise ValueError(
                f"scores[{n!r}][{k!r}] has {length} values but lead_minutes has "
                f"{lead_axis.size}; give one lead time per score or a step in minutes"
            )
        return lead_axis

    return leads_for


def _panel_grid(
    n_panels: int,
    ncols: int | None,
    panel_size: tuple[float, float],
    extra_width: float = 0.0,
) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure of ``n_panels`` axes, ``ncols`` (<= 3) a row."""
    ncols = int(ncols) if ncols else min(n_panels, 3)
    if ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}")
    nrows = -(-n_panels // ncols)
    fig = Figure(
        figsize=(panel_size[0] * ncols + extra_width, panel_size[1] * nrows),
        layout="constrained",
    )
    grid = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in grid[n_panels:]:
        fig.delaxes(ax)
    return fig, grid


def _label_lead_panel(ax: Axes, label: str) -> None:
    ax.set_title(label)
    ax.set_ylabel(label)
    ax.set_xlabel("lead time (min)")
    ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
    ax.grid(True, alpha=0.3)


def _figure_legend(fig: Figure, axes: Sequence[Axes]) -> None:
    """One legend right of the panels, each label once."""
    handles, labels = [], []
    for ax in axes:
        for hd, lb in zip(*ax.get_legend_handles_labels(), strict=True):
            if lb not in labels:
                handles.append(hd)
                labels.append(lb)
    fig.legend(handles, labels, loc="outside right upper", fontsize="small")


def _band(
    held: Mapping[str, Any], metric: str, length: int, where: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(lo, hi)`` of a per-lead band, or None when ``held`` has none for ``metric``."""
    if metric not in held:
        return None
    b = held[metric]
    lo, hi = (b["lo"], b["hi"]) if isinstance(b, Mapping) else b
    lo = np.asarray(_to_numpy(lo, where), dtype=float).ravel()
    hi = np.asarray(_to_numpy(hi, where), dtype=float).ravel()
    if lo.size != length or hi.size != length:
        raise ValueError(
            f"{where} must hold two series of {length} values (lo, hi), got "
            f"{lo.size} and {hi.size}"
        )
    return lo, hi


# ---------------------------------------------------------------------------------
# Motion fields
# ---------------------------------------------------------------------------------

_FLOW_KINDS = ("quiver", "streamplot")


def plot_flow(
    frame: Any,
    flow: Any,
    step: int = 8,
    kind: str = "quiver",
    units: str = "dBZ",
    to_physical: ToPhysical | None = None,
    title: str | None = None,
    arrow_colour: str = "black",
    panel_size: float = 5.0,
) -> Figure:
    """A motion field over the radar image.

    Parameters
    ----------
    frame : array or tensor, (H, W) or (1, H, W) or (1, 1, H, W)
        The radar image (e.g. the last input frame the flow was estimated on).
    flow : array or tensor, (2, H, W)
        Displacement in pixels per time step, ``flow[0] = u`` along +x (columns, to the
        right) and ``flow[1] = v`` along +y (rows, downwards), the layout of
        ``estimate_flow`` and of semi-Lagrangian advection.
    step : int
        Draw one vector / sample the field every ``step`` pixels, at pixel centres
        ``step // 2, step // 2 + step, ...``.
    kind : {"quiver", "streamplot"}
        Arrows (their length proportional to the speed, scaled so that the fastest is
        0.9 ``step`` long; a key gives the scale) or streamlines (width proportional to
        speed).
    units, to_physical
        As in :func:`plot_sequence`, for the image.
    title : str, optional
        Axes title; default names the kind and the maximum speed.
    arrow_colour : str
        Colour of the arrows / streamlines.
    panel_size : float
        Size of the image in inches.

    Returns
    -------
    matplotlib.figure.Figure
        One image axes (``origin="upper"``, y axis pointing down) with the vectors drawn
        in data coordinates, so an arrow points the way the field moves on screen
        (``v > 0`` points down), and a colour bar axes. For ``kind="quiver"`` the
        :class:`~matplotlib.quiver.Quiver` holds ``U``/``V`` = the sampled ``u``/``v``.

    Raises
    ------
    ValueError
        On a flow that is not ``(2, H, W)`` on the frame's grid, non-finite flow, an
        unknown ``kind`` or ``units``, or ``step < 1``.
    """
    if kind not in _FLOW_KINDS:
        raise ValueError(f"unknown kind {kind!r}; available: {list(_FLOW_KINDS)}")
    if int(step) != step or step < 1:
        raise ValueError(f"step must be a positive integer (pixels), got {step!r}")
    step = int(step)
    _scale(units)
    img, f = _frame_and_flow(frame, flow)
    img = _physical(img, to_physical, "frame")

    h, w = img.shape
    rows = np.arange(step // 2, h, step)
    cols = np.arange(step // 2, w, step)
    u = f[0][np.ix_(rows, cols)]
    v = f[1][np.ix_(rows, cols)]
    speed = np.hypot(u, v)
    vmax = float(speed.max()) if speed.size else 0.0

    fig, grid, cax = _image_grid(1, 1, (h, w), panel_size)
    ax = grid[0, 0]
    _show(ax, img, units)
    _draw_flow(ax, kind, rows, cols, u, v, vmax, step, arrow_colour)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_title(
        title if title is not None else f"motion ({kind}), max speed {vmax:.2g} px/step"
    )
    _colorbar(fig, cax, units)
    return fig


def _frame_and_flow(frame: Any, flow: Any) -> tuple[np.ndarray, np.ndarray]:
    """The (H, W) frame and the finite (2, H, W) flow of :func:`plot_flow`, checked."""
    img = _to_numpy(frame, "frame")
    while img.ndim > 2 and img.shape[0] == 1:
        img = img[0]
    if img.ndim != 2:
        raise ValueError(
            f"frame must be (H, W) or (1, H, W), got shape {_to_numpy(frame, 'f').shape}"
        )
    f = _to_numpy(flow, "flow")
    if f.ndim != 3 or f.shape[0] != 2 or f.shape[1:] != img.shape:
        raise ValueError(
            f"flow must be (2, H, W) = (2, {img.shape[0]}, {img.shape[1]}) with (u, v) "
            f"in pixels per step on the frame's grid, got shape {f.shape}"
        )
    if not np.isfinite(f).all():
        raise ValueError("flow contains NaN or inf; fill them (e.g. with 0) first")
    return img, f


def _draw_flow(
    ax: Axes,
    kind: str,
    rows: np.ndarray,
    cols: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    vmax: float,
    step: int,
    arrow_colour: str,
) -> None:
    """Arrows (``quiver``) or stream lines of the sampled flow ``(u, v)`` on ``ax``."""
    if kind == "quiver":
        xx, yy = np.meshgrid(cols, rows)
        # angles/scale_units "xy": arrows live in data coordinates, so with the image's
        # downward y axis a positive v points down, as the echo moves.
        scale = vmax / (0.9 * step) if vmax > 0 else 1.0
        ax.quiver(
            xx,
            yy,
            u,
            v,
            angles="xy",
            scale_units="xy",
            scale=scale,
            color=arrow_colour,
            width=0.004,
        )
    else:
        lw = 0.6 + 2.0 * np.hypot(u, v) / vmax if vmax > 0 else 0.8
        ax.streamplot(
            cols.astype(float),
            rows.astype(float),
            u,
            v,
            color=arrow_colour,
            linewidth=lw,
            density=1.2,
            arrowsize=1.2,
        )
