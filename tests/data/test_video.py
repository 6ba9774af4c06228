"""The video-folder data set on small AVIs written here with OpenCV."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from nowcast.data import video as video_mod
from nowcast.data.video import (
    KTH_SPLIT,
    VideoFolderDataset,
    decode_video,
    parse_person,
    video_folder_datasets,
)


def _write_avi(path, n_frames, size=(24, 32), ramp=False):
    """A colour MJPG AVI: frame ``t`` uniform grey ``8 t`` (or a left-right ramp)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = size
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (width, height)
    )
    assert writer.isOpened()
    for t in range(n_frames):
        frame = np.full((height, width, 3), 8 * t, dtype=np.uint8)
        if ramp:
            frame[:] = np.linspace(0, 250, width, dtype=np.uint8)[None, :, None]
        writer.write(frame)
    writer.release()


@pytest.fixture
def kth_like(tmp_path):
    """Two classes, people 1 (train), 3 (val), 13 (test): KTH file names."""
    root = tmp_path / "kth"
    for cls in ("boxing", "walking"):
        for person, n_frames in ((1, 31), (3, 15), (13, 20)):
            _write_avi(root / cls / f"person{person:02d}_{cls}_d1_uncomp.avi", n_frames)
    return root


SPLIT = {"train": [1], "val": [3], "test": [13]}


def test_parse_person_kth_and_other_patterns():
    assert parse_person("person01_boxing_d1_uncomp.avi", r"person(?P<person>\d+)_") == 1
    assert parse_person("subj-17_take2.mp4", r"subj-(\d+)") == 17
    with pytest.raises(ValueError, match=r"'clip_07\.avi' does not match .*person"):
        parse_person("clip_07.avi", r"person(?P<person>\d+)_")


def test_decode_resizes_to_grey(kth_like):
    frames = decode_video(
        kth_like / "boxing/person01_boxing_d1_uncomp.avi", (12, 16), True
    )
    assert frames.shape == (31, 12, 16) and frames.dtype == np.uint8
    # uniform frames of level 8 t survive MJPG coding within a few grey levels
    np.testing.assert_allclose(frames.mean(axis=(1, 2)), 8 * np.arange(31), atol=3)


def test_person_split_and_non_overlapping_clips(kth_like):
    sets = video_folder_datasets(kth_like, SPLIT, clip_len=15, frame_size=(12, 16))
    assert sets["train"].classes == ("boxing", "walking")
    # person 1: 31 frames -> clips at 0 and 15 (the 1-frame tail dropped); per class
    assert sets["train"].clips == [(0, 0), (0, 15), (1, 0), (1, 15)]
    assert len(sets["val"]) == 2 and len(sets["test"]) == 2
    for split, people in SPLIT.items():
        assert {f.person for f in sets[split].files} == set(people)
    clip, label = sets["train"][3]
    assert clip.shape == (15, 1, 12, 16) and clip.dtype == torch.float32
    assert int(label) == 1  # walking
    # frames 15..29 of a clip with grey 8 t: the second clip starts at level 120
    assert float(clip[0].mean()) == pytest.approx(120 / 255, abs=3 / 255)


def test_kth_split_is_the_reference_one():
    people = [p for split in KTH_SPLIT.values() for p in split]
    assert sorted(people) == list(range(1, 26))  # 25 people, each once
    assert KTH_SPLIT["test"] == (13, 14, 16)
    assert KTH_SPLIT["val"] == (3, 8, 10, 19, 25)


def test_person_in_two_splits_and_bad_names(kth_like):
    with pytest.raises(
        ValueError, match="person 3 is in both the 'val' and the 'test'"
    ):
        video_folder_datasets(kth_like, {"train": [1], "val": [3], "test": [3]})
    _write_avi(kth_like / "boxing" / "clip_07.avi", 3)
    with pytest.raises(ValueError, match=r"'clip_07\.avi' does not match the person"):
        video_folder_datasets(kth_like, SPLIT)


def test_undecodable_file_is_named(kth_like):
    (kth_like / "boxing" / "person02_boxing_d1_uncomp.avi").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="could not decode any frame of .*person02"):
        VideoFolderDataset(kth_like, [2], frame_size=(12, 16))


def test_decoded_frames_are_cached(kth_like, monkeypatch):
    first = VideoFolderDataset(kth_like, [1], clip_len=15, frame_size=(12, 16))
    cached = sorted((kth_like / ".decoded").glob("*.npy"))
    assert len(cached) == 2

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(video_mod, "decode_video", no_decoding)
    second = VideoFolderDataset(kth_like, [1], clip_len=15, frame_size=(12, 16))
    torch.testing.assert_close(second[1][0], first[1][0])
    # another frame size is another cache entry (and needs decoding)
    with pytest.raises(AssertionError, match="decoded again"):
        VideoFolderDataset(kth_like, [1], clip_len=15, frame_size=(6, 8))


def test_random_flip_only_mirrors(tmp_path):
    root = tmp_path / "v"
    _write_avi(root / "a" / "person01_a.avi", 4, ramp=True)
    _write_avi(root / "b" / "person01_b.avi", 4, ramp=True)
    plain = VideoFolderDataset(root, [1], clip_len=4, frame_size=(8, 8))
    flipped = VideoFolderDataset(
        root, [1], clip_len=4, frame_size=(8, 8), random_flip=True
    )
    torch.manual_seed(0)
    seen = set()
    for _ in range(12):
        clip = flipped[0][0]
        same = torch.equal(clip, plain[0][0])
        assert same or torch.equal(clip, plain[0][0].flip(-1))
        seen.add(same)
    assert seen == {True, False}  # 12 fair coins: both sides (p = 1 - 2 ** -11)
