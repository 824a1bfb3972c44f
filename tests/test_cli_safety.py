"""The command line never loses a user's file: issue 16's reproducers through the real ``minseg`` entry point.

A tiny run (``train $S --iters 4``) is made once; every refused or failed command must then end with one
clear line on stderr (exit status 2) and leave every file of the run — bytes and modification time — and
every file of the user's as it was.
"""

import json
import os
import re
import shutil
import signal

import numpy as np
import pytest
from PIL import Image

import minseg
from minseg.app import cli, commands, registry

S = ["--dataset", "cells", "--batch-size", "2", "--image-size", "32", "--width", "0.0625", "--quiet"]


def run(*argv):
    return cli.main([str(a) for a in argv])


def snapshot(folder):
    """Every file under ``folder``: relative path → (bytes, mtime in ns)."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as file:
                files[os.path.relpath(path, folder)] = (file.read(), os.stat(path).st_mtime_ns)
    return files


def error_line(capsys):
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0] and "allow_pickle" not in lines[0]
    for internal in ("total_iters", "max_steps", "batch_size=", "Trainer"):  # options are named, not internals
        assert internal not in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder with the base run and a user's own files beside it."""
    root = tmp_path_factory.mktemp("safety")
    assert run("train", *S, "--iters", 4, "--out", root / "base") == 0
    (root / "mine").mkdir()
    (root / "mine" / "notes.txt").write_text("a user's notes")
    (root / "mine" / "cells_labels.png").write_bytes(b"a user's picture, not minseg's")
    return root


def refused(workspace, capsys, argv, message):
    """Run ``argv``; it must fail with one line matching ``message`` and change no file in the workspace."""
    before = snapshot(workspace)
    assert run(*argv) == cli.EXIT_ERROR
    line = error_line(capsys)
    assert snapshot(workspace) == before, "a refused command changed files"
    assert re.search(message, line), line
    return line


