"""The inspection notebook runs end to end on a tiny checkpoint, and is committed clean.

``notebooks/inspect_forecasts.ipynb`` is executed with nbclient against a checkpoint
trained here in seconds (the real training code, a tiny config as in
``tests/training/conftest.py``) on a small processed radar file with a blob moving at a
known velocity, stored as ``motion_u`` / ``motion_v`` like the synthetic data set does.
The executed notebook is kept in the test's ``tmp_path`` as an artefact.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
import xarray as xr
from hydra import compose, initialize_config_dir
from support import load_script, processed_dataset, tiny_run_overrides

from nowcast.data.radar import write_radar
from nowcast.training.trainer import train

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "inspect_forecasts.ipynb"
CONFIG_DIR = str(REPO / "configs")

SIZE = 32  # frame size (pixels)
U, V = 0.75, 0.5  # the blob's velocity, pixels per step along +x (columns), +y (rows)
N_WINDOWS = 2  # strips the notebook draws
N_FORECASTERS = 5  # ConvLSTM, Persistence, ROVER1-3
INPUT_LEN, OUTPUT_LEN = 2, 3


def _fake_processed(path: Path, n_frames: int = 240) -> Path:
    """One day of 6-minute frames (six 40-frame blocks): two blobs moving at (U, V).

    Grey levels in [0, 1], a noise mask flagging the first column, the HKO-7 dBZ range
    and the true motion ``motion_u`` / ``motion_v`` (time, y, x), in pixels per step.
    """
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    t = np.arange(n_frames, dtype=np.float32)[:, None, None]
    frames = np.zeros((n_frames, SIZE, SIZE), dtype=np.float32)
    for y0, x0, amp in ((8.0, 4.0, 0.9), (20.0, 14.0, 0.7)):
        cx = (x0 + U * t) % SIZE
        cy = (y0 + V * t) % SIZE
        frames += amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0**2))
    frames = np.clip(frames, 0.0, 1.0)
    ds = processed_dataset(frames, noise_first_column=True)
    for name, value in (("motion_u", U), ("motion_v", V)):
        ds[name] = xr.DataArray(
            np.full(frames.shape, value, dtype=np.float32),
            dims=("time", "y", "x"),
            attrs={"units": "processed pixels per step"},
        )
    return write_radar(ds, path)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of a few training steps on the fake file (real training code)."""
    root = tmp_path_factory.mktemp("notebook")
    radar = _fake_processed(root / "processed.nc")
    overrides = [
        *tiny_run_overrides(radar, INPUT_LEN, OUTPUT_LEN),
        "trainer.max_steps=3",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "logging.progress_bar=false",
        "logging.print_summary=false",
        "evaluate_after_training=false",
    ]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    train(cfg, run_dir=root / "run")
    path = root / "run" / "checkpoints" / "best.pt"
    assert path.is_file()
    return path


def _outputs(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def _figure_axes(outputs: list[nbformat.NotebookNode]) -> list[int]:
    """Axes counts of the displayed figures, from their text repr.

    A displayed matplotlib figure carries ``text/plain`` ``"<Figure size WxH with N
    Axes>"`` next to its ``image/png``.
    """
    counts = []
    for o in outputs:
        data = o.get("data", {})
        if "image/png" in data:
            m = re.search(r"with (\d+) Axes", data.get("text/plain", ""))
            counts.append(int(m.group(1)) if m else -1)
    return counts


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_notebook_executes_on_tiny_checkpoint(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbclient import NotebookClient

    # the kernel process inherits these (read by the notebook's first cell)
    monkeypatch.setenv("NOWCAST_CKPT", str(tiny_checkpoint))
    monkeypatch.setenv("NOWCAST_NB_WINDOWS", str(N_WINDOWS))
    monkeypatch.setenv("NOWCAST_NB_BATCHES", "2")
    monkeypatch.setenv("NOWCAST_NB_BATCH_SIZE", "4")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError on any failing cell
    nbformat.write(nb, tmp_path / "inspect_forecasts.executed.ipynb")  # artefact

    outputs = _outputs(nb)
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert str(tiny_checkpoint) in text

    # figures, in order: N_WINDOWS strips, ROVER flow, true motion, scores by lead.
    # A strip has rows inputs, truth and one per forecaster, max(T_in, T_out) columns,
    # minus the unused input cells, plus the colour bar.
    ncols = max(INPUT_LEN, OUTPUT_LEN)
    strip = (2 + N_FORECASTERS) * ncols - (ncols - INPUT_LEN) + 1
    flow = 2  # image + colour bar
    metrics = 5  # the paper's Rainfall-MSE, CSI, FAR, POD, correlation
    assert _figure_axes(outputs) == [strip] * N_WINDOWS + [flow, flow, metrics]

    # the animation: one self-contained jshtml player holding one PNG per lead time
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    anims = [h for h in html if "animation" in h and "data:image/png;base64" in h]
    assert len(anims) == 1
    assert anims[0].count("data:image/png;base64") == OUTPUT_LEN

    # the scores table: every forecaster, and the published one for comparison
    tables = [
        o["data"]["text/markdown"]
        for o in outputs
        if "text/markdown" in o.get("data", {})
    ]
    assert len(tables) == 1
    for name in ("ConvLSTM", "Persistence", "ROVER1", "ROVER2", "ROVER3"):
        assert f"| {name} |" in tables[0]
    assert "Shi et al. 2015" in tables[0]

    # the true motion was read with the right orientation: ROVER's estimate of a
    # uniform translation at (U, V) lands within a fraction of its speed of it
    m = re.search(r"mean end-point error: ([\d.]+) px/step over rainy pixels", text)
    assert m is not None, text
    assert float(m.group(1)) < 0.5 * float(np.hypot(U, V))


def test_committed_notebook_has_no_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook holds no code cells"
    dirty = [
        i
        for i, c in enumerate(code)
        if c.get("outputs") or c.get("execution_count") is not None
    ]
    assert not dirty, (
        f"code cells {dirty} carry outputs or execution counts; strip them with "
        "`jupyter nbconvert --clear-output --inplace notebooks/inspect_forecasts.ipynb`"
    )
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    # the first code cell holds the checkpoint path and its override
    assert "NOWCAST_CKPT" in code[0].source and "best.pt" in code[0].source


@pytest.mark.slow
def test_readme_figures_script(tiny_checkpoint: Path, tmp_path: Path) -> None:

    from PIL import Image

    script = load_script("scripts/make_readme_figures.py", "make_readme_figures")
    paths = script.main(
        [
            "--ckpt",
            str(tiny_checkpoint),
            "--data",
            "checkpoint",
            "--out",
            str(tmp_path),
            "--batches",
            "1",
        ]
    )
    assert set(paths) == {"strip", "metrics"}
    sizes = {}
    for key, path in paths.items():
        assert path.parent == tmp_path and path.stat().st_size < script.MAX_BYTES
        with Image.open(path) as im:
            assert im.format == "PNG"
            sizes[key] = im.size
            # the radar palette's colours are drawn (not a blank page)
            colours = np.asarray(im.convert("RGB")).reshape(-1, 3)
            assert len(np.unique(colours, axis=0)) > 20
    # strip: 5 rows (inputs, truth, model, ROVER, persistence) of 3 columns: tall;
    # metrics: 5 panels, 3 a row: wide
    assert sizes["strip"][1] > sizes["strip"][0]
    assert sizes["metrics"][0] > sizes["metrics"][1]
    with pytest.raises(FileNotFoundError, match="scripts/train.py"):
        script.newest_checkpoint(tmp_path / "no_runs")
