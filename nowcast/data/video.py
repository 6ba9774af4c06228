"""A video-folder data set (one folder per class), split by person, e.g. KTH actions.

Layout: ``root/<class>/<file>``, any file OpenCV decodes (KTH: ``root/boxing/
person01_boxing_d1_uncomp.avi``). The person is parsed from the file name with a
regular expression (its group ``person``, else its first group); the split assigns
people, never clips, to train / validation / test, so nobody seen in training is
tested. Videos are decoded once (grey, resized) into ``.npy`` files under
``cache_dir``; later passes (and later runs) memory-map those. Each video is cut into
non-overlapping ``clip_len``-frame sequences (a shorter tail is dropped).

KTH (Schuldt et al. 2004) split by person, as in the reference set-up of issue 14:
train 1, 2, 4, 5, 6, 7, 9, 11, 12, 15, 17, 18, 20, 21, 22, 23, 24; validation 3, 8,
10, 19, 25; test 13, 14, 16.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from nowcast.signatures import check_forwarded, forwards_to

__all__ = [
    "KTH_PERSON_PATTERN",
    "KTH_SPLIT",
    "VideoFolderDataset",
    "decode_video",
    "parse_person",
    "scan_video_folder",
    "video_folder_datasets",
]

KTH_PERSON_PATTERN = r"person(?P<person>\d+)_"
"""KTH file names: ``person01_boxing_d1_uncomp.avi`` -> person 1."""

KTH_SPLIT: dict[str, tuple[int, ...]] = {
    "train": (1, 2, 4, 5, 6, 7, 9, 11, 12, 15, 17, 18, 20, 21, 22, 23, 24),
    "val": (3, 8, 10, 19, 25),
    "test": (13, 14, 16),
}
"""People of each split of KTH (issue 14's reference set-up)."""


@dataclass(frozen=True)
class VideoFile:
    """One video of the folder: its path, class index and person id."""

    path: Path
    label: int
    person: int


def parse_person(name: str, pattern: str) -> int:
    """The person id in file name ``name`` by regular expression ``pattern``.

    The id is the group named ``person`` if the pattern has one, else its first
    group, else the whole match; it must be an integer.

    Raises
    ------
    ValueError
        If the name does not match (the message names the file and the pattern).
    """
    match = re.search(pattern, name)
    if match is None:
        raise ValueError(
            f"file name {name!r} does not match the person pattern {pattern!r}; "
            "rename the file or set data.person_pattern (a regular expression with a "
            "group 'person', e.g. 'person(?P<person>\\d+)_')"
        )
    groups = match.groupdict()
    text = (
        groups["person"]
        if "person" in groups
        else (match.group(1) if match.groups() else match.group(0))
    )
    try:
        return int(text)
    except ValueError:
        raise ValueError(
            f"the person pattern {pattern!r} found {text!r} in {name!r}, not an "
            "integer id; make its 'person' group match digits only"
        ) from None


def scan_video_folder(
    root: str | Path, pattern: str = KTH_PERSON_PATTERN
) -> tuple[tuple[str, ...], list[VideoFile]]:
    """Class names (sorted sub-folders) and every video file with label and person.

    Hidden files and folders (a leading ``.``, e.g. the decode cache) are skipped.

    Raises
    ------
    FileNotFoundError
        If ``root`` is not a folder or holds no class folder with files.
    ValueError
        If a file name does not match ``pattern``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"video folder {root} does not exist; expected root/<class>/<video file>"
        )
    classes = tuple(
        sorted(p.name for p in root.iterdir() if p.is_dir() and p.name[0] != ".")
    )
    files = [
        VideoFile(path, label, parse_person(path.name, pattern))
        for label, name in enumerate(classes)
        for path in sorted((root / name).iterdir())
        if path.is_file() and path.name[0] != "."
    ]
    if not files:
        raise FileNotFoundError(
            f"no video files under {root}/<class>/ (class folders found: "
            f"{list(classes)})"
        )
    return classes, files


def decode_video(
    path: str | Path, frame_size: tuple[int, int], grey: bool
) -> np.ndarray:
    """All frames of a video, resized: ``(T, H, W)`` (grey) or ``(T, H, W, 3)`` uint8.

    Parameters
    ----------
    path : path
        Any file OpenCV's ``VideoCapture`` reads.
    frame_size : (int, int)
        Output ``(H, W)`` (area interpolation; KTH: 120x160 -> 60x80).
    grey : bool
        Convert to one grey channel (BGR -> grey); else keep RGB.

    Raises
    ------
    ValueError
        If OpenCV cannot read a single frame of the file.
    """
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            code = cv2.COLOR_BGR2GRAY if grey else cv2.COLOR_BGR2RGB
            frame = cv2.cvtColor(frame, code)
            height, width = frame_size
            frames.append(
                cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
            )
    finally:
        capture.release()
    if not frames:
        raise ValueError(
            f"OpenCV could not decode any frame of {path}; remove the file or convert "
            "it to a format OpenCV reads (e.g. AVI or MP4)"
        )
    return np.stack(frames)


def _cache_path(
    video: Path, cache_dir: Path, frame_size: tuple[int, int], grey: bool
) -> Path:
    """Cache file of a decoded video, keyed by its path, size, mtime and the decoding."""
    stat = video.stat()
    key = f"{video.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{frame_size}|{grey}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return cache_dir / f"{video.stem}_{digest}.npy"


def _decoded_path(
    video: Path, cache_dir: Path, frame_size: tuple[int, int], grey: bool
) -> Path:
    """The cached ``.npy`` of ``video``'s decoded frames, decoded first if missing."""
    path = _cache_path(video, cache_dir, frame_size, grey)
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, decode_video(video, frame_size, grey))
        tmp.replace(path)  # atomic: an interrupted pass leaves no half file
    return path