BASE = "{base}"
REFUSED = {
    # 1. evaluate must not write over a run's own files, nor over a file it did not write
    "evaluate-over-checkpoint": (["evaluate", "--checkpoint", BASE, "--out", "{base}/checkpoint.npz", "--quiet"],
                                 r"--out .*checkpoint.npz exists and is a run's own checkpoint.npz; minseg never"),
    "evaluate-over-config": (["evaluate", "--checkpoint", BASE, "--out", "{base}/config.json", "--quiet"],
                             r"a run's own config.json"),
    "evaluate-over-history": (["evaluate", "--checkpoint", BASE, "--out", "{base}/history.json", "--quiet"],
                              r"a run's own history.json"),
    "evaluate-over-user-file": (["evaluate", "--checkpoint", BASE, "--out", "{mine}/notes.txt", "--quiet"],
                                r"notes.txt exists and is a file minseg did not write"),
    "evaluate-out-is-folder": (["evaluate", "--checkpoint", BASE, "--out", "{mine}", "--quiet"],
                               r"--out .*mine is a folder; expected a file path"),
    # 2–3. a resumed run keeps its settings; only --iters/--epochs extend it
    **{f"resume-other-{flag[2:]}": (["train", *S, "--resume", "--out", BASE, flag, value],
                                    rf"{flag} {value} differs from the run's .*only --iters/--epochs may change")
       for flag, value in (("--model", "fcn8s"), ("--width", "0.125"), ("--lr", "0.01"), ("--batch-size", "4"),
                           ("--optimizer", "sgd"), ("--loss", "dice"), ("--seed", "3"), ("--image-size", "64"),
                           ("--dataset", "shapes"), ("--backbone", "resnet34"))},
    "resume-no-augment": (["train", *S, "--resume", "--out", BASE, "--no-augment"], r"--no-augment differs"),
    "resume-shorter": (["train", *S, "--resume", "--out", BASE, "--iters", "2"],
                       r"--iters 2 is fewer than the 4 steps the run in .* has done"),
    "resume-nothing-to-do": (["train", *S, "--resume", "--out", BASE],
                             r"has done all its 4 steps; pass --iters N with N > 4 to extend it"),
    "resume-elsewhere": (["train", *S, "--resume", "--out", "{mine}"], r"--resume: no checkpoint.npz in"),
    "train-over-run": (["train", *S, "--iters", "2", "--out", BASE], r"already holds a run; pass --resume"),
    # 4. values that used to be accepted and silently changed or broke the run
    **{f"train-{flag[2:]}-{value}": (["train", *S, flag, value, "--out", "{root}/new"],
                                     rf"{flag} must be {expected}; got {value}")
       for flag, value, expected in (("--iters", "0", "a positive integer"), ("--iters", "-3", "a positive integer"),
                                     ("--epochs", "0", "a positive integer"),
                                     ("--lr", "inf", "a positive finite number"),
                                     ("--lr", "nan", "a positive finite number"),
                                     ("--lr", "0.0", "a positive finite number"),
                                     ("--lr", "-0.1", "a positive finite number"),
                                     ("--width", "0.0", r"in \(0, 4.0\]"), ("--width", "-1.0", r"in \(0, 4.0\]"),
                                     ("--width", "inf", r"in \(0, 4.0\]"), ("--width", "1000.0", r"in \(0, 4.0\]"),
                                     ("--batch-size", "0", "a positive integer"),
                                     ("--image-size", "0", r"in \[8, 4096\]"),
                                     ("--image-size", "1048576", r"in \[8, 4096\]"),
                                     ("--seed", "-1", "a non-negative integer"))},
    # 5. a folder of the user's is not a run folder
    "train-into-user-folder": (["train", *S, "--iters", "2", "--out", "{mine}"],
                               r"holds files that are not a minseg run \(cells_labels.png, notes.txt\)"),
    "train-out-is-file": (["train", *S, "--iters", "2", "--out", "{mine}/notes.txt"],
                          r"--out .*notes.txt is a file; expected a folder"),
    "predict-same-name": (["predict", "--checkpoint", BASE, "--out", "{root}/predicted", "{root}/a/cells.png",
                           "{root}/b/cells.png"], r"IMAGE .*a/cells.png and .*b/cells.png would both write cells_labels"),
    "predict-over-user-png": (["predict", "--checkpoint", BASE, "--out", "{mine}", "{root}/a/cells.png"],
                              r"the prediction .*cells_labels.png exists and is a file minseg did not write"),
    "predict-out-is-file": (["predict", "--checkpoint", BASE, "--out", "{mine}/notes.txt", "{root}/a/cells.png"],
                            r"--out .*notes.txt is a file; expected a folder"),
    "predict-float-image": (["predict", "--checkpoint", BASE, "--out", "{root}/predicted", "{root}/float.tiff"],
                            r"holds 32-bit floats \(mode F\)"),
    "predict-tiny-image": (["predict", "--checkpoint", BASE, "--out", "{root}/predicted", "{root}/tiny.png"],
                           r"tiny.png is 4×4; the model needs at least 16×16"),
    "predict-not-an-image": (["predict", "--checkpoint", BASE, "--out", "{root}/predicted", "{mine}/notes.txt"],
                             r"cannot read image .*notes.txt"),
    "predict-missing-image": (["predict", "--checkpoint", BASE, "--out", "{root}/predicted", "{root}/none.png"],
                              r"cannot read image .*none.png"),
    # 8. one line instead of a traceback
    "train-batch-larger-than-data": (["train", *S[:2], "--batch-size", "500", *S[4:], "--iters", "1",
                                      "--out", "{root}/new"],
                                     r"--batch-size 500 is larger than the training set \(96 images of cells\)"),
    "train-image-size-multiple": (["train", *S[:4], "--image-size", "40", *S[6:], "--out", "{root}/new"],
                                  r"--image-size 40 must be a multiple of 16 for unet"),
    "train-missing-data-dir": (["train", "--dataset", "isbi2012", "--data-dir", "{root}/nowhere", "--iters", "1",
                                "--image-size", "32", "--out", "{root}/new", "--quiet"], r"--data-dir .* is not a folder"),
    "train-bad-device": (["train", *S, "--iters", "1", "--device", "tpu", "--out", "{root}/new"],
                         r"--device tpu: device must be 'cpu', 'cuda' or 'cuda:N'"),
    "demo-zero-steps": (["demo", "--steps", "0", "--out", "{root}/demo", "--quiet"],
                        r"--steps must be a positive integer; got 0"),
    "evaluate-sliding-window-0": (["evaluate", "--checkpoint", BASE, "--sliding-window", "0", "--quiet"],
                                  r"--sliding-window must be in \[1, 4096\]; got 0"),
    "evaluate-other-classes": (["evaluate", "--checkpoint", BASE, "--dataset", "shapes", "--quiet"],
                               r"--dataset shapes has 5 classes; the model predicts 2"),
    "evaluate-no-run": (["evaluate", "--checkpoint", "{mine}", "--quiet"], r"--checkpoint .*mine: no checkpoint.npz"),
}


