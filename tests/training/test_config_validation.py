"""Configs checked before work starts: every shipped config passes, bad ones are named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from training_helpers import CONFIG_DIR, compose_config, tiny_overrides

from nowcast.training import train
from nowcast.training.schema import ConfigError, check_patch_size, validate_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = Path(CONFIG_DIR)
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))
GROUPS = ("data", "model", "loss", "trainer", "scheduler", "evaluation")
GROUP_OPTIONS = [
    f"{g}={p.stem}" for g in GROUPS for p in sorted((CONFIGS / g).glob("*.yaml"))
]


def _plain(overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("experiment", [None, *EXPERIMENTS])
def test_every_experiment_validates(experiment):
    validate_config(_plain([] if experiment is None else [f"+experiment={experiment}"]))


@pytest.mark.slow
@pytest.mark.parametrize("option", GROUP_OPTIONS)
def test_every_group_option_validates(option):
    validate_config(_plain([option]))


def test_the_shipped_configs_are_all_covered():
    assert len(EXPERIMENTS) >= 10 and len(GROUP_OPTIONS) > 25


def test_unknown_groups_and_top_level_sections_pass():
    # another task's group (e.g. a classification data set) is not this schema's
    cfg = _plain(["+kth={clip_len: 16, classes: [walk, run]}", "+task=forecast"])
    validate_config(cfg)


def test_another_tasks_evaluation_keys_pass_but_shared_ones_are_checked():
    extra = "+evaluation.wet_threshold=0.1"
    with pytest.raises(ConfigError, match="evaluation.wet_threshold is not a known"):
        validate_config(_plain([extra]))  # the forecast task has no such key
    series = ["+task=series", "loss=mse"]  # the series task trains with mse or mae
    validate_config(_plain([*series, extra]))
    with pytest.raises(ConfigError, match="evaluation.batch_size=0: expected an int"):
        validate_config(_plain([*series, extra, "evaluation.batch_size=0"]))
    with pytest.raises(ConfigError, match="loss.name='bce': expected one of"):
        validate_config(_plain(["+task=series", extra]))
    with pytest.raises(ConfigError, match="loss.thresholds is not a parameter of loss"):
        validate_config(_plain(["loss=bce", "+loss.thresholds=[2.0]"]))


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.max_epochs=abc", "trainer.max_epochs='abc': expected an integer"),
        ("data.batch_size=0", "data.batch_size=0: expected an integer >= 1"),
        ("+trainer.max_epoch=3", "trainer.max_epoch is not a known key (known: "),
        ("trainer.nonfinite=ignore", "trainer.nonfinite='ignore': expected one of"),
        ("trainer.resume=maybe", "trainer.resume='maybe': expected true/false or"),
        (
            "evaluation.thresholds=[0.5,0]",
            "expected a non-empty list of rain rates > 0",
        ),
        ("evaluation.bootstrap.level=1.5", "evaluation.bootstrap.level=1.5: expected"),
        (
            "evaluation.fss_sizes=[2]",
            "evaluation.fss_sizes=[2]: expected a list of odd",
        ),
        ("logging.log_every_n_steps=0", "logging.log_every_n_steps=0: expected"),
        ("optimizer.lr=-1", "optimizer.lr=-1: expected a learning rate >= 0"),
        ("+optimizer.momentun=0.9", "optimizer.momentun is not a parameter of torch"),
        ("+model.hiden_channels=[4]", "model.hiden_channels is not a parameter of"),
        ("loss.name=huber", "loss.name='huber': expected one of balanced_mae"),
    ],
)
def test_bad_values_are_refused_with_key_value_and_expectation(override, expected):
    with pytest.raises(ConfigError) as err:
        validate_config(_plain([override]))
    msg = str(err.value)
    assert msg.startswith("invalid config: ") and expected in msg
    assert "\n" not in msg  # one paragraph


def test_balanced_loss_thresholds_and_weights_must_fit():
    with pytest.raises(ConfigError, match=r"loss.thresholds=\[0, 1\]: expected incr"):
        validate_config(_plain(["loss=balanced_mse", "loss.thresholds=[0,1]"]))
    with pytest.raises(ConfigError, match="expected one weight more than loss.thr"):
        validate_config(_plain(["loss=balanced_mse", "loss.weights=[1,2]"]))


def test_patch_size_must_divide_the_frames(tiny_radar_file, tmp_path):
    # 100 = 2^2 5^2: 3 divides neither side; the divisors are listed
    msg = check_patch_size(3, (100, 100), "model.frame_size")
    assert msg.startswith("model.patch_size=3: expected a divisor of the 100x100")
    assert "(one of 1, 2, 4, 5, 10, 20, 25, 50)" in msg
    assert check_patch_size(4, (100, 100)) is None
    with pytest.raises(ConfigError, match="model.patch_size=3: expected a divisor"):
        validate_config(_plain(["+experiment=hko_fclstm", "model.patch_size=3"]))
    # known only once the data are built: 16x16 frames of the tiny archive
    cfg = compose_config(tiny_overrides(tiny_radar_file, "model.patch_size=3"))
    with pytest.raises(ConfigError, match="divisor of the 16x16 frames of the train"):
        train(cfg, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def _script(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), *args],
        cwd=cwd,
        env=dict(os.environ, OMP_NUM_THREADS="1", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_script_reports_bad_input_in_one_paragraph_and_leaves_no_run_dir(tmp_path):
    missing = tmp_path / "none.nc"
    cases = {
        "trainer.max_epochs=abc": "error: invalid config: trainer.max_epochs='abc'",
        f"data.root={missing}": f"error: data.root={missing} does not exist",
    }
    for override, expected in cases.items():
        proc = _script(["+experiment=hko", override], tmp_path)
        assert proc.returncode == 1
        assert expected in proc.stderr and "Traceback" not in proc.stderr
        assert "set HYDRA_FULL_ERROR=1 for the traceback" in proc.stderr
        assert list(tmp_path.iterdir()) == []  # hydra's runs/hko/<time>/ removed
    full = _script(["trainer.max_epochs=abc"], tmp_path, HYDRA_FULL_ERROR="1")
    assert full.returncode == 1 and "Traceback" in full.stderr
    assert "ConfigError: invalid config: trainer.max_epochs='abc'" in full.stderr
