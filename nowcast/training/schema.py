"""Checks of a composed training config before any work starts.

Each known section has a dataclass schema whose fields give the key, its type and,
in ``metadata``, a condition and what is expected (:func:`spec`). :func:`validate_config`
walks a plain (resolved) config against them and raises one :class:`ConfigError`
listing every wrong type, unknown key and impossible value, each with the key, the
value given and what is expected, e.g.::

    invalid config: trainer.max_epochs='abc': expected an integer >= 0, or null
    (no limit); data.batch_size=0: expected an integer >= 1.

What is checked:

* ``trainer`` (with ``early_stopping``), ``logging``, ``evaluation`` (with
  ``bootstrap``) and ``loss`` against their schemas, unknown keys refused;
* ``data``: the keys every data group shares (batch size, sequence lengths, ...)
  are typed and bounded; the other keys belong to the data group's own factory;
* every ``_target_`` node (``model``, ``optimizer``, ``scheduler``,
  ``data.datasets``, the baselines): its keys against the target's signature, so a
  misspelt parameter is refused by name; ``optimizer.lr`` >= 0;
* the model's ``patch_size`` against its ``frame_size`` (and, once the data are
  built, :func:`check_patch_size` against the frames).

Top-level keys and groups not listed here (other tasks' groups) pass unchecked; a
new section gets checked by adding a dataclass to :data:`SECTION_SCHEMAS`, a data
factory's extra keys by adding one to :data:`DATA_SCHEMAS`, another task's
``evaluation`` / ``loss`` keys by adding its schemas to :data:`TASK_SCHEMAS` (until
then, a run with ``task`` other than ``forecast`` has those two sections checked for
the forecast keys they share, its own keys let through). A loss outside the built-in
ones is likewise checked only for the keys it shares with :class:`LossSchema`.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from nowcast.signatures import accepted_keywords

__all__ = [
    "ConfigError",
    "spec",
    "validate_config",
    "check_patch_size",
    "SECTION_SCHEMAS",
    "TASK_SCHEMAS",
    "DATA_SCHEMAS",
    "TrainerSchema",
    "EarlyStoppingSchema",
    "LoggingSchema",
    "EvaluationSchema",
    "BootstrapSchema",
    "LossSchema",
    "DataSchema",
]


class ConfigError(ValueError):
    """A config value of the wrong type, an unknown key or an impossible value."""


def spec(
    default: Any = None,
    check: Callable[[Any], bool] | None = None,
    expect: str = "",
) -> Any:
    """A schema field: ``check(value)`` must hold (for non-null values); ``expect``
    says in words what is expected (shown in the error)."""
    return field(default=default, metadata={"check": check, "expect": expect})


def _at_least(n: float) -> Callable[[Any], bool]:
    return lambda v: v >= n


def _positive(v: Any) -> bool:
    return v > 0


def _positive_list(v: Any) -> bool:
    return len(v) > 0 and all(x > 0 for x in v)


# --------------------------------------------------------------------------- schemas


@dataclass
class EarlyStoppingSchema:
    patience: int | None = spec(5, _at_least(1), "an integer >= 1, or null (never)")
    min_delta: float = spec(0.0, _at_least(0), "a number >= 0")


@dataclass
class TrainerSchema:
    max_epochs: int | None = spec(None, _at_least(-1), "an integer >= 0, or null")
    max_steps: int | None = spec(None, _at_least(-1), "an integer >= 0, or null")
    limit_train_batches: int | None = spec(
        None, _at_least(1), "an integer >= 1, or null (the whole split)"
    )
    limit_val_batches: int | None = spec(
        None, _at_least(1), "an integer >= 1, or null (the whole split)"
    )
    val_check_interval: int | None = spec(
        None, _at_least(1), "an integer >= 1 (steps), or null (every epoch)"
    )
    checkpoint_every_n_steps: int | None = spec(
        None, _at_least(1), "an integer >= 1, or null"
    )
    early_stopping: EarlyStoppingSchema | None = None
    grad_clip_norm: float | None = spec(
        None, _positive, "a number > 0, or null (no clipping)"
    )
    nonfinite: Literal["stop", "skip"] = "stop"
    max_nonfinite_skips: int = spec(20, _at_least(0), "an integer >= 0")
    accelerator: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal[
        "auto",
        32,
        "32",
        "fp32",
        "float32",
        "bf16",
        "bfloat16",
        16,
        "16",
        "fp16",
        "float16",
    ] = "auto"
    channels_last: bool | Literal["auto"] = "auto"
    compile: bool = False
    cudnn_benchmark: bool = True
    dist_backend: Literal["nccl", "gloo", "mpi", "ucc"] | None = None
    resume: bool | Literal["auto"] = False
    ckpt_path: str | None = None


@dataclass
class LoggingSchema:
    log_every_n_steps: int = spec(10, _at_least(1), "an integer >= 1")
    progress_bar: bool = True
    tensorboard: bool | Literal["auto"] = "auto"
    print_summary: bool = True


@dataclass
class BootstrapSchema:
    n_resamples: int = spec(1000, _at_least(0), "an integer >= 0 (0: no intervals)")
    seed: int = 0
    level: float = spec(0.95, lambda v: 0 < v < 1, "a number between 0 and 1")


@dataclass
class EvaluationSchema:
    baselines: dict[str, Any] | None = None
    thresholds: list[float] = spec(
        None, _positive_list, "a non-empty list of rain rates > 0 (mm/h)"
    )
    aggregation: Literal["pooled", "per_frame"] = "pooled"
    batch_size: int = spec(8, _at_least(1), "an integer >= 1")
    max_batches: int | None = spec(None, _at_least(1), "an integer >= 1, or null")
    n_examples: int = spec(3, _at_least(0), "an integer >= 0")
    device: str = "auto"
    fss_sizes: list[int] | None = spec(
        None,
        lambda v: all(s >= 1 and s % 2 == 1 for s in v),
        "a list of odd widths >= 1 (pixels)",
    )
    reference: str | None = "auto"
    bootstrap: BootstrapSchema | None = None
    paper_row: str | None = None


@dataclass
class LossSchema:
    name: str = "bce"
    masked: bool = True
    thresholds: list[float] | None = spec(
        None,
        lambda v: _positive_list(v) and list(v) == sorted(v),
        "increasing rain rates > 0 (mm/h)",
    )
    weights: list[float] | None = spec(None, _positive_list, "a list of weights > 0")
    rain_weight: float | None = spec(None, _positive, "a number > 0 ((mm/h)^-2)")
    # legacy keys (ignored by the trainer: the data's grey scale wins)
    dbz_min: float | None = None
    dbz_max: float | None = None
    a: float | None = None
    b: float | None = None


@dataclass
class DataSchema:
    """The keys all data groups share; a group's own keys pass to its factory."""

    datasets: dict[str, Any] | None = None
    batch_size: int = spec(8, _at_least(1), "an integer >= 1 (sequences per process)")
    num_workers: int = spec(0, _at_least(0), "an integer >= 0")
    input_len: int = spec(None, _at_least(1), "an integer >= 1 (frames)")
    output_len: int = spec(None, _at_least(1), "an integer >= 1 (frames)")
    stride: int = spec(1, _at_least(1), "an integer >= 1 (frames)")
    frame_minutes: float = spec(6.0, _positive, "a number > 0 (minutes)")
    kind: str | None = None
    root: str | None = None
    require_root: bool = False
    missing_hint: str | None = None


