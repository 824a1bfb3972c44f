"""cross_entropy and nll_loss against torch: class weights, ignore_index, reductions, label smoothing."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import minseg
import minseg.functional as F
from helpers import check_op

# (input shape, class axis size C is shape[1], or shape[0] for the unbatched (C,) form)
SHAPES = [(7, 4), (2, 5, 3, 4), (2, 3, 2, 3, 5), (6,)]
# (ignore_index, whether to use class weights); 255 is the void label of VOC/Cityscapes
LABELLINGS = [(-100, False), (255, True), (1, True)]
REDUCTIONS = ["mean", "sum", "none"]


def _classes(shape):
    return shape[0] if len(shape) == 1 else shape[1]


def _problem(rng, shape, ignore_index):
    """Logits, integer targets with about a quarter of them set to ``ignore_index``, and class weights."""
    classes = _classes(shape)
    target_shape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    target = rng.integers(0, classes, target_shape)
    if ignore_index not in range(classes) and target.ndim:
        target[rng.random(target_shape) < 0.25] = ignore_index
    return rng.standard_normal(shape) * 2, target, rng.uniform(0.2, 3.0, classes)


def _losses(ours, theirs, weight, device, **kwargs):
    """Our loss and torch's as functions of (input, target), with the class weights bound on each side."""
    our_weight = None if weight is None else minseg.Tensor(minseg.to_device(weight, device))
    their_weight = None if weight is None else torch.tensor(weight)
    return (lambda x, t: ours(x, t, weight=our_weight, **kwargs),
            lambda x, t: theirs(x, t, weight=their_weight, **kwargs))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("ignore_index,weighted", LABELLINGS, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_loss_matches_torch(name, shape, ignore_index, weighted, reduction, rng, device):
    x, target, weight = _problem(rng, shape, ignore_index)
    ours, theirs = _losses(getattr(F, name), getattr(TF, name), weight if weighted else None, device,
                           ignore_index=ignore_index, reduction=reduction)
    check_op(ours, theirs, x, target, device=device)


@pytest.mark.parametrize("shape", SHAPES[:2], ids=str)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_label_smoothing_matches_torch(shape, weighted, reduction, rng, device):
    x, target, weight = _problem(rng, shape, 255)
    ours, theirs = _losses(F.cross_entropy, TF.cross_entropy, weight if weighted else None, device,
                           ignore_index=255, reduction=reduction, label_smoothing=0.2)
    check_op(ours, theirs, x, target, device=device)


def test_uint8_label_maps_with_void_255_work(rng, device):
    """Label images are usually uint8; torch wants int64, we accept any integer dtype."""
    x, target, weight = _problem(rng, (2, 21, 5, 6), 255)
    ours, theirs = _losses(F.cross_entropy, TF.cross_entropy, weight, device, ignore_index=255)
    check_op(lambda t: ours(t, minseg.Tensor(minseg.to_device(target.astype(np.uint8), device))),
             lambda t: theirs(t, torch.tensor(target)), x, device=device)


def test_ignored_pixels_change_nothing(rng, device):
    """Relabelling an ignored pixel, or changing its logits, leaves the loss unchanged (smp #852)."""
    x, target, _ = _problem(rng, (2, 4, 3, 3), 255)
    target[0, 0, 0] = 255
    base = F.cross_entropy(minseg.Tensor(minseg.to_device(x, device)), minseg.to_device(target, device),
                           ignore_index=255).item()
    x[0, :, 0, 0] += 10.0
    moved = F.cross_entropy(minseg.Tensor(minseg.to_device(x, device)), minseg.to_device(target, device),
                            ignore_index=255).item()
    assert moved == pytest.approx(base, rel=1e-14)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("name,label_smoothing", [("cross_entropy", 0.0), ("cross_entropy", 0.1), ("nll_loss", 0.0)])
def test_all_ignored_batch(name, label_smoothing, rng, device):
    """torch: mean is 0/0 = nan, sum is 0, none is all zeros. We match the values with a zero gradient,
    no NaN in it and no RuntimeWarning (warnings are errors in this test)."""
    extra = {"label_smoothing": label_smoothing} if label_smoothing else {}
    x = rng.standard_normal((2, 3, 4, 4))
    target = np.full((2, 4, 4), 255)
    weight = np.array([1.0, 2.0, 3.0])
    for reduction in REDUCTIONS:
        logits = minseg.Tensor(minseg.to_device(x, device), requires_grad=True)
        loss = getattr(F, name)(logits, minseg.to_device(target, device), weight=minseg.to_device(weight, device),
                                ignore_index=255, reduction=reduction, **extra)
        expected = getattr(TF, name)(torch.tensor(x), torch.tensor(target), weight=torch.tensor(weight),
                                     ignore_index=255, reduction=reduction, **extra)
        np.testing.assert_array_equal(loss.numpy(), expected.numpy())  # nan == nan here
        loss.backward(minseg.to_device(np.ones(loss.shape), device))
        np.testing.assert_array_equal(logits.grad.numpy(), np.zeros(x.shape))


def test_mean_is_the_weighted_average_of_counted_pixels(device):
    """A hand-sized example: two counted pixels, one ignored, weights 1 and 3."""
    log_probs = minseg.Tensor(minseg.to_device(np.log(np.array([[0.5, 0.5], [0.2, 0.8], [0.9, 0.1]])), device))
    target, weight = (minseg.to_device(np.array(values), device) for values in ([0, 1, 255], [1.0, 3.0]))
    loss = F.nll_loss(log_probs, target, weight=weight, ignore_index=255)
    expected = (1 * -np.log(0.5) + 3 * -np.log(0.8)) / (1 + 3)
    assert loss.item() == pytest.approx(expected, rel=1e-14)


def _call(name="cross_entropy", shape=(2, 4, 3, 3), target=None, **kwargs):
    target = np.zeros((2, 3, 3), dtype=np.int64) if target is None else target
    return getattr(F, name)(minseg.zeros(*shape, dtype=np.float64), target, **kwargs)


@pytest.mark.parametrize("kwargs,match", [
    ({"target": np.zeros((2, 3, 3))},
     r"target must hold integer class indices \(or class probabilities of the input's shape \(2, 4, 3, 3\)\); "
     "got dtype float64"),
    ({"target": np.zeros((2, 4, 3, 3), dtype=np.int64)}, r"holds class probabilities and must be floating point"),
    ({"target": np.zeros((2, 4, 3, 3)), "ignore_index": 0}, r"ignore_index=0 needs class-index targets"),
    ({"target": np.zeros((2, 4, 3, 3)), "weight": np.ones(3)}, r"weight must have one entry per class"),
    ({"target": np.zeros((2, 3, 4), dtype=np.int64)},
     r"target shape .* \(2, 3, 3\) for input \(2, 4, 3, 3\); got \(2, 3, 4\)"),
    ({"target": np.full((2, 3, 3), 4)}, r"target value 4 is not a class index in \[0, 4\) for C = 4"),
    ({"target": np.full((2, 3, 3), -1)}, r"target value -1 is not a class index"),
    ({"target": np.full((2, 3, 3), 255)}, r"target value 255 .* nor ignore_index=-100"),
    ({"weight": np.ones(3)}, r"weight must have one entry per class, shape \(4,\); got \(3,\)"),
    ({"reduction": "avg"}, "reduction must be one of"),
    ({"label_smoothing": 1.5}, r"label_smoothing must be in \[0, 1\]"),
    ({"shape": (2, 4)}, "target shape"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _call(**kwargs)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
def test_class_probability_targets_match_torch(shape, weighted, reduction, label_smoothing, rng, device):
    """A float target of the input's shape is a distribution over classes (soft labels); the loss is
    differentiable in the target as well, and "mean" divides by the pixel count, as in torch."""
    classes = _classes(shape)
    logits = rng.standard_normal(shape) * 2
    axis = 0 if len(shape) == 1 else 1
    probabilities = rng.dirichlet(np.ones(classes), size=int(np.prod(shape)) // classes)
    target = np.moveaxis(probabilities.reshape((shape[0],) + shape[2:] + (classes,) if axis else (classes,)), -1, axis)
    ours, theirs = _losses(F.cross_entropy, TF.cross_entropy, rng.uniform(0.2, 3.0, classes) if weighted else None,
                           device, reduction=reduction, label_smoothing=label_smoothing)
    check_op(ours, theirs, logits, np.ascontiguousarray(target), device=device)


def test_nll_loss_checks_too():
    with pytest.raises(ValueError, match=r"nll_loss: target value 7"):
        _call("nll_loss", target=np.full((2, 3, 3), 7))


def test_no_warning_on_ordinary_use(rng):
    x, target, weight = _problem(rng, (2, 5, 3, 4), 255)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F.cross_entropy(minseg.Tensor(x, requires_grad=True), target, weight, 255).backward()
