"""``minseg.save`` / ``minseg.load``: checkpoints as ``.npz`` files, written atomically, read without pickle.

A checkpoint is any nesting of dicts, lists and tuples whose leaves are arrays (NumPy, CuPy, minseg
tensors), numbers, strings, booleans or ``None`` — a model's ``state_dict()``, an optimizer's, the RNG
state, a step counter. The arrays are stored as the npz entries ``arrays/0``, ``arrays/1``, …; everything
else goes into one JSON entry that describes the nesting and points at the arrays. Reading therefore
never unpickles anything (``np.load(..., allow_pickle=False)``): a checkpoint cannot run code.

Saving writes to a temporary file beside the target and renames it over the target only once the data
is on disk, so a crash or an exception mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from .autograd import Tensor
from .backend import get_array_module, to_device

_STRUCTURE = "structure.json"
_FORMAT = "minseg-checkpoint-1"


def _encode(value, arrays: list):
    """Replace arrays by references into ``arrays``; make dicts with non-string keys JSON-safe."""
    if isinstance(value, Tensor):
        value = value.data
    if isinstance(value, get_array_module(value).ndarray) or isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError("save: object arrays would need pickle; store numeric, boolean or string arrays")
        arrays.append(to_device(value, "cpu"))
        return {"__array__": len(arrays) - 1}
    if isinstance(value, dict):
        return {"__dict__": [[_encode(k, arrays), _encode(v, arrays)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in value]}
    if isinstance(value, list):
        return [_encode(v, arrays) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"save: cannot store a value of type {type(value).__name__}; checkpoints hold dicts, lists, "
                    "tuples, arrays/tensors, numbers, strings, booleans and None")


def _decode(value, arrays):
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if isinstance(value, dict):
        if "__array__" in value:
            return arrays[f"arrays/{value['__array__']}"]
        if "__tuple__" in value:
            return tuple(_decode(v, arrays) for v in value["__tuple__"])
        return {_decode(k, arrays): _decode(v, arrays) for k, v in value["__dict__"]}
    return value


def save(obj, path) -> None:
    """Write ``obj`` to ``path`` (an ``.npz`` file) atomically: temp file, fsync, rename."""
    path = os.fspath(path)
    arrays: list = []
    structure = json.dumps({"format": _FORMAT, "content": _encode(obj, arrays)})
    entries = {f"arrays/{i}": array for i, array in enumerate(arrays)}
    entries[_STRUCTURE] = np.array(structure)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **entries)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def load(path):
    """Read a checkpoint written by ``save``; arrays come back as NumPy arrays."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load: no checkpoint at {path!r}")
    with np.load(path, allow_pickle=False) as archive:
        if _STRUCTURE not in archive.files:
            raise ValueError(f"load: {path!r} is an .npz file but not a minseg checkpoint (no {_STRUCTURE} entry)")
        structure = json.loads(str(archive[_STRUCTURE]))
        if structure.get("format") != _FORMAT:
            raise ValueError(f"load: {path!r} has format {structure.get('format')!r}; expected {_FORMAT!r}")
        arrays = {name: archive[name] for name in archive.files if name != _STRUCTURE}
    return _decode(structure["content"], arrays)
