"""Checkpoints: nested round trip, no pickle, atomic writes."""

import os
from collections import OrderedDict

import numpy as np
import pytest

import minseg
from minseg.core import serialization


def _checkpoint():
    return {
        "model": OrderedDict([("conv.weight", minseg.randn(2, 3, 3, 3)), ("bn.num_batches_tracked", np.array(4))]),
        "optimizer": {"state": {0: {"momentum_buffer": np.arange(6.0)}}, "param_groups": [{"lr": 0.1, "params": [0]}]},
        "step": 7, "betas": (0.9, 0.999), "flag": True, "note": None, "name": "unet",
        "scalar": np.float32(2.5), "rng": minseg.get_rng_state(),
    }


def test_round_trip_keeps_structure_and_values(tmp_path):
    original = _checkpoint()
    minseg.save(original, tmp_path / "ckpt.npz")
    loaded = minseg.load(tmp_path / "ckpt.npz")
    assert list(loaded["model"]) == ["conv.weight", "bn.num_batches_tracked"]
    np.testing.assert_array_equal(loaded["model"]["conv.weight"], original["model"]["conv.weight"].numpy())
    assert loaded["model"]["conv.weight"].dtype == np.float32
    assert list(loaded["optimizer"]["state"]) == [0]  # integer keys stay integers
    np.testing.assert_array_equal(loaded["optimizer"]["state"][0]["momentum_buffer"], np.arange(6.0))
    assert loaded["optimizer"]["param_groups"] == [{"lr": 0.1, "params": [0]}]
    assert loaded["betas"] == (0.9, 0.999) and loaded["step"] == 7 and loaded["flag"] is True
    assert loaded["note"] is None and loaded["name"] == "unet" and loaded["scalar"] == 2.5
    assert loaded["rng"] == original["rng"]


def test_files_are_readable_without_pickle(tmp_path):
    minseg.save(_checkpoint(), tmp_path / "ckpt.npz")
    with np.load(tmp_path / "ckpt.npz", allow_pickle=False) as archive:
        assert "structure.json" in archive.files


def test_object_arrays_are_refused(tmp_path):
    with pytest.raises(TypeError, match="pickle"):
        minseg.save({"bad": np.array([{}, 1], dtype=object)}, tmp_path / "x.npz")
    with pytest.raises(TypeError, match="cannot store a value of type set"):
        minseg.save({"bad": {1, 2}}, tmp_path / "x.npz")


def test_a_crash_mid_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    minseg.save({"step": 1, "w": np.ones(3)}, path)

    def broken_savez(file, **entries):
        file.write(b"PK\x03\x04 half a zip")  # some bytes reach the disk, then the writer dies
        raise OSError("disk full")

    monkeypatch.setattr(serialization.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        minseg.save({"step": 2, "w": np.zeros(3)}, path)
    monkeypatch.undo()
    assert minseg.load(path)["step"] == 1
    assert os.listdir(tmp_path) == ["ckpt.npz"]  # no temporary file left behind


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        minseg.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "plain.npz", a=np.ones(2))
    with pytest.raises(ValueError, match="not a minseg checkpoint"):
        minseg.load(tmp_path / "plain.npz")


@pytest.mark.parametrize("content, message", [
    (b"", r"is not a minseg checkpoint \(an empty file\)"),
    (b"step: 7\n", r"is not a minseg checkpoint \(not an .npz archive\)"),
    ("half", r"is damaged \(truncated or altered\): BadZipFile"),
    ("tail", r"is damaged \(truncated or altered\)"),
    ("holed", r"is damaged \(truncated or altered\)"),
])
def test_damaged_or_foreign_files_give_one_clear_error(content, message, tmp_path):
    """Never numpy's BadZipFile/EOFError, nor its advice to load "unsafely" with allow_pickle."""
    minseg.save({"w": np.arange(1000.0), "step": 3}, tmp_path / "good.npz")
    good = (tmp_path / "good.npz").read_bytes()
    damaged = {"half": good[:len(good) // 2], "tail": good[:-30],
               "holed": good[:100] + bytes(200) + good[300:]}.get(content, content)
    (tmp_path / "bad.npz").write_bytes(damaged)
    with pytest.raises(ValueError, match=message) as error:
        minseg.load(tmp_path / "bad.npz")
    assert "allow_pickle" not in str(error.value) and "unsafe" not in str(error.value)


def test_object_arrays_in_a_file_are_refused_without_pickle_advice(tmp_path):
    np.savez(tmp_path / "evil.npz", **{"structure.json": np.array('{"format": "minseg-checkpoint-1", "content": '
                                                                   '{"__array__": 0}}'),
                                       "arrays/0": np.array([{}], dtype=object)})
    with pytest.raises(ValueError, match="holds object arrays, which only pickle could read") as error:
        minseg.load(tmp_path / "evil.npz")
    assert "allow_pickle" not in str(error.value)


KILLED_SAVE = """
import os, signal, sys
import numpy as np
import minseg
from minseg.core import serialization

def savez_killed_halfway(file, **entries):
    file.write(b"PK\\x03\\x04 half a zip")
    file.flush()
    os.kill(os.getpid(), signal.SIGKILL)

serialization.np.savez = savez_killed_halfway
minseg.save({"step": 2}, sys.argv[1])
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and process probing are POSIX")
def test_the_next_save_removes_what_a_killed_save_left(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "ckpt.npz"
    minseg.save({"step": 1}, path)
    (tmp_path / ".tmp-mine.npz").write_bytes(b"a user's file")  # not ours: never touched
    killed = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(path)])
    assert killed.returncode == -9
    leftovers = [name for name in os.listdir(tmp_path) if name.startswith(".ckpt.npz.tmp-")]
    assert len(leftovers) == 1 and minseg.load(path)["step"] == 1
    live = tmp_path / f".ckpt.npz.tmp-{os.getppid()}-busy"  # a save still running in another process
    live.write_bytes(b"in progress")
    minseg.save({"step": 3}, path)
    assert sorted(os.listdir(tmp_path)) == sorted([".tmp-mine.npz", live.name, "ckpt.npz"])
    assert minseg.load(path)["step"] == 3
