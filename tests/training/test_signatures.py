"""Keywords passed on with ``forwards_to``: the names a call and a config may use."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from training_helpers import CONFIG_DIR

from nowcast.data.moving_mnist import moving_mnist_datasets
from nowcast.signatures import accepted_keywords, check_forwarded, forwards_to
from nowcast.training.schema import ConfigError, validate_config


def _inner(b: int = 1, c: int = 2, d: int = 3) -> int:
    return b + c + d


@forwards_to(_inner, sets=("d",))
def _outer(a: int, **rest: int) -> int:
    check_forwarded(_outer, rest)
    return a * _inner(d=0, **rest)


@forwards_to(_outer)
def _outermost(z: int = 0, **rest: int) -> int:
    return z + _outer(**rest)


def _bare(a: int, **rest: int) -> int:
    return a


def test_accepted_keywords_are_own_plus_targets_minus_what_is_set():
    assert accepted_keywords(_inner) == {"b", "c", "d"}
    assert accepted_keywords(_outer) == {"a", "b", "c"}
    assert accepted_keywords(_outermost) == {"z", "a", "b", "c"}  # followed through
    assert accepted_keywords(_bare) is None  # unmarked **kwargs: anything goes


def test_check_forwarded_names_the_unknown_and_the_set_keywords():
    assert _outer(2, b=5) == 2 * (5 + 2 + 0)
    with pytest.raises(
        TypeError, match=r"got unexpected keyword\(s\) d, e; it accepts a, b, c"
    ):
        _outer(1, d=4, e=5)


def test_moving_mnist_generation_keywords_are_checked_in_call_and_config(tmp_path):
    with pytest.raises(TypeError, match="n_frames"):  # derived from input/output_len
        moving_mnist_datasets(tmp_path, n_frames=30)
    known = accepted_keywords(moving_mnist_datasets)
    assert {"n_train", "n_test", "mnist_path", "ood_digits", "test_seq_path"} <= known
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", ["data=moving_mnist", "+data.datasets.n_trian=5"])
    with pytest.raises(ConfigError, match="data.datasets.n_trian is not a parameter"):
        validate_config(OmegaConf.to_container(cfg, resolve=True))


def test_video_and_synthetic_builders_refuse_unknown_options(tmp_path):
    from nowcast.data.synthetic import synthetic_datasets
    from nowcast.data.video import video_folder_datasets

    with pytest.raises(TypeError, match="clip_lenn"):
        video_folder_datasets(tmp_path, clip_lenn=3)
    with pytest.raises(TypeError, match="random_flip"):  # set per split
        video_folder_datasets(tmp_path, random_flip=True)
    with pytest.raises(TypeError, match="n_dayz"):
        synthetic_datasets(tmp_path, n_dayz=2)
    assert "clip_len" in accepted_keywords(video_folder_datasets)
