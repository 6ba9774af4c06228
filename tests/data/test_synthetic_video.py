"""Synthetic motion videos: the class is the motion (direction, speed, waving)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nowcast.data.synthetic_video import (
    MOTION_CLASSES,
    make_motion_clip,
    synthetic_video_datasets,
)


def _centroid_x_y(frames: np.ndarray) -> np.ndarray:
    """Brightness-weighted centroid (x, y) of the shape (pixels above the noise)."""
    out = []
    for f in frames:
        w = np.where(f > 0.2, f, 0.0)
        yy, xx = np.mgrid[0 : f.shape[0], 0 : f.shape[1]]
        out.append(((w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()))
    return np.array(out)


@pytest.mark.parametrize(
    ("name", "dx_per_frame"),
    [("walk_left", -1.0), ("walk_right", 1.0), ("run_left", -2.5), ("run_right", 2.5)],
)
def test_translation_classes_move_at_their_speed(name, dx_per_frame):
    clip = make_motion_clip(
        MOTION_CLASSES.index(name), np.random.default_rng(3), 10, (40, 40)
    )
    c = _centroid_x_y(clip)
    # the centroid of a pixelised ellipse follows its centre within about a pixel
    step = (c[-1, 0] - c[0, 0]) / 9
    assert step == pytest.approx(dx_per_frame, abs=0.25)
    assert np.ptp(c[:, 1]) < 1.0  # no vertical motion


@pytest.mark.parametrize(
    ("name", "axis"), [("wave_horizontal", 0), ("wave_vertical", 1)]
)
def test_waving_goes_back_and_forth_along_its_axis(name, axis):
    clip = make_motion_clip(
        MOTION_CLASSES.index(name), np.random.default_rng(5), 12, (40, 40)
    )
    c = _centroid_x_y(clip)[:, axis]
    # period 6 frames: the position repeats after 6 frames and swings by several pixels
    np.testing.assert_allclose(c[6:], c[:6], atol=0.6)
    assert np.ptp(c) > 4.0
    assert np.ptp(_centroid_x_y(clip)[:, 1 - axis]) < 1.0


def test_splits_are_balanced_seeded_and_in_range():
    sets = synthetic_video_datasets(
        n_train=12, n_val=6, n_test=6, n_frames=4, size=(16, 16)
    )
    clip, label = sets["train"][7]
    assert clip.shape == (4, 1, 16, 16) and clip.dtype == torch.float32
    assert int(label) == 7 % 6
    assert torch.bincount(sets["train"].labels).tolist() == [2] * 6
    assert (
        0.0 <= float(sets["train"].clips.min())
        and float(sets["train"].clips.max()) <= 1.0
    )
    again = synthetic_video_datasets(
        n_train=12, n_val=6, n_test=6, n_frames=4, size=(16, 16)
    )
    assert torch.equal(again["train"].clips, sets["train"].clips)
    assert not torch.equal(sets["val"].clips, sets["test"].clips)  # own seeds
    with pytest.raises(ValueError, match="label must be in 0..5, got 6"):
        make_motion_clip(6, np.random.default_rng(0))
