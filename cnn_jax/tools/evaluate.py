"""Evaluate checkpoints and their ensemble: top-1 / top-5 / loss of each member and of the averaged prediction.

  python -m cnn_jax.tools.evaluate --checkpoints RUN_A RUN_B RUN_C [--combine probs|logits] [--ema] \
      [--json out.json] [--config.data.max_eval_examples=2000 ...]

A member is a training workdir (the model is built from its ``config.json`` with ``cnn_jax.config.build_model``
and its params / batch_stats, or the EMA params with ``--ema``, come from the latest checkpoint,
``Checkpointer(workdir).read()``) or a directory of imported weights (``cnn_jax.weights.load_variables``; its
metadata names the model). Every member scores the same images: the data config is the first workdir member's
(or ``--config FILE`` for imported weights), changed by ``--config.data.KEY=VALUE``; evaluation is exact (every
example of the split once, the padded last batch masked).

The ensemble averages the members' softmax probabilities (``--combine probs``, the classic model average, e.g.
Krizhevsky et al. 2012 Sec. 6 and Simonyan & Zisserman 2014 Sec. 4.3) or their logits (``--combine logits``, a
geometric mean of the probabilities up to normalisation); its loss is the negative log of the combined probability
of the true class.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

COMBINES = ("probs", "logits")


@dataclasses.dataclass
class Member:
    """One model of the ensemble: a name, the module and its variables."""

    name: str
    model: Any
    variables: dict[str, Any]
    config: ml_collections.ConfigDict | None  # the training config (None for imported weights)
    convention: Any = None  # imported weights: their input convention (cnn_jax.weights.preprocessing)


def _tree(value: Any) -> Any:
    """Checkpoint trees as plain nested dicts of numpy arrays."""
    return jax.tree_util.tree_map(np.asarray, value)


def load_member(path: str | pathlib.Path, *, ema: bool = False) -> Member:
    """A training workdir (``config.json`` + ``checkpoints/``) or an imported-weights directory."""
    from cnn_jax.config import CONFIG_FILE, build_model, read_run_config

    path = pathlib.Path(path)
    if (path / CONFIG_FILE).exists():
        from cnn_jax.train.checkpoint import Checkpointer

        config = read_run_config(path)
        checkpointer = Checkpointer(path, keep=1000, async_save=False)
        try:
            state, meta = checkpointer.read()
        finally:
            checkpointer.close()
        params = state["params"]
        if ema:
            params = state.get("ema_params") or {}
            if not params:
                raise ValueError(f"{path}: --ema given, but the checkpoint at step {meta.get('step')} has no EMA "
                                 "parameters (train.ema_decay was 0)")
        variables = {"params": _tree(params)}
        if state.get("batch_stats"):
            variables["batch_stats"] = _tree(state["batch_stats"])
        return Member(str(path), build_model(config), variables, config)
    from cnn_jax import weights

    if not (path / "meta.json").exists():
        raise FileNotFoundError(f"{path}: neither a training workdir (config.json + checkpoints/) nor an imported "
                                "weights directory (meta.json + variables/, from cnn_jax.tools.import_weights)")
    if ema:
        raise ValueError(f"{path}: --ema applies to training checkpoints; imported weights have no EMA copy")
    pretrained = weights.load_model(path)  # the registered model with the saved create_model arguments
    variables = {k: _tree(v) for k, v in pretrained.variables.items() if v}
    return Member(str(path), pretrained.model, variables, None, pretrained.convention)


def load_dataset(config: ml_collections.ConfigDict):
    """The (possibly subset) dataset of ``config.data``, loaded as the training loop loads it."""
    from cnn_jax.data import sources

    data = config.data
    return sources.load_dataset(data.name, data.data_dir, manual_dir=data.get("manual_dir"),
                                train_split=data.get("train_split"), eval_split=data.get("eval_split")).subset(
        data.max_train_examples, data.max_eval_examples)


def input_stats(members: Sequence[Member], config: ml_collections.ConfigDict, dataset) -> tuple[tuple, tuple]:
    """The eval pipeline's ``(mean, std)``: the imported members' input convention where every member is imported
    weights of one convention, else the config's (``pipeline.input_stats``)."""
    from cnn_jax.data import pipeline

    conventions = {(m.convention.mean, m.convention.std) for m in members if m.convention is not None}
    if len(conventions) == 1 and all(m.config is None for m in members):
        return next(iter(conventions))
    return pipeline.input_stats(config, dataset)[:2]


def eval_batches(config: ml_collections.ConfigDict, members: Sequence[Member] = ()):
    """Exact evaluation batches ``(images, labels, mask)`` of ``config``'s eval split, normalised with
    :func:`input_stats`, and that ``(mean, std)``."""
    from cnn_jax.data import pipeline

    dataset = load_dataset(config)
    stats = input_stats(members, config, dataset)
    transform = pipeline.make_transforms(config, dataset, stats).eval
    return pipeline.eval_batches(dataset.eval, transform, global_batch=config.train.eval_batch,
                                 num_threads=config.data.get("num_threads")), stats


def _topk_hits(scores: jax.Array, labels: jax.Array, k: int) -> jax.Array:
    top = jax.lax.top_k(scores, min(k, scores.shape[-1]))[1]
    return jnp.any(top == labels[:, None], axis=-1)


