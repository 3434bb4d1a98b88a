"""What a training process needs around the model and the step: the allocator it runs on (``allocator``, chosen
before JAX is imported), the devices and processes (``parallel``: ``jax.distributed``, the mesh, shardings) and its
start-up (``startup``: compile-while-initialising, the garbage-collector pause, XLA options)."""
