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

Does the pipeline keep the train step fed? ``--train MODEL`` runs the trainer itself (``train_and_evaluate`` with
the ImageNet recipe's transforms, ``experiments/imagenet/common.py``) for ``--steps`` steps of ``--batch`` on real
JPEGs and reports, per step, the time the loop waited for its batch with no step running
(``train/data_wait_fraction`` of the trainer's metrics, logged every step), next to the same run fed with the
pipeline's work removed (``synthetic`` uint8 images at the output size, no augmentation: decode, crop and resize
gone), so the ratio of their median step times is what the pipeline's host work costs the step on this machine's
shared cores::

    python -m cnn_jax.tools.bench_input --train resnet50 --batch 32 --steps 8

The JPEGs are the photographs above written as an image folder (``train/<class>/*.jpg``), or ``--data`` names any
dataset the trainer reads (``imagenet2012`` once prepared, ``folder:ROOT``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, features

from cnn_jax.data import transforms
from cnn_jax.reporting import cpu_model, markdown_table
from cnn_jax.runtime import allocator

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
    header = ["threads", "path", "wall img/s", "img per CPU-s (per core)", "spread (CPU)", "per core / reference",
              "load avg"]
    return "\n".join(markdown_table(header, [
        [row["threads"], row["path"], f"{row['img_s']:.1f}", f"{row['per_core']:.1f}", f"{100 * row['spread']:.0f} %",
         f"{row['vs_reference']:.2f}", f"{row['load']:.2f}"] for row in rows]))


def write_photo_folder(root: str | os.PathLike, *, train_images: int, eval_images: int, classes: int = 10,
                       quality: int = 90) -> pathlib.Path:
    """An image folder of real JPEGs (``root/train/<class>/*.jpg``, ``root/val/...``) for ``data.name=folder:root``."""
    root = pathlib.Path(root)
    for split, count in (("train", train_images), ("val", eval_images)):
        for i, jpeg in enumerate(make_jpegs(count, quality)):
            directory = root / split / f"class{i % classes:03d}"
            directory.mkdir(parents=True, exist_ok=True)
            (directory / f"{i:06d}.jpg").write_bytes(jpeg)
    return root


def _trainer_run(model: str, data: str, *, batch: int, steps: int, image_size: int, threads: int | None,
                 workers: int, workdir: pathlib.Path, augment: bool) -> dict:
    """Trains ``steps`` steps with the trainer and summarises its per-step metrics (the first step excluded: its
    batch was fetched while the step compiled)."""
    from cnn_jax.train import loop, metrics
    from experiments.imagenet.common import imagenet_config

    config = imagenet_config(model, image_size)
    config.data.name = data
    config.data.num_threads = threads
    config.data.worker_processes = workers
    if not augment:
        config.data.train_transform = "none"
    config.data.max_eval_examples = batch  # the run ends with an evaluation; keep it to one batch
    config.train.update(global_batch=batch, eval_batch=batch, num_steps=steps, log_every_steps=1,
                        eval_every_epochs=1e9, checkpoint_every_steps=1 << 30)
    loop.train_and_evaluate(config, workdir)
    records = [r for r in metrics.read_metrics(workdir) if "train/step_time_s" in r and r["step"] > 1]
    if not records:
        raise ValueError(f"--steps {steps}: need at least 2 steps (the first is excluded)")
    step_times = np.array([r["train/step_time_s"] for r in records])
    waits = np.array([r["train/data_wait_fraction"] for r in records]) * step_times
    return {"data": data, "steps": len(records), "img_s": batch * len(records) / step_times.sum(),
            "step_s": float(np.median(step_times)), "wait_fraction": waits.sum() / step_times.sum(),
            "max_wait_s": float(waits.max()), "waited_steps": int((waits > 0.01 * step_times).sum()),
            "load": os.getloadavg()[0]}


def train_with_real_data(model: str, *, batch: int, steps: int, image_size: int, data: str | None = None,
                         threads: int | None = None, workers: int = 0,
                         log: Callable[[str], None] = print) -> list[dict]:
    """The trainer on real JPEGs, then on ``synthetic`` images with the pipeline's work removed; one row each."""
    with tempfile.TemporaryDirectory(prefix="bench_input_") as scratch:
        scratch = pathlib.Path(scratch)
        if data is None:
            data = "folder:" + str(write_photo_folder(scratch / "photos", train_images=batch * (steps + 1),
                                                      eval_images=batch))
            log(f"{batch * (steps + 1)} real JPEGs (skimage.data photographs at ImageNet-like sizes) in {data}")
        runs = (("real", data, True), ("no_pipeline_work", f"synthetic:{image_size}x{image_size}x3:1000:"
                                                          f"{batch * (steps + 1)}:{batch}", False))
        rows = []
        for name, source, augment in runs:
            log(f"training {model} for {steps} steps of {batch} on {source} (load average "
                f"{os.getloadavg()[0]:.2f})")
            row = _trainer_run(model, source, batch=batch, steps=steps, image_size=image_size, threads=threads,
                               workers=workers, workdir=scratch / name, augment=augment)
            rows.append({"run": name, **row})
    for row in rows:  # medians: one slow step (load from elsewhere) does not decide the ratio
        row["vs_no_pipeline_work"] = rows[-1]["step_s"] / row["step_s"]
    return rows


def format_train_rows(model: str, batch: int, rows: Sequence[dict]) -> str:
    header = ["model", "batch", "run", "steps", "img/s", "step s (median)", "data wait (of step time)",
              "longest wait s", "steps that waited", "speed vs no pipeline work (median steps)", "load"]
    return "\n".join(markdown_table(header, [
        [model, batch, r["run"], r["steps"], f"{r['img_s']:.2f}", f"{r['step_s']:.2f}",
         f"{100 * r['wait_fraction']:.2f} %", f"{r['max_wait_s']:.3f}", r["waited_steps"],
         f"{r['vs_no_pipeline_work']:.2f}", f"{r['load']:.2f}"] for r in rows]))


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="thread counts (default: 1 and all CPUs); --train: the first is data.num_threads "
                             "(default: all CPUs)")
    parser.add_argument("--images", type=int, default=24, help="distinct JPEGs (cycled)")
    parser.add_argument("--window", type=int, default=96, help="images per timed window")
    parser.add_argument("--repeats", type=int, default=5, help="windows per path and thread count")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--paths", nargs="+", default=None,
                        help="subset of decode_only reference ours ours_array ours_draft")
    parser.add_argument("--target", type=float, default=3000.0,
                        help="training rate (img/s) to size the host for (ResNet-50 on one H100: ~3,000)")
    parser.add_argument("--train", metavar="MODEL", default=None,
                        help="instead: train MODEL with the trainer on real JPEGs and report the data wait per step")
    parser.add_argument("--batch", type=int, default=32, help="--train: global batch")
    parser.add_argument("--steps", type=int, default=8, help="--train: steps per run (the first is excluded)")
    parser.add_argument("--data", default=None,
                        help="--train: dataset (default: the photographs written as an image folder)")
    parser.add_argument("--workers", type=int, default=0, help="--train: data.worker_processes")
    parser.add_argument("--malloc", choices=allocator.MODES, default="auto",
                        help="memory allocator (cnn_jax.runtime.allocator, as launch.py)")
    args = parser.parse_args(argv)
    print("command: python -m cnn_jax.tools.bench_input " + " ".join(sys.argv[1:] if argv is None else argv))
    print("machine:", describe_machine(), f"allocator {allocator.active_allocator()} (--malloc={args.malloc})")
    if args.train:
        import cnn_jax

        cnn_jax.model_info(args.train)  # an unknown model fails here, before any data is written
        rows = train_with_real_data(args.train, batch=args.batch, steps=args.steps, image_size=args.image_size,
                                    data=args.data, threads=args.threads[0] if args.threads else None,
                                    workers=args.workers)
        print(format_train_rows(args.train, args.batch, rows))
        print(json.dumps(rows))
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        return rows
    rows = run(args.threads or [1, os.cpu_count() or 1], images=args.images, window=args.window, repeats=args.repeats,
               image_size=args.image_size, quality=args.quality, paths=args.paths)
    print(format_rows(rows))
    for row in rows:
        print(f"{row['path']} ({row['threads']} thread(s)): {row['per_core']:.1f} img per CPU-s -> "
              f"{args.target / row['per_core']:.1f} cores for {args.target:.0f} img/s")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return rows


if __name__ == "__main__":
    # As launch.py: the trainer runs on tcmalloc where installed (cnn_jax.runtime.allocator); so does what is
    # measured here.
    allocator.reexec_with_tcmalloc(allocator.mode_from_argv(sys.argv))
    main()
