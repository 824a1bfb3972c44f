"""``minseg.save`` / ``minseg.load``: checkpoints as ``.npz`` files, written atomically, read without pickle.

A checkpoint is any nesting of dicts, lists and tuples whose leaves are arrays (NumPy, CuPy, minseg
tensors), numbers, strings, booleans or ``None`` — a model's ``state_dict()``, an optimizer's, the RNG
state, a step counter. The arrays are stored as the npz entries ``arrays/0``, ``arrays/1``, …; everything
else goes into one JSON entry that describes the nesting and points at the arrays. Reading therefore
never unpickles anything (``np.load(..., allow_pickle=False)``): a checkpoint cannot run code.

Saving writes to a temporary file beside the target and renames it over the target only once the data
is on disk, so a crash or an exception mid-save leaves the previous checkpoint intact. A process killed
mid-save leaves its temporary file (``.NAME.tmp-PID-…``); the next save to the same target removes the
ones whose process is gone. Loading a damaged or foreign file is a ``ValueError`` that says what is wrong.
"""

from __future__ import annotations

import glob
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


def _stale_temporaries(path):
    """Temporary files of earlier saves to ``path`` whose process no longer runs (POSIX only: elsewhere
    a process cannot be asked whether it lives without being signalled)."""
    if os.name != "posix":
        return []
    stale = []
    pattern = os.path.join(os.path.dirname(path), f".{glob.escape(os.path.basename(path))}.tmp-*")
    for candidate in glob.glob(pattern):
        pid = os.path.basename(candidate).rpartition(".tmp-")[2].partition("-")[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            stale.append(candidate)
        except OSError:  # it runs, as another user
            pass
    return stale


def atomic_write(path, write) -> None:
    """Create or replace ``path`` atomically: ``write(file)`` fills a temporary file beside it (binary),
    which is flushed, synced and renamed over ``path``; on any error the temporary file is removed and
    ``path`` is left as it was. Leftovers of killed earlier writes to ``path`` are removed first."""
    path = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    for leftover in _stale_temporaries(path):
        os.remove(leftover)
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-{os.getpid()}-", dir=directory)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def save(obj, path) -> None:
    """Write ``obj`` to ``path`` (an ``.npz`` file) atomically: temp file, fsync, rename."""
    arrays: list = []
    structure = json.dumps({"format": _FORMAT, "content": _encode(obj, arrays)})
    entries = {f"arrays/{i}": array for i, array in enumerate(arrays)}
    entries[_STRUCTURE] = np.array(structure)
    atomic_write(path, lambda file: np.savez(file, **entries))


def load(path):
    """Read a checkpoint written by ``save``; arrays come back as NumPy arrays."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load: no checkpoint at {path!r}")
    with open(path, "rb") as file:
        start = file.read(4)
    if start != b"PK\x03\x04":
        what = "an empty file" if not start else "not an .npz archive"
        raise ValueError(f"load: {path!r} is not a minseg checkpoint ({what})")
    damaged = f"load: {path!r} is damaged (truncated or altered)"
    try:
        with np.load(path, allow_pickle=False) as archive:
            entries = {name: archive[name] for name in archive.files}
    except ValueError as error:
        if "pickle" in str(error):  # numpy's advice to load it "unsafely" is never taken
            raise ValueError(f"load: {path!r} holds object arrays, which only pickle could read; minseg never "
                             "unpickles a checkpoint") from None
        raise ValueError(f"{damaged}: {error}") from None
    except Exception as error:  # zipfile, zlib and numpy's header parser each raise their own types
        raise ValueError(f"{damaged}: {type(error).__name__}: {error}") from None
    if _STRUCTURE not in entries:
        raise ValueError(f"load: {path!r} is an .npz file but not a minseg checkpoint (no {_STRUCTURE} entry)")
    try:
        structure = json.loads(str(entries.pop(_STRUCTURE)))
    except json.JSONDecodeError as error:
        raise ValueError(f"{damaged}: its {_STRUCTURE} is not JSON ({error})") from None
    found = structure.get("format") if isinstance(structure, dict) else None
    if found != _FORMAT:
        raise ValueError(f"load: {path!r} has format {found!r}; expected {_FORMAT!r}")
    try:
        return _decode(structure["content"], entries)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{damaged}: its {_STRUCTURE} does not match its arrays ({type(error).__name__}: "
                         f"{error})") from None
