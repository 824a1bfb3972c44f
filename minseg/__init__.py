"""minseg: semantic segmentation from scratch on NumPy/CuPy, written to be read beside chapter 7."""

__version__ = "0.1.0"

from . import functional  # noqa: F401  (also attaches Tensor's operators and methods)
from . import data, nn, optim  # noqa: F401  (minseg.nn, minseg.optim, minseg.data after `import minseg`)
from .core.autograd import Function, Tensor, enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .core.factories import arange, full, ones, ones_like, rand, randn, tensor, zeros, zeros_like
from .core.backend import cuda_available, get_array_module, reuse_freed_memory, to_device
from .core.random import get_rng_state, manual_seed, set_rng_state
from .core.serialization import load, save
from .core.threads import get_num_threads, set_num_threads

import numpy as _np

float32, float64, int64, bool_ = _np.float32, _np.float64, _np.int64, _np.bool_
