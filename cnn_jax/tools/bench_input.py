"""Host input-pipeline throughput: images/s per core for the ImageNet training transform on real JPEGs.

    python -m cnn_jax.tools.bench_input --threads 1 2 --repeats 7

The photographs bundled with scikit-image (``skimage.data``) are resized to typical ImageNet sizes (500x375,
375x500, 500x333, ...) and JPEG-encoded in memory at quality 90. Four paths run over the same bytes:

- ``decode_only``: PIL JPEG decode to RGB, nothing else (the floor any JPEG pipeline pays);
- ``reference``: PIL decode + resize to 224x224 in a loop (no crop, no flip, uint8 out), the plain baseline;
- ``ours``: :func:`cnn_jax.data.transforms.make_train_transform` ``"random_resized_crop,flip"`` on a lazily
  decoded PIL image (JPEG decode + Inception crop + resize to 224 + flip + normalise to float32);
- ``ours_array``: the same transform on a decoded uint8 array (what a source that decodes first hands over);
- ``ours_draft``: ``"random_resized_crop(draft=True),flip"``: the JPEG decoder downscales by 2/4/8 in the DCT
  when the crop is large enough (same crop region, different resampling filter).

Each path is timed in windows of ``--window`` images that alternate between the paths (so load from other
processes hits all of them alike), ``--repeats`` times; figures are medians over windows. Two clocks: wall-clock
images/s, and images per CPU-second of this process (``time.process_time``, all threads), which is the per-core
rate and stays meaningful on a machine shared with other work (wall-clock rates there shrink with the load). With N
threads the images of a window are spread over a thread pool (PIL releases the GIL while decoding and resizing).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, features

from cnn_jax.data import transforms

SIZES = ((500, 375), (375, 500), (500, 333), (500, 500), (333, 500), (500, 400))  # (width, height)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def make_jpegs(count: int, quality: int = 90) -> list[bytes]:
    """``count`` JPEGs of real photographs at ImageNet-like sizes, encoded in memory."""
    from skimage import data

    photos = [Image.fromarray(getattr(data, name)()).convert("RGB") for name in PHOTOS]
    jpegs = []
    for i in range(count):
        photo, size = photos[i % len(photos)], SIZES[(i // len(photos) + i) % len(SIZES)]
        buffer = io.BytesIO()
        photo.resize(size, Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=quality)
        jpegs.append(buffer.getvalue())
    return jpegs


def make_paths(image_size: int) -> dict[str, Callable[[bytes, int], np.ndarray]]:
    """name -> ``f(jpeg_bytes, seed) -> image``."""
    kwargs = {"image_size": image_size, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    train = transforms.make_train_transform("random_resized_crop,flip", **kwargs)
    draft = transforms.make_train_transform("random_resized_crop(draft=True),flip", **kwargs)

    def decode_only(jpeg: bytes, seed: int) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))

    def reference(jpeg: bytes, seed: int) -> np.ndarray:
        image = Image.open(io.BytesIO(jpeg)).convert("RGB")
        return np.asarray(image.resize((image_size, image_size), Image.Resampling.BILINEAR))

    def ours_array(jpeg: bytes, seed: int) -> np.ndarray:
        array = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
        return train(array, np.random.default_rng(seed))

    return {
        "decode_only": decode_only,
        "reference": reference,
        "ours": lambda jpeg, seed: train(transforms.open_image(jpeg), np.random.default_rng(seed)),
        "ours_array": ours_array,
        "ours_draft": lambda jpeg, seed: draft(transforms.open_image(jpeg), np.random.default_rng(seed)),
    }


def time_window(path: Callable[[bytes, int], np.ndarray], jpegs: Sequence[bytes], start: int, count: int,
                pool: concurrent.futures.ThreadPoolExecutor | None) -> tuple[float, float]:
    """(images per wall-clock second, images per CPU-second) for ``count`` images from ``start`` (cycling)."""
    items = [(jpegs[(start + i) % len(jpegs)], start + i) for i in range(count)]
    begin, begin_cpu = time.perf_counter(), time.process_time()
    if pool is None:
        for jpeg, seed in items:
            path(jpeg, seed)
    else:
        list(pool.map(lambda item: path(*item), items))
    return count / (time.perf_counter() - begin), count / max(time.process_time() - begin_cpu, 1e-9)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> str:
    turbo = features.version("libjpeg_turbo") if features.check_feature("libjpeg_turbo") else "no"
    return (f"{cpu_model()}, {os.cpu_count()} cores visible ({platform.machine()}); Python "
            f"{platform.python_version()}, numpy {np.__version__}, Pillow {Image.__version__}, libjpeg-turbo {turbo}")


def run(threads: Sequence[int], *, images: int, window: int, repeats: int, image_size: int, quality: int,
        paths: Sequence[str] | None = None, log: Callable[[str], None] = print) -> list[dict]:
    """Interleaved windows per thread count; one result row per (threads, path)."""
    jpegs = make_jpegs(images, quality)
    table = make_paths(image_size)
    names = list(paths or table)
    unknown = sorted(set(names) - set(table))
    if unknown:
        raise ValueError(f"unknown path(s) {unknown}; expected some of {sorted(table)}")
    mean_bytes = statistics.mean(len(j) for j in jpegs)
    log(f"{len(jpegs)} JPEGs (quality {quality}, mean {mean_bytes / 1024:.0f} KiB), window {window} images, "
        f"{repeats} repeats, load average before: {os.getloadavg()[0]:.2f}")
    rows = []
    for n in threads:
        pool = concurrent.futures.ThreadPoolExecutor(n) if n > 1 else None
        for name in names:  # warm-up (imports, PIL plugin init, thread start)
            time_window(table[name], jpegs, 0, min(window, 4 * n), pool)
        rates: dict[str, list[float]] = {name: [] for name in names}
        cpu_rates: dict[str, list[float]] = {name: [] for name in names}
        for r in range(repeats):
            for name in names:
                wall, cpu = time_window(table[name], jpegs, r * window, window, pool)
                rates[name].append(wall)
                cpu_rates[name].append(cpu)
        load = os.getloadavg()[0]
        if pool is not None:
            pool.shutdown()
        reference = statistics.median(cpu_rates["reference"]) if "reference" in rates else None
        for name in names:
            median, per_core = statistics.median(rates[name]), statistics.median(cpu_rates[name])
            rows.append({"threads": n, "path": name, "img_s": median, "per_core": per_core,
                         "spread": (max(cpu_rates[name]) - min(cpu_rates[name])) / per_core,
                         "vs_reference": per_core / reference if reference else float("nan"), "load": load})
    return rows


def format_rows(rows: Sequence[dict]) -> str:
    lines = ["| threads | path | wall img/s | img per CPU-s (per core) | spread (CPU) | per core / reference | "
             "load avg |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['threads']} | {row['path']} | {row['img_s']:.1f} | {row['per_core']:.1f} | "
                     f"{100 * row['spread']:.0f} % | {row['vs_reference']:.2f} | {row['load']:.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--images", type=int, default=24, help="distinct JPEGs (cycled)")
    parser.add_argument("--window", type=int, default=96, help="images per timed window")
    parser.add_argument("--repeats", type=int, default=5, help="windows per path and thread count")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--paths", nargs="+", default=None,
                        help="subset of decode_only reference ours ours_array ours_draft")
    parser.add_argument("--target", type=float, default=3000.0,
                        help="training rate (img/s) to size the host for (ResNet-50 on one H100: ~3,000)")
    args = parser.parse_args(argv)
    print("command: python -m cnn_jax.tools.bench_input " + " ".join(sys.argv[1:] if argv is None else argv))
    print("machine:", describe_machine())
    rows = run(args.threads, images=args.images, window=args.window, repeats=args.repeats,
               image_size=args.image_size, quality=args.quality, paths=args.paths)
    print(format_rows(rows))
    for row in rows:
        print(f"{row['path']} ({row['threads']} thread(s)): {row['per_core']:.1f} img per CPU-s -> "
              f"{args.target / row['per_core']:.1f} cores for {args.target:.0f} img/s")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return rows


if __name__ == "__main__":
    main()
