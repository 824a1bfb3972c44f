"""Independent float64 references for the losses of minseg.losses, written with torch autograd, SciPy and
plain Python loops (never with minseg): each follows the formula of its paper or of the code users know."""

import numpy as np
import torch
import torch.nn.functional as TF
from scipy import ndimage

VOID = 255


def _valid_one_hot(target, classes, binary=False):
    """torch (N, K, H, W) one-hot of the counted labels (K = 1: the foreground in binary mode)."""
    t = torch.as_tensor(target)
    valid = t != VOID
    if binary:
        return ((t == 1) & valid)[:, None].double()
    return TF.one_hot(torch.where(valid, t, 0), classes).permute(0, 3, 1, 2).double() * valid[:, None]


def _probs(x, binary):
    return torch.sigmoid(x) if binary else torch.softmax(x, 1)


def _mean_over_counted(loss_map, target, reduction):
    """The reference reduction of an (N, H, W) map over counted pixels."""
    valid = torch.as_tensor(target) != VOID
    loss_map = torch.where(valid, loss_map, torch.zeros_like(loss_map))
    if reduction == "none":
        return loss_map
    return loss_map.sum() / max(int(valid.sum()), 1) if reduction == "mean" else loss_map.sum()


def ref_weighted_ce(x, t, pixel_weight, class_weight, binary, reduction):
    t = torch.as_tensor(t)
    valid = t != VOID
    safe = torch.where(valid, t, 0)
    if binary:
        per_pixel = TF.binary_cross_entropy_with_logits(x[:, 0], safe.double(), reduction="none")
    else:
        per_pixel = -x.log_softmax(1).gather(1, safe[:, None])[:, 0]
    weights = torch.as_tensor(class_weight)[safe] * torch.as_tensor(pixel_weight) * valid
    loss_map = per_pixel * weights
    if reduction == "none":
        return loss_map
    return loss_map.sum() / weights.sum() if reduction == "mean" else loss_map.sum()


def ref_dice(x, t, binary, squared, weight, per_image, reduction, smooth=1e-5):
    """Per image (or pooled), only the counted pixels are picked out by boolean indexing."""
    probs, truth = _probs(x, binary), _valid_one_hot(t, x.shape[1], binary)
    valid = torch.as_tensor(t) != VOID
    groups = [[n] for n in range(x.shape[0])] if per_image else [list(range(x.shape[0]))]
    weight = torch.ones(probs.shape[1], dtype=torch.float64) if weight is None else torch.as_tensor(weight)
    losses = []
    for images in groups:
        p = torch.cat([probs[n][:, valid[n]] for n in images], 1)
        g = torch.cat([truth[n][:, valid[n]] for n in images], 1)
        if p.shape[1] == 0:
            losses.append(torch.zeros((), dtype=torch.float64))
            continue
        denominator = (p ** 2).sum(1) + g.sum(1) if squared else p.sum(1) + g.sum(1)
        dice = (2 * (p * g).sum(1) + smooth) / (denominator + smooth)
        losses.append(((1 - dice) * weight).sum() / weight.sum())
    losses = torch.stack(losses)
    if not per_image:
        return losses[0]
    counted = max(int(valid.flatten(1).any(1).sum()), 1)
    return {"none": losses, "sum": losses.sum(), "mean": losses.sum() / counted}[reduction]


def jaccard_increments_by_sets(truth_sorted):
    """J_i − J_{i−1} with J_i = |M_i| / |G ∪ M_i|, M_i the first i pixels, straight from the definition."""
    objects = {i for i, g in enumerate(truth_sorted) if g}
    increments, previous = [], 0.0
    for i in range(1, len(truth_sorted) + 1):
        mistakes = set(range(i))
        current = len(mistakes) / len(objects | mistakes)
        increments.append(current - previous)
        previous = current
    return torch.tensor(increments, dtype=torch.float64)


def lovasz_extension_loop(errors, truth):
    order = torch.argsort(errors, descending=True)
    return (errors[order] * jaccard_increments_by_sets(truth[order].tolist())).sum()


def ref_lovasz_softmax(x, t, classes, per_image, reduction):
    probs, target = torch.softmax(x, 1), torch.as_tensor(t)
    groups = [[n] for n in range(x.shape[0])] if per_image else [list(range(x.shape[0]))]
    losses, counted = [], 0
    for images in groups:
        p = torch.cat([probs[n][:, target[n] != VOID] for n in images], 1)
        labels = torch.cat([target[n][target[n] != VOID] for n in images])
        chosen = range(x.shape[1]) if classes in ("all", "present") else classes
        chosen = [c for c in chosen if classes != "present" or bool((labels == c).any())]
        if labels.numel() == 0 or not chosen:
            losses.append(torch.zeros((), dtype=torch.float64))
            continue
        counted += 1
        per_class = [lovasz_extension_loop(((labels == c).double() - p[c]).abs(), (labels == c).double())
                     for c in chosen]
        losses.append(torch.stack(per_class).mean())
    losses = torch.stack(losses)
    if not per_image:
        return losses[0]
    return {"none": losses, "sum": losses.sum(), "mean": losses.sum() / max(counted, 1)}[reduction]


