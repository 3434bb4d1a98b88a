"""TFDS builders of this project: Fashion-MNIST from the local IDX files, prepared without TensorFlow.

The stock ``fashion_mnist`` builder downloads the gzipped IDX files and checks them against registered sha256
sums; Debian's ``dataset-fashion-mnist`` ships the same data re-gzipped, so those sums never match. Rather than
registering new checksums (which rewrites files inside site-packages), :class:`FashionMnistLocal` reads the IDX
files from its manual directory (Debian's ``/usr/share/datasets/fashion-mnist`` by default) and writes the same
features as the stock builder (``image`` (28, 28, 1) PNG, ``label`` with the 10 class names).

TensorFlow is not needed: examples are handed to TFDS as PIL images, which TFDS encodes with PIL (numpy arrays
would go through ``tf.image.encode_png``), and the output is ArrayRecord for random access
(``tfds.data_source``).
"""

from __future__ import annotations

from collections.abc import Iterator

import tensorflow_datasets as tfds
from PIL import Image

from cnn_jax.data import fashion_mnist


class FashionMnistLocal(tfds.core.GeneratorBasedBuilder):
    """Fashion-MNIST (Xiao et al. 2017, arXiv:1708.07747) from local IDX files; TFDS name ``fashion_mnist_local``.

    ``manual_dir`` (``tfds.download.DownloadConfig(manual_dir=...)``) is the directory holding the four
    ``*-idx*-ubyte.gz`` files; without one, Debian's ``/usr/share/datasets/fashion-mnist`` is read.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Same features and splits as the stock fashion_mnist 3.0.1, from local IDX files."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"The directory must hold {', '.join(n for pair in fashion_mnist.FILES.values() for n in pair)} "
        f"(`{fashion_mnist.PREPARE_COMMAND}` puts them in {fashion_mnist.DEFAULT_DIR})."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        # DatasetInfo directly (not dataset_info_from_configs, which looks for README/TAGS files next to the module).
        return tfds.core.DatasetInfo(
            builder=self,
            description="Fashion-MNIST read from local IDX files (Debian's dataset-fashion-mnist).",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(28, 28, 1)),
                "label": tfds.features.ClassLabel(names=list(fashion_mnist.CLASS_NAMES)),
            }),
            supervised_keys=("image", "label"),
            # Keep the IDX files' order (TFDS would otherwise permute examples by a hash of their keys).
            disable_shuffling=True,
            homepage="https://github.com/zalandoresearch/fashion-mnist",
        )

    def _idx_dir(self, dl_manager: tfds.download.DownloadManager) -> str:
        try:
            manual = dl_manager.manual_dir  # raises when the directory is missing or empty
        except AssertionError:
            return fashion_mnist.DEFAULT_DIR
        # The default manual dir (<data_dir>/downloads/manual) may hold other datasets' files (ImageNet tars).
        return str(manual) if (manual / fashion_mnist.FILES["train"][0]).exists() else fashion_mnist.DEFAULT_DIR

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
        directory = self._idx_dir(dl_manager)
        return {split: self._generate_examples(split, directory) for split in ("train", "test")}

    def _generate_examples(self, split: str, directory: str) -> Iterator[tuple[int, dict]]:
        images, labels = fashion_mnist.load(split, directory)
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            yield i, {"image": Image.fromarray(image[:, :, 0], mode="L"), "label": int(label)}
