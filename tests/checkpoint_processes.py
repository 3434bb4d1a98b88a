"""One of two ``jax.distributed`` processes exercising :class:`cnn_jax.train.checkpoint.Checkpointer` (run by
``tests/test_train_system.py``; not a test module itself).

``python tests/checkpoint_processes.py PROCESS_ID COORDINATOR_ADDRESS WORKDIR``

1. Crossed saves: two Checkpointers (``checkpoints`` and ``best``, as in the training loop) save the same step at
   once while process 1 writes its ``best`` array metadata late, so the processes' background threads reach orbax's
   commit barriers in crossed order. With shared barrier keys process 0 finalized ``best`` before process 1 had
   written it; both saves must succeed.
2. A failing save: process 1's array-metadata write raises; both processes must raise
   :class:`CheckpointSaveError` within about ``timeout_s``, instead of waiting at orbax's barriers for 20 minutes.
"""

from __future__ import annotations

import asyncio
import sys
import time

import jax

process_id, address, workdir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
jax.distributed.initialize(address, num_processes=2, process_id=process_id)

import jax.numpy as jnp  # noqa: E402
from orbax.checkpoint._src.metadata import array_metadata_store  # noqa: E402

from cnn_jax.runtime import parallel  # noqa: E402
from cnn_jax.train.checkpoint import Checkpointer, CheckpointSaveError  # noqa: E402

FAILING_TIMEOUT_S = 3
write_array_metadata = array_metadata_store.Store.write


async def delayed_or_failing_write(self, checkpoint_dir, array_metadatas, process_index):
    # Only process 1 is patched: the point is that the processes differ.
    if "/best/" in str(checkpoint_dir):
        await asyncio.sleep(2.0)
    if "/failing/" in str(checkpoint_dir):
        raise OSError("injected write failure on process 1")
    return await write_array_metadata(self, checkpoint_dir, array_metadatas, process_index)


if process_id == 1:
    array_metadata_store.Store.write = delayed_or_failing_write

mesh = parallel.data_mesh()
state = {"w": jax.jit(lambda: jnp.arange(16.0).reshape(4, 4), out_shardings=parallel.replicated(mesh))()}

start = time.time()
main = Checkpointer(workdir, keep=2, name="checkpoints")
best = Checkpointer(f"{workdir}/best", keep=1, name="best")
best.save(3, state, {"step": 3})
main.save(3, state, {"step": 3})
best.close()
main.close()
print(f"crossed saves done in {time.time() - start:.1f} s", flush=True)

start = time.time()
failing = Checkpointer(f"{workdir}/failing", keep=1, name="failing", timeout_s=FAILING_TIMEOUT_S)
try:
    failing.save(3, state, {"step": 3})
    failing.close()
except CheckpointSaveError as error:
    print(f"failing save raised after {time.time() - start:.1f} s: {error}", flush=True)
else:
    print("failing save did not raise", flush=True)