#: Config section -> schema; its unknown keys are refused.
SECTION_SCHEMAS: dict[str, type] = {
    "trainer": TrainerSchema,
    "logging": LoggingSchema,
    "evaluation": EvaluationSchema,
    "loss": LossSchema,
}

#: The sections whose schema above is the forecast task's: for a run with another
#: ``task``, they are checked against ``TASK_SCHEMAS[task][section]`` when the task
#: registers one, else only for the keys the forecast schema knows (no refusal of
#: the task's own keys).
TASK_SPECIFIC_SECTIONS = ("evaluation", "loss")

#: Task name -> {section: schema} for the task-specific sections of its runs.
TASK_SCHEMAS: dict[str, dict[str, type]] = {}

#: The keys each built-in loss takes; a loss registered elsewhere is checked only for
#: the keys of :class:`LossSchema` it shares.
LOSS_KEYS: dict[str, frozenset[str]] = {
    **dict.fromkeys(
        ("bce", "mse", "mae"),
        frozenset({"name", "masked", "dbz_min", "dbz_max", "a", "b"}),  # legacy 4
    ),
    **dict.fromkeys(
        ("balanced_mse", "balanced_mae"),
        frozenset({"name", "masked", "thresholds", "weights"}),
    ),
    "rain_mse": frozenset({"name", "masked", "rain_weight"}),
}

