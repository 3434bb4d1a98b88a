"""The array, dtype and activation types the layers and models annotate with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

Array = jax.Array
Dtype = Any
Activation = Callable[[Array], Array]
