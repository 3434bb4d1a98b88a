"""Exports a trained run or a weights directory as a torchvision / timm state dict.

    python -m cnn_jax.tools.export_weights --format torchvision --checkpoint RUN_OR_WEIGHTS_DIR --out model.pth
    python -m cnn_jax.tools.export_weights --format timm --checkpoint DIR --reference mobilenetv3_large_100 \
        --out model.safetensors

The file loads into the reference with ``load_state_dict(strict=True)``: ``torchvision.models.<name>(num_classes=N)``
or ``timm.create_model(<name>, num_classes=N)``. ``--reference`` names the reference model where it is not the
cnn_jax name (the default is the model the import tests compare against). torch (and timm for --format timm) must be
installed; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from cnn_jax.weights import export


def export_checkpoint(fmt: str, checkpoint: str | pathlib.Path, out: str | pathlib.Path, *,
                      reference: str | None = None, ema: bool = False) -> export.Export:
    """Writes ``checkpoint`` (a training workdir or a weights directory) to ``out`` (.pth or .safetensors)."""
    import torch

    from cnn_jax.tools.evaluate import load_member

    out = pathlib.Path(out)
    if out.suffix not in (".pth", ".pt", ".safetensors"):
        raise ValueError(f"--out {out}: expected a .pth, .pt or .safetensors file name")
    member = load_member(checkpoint, ema=ema)
    if member.config is not None:
        name = member.config.model.name
    else:
        from cnn_jax.weights import store

        name = store.read_meta(checkpoint)["model"]
    result = export.export_state_dict(fmt, name, member.model, member.variables, reference=reference)
    tensors = result.torch_state_dict()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    if out.suffix == ".safetensors":  # tensors only: no module versions (torchvision's MNASNet needs .pth)
        from safetensors.torch import save_file

        save_file(dict(tensors), str(partial))
    else:
        torch.save(tensors, partial)
    partial.replace(out)  # never a half-written file under the final name
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnn_jax.tools.export_weights", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", required=True, choices=export.TORCH_FORMATS, help="state-dict naming to write")
    parser.add_argument("--checkpoint", required=True, help="training workdir or weights directory")
    parser.add_argument("--out", required=True, help="file to write (.pth or .safetensors)")
    parser.add_argument("--reference", help="torchvision / timm model name (default: the tested counterpart)")
    parser.add_argument("--ema", action="store_true", help="a training workdir's EMA parameters")
    args = parser.parse_args(argv)
    try:
        result = export_checkpoint(args.format, args.checkpoint, args.out, reference=args.reference, ema=args.ema)
    except (ValueError, FileNotFoundError, KeyError) as error:
        print(f"export_weights: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(result.state_dict)} tensors of {args.format} {result.reference} [{result.mapping}] to "
          f"{pathlib.Path(args.out).absolute()}" + (f"; BatchNorm epsilon folded into {result.folded_epsilon} "
                                                     "running variances" if result.folded_epsilon else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
