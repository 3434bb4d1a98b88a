"""Experiment configs: the schema, config files, typed overrides, the model a config builds, and its checks.

A config is an ``ml_collections.ConfigDict`` returned by ``get_config()`` (or ``get_config(arg)``) in a small Python
file under ``experiments/``, starting from :func:`base_config`. Durations and the learning rate are resolved at run
time (``Schedule.resolve``): the config holds ``base_lr`` per 256 examples and epochs or steps, never derived
values. Every tool reads configs and ``key=value`` overrides through this module: :func:`load_config` (a file with
its argument), :func:`parse_overrides` / :func:`parse_value` (text to typed values, the config field's type
deciding), :func:`apply_overrides`, :func:`read_run_config` (a run's ``config.json`` back), :func:`build_model`.

:func:`validate` raises one :class:`ConfigError` naming every key whose value the trainer cannot use, the value
and what is allowed: counts and intervals that would divide by zero or train nothing, names outside their tables,
and ``model.*`` keys the model does not accept (checked against its constructor, with close-name suggestions).
``launch.py`` prints the message as one line and exits 2; ``train_and_evaluate`` calls it first.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import logging
import math
import pathlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import ml_collections
import numpy as np
from ml_collections import config_dict

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
DTYPE_NAMES = tuple(DTYPES)
OPTIMIZERS = ("sgd", "rmsprop", "adamw", "lars")
SCHEDULES = ("cosine", "step", "exponential", "linear", "constant")
CONFIG_FILE = "config.json"  # the config a run saved in its workdir


# ---------------------------------------------------------------------------------------------------------------
# The schema every experiment starts from.


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    # Any extra key under `model` is passed to cnn_jax.create_model as an override.
    c.model = ml_collections.ConfigDict({"name": "resnet50", "dtype": "float32"})
    c.data = ml_collections.ConfigDict({
        # A TFDS name (imagenet2012, cifar10, fashion_mnist, ...), "folder:ROOT" or "synthetic[:HxWxC...]".
        "name": "fashion_mnist",
        "data_dir": config_dict.placeholder(str),  # TFDS data directory (default $TFDS_DATA_DIR, ~/tensorflow_datasets)
        "manual_dir": config_dict.placeholder(str),  # manually downloaded files (Fashion-MNIST IDX default: Debian's)
        "train_split": config_dict.placeholder(str),  # default: the dataset's ("train"); TFDS slicing works
        "eval_split": config_dict.placeholder(str),  # default: the dataset's ("test" / "validation" / "val")
        "image_size": 32,
        # cnn_jax.data.transforms specs, e.g. "random_resized_crop,flip" / "pad_crop(4),flip" / "none".
        "train_transform": "none",
        "eval_transform": "none",  # "resize_center_crop" (crop fraction from the model's metadata) or "none"
        "interpolation": "bicubic",  # PIL filter of the train and eval resizes (train op resize, eval specs)
        "batch_transform": "none",  # "mixup(0.2)", "cutmix(1.0)", "mixup(0.8)|cutmix(1.0)"
        "num_threads": config_dict.placeholder(int),  # host threads for decoding/transforms (default: all CPUs)
        "worker_processes": 0,  # > 0: training batches built in this many processes (ImageNet-scale augmentation)
        "dtype": "float32",  # images as delivered to the devices: float32 or bfloat16
        "max_train_examples": config_dict.placeholder(int),  # subsets, for smoke tests
        "max_eval_examples": config_dict.placeholder(int),
    })
    c.train = ml_collections.ConfigDict({
        "global_batch": 128,
        "eval_batch": 500,
        "epochs": 1.0,
        "num_steps": config_dict.placeholder(int),  # overrides epochs when set
        # Stop this invocation after this many steps (time-limited cluster slots); a relaunch resumes.
        "stop_after_steps": config_dict.placeholder(int),
        "eval_every_epochs": 1.0,
        "log_every_steps": 50,
        "checkpoint_every_steps": 500,
        "keep_checkpoints": 3,
        # Seconds one asynchronous save (writes and cross-process barriers) may take before it fails: with several
        # processes, how long the others wait for one whose save failed or that died. 0: 120 s with several
        # processes, 1200 s (orbax's default) with one.
        "checkpoint_timeout_s": 0,
        "microbatches": 1,  # gradient accumulation: the global batch is split into this many sequential parts
        "bn_group_size": 0,  # 0: BatchNorm statistics over the global batch; N: "ghost" statistics over N examples
        "ema_decay": 0.0,  # 0: no EMA of the weights; else evaluated alongside the raw weights (eval_ema/...)
        "ema_warmup": True,  # TF's min(decay, (1 + step) / (10 + step))
        "init_from": config_dict.placeholder(str),  # imported weights (cnn_jax.tools.import_weights) to start from
        "compile_keep_remat": True,  # on CPU keep rematerialisation (memory_efficient models) through XLA passes
    })
    c.optimizer = ml_collections.ConfigDict({
        "name": "sgd",
        "base_lr": 0.1,  # per 256 examples: lr = base_lr * global_batch / 256
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 1e-4,
        "decay_all_params": False,  # False: no decay on BatchNorm parameters and biases
        "schedule": "cosine",
        "warmup_epochs": 0.0,
        "decay_epochs": (30, 60, 80),
        "decay_factor": 0.1,
        "decay_every_epochs": 2.4,
        "rmsprop_decay": 0.9,
        "eps": 1e-3,
        "lars_trust_coefficient": 0.001,  # LARS (You et al. 2017) for large batches
        "clip_global_norm": 0.0,  # 0: no gradient clipping
    })
    c.loss = ml_collections.ConfigDict({
        "label_smoothing": 0.0,
        "aux_weight": 0.3,  # per auxiliary head (GoogLeNet paper Sec. 5)
        "aux_weights": ml_collections.ConfigDict(),  # per-head overrides by name
    })
    return c


# ---------------------------------------------------------------------------------------------------------------
# Config files and saved configs.


def load_config(spec: str) -> ml_collections.ConfigDict:
    """An experiment config ``path.py[:arg]`` (``get_config()`` / ``get_config(arg)``), locked. A relative path is
    looked up in the working directory, then in this checkout."""
    file, _, arg = str(spec).partition(":")
    module = import_file(resolve_path(pathlib.Path(file)), f"cnn_jax_config_{pathlib.Path(file).stem}")
    config = module.get_config(arg) if arg else module.get_config()
    config.lock()
    return config


def resolve_path(path: pathlib.Path) -> pathlib.Path:
    """``path`` as given if it exists, else relative to this checkout (configs named from another directory)."""
    if path.is_absolute() or path.exists():
        return path
    checkout = pathlib.Path(__file__).resolve().parents[1]
    if (checkout / path).exists():
        return checkout / path
    raise FileNotFoundError(f"{path}: no such file (looked in {pathlib.Path.cwd()} and {checkout})")


def import_file(path: pathlib.Path, name: str) -> Any:
    """Imports a config or sweep file. Files under an ``experiments/`` directory import their siblings as
    ``experiments.<family>.<module>``: the directory holding ``experiments/`` goes on ``sys.path``."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    root = next((p.parent for p in path.resolve().parents if p.name == "experiments"), None)
    if root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    spec.loader.exec_module(module)
    return module


