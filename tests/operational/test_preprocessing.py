"""Tests of nowcast.operational.preprocessing: the fitted preprocessor in a checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from forecast_helpers import moving_blob

from nowcast.data.dataset import radar_datasets
from nowcast.data.preprocess import Preprocessor, preprocess_archive
from nowcast.data.radar import processing_steps
from nowcast.operational.preprocessing import (
    CHECKPOINT_KEY,
    checkpoint_preprocessing,
    find_preprocessor_file,
    preprocessor_from_config,
    preprocessor_from_state,
    preprocessor_from_steps,
    preprocessor_state,
    resolve_preprocessing,
)

PARAMS = dict(zmin=-10.0, zmax=60.0, crop_size=32, disk_radius=2, resize_to=16)


@pytest.fixture(scope="module")
def fitted() -> Preprocessor:
    """A preprocessor whose noise mask is fitted (two months of frames)."""
    both = xr.concat(
        [moving_blob(n_frames=20), moving_blob(n_frames=20, start="2015-07-01")],
        dim="time",
    )
    both["intensity"].values[:, 2:5, 4:7] = 55.0  # clutter, bright in every frame
    return Preprocessor(**PARAMS, noise_mask={"n_clusters": 4}, progress=False).fit(
        both, split={"fit_on": "all"}
    )


def _plain(value) -> bool:
    """Whether a state holds only dicts, lists, strings, numbers, None and arrays."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool, np.ndarray))


def test_state_round_trip_gives_the_same_preprocessing(fitted, tmp_path):
    assert fitted.noise_mask.mask[3, 5]  # the clutter pixel was found
    state = preprocessor_state(fitted)
    assert _plain(state)
    torch.save({CHECKPOINT_KEY: state}, tmp_path / "c.pt")  # what a checkpoint holds
    loaded = torch.load(tmp_path / "c.pt", weights_only=False)[CHECKPOINT_KEY]
    again = preprocessor_from_state(loaded)
    assert again.params() == fitted.params()
    np.testing.assert_array_equal(again.noise_mask.mask, fitted.noise_mask.mask)
    frames = moving_blob(n_frames=3)
    np.testing.assert_array_equal(
        again.transform(frames)["intensity"].values,
        fitted.transform(frames)["intensity"].values,
    )


def test_unfitted_and_foreign_states_are_refused():
    with pytest.raises(ValueError, match="not fitted"):
        preprocessor_state(Preprocessor(**PARAMS, noise_mask=True))
    with pytest.raises(ValueError, match="nowcast.preprocessor/1"):
        preprocessor_from_state({"params": {}})


def test_config_preprocessing_needs_bounds_and_drops_the_mask():
    pre = preprocessor_from_config({**PARAMS, "noise_mask": {"n_clusters": 6}})
    assert pre.is_fitted and pre.noise_mask is None
    with pytest.raises(ValueError, match=r"preprocess.zmax is null .* preprocess.zmin"):
        preprocessor_from_config({**PARAMS, "zmax": None})


def test_recorded_steps_rebuild_the_preprocessing(fitted):
    processed = fitted.transform(moving_blob(n_frames=3))
    rebuilt = preprocessor_from_steps(processing_steps(processed))
    expected = {**fitted.params(), "noise_mask": False}
    assert rebuilt.params() == expected


@pytest.fixture(scope="module")
def processed_file(raw_archive, tmp_path_factory):
    """raw_archive through scripts/preprocess.py's function (mask fitted on train)."""
    out = tmp_path_factory.mktemp("processed") / "processed.nc"
    return preprocess_archive(
        raw_archive, out, progress=False, noise_mask={"n_clusters": 3}, **PARAMS
    )


def test_checkpoint_state_of_a_training_dataset(processed_file):
    train = radar_datasets(processed_file, input_len=2, output_len=3)["train"]
    state = checkpoint_preprocessing(train)
    pre_file = find_preprocessor_file(processed_file)
    assert pre_file.name == "processed_preprocessor.json"
    assert str(pre_file) in state["origin"]
    assert state["frame_minutes"] == 6.0  # the archive's cadence
    assert state["grey_scale"]["units"] == "dBZ"
    assert state["params"]["crop_size"] == [32, 32]
    assert state["noise_mask"]["mask"].shape == (40, 40)  # the raw grid
    assert checkpoint_preprocessing(object()) is None  # no processed file


def test_resolution_order(processed_file, tmp_path):
    pre_file = find_preprocessor_file(processed_file)
    train = radar_datasets(processed_file, input_len=2, output_len=3)["train"]
    data = {"data": {"root": str(processed_file), "frame_minutes": 6}}
    ckpt = {"config": data, CHECKPOINT_KEY: checkpoint_preprocessing(train)}
    given = {**PARAMS, "resize_to": 8}
    # 1. an explicit fitted preprocessor file wins
    assert str(pre_file) in resolve_preprocessing(ckpt, pre_file, given).origin
    # 2. then the checkpoint's state, 3. then the preprocess config
    from_ckpt = resolve_preprocessing(ckpt, None, given)
    assert from_ckpt.origin.startswith("the checkpoint")
    assert "preprocess config given was ignored" in from_ckpt.notes[0]
    old = {"config": data}  # a checkpoint without the state
    assert resolve_preprocessing(old, None, given).preprocessor.resize_to == (8, 8)
    # 4. the training data the checkpoint names: the preprocessor file next to it
    found = resolve_preprocessing(old)
    assert str(pre_file) in found.origin and found.preprocessor.noise_mask is not None
    # 5. the synthetic data set's defaults
    synthetic = {
        "config": {
            "data": {
                "datasets": {
                    "_target_": "nowcast.data.synthetic.synthetic_datasets",
                    "root": str(tmp_path / "absent"),
                }
            }
        }
    }
    from_synthetic = resolve_preprocessing(synthetic).preprocessor
    assert from_synthetic.crop_size == (165, 165) and from_synthetic.resize_to == (
        64,
        64,
    )
    # nothing: a clear error saying what to pass
    lost = {"config": {"data": {"root": str(tmp_path / "gone.nc")}}}
    with pytest.raises(ValueError, match=r"gone.nc\) are not here. Pass preprocessor="):
        resolve_preprocessing(lost)


def test_a_processed_file_made_by_hand_carries_nothing(tmp_path):
    from types import SimpleNamespace

    from nowcast.data.radar import make_radar_dataset, write_radar

    times = np.datetime64("2015-06-01") + np.arange(3) * np.timedelta64(6, "m")
    ds = make_radar_dataset(np.zeros((3, 4, 4), np.float32), times, units="1")
    path = write_radar(ds, tmp_path / "by_hand.nc")  # no steps, no preprocessor file
    assert checkpoint_preprocessing(SimpleNamespace(path=path, times=times)) is None
    array = tmp_path / "moving_mnist.npy"  # a data set over another kind of file
    np.save(array, np.zeros((2, 2)))
    assert checkpoint_preprocessing(SimpleNamespace(path=array)) is None
