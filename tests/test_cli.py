"""The minseg command: every subcommand on synthetic data, resume after an interruption, clear errors."""

import json
import os
import signal

import numpy as np
import pytest
from PIL import Image

from minseg.app import cli, registry

SMALL = ["--width", "0.125", "--image-size", "32", "--batch-size", "4", "--quiet"]


def run(*argv):
    return cli.main([str(a) for a in argv])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "unet-cells"
    assert run("train", "--model", "unet", "--dataset", "cells", "--iters", 6, "--out", out, *SMALL) == 0
    return out


def test_demo_trains_evaluates_and_draws(tmp_path, capsys):
    """A shortened demo: the files a newcomer is promised, and a foreground IoU clearly above chance."""
    assert run("demo", "--steps", 20, "--out", tmp_path / "demo", "--quiet") == 0
    for name in ("config.json", "checkpoint.npz", "history.json", "curves.png", "metrics.json", "predictions.png"):
        assert (tmp_path / "demo" / name).exists(), name
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert metrics["foreground_iou"] > 0.6
    assert "foreground IoU" in capsys.readouterr().out
    assert run("demo", "--steps", 1, "--out", tmp_path / "demo", "--quiet") == 0  # a second demo never overwrites
    assert (tmp_path / "demo-1" / "checkpoint.npz").exists()


@pytest.mark.parametrize("model", ["fcn8s", "deeplabv3plus", "deeplabv1"])
@pytest.mark.parametrize("loss", ["ce"])
def test_train_each_family_on_shapes(model, loss, tmp_path):
    out = tmp_path / model
    assert run("train", "--model", model, "--dataset", "shapes", "--loss", loss, "--iters", 2, "--out", out,
               *SMALL) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == model and config["num_classes"] == 5 and config["in_channels"] == 3


@pytest.mark.parametrize("loss", ["weighted", "dice", "lovasz", "boundary", "focal"])
def test_train_with_each_loss(loss, tmp_path):
    assert run("train", "--model", "unet", "--dataset", "cells", "--loss", loss, "--iters", 2,
               "--out", tmp_path / loss, *SMALL) == 0


def test_resume_after_an_interrupted_run(tmp_path, monkeypatch):
    real_build_loss, calls = registry.build_loss, {"n": 0}

    def loss_interrupted_at_step_3(*args, **kwargs):
        loss = real_build_loss(*args, **kwargs)

        def wrapped(logits, target, *extras):
            calls["n"] += logits.requires_grad  # count training steps, not validation batches
            if calls["n"] == 3 and logits.requires_grad:
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during the third step
            return loss(logits, target, *extras)
        return wrapped

    monkeypatch.setattr(registry, "build_loss", loss_interrupted_at_step_3)
    out = tmp_path / "run"
    assert run("train", "--iters", 6, "--out", out, *SMALL) == cli.EXIT_INTERRUPTED
    history = json.loads((out / "history.json").read_text())
    assert history["train"][-1]["step"] == 3
    monkeypatch.setattr(registry, "build_loss", real_build_loss)
    assert run("train", "--iters", 6, "--out", out, *SMALL) == cli.EXIT_ERROR  # no silent overwrite
    assert run("train", "--iters", 6, "--out", out, "--resume", *SMALL) == 0
    history = json.loads((out / "history.json").read_text())
    assert [r["step"] for r in history["train"]] == [1, 2, 3, 4, 5, 6]


def test_evaluate_with_every_inference_option(trained_run, tmp_path, capsys):
    assert run("evaluate", "--checkpoint", trained_run, "--quiet") == 0
    plain = json.loads((trained_run / "evaluation.json").read_text())
    assert set(plain["per_class_iou"]) == {"background", "cell"} and 0 <= plain["miou"] <= 1
    assert "mIoU" in capsys.readouterr().out
    out = tmp_path / "eval.json"
    assert run("evaluate", "--checkpoint", trained_run / "checkpoint.npz", "--sliding-window", 32, "--tta",
               "--crf", "--out", out, "--quiet") == 0
    scored = json.loads(out.read_text())
    assert scored["sliding_window"] == 32 and scored["tta"] and scored["crf"] and 0 <= scored["boundary_f1"] <= 1


def test_predict_writes_label_pngs_and_overlays(trained_run, tmp_path):
    image_path = tmp_path / "cells.png"
    Image.fromarray((np.random.default_rng(0).random((40, 36)) * 255).astype(np.uint8)).save(image_path)
    assert run("predict", "--checkpoint", trained_run, "--out", tmp_path / "out", image_path) == 0
    labels = np.asarray(Image.open(tmp_path / "out" / "cells_labels.png"))
    assert labels.shape == (40, 36) and set(np.unique(labels)) <= {0, 1}
    assert Image.open(tmp_path / "out" / "cells_overlay.png").size == (36, 40)


def _error_line(capsys):
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0]
    return lines[0]


def test_bad_arguments_give_one_clear_line(trained_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run("train", "--model", "segformer")
    assert exit_info.value.code == 2 and "invalid choice: 'segformer'" in capsys.readouterr().err
    assert run("train", "--dataset", "isbi2012", "--data-dir", tmp_path / "missing", "--iters", 1,
               "--out", tmp_path / "x", *SMALL) == cli.EXIT_ERROR
    assert "--data-dir" in _error_line(capsys)
    config = json.loads((trained_run / "config.json").read_text())
    other = tmp_path / "other"
    other.mkdir()
    (other / "checkpoint.npz").write_bytes((trained_run / "checkpoint.npz").read_bytes())
    (other / "config.json").write_text(json.dumps({**config, "model": "fcn8s"}))
    assert run("evaluate", "--checkpoint", other, "--quiet") == cli.EXIT_ERROR
    assert "does not fit a fcn8s model" in _error_line(capsys)
    assert run("predict", "--checkpoint", tmp_path / "nowhere", "x.png") == cli.EXIT_ERROR
    assert "no checkpoint.npz" in _error_line(capsys)
    assert run("train", "--image-size", 30, "--iters", 1, "--out", tmp_path / "y", "--quiet") == cli.EXIT_ERROR
    assert "multiple of 16" in _error_line(capsys)