def read_run_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
    """The config a run saved in ``workdir/config.json``, as a schema config (:func:`config_from_json`)."""
    path = pathlib.Path(workdir) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no saved config (is {workdir} a run's workdir?)")
    return config_from_json(json.loads(path.read_text()))


def config_from_json(raw: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """:func:`base_config` updated with the keys of a saved config (``config.to_json()``) that the schema knows.

    Runs written by an older schema still load; their unknown keys are reported, not applied (a model key is
    always kept: every ``model.*`` key is a model argument).
    """
    config = base_config()
    dropped: list[str] = []

    def update(node: ml_collections.ConfigDict, values: Mapping[str, Any], prefix: str) -> None:
        for key, value in values.items():
            if prefix == "model.":
                node[key] = value
            elif key not in node:
                dropped.append(prefix + key)
            elif isinstance(node[key], ml_collections.ConfigDict) and isinstance(value, dict):
                update(node[key], value, f"{prefix}{key}.")
            else:
                node[key] = tuple(value) if isinstance(value, list) else value

    update(config, raw, "")
    if dropped:
        logging.warning("config keys not in the current schema, ignored: %s", ", ".join(dropped))
    return config


# ---------------------------------------------------------------------------------------------------------------
# key=value overrides.


class UnknownKeyError(KeyError):
    """An override names a key the config does not have (message printed as is)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def parse_value(text: str, field_type: type | None = None) -> Any:
    """A command-line value: parsed as ``field_type`` (the config field's type) when given, else ``true``/``false``,
    then a Python literal (``0.1``, ``(1, 2)``, ``None``), else the text itself."""
    if field_type is bool or (field_type is None and text.lower() in ("true", "false")):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{text!r}: expected true or false")
        return text.lower() in ("true", "1")
    if field_type in (int, float):
        try:
            return float(text) if field_type is float else int(text)
        except ValueError:
            raise ValueError(f"{text!r}: expected {field_type.__name__}") from None
    if field_type is str:
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(args: Sequence[str], config: ml_collections.ConfigDict) -> dict[str, Any]:
    """``--config.key=value`` arguments as typed overrides of ``config`` (the field's type decides the parsing;
    keys the config lacks are parsed as literals, and :func:`apply_overrides` then refuses them)."""
    out = {}
    for arg in args:
        key, sep, text = arg.removeprefix("--config.").partition("=")
        if not arg.startswith("--config.") or not sep or not key:
            raise ValueError(f"unexpected argument {arg!r}; expected --config.key=value")
        try:
            out[key] = parse_value(text, field_type(config, key))
        except ValueError as error:
            raise ValueError(f"--config.{key}={text}: {error}") from None
    return out


def field_type(config: ml_collections.ConfigDict, key: str) -> type | None:
    """The type of the dotted ``key``'s field (None when the config has no such key or it holds None)."""
    node = config
    *parents, leaf = key.split(".")
    try:
        for part in parents:
            node = node[part]
        return node.get_type(leaf) if leaf in node else None
    except (KeyError, AttributeError, TypeError):
        return None


def flatten(config: ml_collections.ConfigDict | Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{dotted key: value}`` of every leaf of a (nested) config or dict."""
    out = {}
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict | Mapping):
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[prefix + key] = value
    return out


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """A copy of ``config`` with the dotted ``overrides`` set; keys starting with ``_`` are a sweep's labels (run
    names) and skipped.

    The copy keeps the original's lock, so a key that is not in the config raises :class:`UnknownKeyError` (a
    ``KeyError``) naming it and the closest existing keys; a value of the wrong type raises the ConfigDict's
    ``TypeError`` with the key added.
    """
    config = ml_collections.ConfigDict(config.to_dict(preserve_field_references=True),
                                       type_safe=config.is_type_safe)
    config.lock()
    known = list(flatten(config))
    for key, value in overrides.items():
        if key.startswith("_"):
            continue
        *parents, leaf = key.split(".")
        node = config
        try:
            for part in parents:
                node = node[part]
            if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
                raise KeyError(key)
        except (KeyError, AttributeError):
            close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownKeyError(f"override {key!r} is not a key of the config{hint}") from None
        try:
            node[leaf] = value
        except TypeError as error:
            raise TypeError(f"override {key}={value!r}: {error}") from None
    return config


# ---------------------------------------------------------------------------------------------------------------
# The model and the input dtype a config asks for.


def build_model(config: ml_collections.ConfigDict):
    """The registry model named by ``config.model`` (``name``, ``dtype`` and any other key as an override)."""
    import cnn_jax
    from cnn_jax.registry import config_overrides

    dtype = config.model.get("dtype", "float32")
    if dtype not in DTYPES:
        raise ValueError(f"config.model.dtype={dtype!r}; expected one of {sorted(DTYPES)}")
    # bf16 compute, float32 parameters; BatchNorm statistics and the loss are float32 (see losses.cross_entropy).
    return cnn_jax.create_model(config.model.name, dtype=DTYPES[dtype], **config_overrides(config.model))


def image_dtype(config: ml_collections.ConfigDict) -> np.dtype:
    """The dtype images are delivered in (``config.data.dtype``; bfloat16 halves the host-to-device copy)."""
    if config.data.dtype not in DTYPES:
        raise ValueError(f"config.data.dtype={config.data.dtype!r}; expected one of {sorted(DTYPES)}")
    return np.dtype(DTYPES[config.data.dtype])


# ---------------------------------------------------------------------------------------------------------------
# Validation.


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