#: Data sections are checked for :class:`DataSchema`'s keys only (open schemas):
#: a data group's extra keys are its factory's business. ``_target_`` of
#: ``data.datasets`` -> a stricter schema, for factories that want one.
DATA_SCHEMAS: dict[str, type] = {}


# --------------------------------------------------------------------------- checks


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (Any,)
        return f"a list of {_type_name(inner)}"
    if origin is dict or tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    names = {int: "an integer", float: "a number", bool: "true/false", str: "a string"}
    return names.get(tp, "null" if tp is type(None) else getattr(tp, "__name__", "?"))


def _matches(value: Any, tp: Any) -> bool:
    """Whether ``value`` (plain YAML data) has type ``tp`` (an annotation)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (Any,)
        return isinstance(value, (list, tuple)) and all(
            _matches(v, inner) for v in value
        )
    if origin is dict or tp is dict or dataclasses.is_dataclass(tp):
        return isinstance(value, Mapping)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _nested_schema(tp: Any) -> type | None:
    args = typing.get_args(tp) if typing.get_origin(tp) else (tp,)
    return next((a for a in args if dataclasses.is_dataclass(a)), None)


def check_node(
    node: Mapping[str, Any],
    schema: type,
    path: str,
    errors: list[str],
    strict: bool = True,
) -> None:
    """Append to ``errors`` what in ``node`` does not fit ``schema`` (a dataclass).

    Parameters
    ----------
    node : mapping
        The plain config section.
    schema : type
        A dataclass whose fields are the known keys.
    path : str
        The section's dotted name (``"trainer"``), for the messages.
    errors : list of str
        Collects one message per problem.
    strict : bool
        Refuse keys the schema does not know.
    """
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    for key, value in node.items():
        name = f"{path}.{key}"
        if key not in fields:
            if strict:
                errors.append(
                    f"{name} is not a known key (known: {', '.join(sorted(fields))})"
                )
            continue
        tp, meta = hints[key], fields[key].metadata
        expect = meta.get("expect") or _type_name(tp)
        if not _matches(value, tp):
            nullable = _matches(None, tp) and ", or null" not in expect
            errors.append(
                f"{name}={value!r}: expected {expect}" + (", or null" * nullable)
            )
        elif (nested := _nested_schema(tp)) is not None and isinstance(value, Mapping):
            check_node(value, nested, name, errors)
        elif value is not None and meta.get("check") and not meta["check"](value):
            errors.append(f"{name}={value!r}: expected {expect}")


def _locate(target: str) -> Callable[..., Any] | None:
    module, _, attr = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError):
        return None


def check_target(node: Mapping[str, Any], path: str, errors: list[str]) -> None:
    """The keys of a ``_target_`` node against the target's parameters."""
    target = node.get("_target_")
    if not isinstance(target, str):
        return
    obj = _locate(target)
    if obj is None:
        errors.append(f"{path}._target_={target!r}: cannot be imported")
        return
    known = accepted_keywords(obj)
    if known is None:
        return
    for key in node:
        if not key.startswith("_") and key not in known:
            errors.append(
                f"{path}.{key} is not a parameter of {target} (known: "
                f"{', '.join(sorted(known))})"
            )


def _check_targets(cfg: Mapping[str, Any], errors: list[str]) -> None:
    nodes = [(k, cfg.get(k)) for k in ("model", "optimizer", "scheduler")]
    data = cfg.get("data") or {}
    nodes.append(("data.datasets", data.get("datasets")))
    baselines = (cfg.get("evaluation") or {}).get("baselines") or {}
    nodes += [(f"evaluation.baselines.{k}", v) for k, v in baselines.items()]
    for path, node in nodes:
        if isinstance(node, Mapping):
            check_target(node, path, errors)
    lr = (cfg.get("optimizer") or {}).get("lr")
    if lr is not None and not (_matches(lr, float) and lr >= 0):
        errors.append(f"optimizer.lr={lr!r}: expected a learning rate >= 0")