def load_decoded(
    video: Path, cache_dir: Path, frame_size: tuple[int, int], grey: bool
) -> np.ndarray:
    """The decoded frames of ``video``: from the cache, else decoded and cached.

    Returns a read-only memory map of the cached ``.npy`` file.
    """
    return np.load(_decoded_path(video, cache_dir, frame_size, grey), mmap_mode="r")


class VideoFolderDataset(Dataset):
    """Non-overlapping clips of the videos of some people.

    Items are ``(clip, label)``: ``clip`` float32 ``(clip_len, C, H, W)`` in [0, 1]
    (``C`` 1 for grey, 3 for RGB), ``label`` an int64 class index.

    Parameters
    ----------
    root : path
        ``root/<class>/<video file>``.
    people : sequence of int
        Person ids of this split.
    clip_len : int
        Frames per clip (KTH reference: 15).
    frame_size : (int, int)
        ``(H, W)`` after resizing (KTH reference: ``(60, 80)``).
    grey : bool
        One grey channel instead of RGB.
    person_pattern : str
        Regular expression for the person id in a file name (see
        :func:`parse_person`).
    cache_dir : path, optional
        Where decoded videos are kept; default ``root/.decoded``.
    random_flip : bool
        Flip each clip horizontally with probability 1/2 (for the training split).
    """

    def __init__(
        self,
        root: str | Path,
        people: Sequence[int],
        clip_len: int = 15,
        frame_size: Sequence[int] = (60, 80),
        grey: bool = True,
        person_pattern: str = KTH_PERSON_PATTERN,
        cache_dir: str | Path | None = None,
        random_flip: bool = False,
    ) -> None:
        if clip_len < 1:
            raise ValueError(f"clip_len must be >= 1, got {clip_len}")
        self.root = Path(root)
        self.classes, files = scan_video_folder(self.root, person_pattern)
        self.people = tuple(int(p) for p in people)
        self.clip_len = int(clip_len)
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.grey = bool(grey)
        self.random_flip = bool(random_flip)
        self.cache_dir = Path(cache_dir) if cache_dir else self.root / ".decoded"
        self.files = [f for f in files if f.person in set(self.people)]
        self.clips: list[tuple[int, int]] = []  # (file index, first frame)
        # cache file of each video: paths, not memory maps, so the data set pickles
        # into DataLoader workers; items only open their file
        self._decoded: list[Path] = []
        for i, f in enumerate(self.files):  # the first pass decodes and caches
            path = _decoded_path(f.path, self.cache_dir, self.frame_size, self.grey)
            self._decoded.append(path)
            n = len(np.load(path, mmap_mode="r"))
            self.clips += [(i, s) for s in range(0, n - clip_len + 1, clip_len)]

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        file_index, start = self.clips[index]
        video = self.files[file_index]
        frames = np.load(self._decoded[file_index], mmap_mode="r")
        clip = torch.from_numpy(np.array(frames[start : start + self.clip_len]))
        clip = clip[:, None] if self.grey else clip.permute(0, 3, 1, 2)
        clip = clip.to(torch.float32) / 255.0
        if self.random_flip and bool(torch.rand(()) < 0.5):
            clip = clip.flip(-1)
        return clip, torch.tensor(video.label, dtype=torch.int64)


@forwards_to(VideoFolderDataset, sets=("people", "random_flip"))
def video_folder_datasets(
    root: str | Path,
    split_people: Mapping[str, Sequence[int]] | None = None,
    random_flip_train: bool = True,
    **clip_options: Any,
) -> dict[str, VideoFolderDataset]:
    """``{"train", "val", "test"}`` clips of a video folder, split by person.

    ``split_people`` maps each split to its person ids (default :data:`KTH_SPLIT`);
    the splits must not share a person. Only the training split is flipped at random
    (``random_flip_train``). ``clip_options`` are :class:`VideoFolderDataset`'s
    (``clip_len``, ``frame_size``, ``grey``, ``person_pattern``, ``cache_dir``).

    Raises
    ------
    ValueError
        If a person is in two splits, or a split's key is not train / val / test.
    TypeError
        For a keyword that is not a :class:`VideoFolderDataset` option.
    """
    check_forwarded(video_folder_datasets, clip_options)
    split_people = dict(KTH_SPLIT if split_people is None else split_people)
    if set(split_people) != {"train", "val", "test"}:
        raise ValueError(
            "split_people must have exactly the keys train, val, test, got "
            f"{sorted(split_people)}"
        )
    seen: dict[int, str] = {}
    for split, people in split_people.items():
        for p in people:
            if p in seen:
                raise ValueError(
                    f"person {p} is in both the {seen[p]!r} and the {split!r} split; "
                    "each person belongs to one split"
                )
            seen[int(p)] = split
    return {
        split: VideoFolderDataset(
            root,
            people,
            random_flip=random_flip_train and split == "train",
            **clip_options,
        )
        for split, people in split_people.items()
    }
