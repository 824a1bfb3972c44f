"""Segmentation metrics: hand-worked examples, direct NumPy references, streaming, boundary F1 and Boundary IoU."""

import math

import numpy as np
import pytest

import minseg
from minseg.core.backend import device_of
from minseg.metrics import ConfusionMatrix, boundary_f1, boundary_iou, dice_score, iou, pixel_accuracy

VOID = 255

# Hand-worked example: 4 classes, class 3 in neither map (a 3 is only predicted on ignored pixels).
#   target            prediction
#   0 0 1 1           0 1 1 1
#   0 0 1 1           0 0 1 2
#   2 2 V V           2 0 3 1          V = 255, ignored: 10 pixels are counted
# Confusion (rows target, columns prediction): t0 → [3 1 0 0], t1 → [0 3 1 0], t2 → [1 0 1 0], t3 → 0.
# TP = (3, 3, 1, 0), FP = column sums − TP = (1, 1, 1, 0), FN = row sums − TP = (1, 1, 1, 0).
# IoU = 3/5, 3/5, 1/3, 0/0;  mIoU over defined classes = (3/5 + 3/5 + 1/3)/3 = 23/45.
# Dice = 6/8, 6/8, 2/4, 0/0; mean 2/3.  Class accuracy = 3/4, 3/4, 1/2, 0/0; mean 2/3.
# Pixel accuracy = 7/10.  fwIoU = (4·3/5 + 4·3/5 + 2·1/3)/10 = 41/75.
# absent="one": mIoU = (23/15 + 1)/4 = 19/30;  absent="zero": mIoU = (23/15)/4 = 23/60.
HAND_TARGET = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, VOID, VOID]])
HAND_PREDICTION = np.array([[0, 1, 1, 1], [0, 0, 1, 2], [2, 0, 3, 1]])


def _on(device, *arrays):
    return [minseg.to_device(array, device) for array in arrays]