@pytest.fixture(scope="module")
def inputs(workspace):
    """Images for predict: two with the same base name in different folders, a float TIFF, a 4×4 PNG."""
    for folder in ("a", "b"):
        (workspace / folder).mkdir()
        Image.fromarray(np.full((32, 32), 128, np.uint8)).save(workspace / folder / "cells.png")
    Image.fromarray(np.random.default_rng(0).random((32, 32)).astype(np.float32)).save(workspace / "float.tiff")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(workspace / "tiny.png")
    return workspace


@pytest.mark.parametrize("case", REFUSED)
def test_a_refused_command_changes_nothing(case, inputs, capsys):
    argv, message = REFUSED[case]
    places = {"base": inputs / "base", "mine": inputs / "mine", "root": inputs}
    refused(inputs, capsys, [part.format(**places) for part in argv], message)
    assert not (inputs / "new").exists() and not (inputs / "predicted").exists() and not (inputs / "demo").exists()


def _copy_of_base(workspace, tmp_path, name="run"):
    copy = tmp_path / name
    shutil.copytree(workspace / "base", copy)
    return copy


@pytest.mark.parametrize("damage", ["empty", "text", "truncated", "no-model"])
def test_a_damaged_checkpoint_gives_one_line(damage, workspace, tmp_path, capsys):
    copy = _copy_of_base(workspace, tmp_path)
    checkpoint = copy / "checkpoint.npz"
    if damage == "no-model":
        minseg.save({"step": 4}, checkpoint)
    else:
        good = checkpoint.read_bytes()
        checkpoint.write_bytes({"empty": b"", "text": b"weights: none\n", "truncated": good[:len(good) // 3]}[damage])
    for argv in (["evaluate", "--checkpoint", copy, "--quiet"], ["train", *S, "--resume", "--iters", 8, "--out", copy]):
        refused(tmp_path, capsys, argv, r"checkpoint.npz|--resume")


TAMPERED = {
    "not-json": "{model: unet",
    "a-list": [1, 2],
    "no-model": {"drop": "model"},
    "unknown-model": {"model": "segformer"},
    "huge-width": {"width": 1e9},
    "string-classes": {"num_classes": "two"},
    "names-mismatch": {"class_names": ["only one"]},
    "bad-palette": {"palette": [[0, 0, 999], [1, 2, 3]]},
    "negative-steps": {"steps": -4},
    "float-image-size": {"image_size": 32.5},
}


@pytest.mark.parametrize("tamper", TAMPERED)
def test_a_tampered_config_gives_one_line(tamper, workspace, tmp_path, capsys):
    copy = _copy_of_base(workspace, tmp_path)
    config = json.loads((copy / "config.json").read_text())
    change = TAMPERED[tamper]
    if isinstance(change, str):
        text = change
    elif isinstance(change, list):
        text = json.dumps(change)
    else:
        config.pop(change.pop("drop", None), None)
        text = json.dumps({**config, **change})
    (copy / "config.json").write_text(text)
    for argv in (["evaluate", "--checkpoint", copy, "--quiet"], ["predict", "--checkpoint", copy, workspace / "a"],
                 ["train", *S, "--resume", "--iters", 8, "--out", copy]):
        line = refused(tmp_path, capsys, argv, r"config.json")
        assert "KeyError" not in line and "MemoryError" not in line


def test_extending_a_run_extends_its_schedule(workspace, tmp_path):
    """--resume --iters 8 on a 4-step run: steps 5–8 train at the poly lr of an 8-step run, not at lr 0."""
    copy = _copy_of_base(workspace, tmp_path)
    assert run("train", *S, "--resume", "--iters", 8, "--out", copy) == 0
    history = json.loads((copy / "history.json").read_text())
    lrs = {record["step"]: record["lr"] for record in history["train"]}
    assert sorted(lrs) == list(range(1, 9))
    for step in range(5, 9):
        assert lrs[step] == pytest.approx(1e-3 * (1 - step / 8) ** 0.9, rel=1e-9)
    assert json.loads((copy / "config.json").read_text())["steps"] == 8
    assert minseg.load(copy / "checkpoint.npz")["step"] == 8


@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
def test_a_diverging_run_stops_with_one_line_and_keeps_no_bad_weights(tmp_path, capsys):
    out = tmp_path / "run"
    assert run("train", *S, "--lr", "1e30", "--optimizer", "sgd", "--iters", 8, "--out", out) == cli.EXIT_ERROR
    line = error_line(capsys)
    assert re.search(r"loss is (nan|inf)|non-finite", line) and "try a smaller --lr than 1e+30" in line
    if (out / "checkpoint.npz").exists():
        assert all(np.isfinite(v).all() for v in minseg.load(out / "checkpoint.npz")["model"].values())


def test_demo_never_writes_into_a_folder_of_the_users(workspace, tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "figure.png").write_bytes(b"the user's figure")
    before = snapshot(tmp_path / "demo")
    assert run("demo", "--steps", 1, "--out", tmp_path / "demo", "--quiet") == 0
    assert snapshot(tmp_path / "demo") == before and (tmp_path / "demo-1" / "checkpoint.npz").exists()


def test_a_second_evaluation_replaces_the_first_and_predictions_replace_theirs(workspace, inputs, tmp_path):
    copy = _copy_of_base(workspace, tmp_path)
    for _ in range(2):
        assert run("evaluate", "--checkpoint", copy, "--quiet") == 0
        assert run("predict", "--checkpoint", copy, inputs / "a" / "cells.png") == 0
    assert json.loads((copy / "evaluation.json").read_text())["written_by"] == "minseg evaluate"
    assert sorted(os.listdir(copy / "predictions")) == ["cells_labels.png", "cells_overlay.png"]


def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    Image.fromarray((ramp // 257).astype(np.uint8)).save(tmp_path / "flat.png")
    deep, flat = commands.read_image(tmp_path / "deep.png", 1), commands.read_image(tmp_path / "flat.png", 1)
    assert deep.shape == (1, 32, 32) and deep.max() == 1.0 and (deep < 1).mean() > 0.99  # not clipped to 1
    np.testing.assert_allclose(deep, flat, atol=1 / 255)
    assert commands.read_image(tmp_path / "deep.png", 3).shape == (3, 32, 32)


def test_sigterm_saves_and_stops_like_ctrl_c(tmp_path, monkeypatch):
    real_build_loss, calls = registry.build_loss, {"n": 0}

    def loss_terminated_at_step_2(*args, **kwargs):
        loss = real_build_loss(*args, **kwargs)

        def wrapped(logits, target, *extras):
            calls["n"] += logits.requires_grad
            if calls["n"] == 2 and logits.requires_grad:
                os.kill(os.getpid(), signal.SIGTERM)
            return loss(logits, target, *extras)
        return wrapped

    monkeypatch.setattr(registry, "build_loss", loss_terminated_at_step_2)
    assert run("train", *S, "--iters", 6, "--out", tmp_path / "run") == cli.EXIT_INTERRUPTED
    assert minseg.load(tmp_path / "run" / "checkpoint.npz")["step"] == 2


def test_a_bug_is_not_swallowed_into_one_line(tmp_path, monkeypatch):
    """main() turns user errors into one line, but an error in minseg itself keeps its traceback."""
    def broken_build_model(*args, **kwargs):
        raise TypeError("a bug in minseg")

    monkeypatch.setattr(registry, "build_model", broken_build_model)
    with pytest.raises(TypeError, match="a bug in minseg"):
        run("train", *S, "--iters", 1, "--out", tmp_path / "run")


def test_help_says_how_resume_extends_a_run(capsys):
    with pytest.raises(SystemExit):
        run("train", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "a larger N extends the run, and its poly learning-rate schedule is stretched to N steps" in text
    assert "an option that would change them is refused, except --iters/--epochs" in text


def test_an_evaluation_of_an_earlier_version_may_be_replaced_but_not_a_look_alike(workspace, tmp_path, capsys):
    copy = _copy_of_base(workspace, tmp_path)
    earlier = {"miou": 0.5, "per_class_iou": {}, "sliding_window": None, "tta": False, "crf": False}  # no mark
    (copy / "evaluation.json").write_text(json.dumps(earlier))
    assert run("evaluate", "--checkpoint", copy, "--quiet") == 0
    assert json.loads((copy / "evaluation.json").read_text())["written_by"] == "minseg evaluate"
    (copy / "evaluation.json").write_text(json.dumps({"miou": "my own notes"}))
    refused(tmp_path, capsys, ["evaluate", "--checkpoint", copy, "--quiet"],
            r"evaluation.json exists and is a file minseg did not write")