def combine(logits: jax.Array, how: str = "probs") -> jax.Array:
    """Ensemble log-probabilities from stacked member logits ``(members, batch, classes)``.

    ``probs``: log of the mean softmax; ``logits``: log-softmax of the mean logits.
    """
    if how == "probs":
        return jax.nn.logsumexp(jax.nn.log_softmax(logits, axis=-1), axis=0) - jnp.log(logits.shape[0])
    if how == "logits":
        return jax.nn.log_softmax(jnp.mean(logits, axis=0), axis=-1)
    raise ValueError(f"--combine {how!r}; expected one of {COMBINES}")


def _forward(member: Member, stats: tuple[tuple, tuple] | None):
    """``images -> logits`` of ``member``; imported weights whose input convention differs from the pipeline's
    ``stats`` get the images re-normalised per channel (exact except where the eval transform padded)."""
    model = member.model
    if member.convention is None or stats is None or (member.convention.mean, member.convention.std) == tuple(stats):
        return jax.jit(lambda v, x: model.apply(v, x, train=False).logits)
    scale, shift = member.convention.renormalizer(*stats)
    return jax.jit(lambda v, x: model.apply(v, x * scale + shift, train=False).logits)


def evaluate_ensemble(members: Sequence[Member], batches, *, how: str = "probs",
                      stats: tuple[tuple, tuple] | None = None) -> dict[str, dict[str, float]]:
    """Top-1, top-5 and loss of every member and of the ensemble, in one pass over ``batches`` (normalised with
    ``stats``, ``(mean, std)``, which imported members are re-normalised from where their convention differs).

    Returns ``{member name: metrics, ..., "ensemble": metrics}``; each metrics dict has ``top1``, ``top5``,
    ``loss``, ``examples``.
    """
    if not members:
        raise ValueError("no checkpoint to evaluate")
    names = [m.name for m in members]
    if len(set(names)) != len(names):  # the same directory twice: keep the entries apart
        names = [f"{n} [{i}]" for i, n in enumerate(names)]
    forwards = [_forward(m, stats) for m in members]

    @jax.jit
    def score(stacked_logits, labels, mask):
        log_probs = [jax.nn.log_softmax(lg, axis=-1) for lg in stacked_logits]
        per = []
        for lp in [*log_probs, combine(stacked_logits, how)]:
            nll = -jnp.take_along_axis(lp, labels[:, None], axis=-1)[:, 0]
            per.append(jnp.stack([jnp.sum(_topk_hits(lp, labels, 1) * mask), jnp.sum(_topk_hits(lp, labels, 5) * mask),
                                  jnp.sum(nll * mask)]))
        return jnp.stack(per)

    totals = np.zeros((len(members) + 1, 3), np.float64)
    count = 0
    for images, labels, mask in batches:
        logits = jnp.stack([f(m.variables, jnp.asarray(images)).astype(jnp.float32)
                            for f, m in zip(forwards, members, strict=True)])
        totals += np.asarray(score(logits, jnp.asarray(labels), jnp.asarray(mask, jnp.float32)), np.float64)
        count += int(np.sum(mask))
    if count == 0:
        raise ValueError("the evaluation split is empty")
    results = {}
    for name, (top1, top5, loss) in zip([*names, "ensemble"], totals, strict=True):
        results[name] = {"top1": top1 / count, "top5": top5 / count, "loss": loss / count, "examples": count}
    return results


def format_table(results: dict[str, dict[str, float]], how: str) -> str:
    width = max(len(n) for n in results)
    lines = [f"{'member'.ljust(width)}  {'top-1':>7}  {'top-5':>7}  {'loss':>7}", "-" * (width + 27)]
    for name, m in results.items():
        label = f"ensemble ({how})" if name == "ensemble" else name
        lines.append(f"{label.ljust(width)}  {m['top1']:7.4f}  {m['top5']:7.4f}  {m['loss']:7.4f}")
    lines.append(f"({int(next(iter(results.values()))['examples'])} examples)")
    return "\n".join(lines)


def _data_config(members: Sequence[Member], config_file: str | None, overrides: Sequence[str]
                 ) -> ml_collections.ConfigDict:
    from cnn_jax.config import apply_overrides, load_config, parse_overrides

    if config_file is not None:
        config = load_config(config_file)
    else:
        first = next((m.config for m in members if m.config is not None), None)
        if first is None:
            raise ValueError("every member is imported weights: give --config FILE for the dataset")
        config = first
    return apply_overrides(config, parse_overrides(overrides, config))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnn_jax.tools.evaluate", description=__doc__.split("\n")[0],
                                     epilog="--config.KEY=VALUE (e.g. --config.data.max_eval_examples=2000) changes "
                                            "the data config every member is scored on.")
    parser.add_argument("--checkpoints", nargs="+", required=True, help="training workdirs or imported weights dirs")
    parser.add_argument("--combine", choices=COMBINES, default="probs", help="average probabilities or logits")
    parser.add_argument("--ema", action="store_true", help="use the checkpoints' EMA parameters")
    parser.add_argument("--config", dest="config_file", help="experiment config for the data (default: the first "
                                                             "workdir member's config.json)")
    parser.add_argument("--json", type=pathlib.Path, help="also write the results here")
    args, rest = parser.parse_known_args(argv)
    logging.getLogger("absl").setLevel(logging.WARNING)
    try:
        members = [load_member(p, ema=args.ema) for p in args.checkpoints]
        config = _data_config(members, args.config_file, rest)
        batches, stats = eval_batches(config, members)
        results = evaluate_ensemble(members, batches, how=args.combine, stats=stats)
    except (FileNotFoundError, KeyError, ValueError) as error:
        parser.error(str(error))
    print(format_table(results, args.combine))
    if args.json:
        args.json.write_text(json.dumps({"combine": args.combine, "ema": args.ema, "data": config.data.to_dict(),
                                         "results": results}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