def check_patch_size(
    patch_size: Any, frame_shape: tuple[int, int], source: str = "the data"
) -> str | None:
    """The problem with ``model.patch_size`` for ``(H, W)`` frames, or None.

    The models cut each frame into ``patch_size`` x ``patch_size`` patches
    (:func:`nowcast.patches.patchify`), so it must divide height and width.
    """
    if not isinstance(patch_size, int) or isinstance(patch_size, bool):
        return f"model.patch_size={patch_size!r}: expected an integer >= 1"
    h, w = (int(s) for s in frame_shape)
    if patch_size < 1 or h % patch_size or w % patch_size:
        divisors = [d for d in range(1, min(h, w) + 1) if h % d == 0 and w % d == 0]
        return (
            f"model.patch_size={patch_size}: expected a divisor of the {h}x{w} frames "
            f"of {source} (one of {', '.join(map(str, divisors[:8]))})"
        )
    return None


def _check_model(model: Mapping[str, Any], errors: list[str]) -> None:
    frame = model.get("frame_size")
    if "patch_size" in model and isinstance(frame, (list, tuple)) and len(frame) == 2:
        problem = check_patch_size(
            model["patch_size"], tuple(frame), "model.frame_size"
        )
        if problem:
            errors.append(problem)


def _check_data(data: Mapping[str, Any], errors: list[str]) -> None:
    check_node(data, DataSchema, "data", errors, strict=False)
    target = (data.get("datasets") or {}).get("_target_")
    if target in DATA_SCHEMAS:
        check_node(data, DATA_SCHEMAS[target], "data", errors)


def _loss_keys_known(loss: Mapping[str, Any]) -> bool:
    """Whether the loss is a built-in one whose keys :data:`LOSS_KEYS` lists; the
    keys it does not take are refused then (``loss=bce`` with ``thresholds``)."""
    return str(loss.get("name", "bce")) in LOSS_KEYS


def _check_loss(loss: Mapping[str, Any], errors: list[str]) -> None:
    from nowcast.training.losses import available_losses

    name = loss.get("name", "bce")
    if isinstance(name, str) and name not in available_losses():
        errors.append(
            f"loss.name={name!r}: expected one of {', '.join(available_losses())}"
        )
    allowed = LOSS_KEYS.get(str(name))
    if allowed is not None:
        for key in sorted(set(loss) - allowed):
            if key in {f.name for f in dataclasses.fields(LossSchema)}:
                errors.append(
                    f"loss.{key} is not a parameter of loss {name!r} (it takes: "
                    f"{', '.join(sorted(allowed))})"
                )
    th, w = loss.get("thresholds"), loss.get("weights")
    if isinstance(th, list) and isinstance(w, list) and len(w) != len(th) + 1:
        errors.append(
            f"loss.weights={w!r}: expected one weight more than loss.thresholds "
            f"({len(th) + 1} for {len(th)} thresholds)"
        )


def validate_config(cfg: Mapping[str, Any]) -> None:
    """Refuse a plain training config with wrong types, unknown keys, bad values.

    Parameters
    ----------
    cfg : mapping
        The resolved config (``OmegaConf.to_container(cfg, resolve=True)``).

    Raises
    ------
    ConfigError
        One paragraph naming every offending key with its value and what is
        expected.
    """
    errors: list[str] = []
    task = str(cfg.get("task") or "forecast")
    for section, schema in SECTION_SCHEMAS.items():
        node = cfg.get(section)
        strict = True
        if section in TASK_SPECIFIC_SECTIONS and task != "forecast":
            own = TASK_SCHEMAS.get(task, {})
            schema, strict = own.get(section, schema), section in own
        if section == "loss" and isinstance(node, Mapping):
            strict = strict and _loss_keys_known(node)
        if isinstance(node, Mapping):
            check_node(node, schema, section, errors, strict=strict)
        elif node is not None:
            errors.append(f"{section}={node!r}: expected a mapping (a config group)")
    if isinstance(cfg.get("data"), Mapping):
        _check_data(cfg["data"], errors)
    if isinstance(cfg.get("loss"), Mapping):
        _check_loss(cfg["loss"], errors)
    if isinstance(cfg.get("model"), Mapping):
        _check_model(cfg["model"], errors)
    _check_targets(cfg, errors)
    for key, tp in (("seed", int), ("name", str), ("evaluate_after_training", bool)):
        if key in cfg and not _matches(cfg[key], tp):
            errors.append(f"{key}={cfg[key]!r}: expected {_type_name(tp)}")
    if errors:
        raise ConfigError(
            "invalid config: "
            + "; ".join(errors)
            + ". Fix the override on the command line or the YAML file under configs/."
        )
