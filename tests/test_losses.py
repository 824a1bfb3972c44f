"""minseg.losses: every loss's value and gradient against an independent float64 reference (torch autograd,
SciPy or plain loops, in loss_references.py), directional finite differences, and the ignore_index contract."""

import warnings

import numpy as np
import pytest
import torch.nn.functional as TF
from scipy import ndimage

import minseg
import minseg.losses as L
from helpers import check_directional_derivative, check_op
from loss_references import (VOID, brute_force_boundary_weights, kervadec_maps, ref_boundary, ref_dice,
                             ref_lovasz_hinge, ref_lovasz_softmax, ref_sigmoid_focal, ref_sobel, ref_softmax_focal,
                             ref_weighted_ce)

REDUCTIONS = ["mean", "sum", "none"]


def _problem(rng, classes=3, shape=(2, 6, 7), binary=False, void_fraction=0.25):
    """Logits (N, C, H, W) (continuous, so no ties among Lovász errors) and labels, about ``void_fraction``
    of them VOID."""
    channels = 1 if binary else classes
    logits = rng.standard_normal((shape[0], channels) + shape[1:]) * 1.5
    target = rng.integers(0, 2 if binary else classes, shape)
    target[rng.random(shape) < void_fraction] = VOID
    return logits, target


# ------------------------------------------------------------------ value and gradient vs the references
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("binary", [False, True], ids=["multiclass", "binary"])
@pytest.mark.parametrize("class_weighted", [False, True], ids=["", "class-weighted"])
def test_weighted_cross_entropy(binary, class_weighted, reduction, rng, device):
    logits, target = _problem(rng, binary=binary)
    pixel_weight = rng.uniform(0.5, 5.0, target.shape)
    classes = 2 if binary else logits.shape[1]
    class_weight = rng.uniform(0.5, 2.0, classes) if class_weighted else np.ones(classes)
    mode = "binary" if binary else "multiclass"
    check_op(lambda x, t: L.weighted_cross_entropy(x, t, minseg.to_device(pixel_weight, device),
                                                   class_weight if class_weighted else None, VOID, reduction,
                                                   mode=mode),
             lambda x, t: ref_weighted_ce(x, t, pixel_weight, class_weight, binary, reduction),
             logits, target, device=device)


def test_unet_weight_map_matches_a_per_instance_loop(device):
    rng = np.random.default_rng(5)
    labels = rng.integers(1, 6, (3, 12, 11)) * (rng.random((3, 12, 11)) < 0.3)
    labels[2] = 0
    labels[2, 3:5, 3:5] = 4  # a single object: no border term
    for class_weights in (None, (0.5, 2.0)):
        ours = minseg.to_device(L.unet_weight_map(minseg.to_device(labels, device), 10.0, 5.0, class_weights), "cpu")
        for image, weights in zip(labels, ours):
            distances = [ndimage.distance_transform_edt(image != i) for i in np.unique(image) if i]
            stacked = np.sort(np.stack(distances + [np.full(image.shape, np.inf)] * 2), axis=0)
            border = 10.0 * np.exp(-(stacked[0] + stacked[1]) ** 2 / (2 * 5.0 ** 2)) * (image == 0)
            if class_weights is None:
                counts = {c: (image > 0).sum() if c else (image == 0).sum() for c in (0, 1)}
                present = sum(count > 0 for count in counts.values())
                class_weights_here = [image.size / (present * max(counts[c], 1)) for c in (0, 1)]
            else:
                class_weights_here = class_weights
            balance = np.where(image > 0, class_weights_here[1], class_weights_here[0])
            np.testing.assert_allclose(weights, balance + border, rtol=1e-12)
    assert ours.shape == labels.shape
    assert L.unet_weight_map(labels[0]).shape == labels[0].shape


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_distance_weighted_cross_entropy_uses_brute_force_boundary_distances(reduction, rng, device):
    logits, target = _problem(rng, shape=(2, 5, 6))
    weights = brute_force_boundary_weights(target, 4.0, 1.5)
    np.testing.assert_allclose(L.boundary_weight_map(target, 4.0, 1.5), weights, rtol=1e-12)
    check_op(lambda x, t: L.distance_weighted_cross_entropy(x, t, 4.0, 1.5, ignore_index=VOID, reduction=reduction),
             lambda x, t: ref_weighted_ce(x, t, weights, np.ones(3), False, reduction),
             logits, target, device=device)