def ref_lovasz_hinge(x, t, per_image, reduction):
    """Berman's formulation: sort the raw hinge errors 1 − s·x, then take relu of the sorted errors."""
    target = torch.as_tensor(t)
    groups = [[n] for n in range(x.shape[0])] if per_image else [list(range(x.shape[0]))]
    losses, counted = [], 0
    for images in groups:
        logits = torch.cat([x[n, 0][target[n] != VOID] for n in images])
        labels = torch.cat([target[n][target[n] != VOID] for n in images]).double()
        if labels.numel() == 0:
            losses.append(torch.zeros((), dtype=torch.float64))
            continue
        counted += 1
        errors = 1 - logits * (2 * labels - 1)
        order = torch.argsort(errors, descending=True)
        losses.append((torch.relu(errors[order]) * jaccard_increments_by_sets(labels[order].tolist())).sum())
    losses = torch.stack(losses)
    if not per_image:
        return losses[0]
    return {"none": losses, "sum": losses.sum(), "mean": losses.sum() / max(counted, 1)}[reduction]


def kervadec_maps(t, classes, binary):
    """Kervadec's one_hot2dist per image and class with SciPy (0 where a class is absent or fills the image)."""
    truth = _valid_one_hot(t, classes, binary).numpy().astype(bool)
    maps = np.zeros(truth.shape)
    for index in np.ndindex(truth.shape[:2]):
        inside = truth[index]
        if inside.any() and not inside.all():
            outside = ~inside
            maps[index] = (ndimage.distance_transform_edt(outside) * outside
                           - (ndimage.distance_transform_edt(inside) - 1) * inside)
    return torch.tensor(maps)


def ref_boundary(x, t, binary, classes, reduction):
    maps = kervadec_maps(t, x.shape[1], binary)
    chosen = list(range(x.shape[1])) if classes is None else list(classes)
    loss_map = (_probs(x, binary)[:, chosen] * maps[:, chosen]).mean(1)
    return _mean_over_counted(loss_map, t, reduction)


def ref_sobel(x, t, binary, reduction):
    classes = x.shape[1]
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=torch.float64) / 8
    kernels = torch.stack([kx, kx.T])[:, None].repeat(classes, 1, 1, 1)
    difference = _probs(x, binary) - _valid_one_hot(t, classes, binary)
    edges = TF.conv2d(TF.pad(difference, (1, 1, 1, 1), mode="replicate"), kernels, groups=classes)
    ignored = (torch.as_tensor(t) == VOID).double()[:, None]
    near_void = TF.max_pool2d(TF.pad(ignored, (1, 1, 1, 1), mode="replicate"), 3, stride=1)[:, 0] > 0
    loss_map = (edges ** 2).sum(1) / classes
    counted = ~near_void
    loss_map = torch.where(counted, loss_map, torch.zeros_like(loss_map))
    if reduction == "none":
        return loss_map
    return loss_map.sum() / max(int(counted.sum()), 1) if reduction == "mean" else loss_map.sum()


def ref_sigmoid_focal(x, t, alpha, gamma, reduction):
    """torchvision.ops.sigmoid_focal_loss's formula, per channel, summed over channels."""
    g = _valid_one_hot(t, x.shape[1], binary=x.shape[1] == 1)
    p = torch.sigmoid(x)
    ce = TF.binary_cross_entropy_with_logits(x, g, reduction="none")
    p_t = p * g + (1 - p) * (1 - g)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = (alpha * g + (1 - alpha) * (1 - g)) * loss
    return _mean_over_counted(loss.sum(1), t, reduction)


def ref_softmax_focal(x, t, alpha, gamma, reduction):
    target = torch.as_tensor(t)
    safe = torch.where(target != VOID, target, 0)
    log_pt = x.log_softmax(1).gather(1, safe[:, None])[:, 0]
    loss = -(1 - log_pt.exp()) ** gamma * log_pt
    if alpha is not None:
        loss = loss * torch.as_tensor(np.broadcast_to(alpha, x.shape[1]).copy(), dtype=torch.float64)[safe]
    return _mean_over_counted(loss, t, reduction)


def brute_force_boundary_weights(target, w0, sigma):
    """1 + w0·exp(−d²/2σ²), d the distance to the nearest differently-labelled pixel, by checking all pairs."""
    weights = np.ones(target.shape)
    for n, image in enumerate(target):
        points = np.argwhere(np.ones(image.shape, bool))
        for y, x in points:
            other = points[image.ravel() != image[y, x]]
            if len(other):
                d = np.sqrt(((other - (y, x)) ** 2).sum(1)).min()
                weights[n, y, x] += w0 * np.exp(-d ** 2 / (2 * sigma ** 2))
    return weights
