"""Imports pretrained weights from torchvision / timm (PyTorch state dicts) or Keras 3 into a cnn_jax model.

    python -m cnn_jax.tools.import_weights --format torchvision --model resnet50 --src resnet50.pth --out DIR
    python -m cnn_jax.tools.import_weights --format timm --model efficientnet_b0 --src model.safetensors --out DIR
    python -m cnn_jax.tools.import_weights --format keras --model resnet50 --src resnet50.weights.h5 --out DIR

``DIR`` is a weights directory (``cnn_jax.weights``): fine-tune from it with ``--config.train.init_from=DIR``,
evaluate it with ``python -m cnn_jax.tools.evaluate --checkpoints DIR``. Nothing is downloaded: ``--src`` is a file
you already have (``torch.save(model.state_dict(), path)``, a timm ``.safetensors``, or Keras
``model.save_weights(path)``). The model's ``num_classes`` is read from the file's classifier unless given.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
from typing import Any

import cnn_jax
from cnn_jax import weights
from cnn_jax.config import parse_value
from cnn_jax.weights import convert as conversion
from cnn_jax.weights import mappings, preprocessing, sources


@dataclasses.dataclass
class ImportResult:
    """What :func:`import_weights` produced: the variables, the meta saved with them and the conversion report."""

    variables: dict[str, Any]
    meta: dict[str, Any]
    conversion: conversion.Conversion

    def report(self) -> str:
        c = self.conversion
        lines = [f"imported {c.imported} source tensors into {self.meta['model']} "
                 f"(overrides {self.meta['overrides']}) from {self.meta['source']} [{self.meta['mapping']}]"]
        lines += [f"  {count:5d} x {name}" for name, count in sorted(c.conversions.items())]
        if c.ignored:
            lines.append(f"  ignored {len(c.ignored)} tensors without model state (e.g. {c.ignored[0]})")
        if c.unused:
            shown = ", ".join(c.unused[:10]) + (", ..." if len(c.unused) > 10 else "")
            lines.append(f"  UNUSED source tensors ({len(c.unused)}): {shown}")
        else:
            lines.append("  every source tensor was used")
        convention = preprocessing.InputConvention.from_meta(self.meta["input"])
        lines.append(f"  input: {convention.describe()}; weights.load_model(DIR).preprocess applies it, and "
                     "evaluate / train.init_from use it")
        lines.append("  outputs: logits (no softmax)")
        return "\n".join(lines)


def _classes_from_head(src: sources.Source, mapping: mappings.Mapping) -> int:
    name = mapping.source_name(mapping.head, mappings.Context(frozenset(), src))
    key = f"{name}.weight"
    if key not in src.tensors:
        raise conversion.ConversionError(f"{src.path}: no classifier tensor {key!r} to read num_classes from; "
                                         "pass --num_classes")
    return int(src.tensors[key].shape[0])


def import_weights(
    fmt: str,
    model: str,
    src: str | pathlib.Path,
    out: str | pathlib.Path | None = None,
    *,
    num_classes: int | None = None,
    overrides: dict[str, Any] | None = None,
    bn_eps: float | None = None,
    input_convention: preprocessing.InputConvention | None = None,
) -> ImportResult:
    """Converts checkpoint ``src`` of format ``fmt`` into variables of the registered ``model``; saves them to
    ``out`` (a :mod:`cnn_jax.weights` directory) when given.

    Args:
      fmt: one of ``mappings.FORMATS`` ("timm_tf": timm's TF-ported ``tf_*`` weights).
      model: a registered cnn_jax model name (``mappings.supported_models(fmt)`` lists the supported ones).
      num_classes: classifier width; default: read from the file's classifier.
      overrides: extra ``create_model`` arguments (over the mapping's conventions), e.g. ``{"padding": "same"}``.
      bn_eps: the source's BatchNorm epsilon where it differs from the family's (PyTorch files do not store it).
      input_convention: the images the weights expect, where not the family's published convention (a model
        trained with another normalisation).
    """
    mapping = mappings.find_mapping(fmt, model)
    if fmt == "keras":
        num_classes = num_classes or sources.keras_num_classes(src)
        if num_classes is None:
            raise conversion.ConversionError(f"{src}: found no Dense classifier to read num_classes from; pass "
                                             "--num_classes")
        source = sources.read_keras(src, mapping.keras_application, num_classes)
    else:
        source = sources.read_torch(src)
        num_classes = num_classes or _classes_from_head(source, mapping)
    arguments = {**mapping.overrides_for(source), **(overrides or {}), "num_classes": num_classes}
    arguments.setdefault("in_channels", cnn_jax.model_info(model).in_channels)
    net = cnn_jax.create_model(model, **arguments)
    target = conversion.describe_target(net, cnn_jax.model_info(model).min_resolution, arguments["in_channels"])
    result = conversion.convert(source, mapping, target, bn_eps=bn_eps)
    if input_convention is None:
        input_convention = (preprocessing.from_keras_layers(source.preprocessing) if source.preprocessing
                            else mapping.input)
    meta = {
        "model": model,
        "overrides": arguments,
        "source": str(pathlib.Path(src).absolute()),
        "format": fmt,
        "mapping": mapping.family,
        "conversions": dict(result.conversions),
        "unused_source_tensors": result.unused,
        "input": input_convention.to_meta(),
    }
    if mapping.note:
        meta["note"] = mapping.note
    if source.preprocessing:
        meta["preprocessing"] = source.preprocessing
    if out is not None:
        weights.save_variables(out, result.variables, meta)
    return ImportResult(result.variables, meta, result)


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--override {text!r}: expected KEY=VALUE, e.g. padding=same")
    return key, parse_value(value)  # a literal, else a bare string such as "same"


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated numbers, e.g. 0.5,0.5,0.5") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnn_jax.tools.import_weights", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", required=True, choices=mappings.FORMATS, help="naming/layout of --src")
    parser.add_argument("--model", required=True, help="registered cnn_jax model to import into")
    parser.add_argument("--src", required=True, help=".pth/.pt/.safetensors state dict or Keras .weights.h5")
    parser.add_argument("--out", required=True, help="weights directory to write (cnn_jax.weights format)")
    parser.add_argument("--num_classes", type=int, help="classifier width (default: from the file)")
    parser.add_argument("--override", action="append", type=_parse_override, default=[], metavar="KEY=VALUE",
                        help="extra create_model argument, repeatable (e.g. padding=same)")
    parser.add_argument("--bn_eps", type=float, help="source BatchNorm epsilon, where not the family's default")
    parser.add_argument("--mean", type=_floats, help="input mean per RGB channel on the 0..1 scale, e.g. 0.5,0.5,0.5, "
                                                     "where the weights were not trained with the family's")
    parser.add_argument("--std", type=_floats, help="input std per RGB channel (with --mean)")
    args = parser.parse_args(argv)
    if (args.mean is None) != (args.std is None):
        parser.error("--mean and --std go together")
    convention = (preprocessing.InputConvention(args.mean, args.std, "given on the command line")
                  if args.mean is not None else None)
    try:
        result = import_weights(args.format, args.model, args.src, args.out, num_classes=args.num_classes,
                                overrides=dict(args.override), bn_eps=args.bn_eps, input_convention=convention)
    except (ValueError, FileNotFoundError, TypeError) as error:
        print(f"import_weights: error: {error}", file=sys.stderr)
        return 2
    print(result.report())
    print(f"wrote {pathlib.Path(args.out).absolute()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
