"""Dense convolutions on XLA:CPU as oneDNN primitives: forward, input gradient and filter gradient.

XLA:CPU (jaxlib 0.10) runs a dense convolution's two gradients as generic convolutions (YNNPACK/Eigen) at a
fraction of what the CPU can do: for a 3x3 conv on 128x32x32x16 the input + filter gradient take ~26 ms against
PyTorch's ~4 ms, and a CIFAR ResNet spends most of its step there (BENCHMARKS.md, "CIFAR-scale training").
PyTorch runs the same work on oneDNN. This module compiles a small C++ file (``onednn_conv.cc``) against oneDNN 3
(``onednn-cpu-gomp`` + ``onednn-devel-cpu-gomp`` from PyPI, in ``requirements.txt``) and XLA's FFI headers (shipped
in jaxlib), registers its three handlers as CPU custom-call targets, and exposes :func:`conv`, a differentiable
NHWC/HWIO convolution whose forward and both gradients are those custom calls.

The shared library is built on first use with the C++ compiler (``$CXX``, else ``g++``/``c++``), into
``$CNN_JAX_CACHE_DIR/ops`` (default ``~/.cache/cnn_jax/ops``), under a name hashing the source, the jaxlib version
and the oneDNN location, so a rebuild happens only when one of them changes (~6 s). When the compiler or oneDNN is
missing, :func:`available` is False, the reason is logged once, and :mod:`cnn_jax.ops.conv_ops` keeps XLA's own
convolutions. ``CNN_JAX_ONEDNN=0`` turns the kernels off; ``CNN_JAX_ONEDNN_ROOT`` names a oneDNN install prefix
(with ``include/oneapi/dnnl/dnnl.hpp`` and ``lib/libdnnl.so``) other than the Python environment's.

Threads: oneDNN runs each call on its OpenMP team (GNU OpenMP, one thread per core by default, ``OMP_NUM_THREADS``),
whose threads sleep between calls (``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence

import jax
import numpy as np

Array = jax.Array
SOURCE = pathlib.Path(__file__).with_name("onednn_conv.cc")
TARGETS = {  # custom-call target -> symbol in the library
    "cnn_jax_onednn_conv_forward": "CnnJaxConvForward",
    "cnn_jax_onednn_conv_backward_data": "CnnJaxConvBackwardData",
    "cnn_jax_onednn_conv_backward_weights": "CnnJaxConvBackwardWeights",
}
DTYPES = (np.dtype(np.float32), np.dtype(jax.numpy.bfloat16))
MIN_MAJOR_VERSION = 3


class OneDnnUnavailable(RuntimeError):
    """oneDNN or a C++ compiler is missing, or the kernels failed to build; the message says which."""


def find_onednn_root() -> pathlib.Path:
    """The install prefix of oneDNN >= 3: ``$CNN_JAX_ONEDNN_ROOT``, else this Python environment's, else /usr."""
    explicit = os.environ.get("CNN_JAX_ONEDNN_ROOT")
    candidates = [explicit] if explicit else [sys.prefix, sys.base_prefix, "/usr/local", "/usr"]
    found = []
    for root in map(pathlib.Path, filter(None, candidates)):
        version_header = root / "include" / "oneapi" / "dnnl" / "dnnl_version.h"
        if not version_header.is_file():
            continue
        major = re.search(r"#define\s+DNNL_VERSION_MAJOR\s+(\d+)", version_header.read_text())
        found.append(f"{root} (version {major.group(1) if major else '?'})")
        if major and int(major.group(1)) >= MIN_MAJOR_VERSION and _library_dir(root):
            return root
    raise OneDnnUnavailable(
        f"no oneDNN >= {MIN_MAJOR_VERSION} with headers and libdnnl.so under {candidates}"
        + (f"; found {', '.join(found)}" if found else "")
        + "; install it with `pip install onednn-cpu-gomp==2023.2.0 onednn-devel-cpu-gomp==2023.2.0` "
        "(requirements.txt) or set CNN_JAX_ONEDNN_ROOT")


def _library_dir(root: pathlib.Path) -> pathlib.Path | None:
    for lib in ("lib", "lib64", "lib/x86_64-linux-gnu", "lib/aarch64-linux-gnu"):
        if (root / lib / "libdnnl.so").exists():
            return root / lib
    return None


def _compiler() -> str:
    for name in filter(None, (os.environ.get("CXX"), "g++", "c++", "clang++")):
        if path := shutil.which(name):
            return path
    raise OneDnnUnavailable("no C++ compiler found ($CXX, g++, c++, clang++); Debian: apt-get install g++")


def cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("CNN_JAX_CACHE_DIR", os.path.expanduser("~/.cache/cnn_jax"))) / "ops"