def _blocky_labels(rng, shape, num_classes, block=3):
    """Label maps made of blocks with a few stray pixels, so boundaries are shapes rather than noise."""
    images, height, width = shape
    coarse = rng.integers(0, num_classes, (images, -(-height // block), -(-width // block)))
    labels = coarse.repeat(block, axis=1).repeat(block, axis=2)[:, :height, :width]
    stray = rng.random(shape) < 0.03
    labels[stray] = rng.integers(0, num_classes, int(stray.sum()))
    return labels


def _random_problem(rng, num_classes=5, shape=(4, 9, 11), void_fraction=0.15):
    """Logits (N, C, H, W) and a target with ~15 % void pixels."""
    logits = rng.standard_normal((shape[0], num_classes) + shape[1:])
    target = rng.integers(0, num_classes, shape)
    target[rng.random(shape) < void_fraction] = VOID
    return logits, target


def test_hand_worked_example(device):
    prediction, target = _on(device, HAND_PREDICTION, HAND_TARGET)
    matrix = ConfusionMatrix(4, ignore_index=VOID)
    matrix.update(prediction, target)
    assert device_of(matrix.matrix) == device and matrix.matrix.dtype == np.int64
    expected = [[3, 1, 0, 0], [0, 3, 1, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    np.testing.assert_array_equal(minseg.to_device(matrix.matrix, "cpu"), expected)
    scores = matrix.compute()
    np.testing.assert_allclose(scores["iou"], [3 / 5, 3 / 5, 1 / 3, np.nan])
    np.testing.assert_allclose(scores["dice"], [3 / 4, 3 / 4, 1 / 2, np.nan])
    np.testing.assert_allclose(scores["class_accuracy"], [3 / 4, 3 / 4, 1 / 2, np.nan])
    assert scores["miou"] == pytest.approx(23 / 45) and matrix.miou == pytest.approx(23 / 45)
    assert scores["mean_dice"] == pytest.approx(2 / 3)
    assert scores["mean_class_accuracy"] == pytest.approx(2 / 3)
    assert scores["pixel_accuracy"] == pytest.approx(7 / 10)
    assert scores["frequency_weighted_iou"] == pytest.approx(41 / 75)


@pytest.mark.parametrize("absent, expected_miou, expected_class_3", [("nan", 23 / 45, np.nan), ("one", 19 / 30, 1.0),
                                                                     ("zero", 23 / 60, 0.0)])
def test_absent_class_options(device, absent, expected_miou, expected_class_3):
    prediction, target = _on(device, HAND_PREDICTION, HAND_TARGET)
    assert iou(prediction, target, 4, ignore_index=VOID, absent=absent) == pytest.approx(expected_miou)
    per_class = iou(prediction, target, 4, ignore_index=VOID, absent=absent, reduction="none")
    np.testing.assert_allclose(per_class[3], expected_class_3)
    # frequency weights of a class with no target pixels are 0: fwIoU does not depend on `absent`
    matrix = ConfusionMatrix(4, ignore_index=VOID, absent=absent)
    matrix.update(prediction, target)
    assert matrix.frequency_weighted_iou == pytest.approx(41 / 75)


def _reference_counts(prediction, target, num_classes, ignore_index):
    """TP, FP, FN per class from boolean masks, one class at a time."""
    counted = target != ignore_index
    tp, fp, fn = (np.array([np.sum(counted & condition(c)) for c in range(num_classes)]) for condition in (
        lambda c: (prediction == c) & (target == c),
        lambda c: (prediction == c) & (target != c),
        lambda c: (prediction != c) & (target == c)))
    return tp, fp, fn


def _reference_scores(tp, fp, fn):
    """Scores of one image (or the pooled dataset) with NaN for 0/0, written out class by class."""
    ratio = lambda a, b: a / b if b else math.nan  # noqa: E731
    iou_c = [ratio(tp[c], tp[c] + fp[c] + fn[c]) for c in range(len(tp))]
    dice_c = [ratio(2 * tp[c], 2 * tp[c] + fp[c] + fn[c]) for c in range(len(tp))]
    accuracy_c = [ratio(tp[c], tp[c] + fn[c]) for c in range(len(tp))]
    support = tp + fn
    weighted = sum(support[c] * iou_c[c] for c in range(len(tp)) if support[c])
    return {"iou": iou_c, "dice": dice_c, "class_accuracy": accuracy_c, "miou": np.nanmean(iou_c),
            "mean_dice": np.nanmean(dice_c), "mean_class_accuracy": np.nanmean(accuracy_c),
            "pixel_accuracy": tp.sum() / support.sum(), "frequency_weighted_iou": weighted / support.sum()}


def test_matches_direct_numpy_reference(device, rng):
    logits, target = _random_problem(rng, num_classes=5)
    labels = logits.argmax(axis=1)
    pooled = _reference_scores(*_reference_counts(labels, target, 5, VOID))
    images = [_reference_scores(*_reference_counts(labels[i], target[i], 5, VOID)) for i in range(len(target))]
    for per_image in (False, True):
        matrix = ConfusionMatrix(5, ignore_index=VOID, per_image=per_image)
        matrix.update(minseg.Tensor(minseg.to_device(logits, device)), minseg.Tensor(minseg.to_device(target, device)))
        scores = matrix.compute()
        for name, value in scores.items():
            if per_image:  # per class: mean over images where defined; summaries: mean of image scores
                expected = np.nanmean(np.array([image[name] for image in images], dtype=float), axis=0)
            else:
                expected = pooled[name]
            np.testing.assert_allclose(value, expected, rtol=1e-12, err_msg=f"{name}, per_image={per_image}")


def test_streaming_and_merging_equal_one_shot(device, rng):
    logits, target = _random_problem(rng, num_classes=4, shape=(7, 6, 5))
    logits, target = _on(device, logits, target)
    for per_image in (False, True):
        one_shot = ConfusionMatrix(4, ignore_index=VOID, per_image=per_image)
        one_shot.update(logits, target)
        streamed = ConfusionMatrix(4, ignore_index=VOID, per_image=per_image)
        workers = [ConfusionMatrix(4, ignore_index=VOID, per_image=per_image) for _ in range(3)]
        for worker, (start, stop) in enumerate([(0, 1), (1, 4), (4, 7)]):
            streamed.update(logits[start:stop], target[start:stop])
            workers[worker].update(logits[start:stop], target[start:stop])
        for combined in (streamed, workers[0] + workers[1] + workers[2], sum(workers),
                         ConfusionMatrix(4, ignore_index=VOID, per_image=per_image).merge(workers[0]).merge(
                             workers[1]).merge(workers[2])):
            np.testing.assert_array_equal(minseg.to_device(combined.matrix, "cpu"),
                                          minseg.to_device(one_shot.matrix, "cpu"))
            for name, value in one_shot.compute().items():
                np.testing.assert_allclose(combined.compute()[name], value, rtol=1e-12, err_msg=name)
    streamed.reset()
    assert not np.any(minseg.to_device(streamed.matrix, "cpu")) and np.isnan(streamed.pixel_accuracy)


def test_per_image_and_dataset_averaging_differ(device):
    # Image 1: all class 0, predicted right → IoU (1, absent), image mIoU 1.
    # Image 2: all class 1, half predicted 0 → IoU0 = 0/(0+2+0) = 0, IoU1 = 2/4 → image mIoU 1/4.
    # Per image: mIoU = (1 + 1/4)/2 = 5/8; per class IoU0 = (1 + 0)/2, IoU1 = 1/2 (image 2 only).
    # Pooled: t0 → [4 0], t1 → [2 2]: IoU0 = 4/6, IoU1 = 2/4, mIoU = 7/12.
    # absent="zero" scores image 1's class 1 as 0: per-image mIoU (1/2 + 1/4)/2 = 3/8 (the pitfall it avoids).
    target = np.array([[[0, 0], [0, 0]], [[1, 1], [1, 1]]])
    prediction = np.array([[[0, 0], [0, 0]], [[1, 1], [0, 0]]])
    prediction, target = _on(device, prediction, target)
    assert iou(prediction, target, 2, per_image=True) == pytest.approx(5 / 8)
    np.testing.assert_allclose(iou(prediction, target, 2, per_image=True, reduction="none"), [1 / 2, 1 / 2])
    assert iou(prediction, target, 2) == pytest.approx(7 / 12)
    np.testing.assert_allclose(iou(prediction, target, 2, reduction="none"), [4 / 6, 2 / 4])
    assert iou(prediction, target, 2, per_image=True, absent="zero") == pytest.approx(3 / 8)
    assert pixel_accuracy(prediction, target, 2, per_image=True) == pytest.approx(3 / 4)
    assert dice_score(prediction, target, 2, reduction="none") == pytest.approx([8 / 10, 4 / 6])


def test_all_ignored_image_is_not_kept_per_image(device):
    target = np.array([[[0, 1], [1, 1]], [[VOID, VOID], [VOID, VOID]]])
    prediction = np.array([[[0, 1], [0, 1]], [[1, 1], [1, 1]]])
    prediction, target = _on(device, prediction, target)
    matrix = ConfusionMatrix(2, ignore_index=VOID, per_image=True, absent="one")
    matrix.update(prediction, target)
    assert matrix.state_dict()["image_counts"].shape == (1, 3, 2)
    assert matrix.pixel_accuracy == pytest.approx(3 / 4)  # (0→0, 1→1, 1→0, 1→1) on image 1 only
    assert matrix.miou == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_input_forms_agree(device, rng):
    logits, target = _random_problem(rng, num_classes=3, shape=(2, 5, 6))
    labels = logits.argmax(axis=1)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = iou(labels, target, 3, ignore_index=VOID, reduction="none")
    predictions = [minseg.to_device(form, device) for form in (labels, logits, probabilities)]
    predictions.append(minseg.Tensor(minseg.to_device(logits, device)))
    for prediction in predictions:
        for target_copy in (minseg.to_device(target, device), target):  # a host target is copied to the device
            got = iou(prediction, target_copy, 3, ignore_index=VOID, reduction="none")
            np.testing.assert_allclose(got, expected)
    # one (H, W) image, with labels or (C, H, W) scores; uint8 targets with a 255 void label
    first_image = iou(labels[:1], target[:1], 3, ignore_index=VOID, reduction="none")
    for single in (labels[0], logits[0]):
        got = iou(*_on(device, single, target[0].astype(np.uint8)), 3, ignore_index=VOID, reduction="none")
        np.testing.assert_allclose(got, first_image)
    # boolean masks are the labels 0 and 1
    mask_prediction, mask_target = labels[0] > 0, target[0] == 1
    assert pixel_accuracy(*_on(device, mask_prediction, mask_target), 2) == pytest.approx(
        np.mean(mask_prediction == mask_target))


@pytest.mark.parametrize("prediction, target, kwargs, error, match", [
    (np.zeros((1, 2, 2), int), np.array([[[0, 1], [7, 255]]]), {}, ValueError, r"\[7, 255\].*ignore_index"),
    (np.zeros((1, 2, 2), int), np.array([[[0, -1], [2, 255]]]), {"ignore_index": 255}, ValueError, r"\[-1, 2\]"),
    (np.full((1, 2, 2), 3), np.zeros((1, 2, 2), int), {}, ValueError, r"prediction contains.*\[3\]"),
    (np.full((1, 2, 2), 255), np.zeros((1, 2, 2), int), {"ignore_index": 255}, ValueError, r"prediction .*\[255\]"),
    (np.zeros((1, 3, 2, 2)), np.zeros((1, 2, 2), int), {}, ValueError, "3 classes on axis 1"),
    (np.zeros((1, 2, 3), int), np.zeros((1, 2, 2), int), {}, ValueError, "does not match"),
    (np.zeros((1, 2, 2)), np.zeros((1, 2, 2), int), {}, TypeError, "integer labels"),
    (np.zeros((1, 2, 2), int), np.zeros((1, 2, 2)), {}, TypeError, "integer class labels"),
    (np.zeros(2, int), np.zeros(2, int), {}, ValueError, "label map"),
    (np.zeros((1, 2, 2), int), np.zeros((1, 2, 2), int), {"absent": "skip"}, ValueError, "absent must be"),
    (np.zeros((1, 2, 2), int), np.zeros((1, 2, 2), int), {"reduction": "sum"}, ValueError, "reduction must be"),
])
def test_invalid_inputs_raise(device, prediction, target, kwargs, error, match):
    with pytest.raises(error, match=match):
        iou(*_on(device, prediction, target), 2, **kwargs)


def test_invalid_construction_and_merging():
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(0)
    with pytest.raises(ValueError, match="different"):
        ConfusionMatrix(3, ignore_index=255).merge(ConfusionMatrix(3))
    with pytest.raises(TypeError, match="ConfusionMatrix"):
        ConfusionMatrix(3).merge(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="state is for"):
        ConfusionMatrix(3).load_state_dict(ConfusionMatrix(4).state_dict())


def test_state_dict_round_trip(device, rng, tmp_path):
    logits, target = _on(device, *_random_problem(rng, num_classes=3, shape=(3, 4, 4)))
    for per_image in (False, True):
        matrix = ConfusionMatrix(3, ignore_index=VOID, per_image=per_image)
        matrix.update(logits, target)
        minseg.save(matrix.state_dict(), tmp_path / "metric.npz")
        restored = ConfusionMatrix(3, ignore_index=VOID, per_image=per_image)
        restored.load_state_dict(minseg.load(tmp_path / "metric.npz"))
        restored.update(logits, target)  # keeps accumulating after a resume
        matrix.update(logits, target)
        for name, value in matrix.compute().items():
            np.testing.assert_allclose(restored.compute()[name], value, rtol=1e-12, err_msg=name)


# ------------------------------------------------------------------------------------ boundaries
def _square(size, top, left, side, label=1):
    labels = np.zeros((size, size), dtype=np.int64)
    labels[top:top + side, left:left + side] = label
    return labels


def _slow_band(mask, width):
    """Mask pixels within Euclidean ``width`` of a pixel outside the mask, by brute force over the outside."""
    padded = np.pad(mask, 1)
    outside = np.argwhere(~padded) - 1  # includes the ring of pixels around the image
    band = np.zeros_like(mask)
    for y, x in np.argwhere(mask):
        band[y, x] = np.hypot(*(outside - (y, x)).T).min() <= width
    return band


def _fraction_near(points, others, tolerance):
    """Share of ``points`` within ``tolerance`` of some point of ``others`` (brute-force pairwise distances)."""
    if not len(others):
        return 0.0
    distances = np.hypot(*(points[:, None, :] - others[None, :, :]).transpose(2, 0, 1))
    return float(np.mean(distances.min(axis=1) <= tolerance))


def _slow_boundary_f1(prediction, target, num_classes, tolerance, ignore_index):
    table = np.full((len(target), num_classes), np.nan)
    for image in range(len(target)):
        scored = target[image] != ignore_index
        for c in range(num_classes):
            predicted_edge = _slow_band(prediction[image] == c, 1)
            target_points = np.argwhere(_slow_band(target[image] == c, 1))
            predicted_points, scored_points = np.argwhere(predicted_edge), np.argwhere(predicted_edge & scored)
            if not len(scored_points) and not len(target_points):
                continue
            precision = _fraction_near(scored_points, target_points, tolerance) if len(scored_points) else 1.0
            recall = _fraction_near(target_points, predicted_points, tolerance) if len(target_points) else 1.0
            table[image, c] = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return table


def _slow_boundary_iou(prediction, target, num_classes, width, ignore_index):
    table = np.full((len(target), num_classes), np.nan)
    for image in range(len(target)):
        for c in range(num_classes):
            target_band = _slow_band(target[image] == c, width)
            predicted_band = _slow_band(prediction[image] == c, width) & (target[image] != ignore_index)
            union = np.sum(target_band | predicted_band)
            if union:
                table[image, c] = np.sum(target_band & predicted_band) / union
    return table


def test_boundary_scores_of_identical_maps_are_one(device, rng):
    labels = _on(device, _blocky_labels(rng, (2, 12, 13), 4))[0]
    assert boundary_f1(labels, labels, 4, tolerance_px=0) == 1.0
    assert boundary_iou(labels, labels, 4, width_px=1) == 1.0


@pytest.mark.parametrize("shift", [1, 2, 3])
def test_boundary_f1_of_a_shifted_square(device, shift):
    # A 10-px square moved right by `shift`: every contour pixel lies within `shift` of the other contour,
    # and the middle of the left and right edges lies exactly `shift` away from it.
    target, prediction = _on(device, _square(20, 5, 4, 10), _square(20, 5, 4 + shift, 10))
    assert boundary_f1(prediction, target, 2, tolerance_px=shift) == 1.0
    assert boundary_f1(prediction, target, 2, tolerance_px=shift - 0.5) < 1.0
    diagonal = math.hypot(20, 20)
    assert boundary_f1(prediction, target, 2, tolerance_fraction=shift / diagonal) == 1.0
    assert boundary_f1(prediction, target, 2, tolerance_fraction=(shift - 0.5) / diagonal) < 1.0


def test_boundary_scores_worked_by_hand(device):
    # 4×4 square at rows/cols 2..5 of an 8×8 image, predicted one pixel to the right (cols 3..6).
    # Contours (12 pixels each) share rows 2 and 5 at cols 3..5: 6 pixels. Tolerance 0:
    # P = 6/12, R = 6/12, BF = 1/2.  Boundary IoU with width 1 (bands = contours): 6 / (12 + 12 − 6) = 1/3.
    target, prediction = _on(device, _square(8, 2, 2, 4), _square(8, 2, 3, 4))
    assert boundary_f1(prediction, target, 2, tolerance_px=0, reduction="none")[1] == pytest.approx(1 / 2)
    assert boundary_iou(prediction, target, 2, width_px=1, reduction="none")[1] == pytest.approx(1 / 3)


@pytest.mark.parametrize("metric", [boundary_f1, boundary_iou])
def test_boundary_scores_of_empty_masks(device, metric):
    empty, blob = _on(device, np.zeros((1, 8, 8), int), _square(8, 2, 2, 3)[None])
    # class 1 in neither map: absent → excluded (NaN), or scored 1 / 0 as asked; class 0 is perfect
    np.testing.assert_allclose(metric(empty, empty, 2, reduction="none"), [1.0, np.nan])
    assert metric(empty, empty, 2) == 1.0
    assert metric(empty, empty, 2, absent="one") == 1.0 and metric(empty, empty, 2, absent="zero") == 0.5
    # class 1 on one side only: 0 whichever side it is on (and however loose the tolerance)
    assert metric(blob, empty, 2, reduction="none")[1] == 0.0
    assert metric(empty, blob, 2, reduction="none")[1] == 0.0
    if metric is boundary_f1:
        assert metric(blob, empty, 2, tolerance_px=8, reduction="none")[1] == 0.0
        assert metric(empty, blob, 2, tolerance_px=8, reduction="none")[1] == 0.0


def test_boundary_scores_skip_ignored_pixels(device):
    # A class-2 blob predicted inside a void region is not scored: class 2 is then in neither map.
    # Were those pixels background instead, the blob would be a false boundary and score 0.
    target = np.zeros((12, 12), int)
    target[1:7, 1:7] = VOID
    prediction = np.zeros((12, 12), int)
    prediction[2:6, 2:6] = 2
    prediction, target, without_void = _on(device, prediction, target, np.zeros((12, 12), int))
    for metric in (boundary_f1, boundary_iou):
        assert np.isnan(metric(prediction, target, 3, ignore_index=VOID, reduction="none")[2])
        assert metric(prediction, without_void, 3, reduction="none")[2] == 0.0


def test_boundary_f1_with_a_void_outline(device):
    # PASCAL-VOC style: a 4×4 object (rows/cols 4..7) outlined by a 2-px void band (rows/cols 2..9), and
    # a prediction whose 6×6 square (3..8) has its contour in the middle of that band. For class 1 no
    # predicted contour pixel is scored, so precision has nothing to score and is 1; every target contour
    # pixel is 1 px from the predicted contour: recall is 1 with tolerance 1 and 0 with tolerance 0.
    target = _square(12, 2, 2, 8, label=VOID)
    target[4:8, 4:8] = 1
    prediction, target = _on(device, _square(12, 3, 3, 6), target)
    assert boundary_f1(prediction, target, 2, tolerance_px=1, ignore_index=VOID, reduction="none")[1] == 1.0
    assert boundary_f1(prediction, target, 2, tolerance_px=0, ignore_index=VOID, reduction="none")[1] == 0.0


def test_boundary_f1_matches_slow_reference(device, rng):
    target = _blocky_labels(rng, (3, 11, 14), 4)
    target[rng.random(target.shape) < 0.1] = VOID
    prediction = _blocky_labels(rng, (3, 11, 14), 4)
    prediction[:, :6] = np.where(target[:, :6] == VOID, prediction[:, :6], target[:, :6])  # partly right
    for tolerance in (0, 1, 2.5):
        expected = _slow_boundary_f1(prediction, target, 4, tolerance, VOID)
        got = boundary_f1(*_on(device, prediction, target), 4, tolerance_px=tolerance, ignore_index=VOID,
                          reduction="none")
        np.testing.assert_allclose(got, np.nanmean(expected, axis=0), rtol=1e-12)
        assert boundary_f1(*_on(device, prediction, target), 4, tolerance_px=tolerance, ignore_index=VOID) == \
            pytest.approx(np.mean(np.nanmean(expected, axis=1)))


def test_boundary_iou_matches_slow_reference(device, rng):
    target = _blocky_labels(rng, (2, 13, 12), 3, block=4)
    target[rng.random(target.shape) < 0.1] = VOID
    prediction = _blocky_labels(rng, (2, 13, 12), 3, block=4)
    prediction[:, 4:] = np.where(target[:, 4:] == VOID, prediction[:, 4:], target[:, 4:])
    for width in (1, 2, 3.5):
        expected = _slow_boundary_iou(prediction, target, 3, width, VOID)
        got = boundary_iou(*_on(device, prediction, target), 3, width_px=width, ignore_index=VOID, reduction="none")
        np.testing.assert_allclose(got, np.nanmean(expected, axis=0), rtol=1e-12)
    # the default width, 2 % of the diagonal, is under a pixel here and is raised to 1 px
    assert boundary_iou(*_on(device, prediction, target), 3, ignore_index=VOID) == pytest.approx(
        np.mean(np.nanmean(_slow_boundary_iou(prediction, target, 3, 1, VOID), axis=1)))


@pytest.mark.parametrize("kwargs, match", [
    ({"tolerance_px": 2, "tolerance_fraction": 0.01}, "not both"),
    ({"tolerance_px": -1}, "≥ 0"),
    ({"tolerance_fraction": 2.0}, r"in \[0, 1\]"),
])
def test_boundary_tolerance_is_unambiguous(kwargs, match):
    labels = _square(6, 1, 1, 3)
    with pytest.raises(ValueError, match=match):
        boundary_f1(labels, labels, 2, **kwargs)


def test_boundary_scores_need_2d_images():
    volume = np.zeros((1, 2, 3, 3), int)
    with pytest.raises(ValueError, match="2-d images"):
        boundary_iou(volume, volume, 2)
