"""Scores of area-mean rain nowcasts: the series model against persistence and the
area means of field forecasters, on the same region and windows.

Per lead time, the sums of absolute and squared errors (mm/h) and the wet / dry
contingency counts (wet: area-mean rain rate >= ``wet_threshold`` mm/h) are summed over
all windows, and the scores computed once at the end: MAE, RMSE, and
CSI = hits / (hits + misses + false alarms), POD = hits / (hits + misses),
FAR = false alarms / (hits + false alarms) (NaN where the denominator is 0).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nowcast.data.series import SeriesWindowDataset, area_series

__all__ = [
    "SeriesScores",
    "build_field_forecasters",
    "evaluate_series",
    "run_series_evaluation",
    "series_table",
    "write_series_report",
]

SCORES = ("mae", "rmse", "csi", "pod", "far")


class SeriesScores:
    """Per-lead error sums and wet / dry contingency counts of series forecasts.

    Parameters
    ----------
    n_leads : int
        Lead times per forecast.
    wet_threshold : float
        Area-mean rain rate (mm/h) from which an interval counts as wet.
    """

    def __init__(self, n_leads: int, wet_threshold: float = 0.1) -> None:
        self.n_leads = int(n_leads)
        self.wet_threshold = float(wet_threshold)
        # per lead: abs error, squared error, n, hits, misses, false alarms, correct neg.
        self.sums = torch.zeros(7, self.n_leads, dtype=torch.float64)

    def update(self, forecast: Tensor, observed: Tensor) -> None:
        """Add forecasts and observations, both ``(B, n_leads)`` in mm/h."""
        if forecast.shape != observed.shape or forecast.shape[-1] != self.n_leads:
            raise ValueError(
                f"forecast and observed must both be (B, {self.n_leads}), got "
                f"{tuple(forecast.shape)} and {tuple(observed.shape)}"
            )
        f, o = forecast.double().cpu(), observed.double().cpu()
        fw, ow = f >= self.wet_threshold, o >= self.wet_threshold
        self.sums += torch.stack(
            (
                (f - o).abs().sum(0),
                ((f - o) ** 2).sum(0),
                torch.full((self.n_leads,), float(f.shape[0]), dtype=torch.float64),
                (fw & ow).sum(0),
                (~fw & ow).sum(0),
                (fw & ~ow).sum(0),
                (~fw & ~ow).sum(0),
            )
        )

    def compute(self) -> dict[str, list[float]]:
        """Per-lead lists: ``mae``, ``rmse`` (mm/h), ``csi``, ``pod``, ``far``, ``n``."""
        abs_err, sq_err, n, hits, misses, false_alarms, _ = self.sums
        scores = {  # tensors: 0 / 0 gives NaN (no wet case at that lead)
            "mae": abs_err / n,
            "rmse": torch.sqrt(sq_err / n),
            "csi": hits / (hits + misses + false_alarms),
            "pod": hits / (hits + misses),
            "far": false_alarms / (hits + false_alarms),
            "n": n,
        }
        return {k: v.tolist() for k, v in scores.items()}


def build_field_forecasters(
    specs: Mapping[str, Mapping[str, Any]] | None, field_dataset: Any
) -> tuple[dict[str, Any], str | None]:
    """Field forecasters by name from ``{name: {ckpt_path: ...}}`` or baseline specs.

    A spec with ``ckpt_path`` loads a trained forecaster
    (:func:`nowcast.training.checkpoint.load_forecaster`); any other spec is a
    ``_target_`` baseline config, built with the data set's tuned ROVER parameters
    (:func:`nowcast.evaluation.run.tuned_baselines`). Returns the forecasters and
    the note saying which ROVER parameters were used.
    """
    from nowcast.evaluation.run import tuned_baselines
    from nowcast.training.checkpoint import load_forecaster

    out: dict[str, Any] = {}
    baselines = {}
    for name, spec in (specs or {}).items():
        if spec is None:
            continue
        if "ckpt_path" in spec:
            path = Path(str(spec["ckpt_path"]))
            if not path.exists():
                raise FileNotFoundError(
                    f"field forecaster {name!r}: checkpoint {path} does not exist; fix "
                    f"evaluation.field_forecasters.{name}.ckpt_path or drop the entry"
                )
            out[name] = load_forecaster(path)
        else:
            baselines[name] = spec
    built, note = tuned_baselines(baselines, field_dataset)
    return {**out, **built}, note


def _batches(n: int, batch_size: int, max_batches: int | None) -> list[range]:
    starts = range(0, n, batch_size)
    if max_batches is not None:
        starts = starts[: int(max_batches)]
    return [range(s, min(s + batch_size, n)) for s in starts]


def evaluate_series(
    series_model: Callable[[Tensor], Tensor] | None,
    field_forecasters: Mapping[str, Any],
    dataset: SeriesWindowDataset,
    wet_threshold: float = 0.1,
    batch_size: int = 16,
    max_batches: int | None = None,
    model_name: str = "series model",
) -> dict[str, dict[str, list[float]]]:
    """Score the series model, persistence and field forecasters' area means.

    Parameters
    ----------
    series_model : callable, optional
        ``inputs (B, input_len, F) -> (B, output_len, 1)`` mm/h (e.g.
        :meth:`nowcast.models.series.SeriesForecaster.predict`); None to leave out.
    field_forecasters : mapping of str to Forecaster
        ``predict(inputs (B, T, 1, H, W), n_steps)`` grey-level forecasts (ConvLSTM,
        ROVER, ...), reduced to the region's area mean (:func:`area_series`).
    dataset : SeriesWindowDataset
        The series windows; its ``field`` gives the fields of the same windows.
    wet_threshold : float
        Wet / dry threshold of the area mean, mm/h.
    batch_size, max_batches : int
        Windows per batch; evaluate only the first ``max_batches`` batches.
    model_name : str
        Name of the series model in the results.

    Returns
    -------
    dict
        Name -> :meth:`SeriesScores.compute` (``"Persistence"`` repeats the last
        observed area mean at every lead).
    """
    n_leads = dataset.output_len
    names = ([model_name] if series_model is not None else []) + ["Persistence"]
    scores = {
        k: SeriesScores(n_leads, wet_threshold) for k in [*names, *field_forecasters]
    }
    region = torch.from_numpy(dataset.region)
    scale = dataset.field.scale
    for idx in _batches(len(dataset), batch_size, max_batches):
        items = [dataset[i] for i in idx]
        inputs = torch.stack([item[0] for item in items])
        targets = torch.stack([item[1] for item in items])
        observed = targets[..., 0]
        last = inputs[:, -1:, 0].expand(-1, n_leads)
        scores["Persistence"].update(last, observed)
        if series_model is not None:
            with torch.no_grad():
                scores[model_name].update(series_model(inputs)[..., 0], observed)
        if field_forecasters:
            fields = torch.stack([dataset.field[i][0] for i in idx])
        for name, forecaster in field_forecasters.items():
            with torch.no_grad():
                grey = forecaster.predict(fields, n_leads)[:, :, 0].float().cpu()
            means = area_series(grey, region, scale, dataset.wet_pixel_threshold)
            scores[name].update(means[..., 0], observed)
    return {name: s.compute() for name, s in scores.items()}


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v == v]
    return float(np.mean(finite)) if finite else float("nan")


def _fmt(v: float) -> str:
    return "n/a" if v != v else f"{v:.3f}"


def series_table(
    results: Mapping[str, Mapping[str, list[float]]],
    frame_minutes: float = 6.0,
    leads: list[int] | None = None,
) -> str:
    """Markdown table: per forecaster and lead (minutes), MAE, RMSE, CSI, POD, FAR.

    ``leads`` (1-based) picks the lead rows (default: all); a "mean" row per
    forecaster averages the leads.
    """
    lines = [
        "| forecaster | lead (min) | MAE (mm/h) | RMSE (mm/h) | CSI | POD | FAR |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, res in results.items():
        n_leads = len(res["mae"])
        for lead in leads or range(1, n_leads + 1):
            row = [_fmt(res[k][lead - 1]) for k in SCORES]
            lines.append(
                f"| {name} | {lead * frame_minutes:g} | " + " | ".join(row) + " |"
            )
        lines.append(
            f"| {name} | mean | "
            + " | ".join(_fmt(_mean(res[k])) for k in SCORES)
            + " |"
        )
    return "\n".join(lines) + "\n"


def write_series_report(
    results: Mapping[str, Mapping[str, list[float]]],
    out_dir: str | Path,
    frame_minutes: float = 6.0,
    notes: list[str] | None = None,
) -> dict[str, Path]:
    """Write ``series.md`` (the per-lead table, notes first) and ``series.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / "series.md", out_dir / "series.json"
    text = "".join(f"{n}\n\n" for n in notes or []) + series_table(
        results, frame_minutes
    )
    md.write_text(text)
    js.write_text(json.dumps(dict(results), indent=2))
    return {"markdown": md, "json": js}