DICE_OPTIONS = [  # (binary, squared, per_image, class weighted, reduction)
    (False, True, False, False, "mean"), (False, False, False, True, "mean"), (False, True, True, False, "none"),
    (False, False, True, True, "mean"), (False, True, True, True, "sum"), (True, True, False, False, "mean"),
    (True, False, True, False, "none"), (True, True, True, False, "mean"),
]


@pytest.mark.parametrize("binary, squared, per_image, weighted, reduction", DICE_OPTIONS)
def test_dice_loss(binary, squared, per_image, weighted, reduction, rng, device):
    logits, target = _problem(rng, binary=binary, shape=(3, 5, 6))
    target[1] = VOID  # an image with no counted pixel
    weight = rng.uniform(0.5, 2.0, logits.shape[1]) if weighted else None
    mode = "binary" if binary else "multiclass"
    check_op(lambda x, t: L.dice_loss(x, t, mode, squared, weight=weight, per_image=per_image, ignore_index=VOID,
                                      reduction=reduction),
             lambda x, t: ref_dice(x, t, binary, squared, weight, per_image, reduction),
             logits, target, device=device)


@pytest.mark.parametrize("classes", ["present", "all", [0, 2]], ids=str)
@pytest.mark.parametrize("per_image, reduction", [(False, "mean"), (True, "mean"), (True, "none"), (True, "sum")])
def test_lovasz_softmax_matches_a_plain_loop(classes, per_image, reduction, rng, device):
    logits, target = _problem(rng, classes=4, shape=(3, 4, 5))
    target[0][target[0] == 2] = 1  # class 2 absent from image 0: "present" skips it there
    target[2] = VOID
    check_op(lambda x, t: L.lovasz_softmax(x, t, classes, per_image, VOID, reduction),
             lambda x, t: ref_lovasz_softmax(x, t, classes, per_image, reduction),
             logits, target, device=device)


@pytest.mark.parametrize("per_image, reduction", [(True, "mean"), (True, "none"), (True, "sum"), (False, "mean")])
def test_lovasz_hinge_matches_bermans_formulation(per_image, reduction, rng, device):
    logits, target = _problem(rng, binary=True, shape=(3, 5, 4))
    target[1] = VOID
    check_op(lambda x, t: L.lovasz_hinge(x, t, per_image, VOID, reduction),
             lambda x, t: ref_lovasz_hinge(x, t, per_image, reduction),
             logits, target, device=device)


def test_lovasz_extension_equals_the_jaccard_loss_on_binary_errors(rng):
    from minseg.losses.lovasz import LovaszExtension

    for _ in range(20):
        truth = (rng.random(12) < 0.4).astype(float)
        mistakes = (rng.random(12) < 0.5).astype(float)
        value = LovaszExtension.apply(mistakes[None, None], truth[None, None], np.ones((1, 1, 12), bool)).item()
        union = np.logical_or(truth, mistakes).sum()
        assert value == pytest.approx(mistakes.sum() / union if union else 0.0, abs=1e-12)


@pytest.mark.parametrize("binary, classes, reduction", [
    (False, None, "mean"), (False, [1, 2], "sum"), (False, None, "none"), (True, None, "mean"), (True, None, "none")])
def test_boundary_loss_matches_kervadec(binary, classes, reduction, rng, device):
    logits, target = _problem(rng, binary=binary, shape=(2, 7, 6), void_fraction=0.1)
    target[1][target[1] == 2] = 0  # an absent class: its map is 0
    mode = "binary" if binary else "multiclass"
    check_op(lambda x, t: L.boundary_loss(x, t, mode, classes, ignore_index=VOID, reduction=reduction),
             lambda x, t: ref_boundary(x, t, binary, classes, reduction),
             logits, target, device=device)


