"""Start-up of a training process: compiling the step while the state initialises, with the garbage collector
paused, and the XLA options that keep rematerialisation on CPU."""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
from collections.abc import Callable, Iterator
from typing import TypeVar

# XLA:CPU expands jax.checkpoint's optimisation barriers early (pass "cse_barrier_expander") and then runs CSE
# again, which merges the backward pass's recomputation back into the forward pass: rematerialisation has no
# effect on CPU by default (the GPU/TPU pipelines expand the barriers only after scheduling). Disabling that pass
# keeps the barriers to code generation. Pass these as ``compiler_options``.
KEEP_REMAT_OPTIONS: dict[str, str] = {"xla_disable_hlo_passes": "cse_barrier_expander"}


State = TypeVar("State")
Step = TypeVar("Step")


@contextlib.contextmanager
def garbage_collection_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the block (and back to its previous state after it).

    Tracing and lowering a network allocate millions of short-lived objects, and each full collection they trigger
    walks every object alive (modules, the growing jaxprs); reference counting still frees everything not in a
    cycle. Effect on the time to the first step: BENCHMARKS.md, "Time to first step".
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def initialise_while_compiling(init: Callable[[], State], compile_step: Callable[[], Step]) -> tuple[State, Step]:
    """``(init(), compile_step())`` with the step lowered and compiled in a second thread while ``init`` runs.

    The step needs only the state's shapes (``jax.eval_shape``), and XLA releases the GIL while it compiles, so the
    initialiser's compilation and the step's overlap (BENCHMARKS.md, "Time to first step"). The garbage collector
    is paused throughout (:func:`garbage_collection_paused`). An exception in either is raised here.
    """
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="compile_train_step")
    try:
        with garbage_collection_paused():
            compiled = pool.submit(compile_step)
            state = init()
            return state, compiled.result()
    finally:
        pool.shutdown(wait=False)  # an error in init surfaces now, not after the compilation it no longer needs
