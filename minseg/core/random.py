"""The package's random number generator: one seeded NumPy ``Generator`` shared by every random op.

Random draws are made on the host and then moved to the tensor's device, so a seed gives the same
numbers on the CPU and on a GPU. ``get_rng_state``/``set_rng_state`` let training resume bit-exactly.
"""

from __future__ import annotations

import numpy as np

_generator = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Reseed the shared generator (like ``torch.manual_seed``)."""
    global _generator
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    _generator = np.random.default_rng(int(seed))


def get_rng() -> np.random.Generator:
    """The shared generator; draw from it rather than from ``np.random``."""
    return _generator


def get_rng_state() -> dict:
    """A JSON-friendly snapshot of the generator's state."""
    return _generator.bit_generator.state


def set_rng_state(state: dict) -> None:
    """Restore a snapshot taken by ``get_rng_state``."""
    _generator.bit_generator.state = state
