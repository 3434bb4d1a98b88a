"""Checks of an experiment config (``experiments/common.py``'s schema) before anything runs.

``validate(config)`` raises one :class:`ConfigError` naming every key whose value the trainer cannot use, the value
and what is allowed: counts and intervals that would divide by zero or train nothing, names outside their tables,
and ``model.*`` keys the model does not accept (checked against its constructor, with close-name suggestions).
``launch.py`` prints the message as one line and exits 2; ``train_and_evaluate`` calls it first.
"""

from __future__ import annotations

import math
from typing import Any

import ml_collections

DTYPE_NAMES = ("float32", "bfloat16")
OPTIMIZERS = ("sgd", "rmsprop", "adamw", "lars")
SCHEDULES = ("cosine", "step", "exponential", "linear", "constant")


class ConfigError(ValueError):
    """Config values the trainer cannot use; the message names each key, its value and what is allowed."""


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises :class:`ConfigError` listing every problem :func:`config_problems` finds."""
    if problems := config_problems(config):
        raise ConfigError("; ".join(problems))


def config_problems(config: ml_collections.ConfigDict) -> list[str]:
    """What is wrong with ``config``, one entry per key (none when it can be trained)."""
    problems: list[str] = []

    def check(key: str, allowed: str, ok) -> None:
        try:
            value = _get(config, key)
        except (KeyError, AttributeError):  # a config built without this key: the trainer's default applies
            return
        try:
            good = ok(value)
        except TypeError:
            good = False
        if not good:
            problems.append(f"{key}={value!r}: expected {allowed}")

    def integer(minimum: int, optional: bool = False):
        return lambda v: (optional and v is None) or (_is_int(v) and v >= minimum)

    def number(low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False):
        def ok(v):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                return False
            return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
        return ok

    check("seed", "an integer >= 0", integer(0))
    for key in ("train.global_batch", "train.eval_batch", "train.log_every_steps", "train.checkpoint_every_steps",
                "train.keep_checkpoints", "train.microbatches"):
        check(key, "an integer >= 1", integer(1))
    check("train.num_steps", "None (use train.epochs) or an integer >= 1", integer(1, optional=True))
    check("train.stop_after_steps", "None or an integer >= 1", integer(1, optional=True))
    if config.train.get("num_steps") is None:
        check("train.epochs", "a number > 0", number(0, low_open=True))
    check("train.eval_every_epochs", "a number > 0", number(0, low_open=True))
    check("train.bn_group_size", "0 (whole batch) or an integer >= 1", integer(0))
    check("train.checkpoint_timeout_s", "0 (default) or a number of seconds > 0", number(0))
    check("train.ema_decay", "0 (off) or a number in (0, 1)", number(0, 1, high_open=True))
    check("optimizer.name", f"one of {', '.join(OPTIMIZERS)}", lambda v: v in OPTIMIZERS)
    check("optimizer.schedule", f"one of {', '.join(SCHEDULES)}", lambda v: v in SCHEDULES)
    check("optimizer.base_lr", "a finite number >= 0", number(0))
    check("optimizer.weight_decay", "a finite number >= 0", number(0))
    check("optimizer.momentum", "a number in [0, 1)", number(0, 1, high_open=True))
    check("optimizer.warmup_epochs", "a number >= 0", number(0))
    check("optimizer.clip_global_norm", "0 (off) or a number > 0", number(0))
    check("loss.label_smoothing", "a number in [0, 1)", number(0, 1, high_open=True))
    check("loss.aux_weight", "a number >= 0", number(0))
    check("data.image_size", "an integer >= 1", integer(1))
    check("data.worker_processes", "an integer >= 0", integer(0))
    check("data.num_threads", "None (all CPUs) or an integer >= 1", integer(1, optional=True))
    check("data.max_train_examples", "None or an integer >= 1", integer(1, optional=True))
    check("data.max_eval_examples", "None or an integer >= 1", integer(1, optional=True))
    check("data.dtype", f"one of {', '.join(DTYPE_NAMES)}", lambda v: v in DTYPE_NAMES)
    check("model.dtype", f"one of {', '.join(DTYPE_NAMES)}", lambda v: v in DTYPE_NAMES)
    problems += model_problems(config.model)
    return problems


def model_problems(model_config: ml_collections.ConfigDict) -> list[str]:
    """Whether the registry builds ``model_config`` (its name, and every other key as an argument of the model)."""
    from cnn_jax import registry

    try:
        registry.model_info(model_config.name, **registry.config_overrides(model_config))
    except (TypeError, ValueError) as error:
        return [f"model: {error}"]
    return []


def _get(config: ml_collections.ConfigDict, key: str) -> Any:
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
