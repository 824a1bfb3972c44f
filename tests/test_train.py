"""Trainer: learns a toy task, resumes bit-exactly, survives NaN, Ctrl-C and a crash while saving."""

import json
import os
import signal

import numpy as np
import pytest

import minseg
import minseg.functional as F
import minseg.nn as nn
from minseg.core import serialization
from minseg.data import DataLoader
from minseg.optim import SGD, Adam, PolyLR
from minseg.app.train import NonFiniteLossError, Trainer


class Squares:
    """Noisy 24×24 images with bright squares; the mask marks the squares (class 1)."""

    def __init__(self, count, offset=0, augment=False):
        self.count, self.offset, self.augment = count, offset, augment

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        rng = np.random.default_rng(self.offset + index)
        mask = np.zeros((24, 24), np.int64)
        for _ in range(2):
            top, left = rng.integers(0, 16, size=2)
            size = rng.integers(5, 9)
            mask[top:top + size, left:left + size] = 1
        image = (mask * 1.0 + 0.3 * rng.standard_normal((24, 24)))[None].astype(np.float32)
        return image, mask

    def sample(self, index, rng):
        image, mask = self[index]
        if self.augment and rng.random() < 0.5:
            image, mask = image[:, :, ::-1].copy(), mask[:, ::-1].copy()
        return image, mask


def small_cnn(dropout=0.0):
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout2d(dropout),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1))


def foreground_iou(model, dataset, device="cpu"):
    with minseg.no_grad():
        model.eval()
        images = minseg.tensor(np.stack([dataset[i][0] for i in range(len(dataset))]), device=device)
        masks = np.stack([dataset[i][1] for i in range(len(dataset))])
        predicted = model(images).numpy().argmax(axis=1)
    return np.logical_and(predicted == 1, masks == 1).sum() / np.logical_or(predicted == 1, masks == 1).sum()


def test_trainer_learns_a_toy_segmentation_task(tmp_path, device):
    minseg.manual_seed(0)
    model = small_cnn()
    train = DataLoader(Squares(64), batch_size=8, shuffle=True, seed=0)
    val = DataLoader(Squares(16, offset=1000), batch_size=8)
    trainer = Trainer(model, F.cross_entropy, Adam(model.parameters(), lr=0.02), train, val_loader=val,
                      max_steps=160, eval_every=80, out_dir=tmp_path, device=device, progress=False)
    history = trainer.fit()
    first, last = history["train"][0]["loss"], np.mean([r["loss"] for r in history["train"][-8:]])
    assert last < first / 10, f"loss only fell from {first:.3f} to {last:.3f}"
    assert foreground_iou(model, Squares(16, offset=1000), device) > 0.9
    assert [r["step"] for r in history["eval"]] == [80, 160]
    saved = json.loads((tmp_path / "history.json").read_text())
    assert len(saved["train"]) == 160 and (tmp_path / "curves.png").exists()
    assert minseg.load(tmp_path / "checkpoint.npz")["step"] == 160


def _resumable_run(out_dir, steps, init_seed, resume=False):
    minseg.manual_seed(init_seed)
    model = small_cnn(dropout=0.2)
    optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    loader = DataLoader(Squares(10, augment=True), batch_size=4, shuffle=True, seed=3)
    trainer = Trainer(model, F.cross_entropy, optimizer, loader, scheduler=PolyLR(optimizer, total_iters=4),
                      max_steps=steps, out_dir=out_dir, seed=11, progress=False)
    trainer.fit(resume=resume)
    return model, optimizer


def test_resume_is_bit_exact(tmp_path):
    """4 steps straight == 2 steps, checkpoint, fresh objects restored from it, 2 more steps (3 batches per
    epoch, so the resume lands mid-epoch; dropout and augmentation draw random numbers throughout)."""
    straight, _ = _resumable_run(tmp_path / "straight", 4, init_seed=1)
    _resumable_run(tmp_path / "split", 2, init_seed=1)
    resumed, optimizer = _resumable_run(tmp_path / "split", 4, init_seed=99, resume=True)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0)


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path):
    minseg.manual_seed(0)
    model = small_cnn()
    calls = {"n": 0}

    def loss_that_explodes(logits, target):
        calls["n"] += 1
        loss = F.cross_entropy(logits, target)
        return loss * float("nan") if calls["n"] == 3 else loss

    trainer = Trainer(model, loss_that_explodes, SGD(model.parameters(), lr=0.1), DataLoader(Squares(8), 4),
                      max_steps=10, checkpoint_every=2, out_dir=tmp_path, progress=False)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 3 .*last good checkpoint"):
        trainer.fit()
    checkpoint = minseg.load(tmp_path / "checkpoint.npz")
    assert checkpoint["step"] == 2
    for name, value in model.named_parameters():  # the bad step never updated the weights
        np.testing.assert_array_equal(value.numpy(), checkpoint["model"][name], err_msg=name)


