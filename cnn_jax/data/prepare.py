"""Prepares a dataset as ArrayRecord (random access) for :func:`cnn_jax.data.sources.load_dataset`.

  python -m cnn_jax.data.prepare imagenet2012 --data_dir ~/tensorflow_datasets --manual_dir ~/imagenet_tars
  python -m cnn_jax.data.prepare fashion_mnist [--manual_dir DIR_WITH_IDX_GZ]   # offline, no TensorFlow
  python -m cnn_jax.data.prepare cifar10 --data_dir D                            # downloads (needs network)

``fashion_mnist`` is built by :class:`~cnn_jax.data.tfds_builders.FashionMnistLocal` from local IDX files
(Debian's by default). Other names run the stock TFDS builder with ``file_format=array_record`` (the same as
``tfds build NAME --data_dir D --manual_dir M --file_format=array_record``); most stock builders need TensorFlow
to *prepare* (``pip install tensorflow-cpu``), never to read.
"""

from __future__ import annotations

import argparse
import sys

from cnn_jax.data import fashion_mnist, sources


def prepare(name: str, data_dir: str | None = None, manual_dir: str | None = None) -> str:
    """Prepares ``name`` in ``data_dir`` and returns the directory written."""
    import tensorflow_datasets as tfds

    data_dir = data_dir or sources.default_data_dir()
    if name.split(":")[0] == "fashion_mnist":
        from cnn_jax.data.tfds_builders import FashionMnistLocal

        builder = FashionMnistLocal(data_dir=data_dir, file_format="array_record")
        manual_dir = manual_dir or fashion_mnist.DEFAULT_DIR
    else:
        try:
            builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
        except tfds.core.registered.DatasetNotFoundError:
            raise ValueError(f"unknown TFDS dataset {name!r}") from None
    try:
        builder = sources.prepare_locked(builder, manual_dir=manual_dir)
    except ModuleNotFoundError as error:
        if error.name != "tensorflow":
            raise
        raise ModuleNotFoundError(
            f"the stock TFDS builder of {name!r} needs TensorFlow to prepare the data: `pip install tensorflow-cpu` "
            "on the machine that prepares it (reading the prepared ArrayRecord files needs no TensorFlow)",
            name="tensorflow") from error
    return builder.data_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name", help="TFDS dataset name (imagenet2012, cifar10, fashion_mnist, ...)")
    parser.add_argument("--data_dir", default=None, help=f"TFDS data directory (default {sources.default_data_dir()})")
    parser.add_argument("--manual_dir", default=None,
                        help="manually downloaded files (imagenet2012: ILSVRC2012_img_{train,val}.tar; "
                             f"fashion_mnist: IDX .gz files, default {fashion_mnist.DEFAULT_DIR})")
    args = parser.parse_args(argv)
    print(prepare(args.name, args.data_dir, args.manual_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