def _key(name: str) -> str:
    """A result-key prefix from a forecaster name: ``"ROVER1"`` -> ``"rover1"``."""
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def run_series_evaluation(
    model: Any,
    test_set: SeriesWindowDataset,
    cfg: Mapping[str, Any],
    out_dir: str | Path,
    write: bool = True,
) -> dict[str, float]:
    """The series test report from a run config: scores, table, flat lead means.

    Reads ``evaluation.field_forecasters`` (``{name: {ckpt_path}}`` or baseline
    specs), ``evaluation.wet_threshold`` (mm/h, default 0.1), ``evaluation.batch_size``,
    ``evaluation.max_batches`` and ``data.frame_minutes``; writes ``series.md`` /
    ``series.json`` under ``out_dir`` when ``write``.

    Returns
    -------
    dict
        Lead means of the model (``mae``, ``rmse``, ``csi``, ``pod``, ``far``) and of
        every other forecaster (``persistence_mae``, ``rover1_csi``, ...).
    """
    evaluation = dict(cfg.get("evaluation") or {})
    data = dict(cfg.get("data") or {})
    forecasters, rover_note = build_field_forecasters(
        evaluation.get("field_forecasters"), test_set.field
    )
    name = str(cfg.get("model_name") or "series model")
    results = evaluate_series(
        model.predict if hasattr(model, "predict") else model,
        forecasters,
        test_set,
        wet_threshold=float(evaluation.get("wet_threshold", 0.1)),
        batch_size=int(evaluation.get("batch_size", 16)),
        max_batches=evaluation.get("max_batches"),
        model_name=name,
    )
    if write:
        notes = [
            f"Area-mean rain rate of a {int(test_set.region.sum())}-pixel region, "
            f"{len(test_set)} test windows; wet: area mean >= "
            f"{float(evaluation.get('wet_threshold', 0.1)):g} mm/h."
        ]
        notes += [rover_note] if rover_note else []
        write_series_report(
            results, out_dir, float(data.get("frame_minutes", 6.0)), notes
        )
    flat: dict[str, float] = {}
    for forecaster, res in results.items():
        prefix = "" if forecaster == name else f"{_key(forecaster)}_"
        flat.update({f"{prefix}{k}": _mean(res[k]) for k in SCORES})
    return flat