def build(directory: pathlib.Path | None = None) -> pathlib.Path:
    """Compiles ``onednn_conv.cc`` (unless an up-to-date build exists) and returns the shared library's path.

    Written to a temporary name and renamed, so processes building at the same time never load a partial file.
    """
    root = find_onednn_root()
    lib_dir = _library_dir(root)
    compiler = _compiler()
    command = [compiler, "-O2", "-std=c++17", "-shared", "-fPIC", "-Wno-return-type",
               f"-I{jax.ffi.include_dir()}", f"-I{root / 'include'}", str(SOURCE),
               f"-L{lib_dir}", "-ldnnl", f"-Wl,-rpath,{lib_dir}"]
    digest = hashlib.sha256(SOURCE.read_bytes())
    digest.update(f"{jax.lib.__version__}|{' '.join(command)}".encode())
    directory = directory or cache_dir()
    target = directory / f"onednn_conv-{digest.hexdigest()[:16]}.so"
    if target.is_file():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        partial = pathlib.Path(scratch) / target.name
        done = subprocess.run([*command, "-o", str(partial)], capture_output=True, text=True)
        if done.returncode != 0:
            raise OneDnnUnavailable(f"building {SOURCE.name} failed ({' '.join(command)}):\n{done.stderr[-4000:]}")
        os.replace(partial, target)
    return target


@functools.cache
def _load() -> str | None:
    """Builds, loads and registers the kernels once per process; None, or why they are unavailable."""
    if os.environ.get("CNN_JAX_ONEDNN", "1") == "0":
        return "turned off by CNN_JAX_ONEDNN=0"
    # GNU OpenMP reads this when libdnnl loads it. Its default keeps the team's threads spinning after each call,
    # on the cores XLA's own thread pool runs the fusions between convolutions on.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        library = ctypes.cdll.LoadLibrary(str(build()))
    except (OneDnnUnavailable, OSError) as error:
        logging.getLogger(__name__).warning("oneDNN convolutions unavailable, XLA's are used: %s", error)
        return str(error)
    for target, symbol in TARGETS.items():
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu")
    return None


def available() -> bool:
    """Whether :func:`conv` can be used (builds and registers the kernels on the first call)."""
    return _load() is None


def unavailable_reason() -> str | None:
    return _load()


def supports(lhs: Array, rhs: Array) -> bool:
    """Operands :func:`conv` takes: 4-D, one float dtype for both (float32 or bfloat16)."""
    return (lhs.ndim == 4 and rhs.ndim == 4 and lhs.dtype == rhs.dtype and np.dtype(lhs.dtype) in DTYPES
            and available())


def _attributes(strides, pads, dilation) -> dict[str, np.ndarray]:
    return dict(window_strides=np.asarray(strides, np.int64), rhs_dilation=np.asarray(dilation, np.int64),
                padding=np.asarray([p for pair in pads for p in pair], np.int64))


def _call(target: str, shape: Sequence[int], dtype, a: Array, b: Array, strides, pads, dilation) -> Array:
    if (reason := _load()) is not None:  # registers the targets on first use
        raise OneDnnUnavailable(reason)
    # Under vmap (the trainer's BatchNorm groups map the model over groups of examples) one call per group.
    return jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(tuple(shape), dtype), vmap_method="sequential")(
        a, b, **_attributes(strides, pads, dilation))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv(x: Array, w: Array, strides: tuple[int, int], pads: tuple[tuple[int, int], ...],
         dilation: tuple[int, int]) -> Array:
    """``lax.conv_general_dilated(x, w, strides, pads, rhs_dilation=dilation)`` for NHWC ``x`` and HWIO ``w`` (one
    group), run by oneDNN; ``pads`` are explicit ``((top, bottom), (left, right))``. Raises
    :class:`OneDnnUnavailable` where :func:`available` is False."""
    return _forward(x, w, strides, pads, dilation)[0]


def _forward(x, w, strides, pads, dilation):
    out_hw = [(x.shape[1 + a] + sum(pads[a]) - ((w.shape[a] - 1) * dilation[a] + 1)) // strides[a] + 1
              for a in range(2)]
    y = _call("cnn_jax_onednn_conv_forward", (x.shape[0], *out_hw, w.shape[3]), x.dtype, x, w, strides, pads,
              dilation)
    return y, (x, w)


def _backward(strides, pads, dilation, residuals, g):
    x, w = residuals
    g = g.astype(x.dtype)
    dx = _call("cnn_jax_onednn_conv_backward_data", x.shape, x.dtype, g, w, strides, pads, dilation)
    dw = _call("cnn_jax_onednn_conv_backward_weights", w.shape, w.dtype, x, g, strides, pads, dilation)
    return dx, dw


conv.defvjp(_forward, _backward)