@pytest.mark.parametrize("signal_number, at_step", [(signal.SIGINT, 3), (signal.SIGTERM, 2)], ids=["ctrl-c", "sigterm"])
def test_a_stop_signal_finishes_the_step_saves_and_stops(signal_number, at_step, tmp_path, capsys):
    """Ctrl-C, or SIGTERM as a job scheduler ends a job: the step finishes, the checkpoint is saved, and the
    handlers are those from before fit() again (SIG_IGN when the suite runs in the background)."""
    minseg.manual_seed(0)
    model = small_cnn()
    calls = {"n": 0}

    def loss_with_signal(logits, target):
        calls["n"] += 1
        if calls["n"] == at_step:
            os.kill(os.getpid(), signal_number)
        return F.cross_entropy(logits, target)

    trainer = Trainer(model, loss_with_signal, SGD(model.parameters(), lr=0.1), DataLoader(Squares(8), 4),
                      max_steps=10, out_dir=tmp_path, progress=False)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert minseg.load(tmp_path / "checkpoint.npz")["step"] == at_step
    if signal_number == signal.SIGTERM:
        assert f"stopped by SIGTERM at step {at_step}: checkpoint saved" in capsys.readouterr().out
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_an_update_that_makes_weights_non_finite_saves_nothing(tmp_path):
    """A finite loss but a huge learning rate at step 3: that update overflows the weights. The loss guard
    alone would notice only at step 4, after the checkpoint of step 3 had stored the bad weights."""
    minseg.manual_seed(0)
    model = small_cnn()
    optimizer = SGD(model.parameters(), lr=0.1)
    calls = {"n": 0}

    def loss_then_huge_lr(logits, target):
        calls["n"] += 1
        if calls["n"] == 3:
            optimizer.param_groups[0]["lr"] = 1e300
        return F.cross_entropy(logits, target)

    trainer = Trainer(model, loss_then_huge_lr, optimizer, DataLoader(Squares(8), 4), max_steps=6,
                      checkpoint_every=1, out_dir=tmp_path, progress=False)
    with pytest.raises(NonFiniteLossError, match=r"the update of step 3 made .* non-finite .*last good checkpoint"):
        trainer.fit()
    kept = minseg.load(tmp_path / "checkpoint.npz")
    assert kept["step"] == 2
    assert all(np.isfinite(value).all() for value in kept["model"].values())


def test_resuming_with_more_steps_stretches_the_schedule(tmp_path):
    """4 steps, then resumed to 8: steps 5–8 follow a poly schedule over 8 steps (not lr 0 past the end of
    the old one), as a run planned for 8 steps from the start would."""
    def run(steps, resume=False):
        minseg.manual_seed(0)
        model = small_cnn()
        optimizer = SGD(model.parameters(), lr=0.1)
        trainer = Trainer(model, F.cross_entropy, optimizer, DataLoader(Squares(8), 4),
                          scheduler=PolyLR(optimizer, total_iters=steps), max_steps=steps, out_dir=tmp_path,
                          progress=False)
        return trainer.fit(resume=resume)

    run(4)
    history = run(8, resume=True)
    lrs = [record["lr"] for record in history["train"]]
    expected = [0.1 * (1 - step / 4) ** 0.9 for step in range(1, 5)] + [0.1 * (1 - step / 8) ** 0.9
                                                                        for step in range(5, 9)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-12, atol=1e-15)
    assert minseg.load(tmp_path / "checkpoint.npz")["scheduler"]["total_iters"] == 8
    with pytest.raises(ValueError, match="the checkpoint is at step 8, past the 6 steps"):
        run(6, resume=True)


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    minseg.manual_seed(0)
    model = small_cnn()
    trainer = Trainer(model, F.cross_entropy, SGD(model.parameters(), lr=0.1), DataLoader(Squares(8), 4),
                      max_steps=4, checkpoint_every=2, out_dir=tmp_path, progress=False)
    real_savez, saves = serialization.np.savez, {"n": 0}

    def savez_that_dies_the_second_time(file, **entries):
        saves["n"] += 1
        if saves["n"] == 2:
            file.write(b"partial")
            raise OSError("power cut")
        real_savez(file, **entries)

    monkeypatch.setattr(serialization.np, "savez", savez_that_dies_the_second_time)
    with pytest.raises(OSError, match="power cut"):
        trainer.fit()
    assert minseg.load(tmp_path / "checkpoint.npz")["step"] == 2
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz", "curves.png", "history.json"]


def test_arguments_are_checked(tmp_path):
    model = small_cnn()
    optimizer, loader = SGD(model.parameters(), lr=0.1), DataLoader(Squares(4), 2)
    with pytest.raises(ValueError, match="exactly one of max_steps and epochs"):
        Trainer(model, F.cross_entropy, optimizer, loader)
    with pytest.raises(ValueError, match="eval_every must be a positive int"):
        Trainer(model, F.cross_entropy, optimizer, loader, epochs=1, eval_every=0)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Trainer(model, F.cross_entropy, optimizer, loader, epochs=1, out_dir=tmp_path, progress=False).fit(resume=True)