def test_boundary_loss_accepts_precomputed_distance_maps(rng, device):
    logits, target = _problem(rng)
    maps = minseg.to_device(L.class_distance_maps(target, 3, VOID), device)
    x = minseg.Tensor(minseg.to_device(logits, device))
    t = minseg.to_device(target, device)
    given = L.BoundaryLoss(ignore_index=VOID)(x, t, distance_maps=maps).item()
    assert given == pytest.approx(L.boundary_loss(x, t, ignore_index=VOID).item(), rel=1e-12)
    np.testing.assert_allclose(minseg.to_device(maps, "cpu"), kervadec_maps(target, 3, False).numpy(), atol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("binary", [False, True], ids=["multiclass", "binary"])
def test_sobel_gradient_loss(binary, reduction, rng, device):
    logits, target = _problem(rng, binary=binary, void_fraction=0.05)
    mode = "binary" if binary else "multiclass"
    check_op(lambda x, t: L.sobel_gradient_loss(x, t, mode, VOID, reduction),
             lambda x, t: ref_sobel(x, t, binary, reduction),
             logits, target, device=device)


@pytest.mark.parametrize("channels, alpha, gamma, reduction", [
    (1, 0.25, 2.0, "mean"), (1, None, 2.0, "none"), (1, 0.7, 0.0, "sum"), (3, 0.25, 2.0, "mean"),
    (3, None, 1.5, "none")])
def test_sigmoid_focal_loss_matches_torchvisions_formula(channels, alpha, gamma, reduction, rng, device):
    logits, target = _problem(rng, classes=channels, binary=channels == 1)
    check_op(lambda x, t: L.sigmoid_focal_loss(x, t, alpha, gamma, VOID, reduction),
             lambda x, t: ref_sigmoid_focal(x, t, alpha, gamma, reduction),
             logits, target, device=device)


@pytest.mark.parametrize("alpha, gamma, reduction", [
    (None, 2.0, "mean"), (0.5, 2.0, "sum"), ([0.2, 1.0, 3.0], 1.0, "none"), ([0.2, 1.0, 3.0], 0.0, "mean")])
def test_softmax_focal_loss(alpha, gamma, reduction, rng, device):
    logits, target = _problem(rng)
    check_op(lambda x, t: L.softmax_focal_loss(x, t, alpha, gamma, VOID, reduction),
             lambda x, t: ref_softmax_focal(x, t, alpha, gamma, reduction),
             logits, target, device=device)


def test_softmax_focal_loss_without_focusing_is_cross_entropy(rng, device):
    logits, target = _problem(rng)
    check_op(lambda x, t: L.softmax_focal_loss(x, t, None, 0.0, VOID),
             lambda x, t: TF.cross_entropy(x, t, ignore_index=VOID), logits, target, device=device)


# ------------------------------------------------------------------ the contract, for every loss
LOSS_CASES = {  # name: (loss(x, t) with ignore_index=VOID, binary)
    "weighted_ce": (lambda x, t: L.weighted_cross_entropy(x, t, 2.0 + 0 * t.data, ignore_index=VOID), False),
    "weighted_bce": (lambda x, t: L.weighted_cross_entropy(x, t, 1.0, ignore_index=VOID, mode="binary"), True),
    "distance_weighted_ce": (lambda x, t: L.distance_weighted_cross_entropy(x, t, ignore_index=VOID), False),
    "dice": (lambda x, t: L.dice_loss(x, t, ignore_index=VOID), False),
    "dice_plain_per_image": (lambda x, t: L.dice_loss(x, t, squared=False, per_image=True, ignore_index=VOID), False),
    "dice_binary": (lambda x, t: L.dice_loss(x, t, "binary", smooth_numerator=0.0, ignore_index=VOID), True),
    "lovasz_softmax": (lambda x, t: L.lovasz_softmax(x, t, ignore_index=VOID), False),
    "lovasz_softmax_all_per_image": (lambda x, t: L.lovasz_softmax(x, t, "all", True, ignore_index=VOID), False),
    "lovasz_hinge": (lambda x, t: L.lovasz_hinge(x, t, ignore_index=VOID), True),
    "lovasz_hinge_pooled": (lambda x, t: L.lovasz_hinge(x, t, per_image=False, ignore_index=VOID), True),
    "boundary": (lambda x, t: L.boundary_loss(x, t, ignore_index=VOID), False),
    "boundary_binary": (lambda x, t: L.boundary_loss(x, t, "binary", ignore_index=VOID), True),
    "sobel": (lambda x, t: L.sobel_gradient_loss(x, t, ignore_index=VOID), False),
    "sigmoid_focal": (lambda x, t: L.sigmoid_focal_loss(x, t, ignore_index=VOID), True),
    "softmax_focal": (lambda x, t: L.softmax_focal_loss(x, t, alpha=[1.0, 2.0, 0.5], ignore_index=VOID), False),
}


@pytest.mark.parametrize("name", LOSS_CASES)
def test_directional_finite_difference(name, rng, device):
    loss, binary = LOSS_CASES[name]
    logits, target = _problem(rng, binary=binary, void_fraction=0.1)
    labels = minseg.Tensor(minseg.to_device(target, device))
    check_directional_derivative(lambda x: loss(x, labels), logits, device)


@pytest.mark.parametrize("name", LOSS_CASES)
def test_ignored_pixels_change_nothing_and_get_no_gradient(name, rng, device):
    loss, binary = LOSS_CASES[name]
    logits, target = _problem(rng, binary=binary, void_fraction=0.1)
    ignored = target == VOID
    if name == "sobel":  # a pixel's Sobel window reaches its neighbours: keep the void away from the border
        ignored[:] = False
        ignored[:, 2, 3] = True
        target[ignored] = VOID
    x = minseg.Tensor(minseg.to_device(logits, device), requires_grad=True)
    value = loss(x, minseg.Tensor(minseg.to_device(target, device)))
    value.backward()
    assert not np.any(x.grad.numpy().transpose(0, 2, 3, 1)[ignored]), "an ignored pixel received a gradient"
    moved = logits.copy()
    moved.transpose(0, 2, 3, 1)[ignored] += rng.standard_normal((int(ignored.sum()), logits.shape[1])) * 5
    again = loss(minseg.Tensor(minseg.to_device(moved, device)), minseg.Tensor(minseg.to_device(target, device)))
    assert again.item() == pytest.approx(value.item(), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("name", LOSS_CASES)
def test_all_ignored_batch_gives_zero_with_zero_gradient_and_no_warning(name, rng, device):
    loss, binary = LOSS_CASES[name]
    logits, target = _problem(rng, binary=binary)
    target[:] = VOID
    x = minseg.Tensor(minseg.to_device(logits, device), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = loss(x, minseg.Tensor(minseg.to_device(target, device)))
        value.backward()
    assert value.item() == 0.0
    assert x.grad is not None and not np.any(x.grad.numpy())


@pytest.mark.parametrize("name", [name for name, (_, binary) in LOSS_CASES.items() if binary])
def test_binary_losses_reject_labels_outside_0_1(name, rng):
    loss, _ = LOSS_CASES[name]
    logits, target = _problem(rng, binary=True)
    target[0, 0, 0] = 2
    with pytest.raises(ValueError, match="target value 2"):
        loss(minseg.Tensor(logits), target)


@pytest.mark.parametrize("call, message", [
    (lambda x, t: L.dice_loss(x, t, reduction="avg"), "reduction"),
    (lambda x, t: L.dice_loss(x, t, mode="sigmoid"), "mode"),
    (lambda x, t: L.lovasz_softmax(x, t.astype(float)), "integer"),
    (lambda x, t: L.lovasz_softmax(x, t[:, :-1]), "target must be"),
    (lambda x, t: L.lovasz_softmax(x, t, classes=[5]), "classes"),
    (lambda x, t: L.boundary_loss(x, t, classes=[3]), "classes"),
    (lambda x, t: L.dice_loss(x, t, weight=[1.0, 2.0]), "one value per class"),
    (lambda x, t: L.lovasz_hinge(x, t), "binary mode"),
    (lambda x, t: L.softmax_focal_loss(x, t + 3), "target value"),
])
def test_invalid_arguments_are_reported(call, message, rng):
    logits, target = _problem(rng, void_fraction=0.0)
    with pytest.raises(ValueError, match=message):
        call(minseg.Tensor(logits), target)


# ------------------------------------------------------------------ modules and the combination
MODULES = [
    (L.DiceLoss, L.dice_loss, dict(squared=False, per_image=True, ignore_index=VOID)),
    (L.LovaszSoftmaxLoss, L.lovasz_softmax, dict(classes="all", ignore_index=VOID)),
    (L.BoundaryLoss, L.boundary_loss, dict(classes=[1, 2], ignore_index=VOID)),
    (L.SobelGradientLoss, L.sobel_gradient_loss, dict(ignore_index=VOID, reduction="sum")),
    (L.SoftmaxFocalLoss, L.softmax_focal_loss, dict(gamma=1.0, ignore_index=VOID)),
    (L.SigmoidFocalLoss, L.sigmoid_focal_loss, dict(alpha=0.4, ignore_index=VOID)),
    (L.DistanceWeightedCrossEntropyLoss, L.distance_weighted_cross_entropy, dict(w0=3.0, ignore_index=VOID)),
]


@pytest.mark.parametrize("module, function, options", MODULES, ids=lambda v: getattr(v, "__name__", ""))
def test_modules_call_their_function(module, function, options, rng):
    logits, target = _problem(rng)
    x = minseg.Tensor(logits)
    assert module(**options)(x, target).item() == pytest.approx(function(x, target, **options).item(), rel=1e-15)
    assert "ignore_index=255" in repr(module(**options))


def test_binary_modules_and_the_weighted_cross_entropy_module(rng):
    logits, target = _problem(rng, binary=True)
    x = minseg.Tensor(logits)
    assert L.LovaszHingeLoss(ignore_index=VOID)(x, target).item() == L.lovasz_hinge(x, target, ignore_index=VOID).item()
    weights = rng.uniform(1, 2, target.shape)
    module = L.WeightedCrossEntropyLoss(ignore_index=VOID, mode="binary")
    assert module(x, target, weights).item() == pytest.approx(
        L.weighted_cross_entropy(x, target, weights, ignore_index=VOID, mode="binary").item(), rel=1e-15)


def test_combined_loss_ramps_the_boundary_weight(rng):
    logits, target = _problem(rng)
    x = minseg.Tensor(logits)
    region = L.dice_loss(x, target, ignore_index=VOID).item()
    boundary = L.boundary_loss(x, target, ignore_index=VOID).item()
    combination = L.CombinedLoss(L.DiceLoss(ignore_index=VOID), L.BoundaryLoss(ignore_index=VOID))
    for step in range(3):
        assert combination.current_weight() == pytest.approx(0.01 * (step + 1))
        assert combination(x, target).item() == pytest.approx(region + 0.01 * (step + 1) * boundary, rel=1e-12)
        combination.step()
    constant = L.CombinedLoss(L.DiceLoss(ignore_index=VOID), L.BoundaryLoss(ignore_index=VOID), weight=0.5)
    assert constant(x, target).item() == pytest.approx(region + 0.5 * boundary, rel=1e-12)
    assert L.combined(region, boundary, lambda step: 0.1 * step, step=4) == pytest.approx(region + 0.4 * boundary)
    assert L.LinearRamp(0.01, 0.01, maximum=0.05)(100) == 0.05
