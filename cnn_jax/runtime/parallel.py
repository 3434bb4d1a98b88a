"""Multi-host initialisation, the data-parallel mesh and its shardings (jax.jit + NamedSharding; no pmap)."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """Starts ``jax.distributed`` when several processes take part.

    With explicit arguments they are used as given; otherwise JAX auto-detects TPU pods, SLURM and similar
    clusters, and a plain single-process run is left alone.
    """
    if coordinator_address is not None:
        jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=process_id)
    elif num_processes not in (None, 1):
        jax.distributed.initialize(num_processes=num_processes, process_id=process_id)


def data_mesh() -> Mesh:
    """A 1-D mesh over every device of every process.

    Axis type ``Auto``: shardings are given on the jit boundary and XLA propagates them (``jax.make_mesh`` defaults
    to ``Explicit`` in JAX 0.10, which would make sharding part of every array's type).
    """
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def global_batch(mesh: Mesh, *local_arrays: np.ndarray) -> tuple[jax.Array, ...]:
    """Assembles each process's share into global arrays sharded along the batch axis."""
    sharding = batch_sharded(mesh)
    return tuple(jax.make_array_from_process_local_data(sharding, x) for x in local_arrays)
