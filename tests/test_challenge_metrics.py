"""The ISBI 2012 challenge scores V_rand and V_info: a case worked by hand, a plain-loop reference, edge cases,
and the membrane → regions helper (connected components, border thinning)."""

import math
from collections import Counter

import numpy as np
import pytest

import minseg
from minseg.metrics import SplitMergeScore, challenge_scores, info_scores, rand_scores, regions_from_membranes

# Hand-worked case. 0 = membrane / no region.
#   true          pred
#   1 1 0 2 2     5 5 5 5 7
#   1 1 0 2 2     5 5 0 0 7
# Only the N = 8 true-foreground pixels count (pred's 5 on the true membrane at (0, 2) is ignored).
# Overlaps n_ij: (5, 1) = 4, (5, 2) = 1, (7, 2) = 2, and one true-2 pixel in no predicted region (n0 = 1),
# which counts as a one-pixel region. Predicted sizes a = (5, 2) (+ the singleton), true sizes b = (4, 4).
# Rand (the 1/N² cancel): Σn² + n0 = 16 + 1 + 4 + 1 = 22, Σa² + n0 = 25 + 4 + 1 = 30, Σb² = 32:
#   split = 22/32 = 11/16, merge = 22/30 = 11/15, V_rand = 2·22/(30 + 32) = 22/31.
# Info, H = log N − Σ c log c / N with log N = 3 log 2:
#   H(T) = 3 log 2 − (2 · 4 log 4)/8 = log 2
#   H(S) = 3 log 2 − (5 log 5 + 2 log 2)/8 = (22 log 2 − 5 log 5)/8
#   H(S,T) = 3 log 2 − (4 log 4 + 1 log 1 + 2 log 2)/8 = (7/4) log 2
#   I = H(S) + H(T) − H(S,T) = 2 log 2 − (5/8) log 5
HAND_TRUE = np.array([[1, 1, 0, 2, 2], [1, 1, 0, 2, 2]])
HAND_PRED = np.array([[5, 5, 5, 5, 7], [5, 5, 0, 0, 7]])
LOG2, LOG5 = math.log(2), math.log(5)
HAND_I, HAND_HS, HAND_HT = 2 * LOG2 - 5 / 8 * LOG5, (22 * LOG2 - 5 * LOG5) / 8, LOG2


def test_hand_worked_case():
    assert rand_scores(HAND_PRED, HAND_TRUE) == pytest.approx((22 / 31, 11 / 16, 11 / 15), abs=1e-12)
    expected_info = (2 * HAND_I / (HAND_HS + HAND_HT), HAND_I / HAND_HS, HAND_I / HAND_HT)
    assert info_scores(HAND_PRED, HAND_TRUE) == pytest.approx(expected_info, abs=1e-12)
    assert info_scores(HAND_PRED, HAND_TRUE) == pytest.approx((0.477463, 0.422542, 0.548795), abs=1e-6)
    score = rand_scores(HAND_PRED, HAND_TRUE)
    assert isinstance(score, SplitMergeScore) and type(score.score) is float


# --------------------------------------------------------------------------------- a plain-loop reference
def _loop_rand(pred, true):
    """Σp², Σs², Σt² as fractions of ordered pairs (x, y) of true-foreground pixels: same true region; same
    predicted region, where a pixel in no predicted region is only ever with itself."""
    pixels = [(p, t) for p, t in zip(pred.ravel().tolist(), true.ravel().tolist()) if t != 0]
    both = same_pred = same_true = 0
    for x, (px, tx) in enumerate(pixels):
        for y, (py, ty) in enumerate(pixels):
            together = x == y or (px == py and px != 0)
            same_pred += together
            same_true += tx == ty
            both += together and tx == ty
    return 2 * both / (same_pred + same_true), both / same_true, both / same_pred


def _loop_info(pred, true):
    """Entropies from dictionaries of counts; a pixel in no predicted region gets a key of its own."""
    pairs = [(p if p != 0 else ("alone", index), t)
             for index, (p, t) in enumerate(zip(pred.ravel().tolist(), true.ravel().tolist())) if t != 0]

    def entropy(counter):
        n = sum(counter.values())
        return -sum(c / n * math.log(c / n) for c in counter.values())

    h_pred = entropy(Counter(p for p, _ in pairs))
    h_true = entropy(Counter(t for _, t in pairs))
    information = h_pred + h_true - entropy(Counter(pairs))
    split = information / h_pred if h_pred > 0 else 1.0
    merge = information / h_true if h_true > 0 else 1.0
    return (2 * information / (h_pred + h_true) if h_pred + h_true > 0 else 1.0), split, merge


@pytest.mark.parametrize("seed", range(8))
def test_matches_plain_loop_reference(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(3, 8)), int(rng.integers(3, 8)))
    true = rng.integers(0, 4, shape)
    true.flat[0] = 1  # at least one foreground pixel
    pred = rng.integers(0, int(rng.integers(2, 6)), shape) * 7  # arbitrary label values, some 0
    assert rand_scores(pred, true) == pytest.approx(_loop_rand(pred, true), abs=1e-12)
    assert info_scores(pred, true) == pytest.approx(_loop_info(pred, true), abs=1e-12)


def test_loop_reference_agrees_with_the_hand_case():
    assert _loop_rand(HAND_PRED, HAND_TRUE) == pytest.approx((22 / 31, 11 / 16, 11 / 15), abs=1e-12)
    assert _loop_info(HAND_PRED, HAND_TRUE)[0] == pytest.approx(2 * HAND_I / (HAND_HS + HAND_HT), abs=1e-12)


# ----------------------------------------------------------------------------------------- edge cases
FOUR_REGIONS = np.repeat(np.repeat(np.array([[1, 2], [3, 4]]), 3, axis=0), 3, axis=1)  # 4 regions of 9 pixels


def test_perfect_prediction_scores_one_whatever_the_label_values():
    relabelled = np.choose(FOUR_REGIONS - 1, [40, 7, 13, 2])
    with_membrane = FOUR_REGIONS.copy()
    with_membrane[:, 2] = 0  # a true membrane column: whatever is predicted there does not count
    for pred, true in ((FOUR_REGIONS, FOUR_REGIONS), (relabelled, FOUR_REGIONS), (relabelled, with_membrane)):
        assert rand_scores(pred, true) == pytest.approx((1, 1, 1), abs=1e-12)
        assert info_scores(pred, true) == pytest.approx((1, 1, 1), abs=1e-12)


def test_everything_merged():
    merged = np.ones_like(FOUR_REGIONS)
    # Rand: Σp² = Σt² = 4·(1/4)² = 1/4 and Σs² = 1 → split 1, merge 1/4, V = 2·(1/4)/(5/4) = 2/5.
    assert rand_scores(merged, FOUR_REGIONS) == pytest.approx((2 / 5, 1, 1 / 4), abs=1e-12)
    # Info: H(S) = 0, so I = 0: merge 0/log 4 = 0, split 0/0 = 1, V = 0.
    assert info_scores(merged, FOUR_REGIONS) == pytest.approx((0, 1, 0), abs=1e-12)


@pytest.mark.parametrize("how", ["one region per pixel", "no region at all"])
def test_everything_split(how):
    pred = np.arange(1, FOUR_REGIONS.size + 1).reshape(FOUR_REGIONS.shape) if how == "one region per pixel" \
        else np.zeros_like(FOUR_REGIONS)  # all predicted membrane: 36 one-pixel regions, the same thing
    # Rand: Σp² = Σs² = 36/36² = 1/36, Σt² = 1/4 → split 1/9, merge 1, V = 2·(1/36)/(1/36 + 1/4) = 1/5.
    assert rand_scores(pred, FOUR_REGIONS) == pytest.approx((1 / 5, 1 / 9, 1), abs=1e-12)
    # Info: H(S) = log 36, H(T) = log 4, I = H(T) → split log 4/log 36, merge 1.
    split = math.log(4) / math.log(36)
    assert info_scores(pred, FOUR_REGIONS) == pytest.approx((2 * split / (1 + split), split, 1), abs=1e-12)


def test_single_true_region_predicted_as_one_is_perfect():
    one = np.ones((3, 3), dtype=np.int64)
    assert info_scores(one * 5, one) == (1.0, 1.0, 1.0)
    assert rand_scores(one * 5, one) == (1.0, 1.0, 1.0)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="no region"):
        rand_scores(np.ones((2, 2), int), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match=r"pred_labels \(2, 3\) and true_labels \(2, 2\)"):
        info_scores(np.ones((2, 3), int), np.ones((2, 2), int))
    with pytest.raises(TypeError, match="pred_labels must hold integer region labels.*regions_from_membranes"):
        rand_scores(np.ones((2, 2)), np.ones((2, 2), int))
    with pytest.raises(ValueError, match="true_labels must hold region labels ≥ 0"):
        rand_scores(np.ones((2, 2), int), -np.ones((2, 2), int))
    with pytest.raises(ValueError, match="connectivity must be 4 or 8"):
        regions_from_membranes(np.zeros((2, 2), bool), connectivity=6)


def test_tensors_are_accepted():
    assert rand_scores(minseg.tensor(HAND_PRED), minseg.tensor(HAND_TRUE)) == rand_scores(HAND_PRED, HAND_TRUE)


# ------------------------------------------------------------------------------------ membranes → regions
def test_regions_are_four_connected_components_of_non_membrane():
    membrane = np.array([[0, 0, 1, 0],
                         [0, 0, 1, 0],
                         [1, 1, 0, 1],
                         [0, 0, 1, 0]], dtype=bool)
    labels = regions_from_membranes(membrane)
    assert labels.dtype == np.int64 and (labels[membrane] == 0).all()
    assert len(np.unique(labels[~membrane])) == 5  # diagonal touches (around the centre pixel) do not connect
    assert len(np.unique(regions_from_membranes(membrane, connectivity=8)[~membrane])) == 1
    probability = np.where(membrane, 0.9, 0.2)
    np.testing.assert_array_equal(regions_from_membranes(probability, 0.5), labels)
    assert (regions_from_membranes(probability, 0.95) > 0).all()  # nothing counts as membrane above 0.9


def test_a_stack_is_labelled_slice_by_slice_with_distinct_labels():
    membrane = np.zeros((2, 4, 4), bool)
    membrane[:, :, 2] = True
    labels = regions_from_membranes(membrane)
    assert [len(np.unique(s[s > 0])) for s in labels] == [2, 2]  # slices never join through the stack axis
    assert not set(np.unique(labels[0])) - {0} & set(np.unique(labels[1])) - {0}


def test_thinning_grows_regions_until_they_meet():
    membrane = np.zeros((3, 9), bool)
    membrane[:, 3:6] = True  # a membrane 3 pixels wide: the middle column is equally near both sides
    thinned = regions_from_membranes(membrane, thin=True)
    np.testing.assert_array_equal(thinned[0], [1, 1, 1, 1, 0, 2, 2, 2, 2])
    assert (thinned == thinned[0]).all()
    membrane[:, 5] = False  # 2 pixels wide: each side takes one, no dam is left
    np.testing.assert_array_equal(regions_from_membranes(membrane, thin=True)[0], [1, 1, 1, 1, 2, 2, 2, 2, 2])


def test_thinning_a_membrane_enclosed_by_dams():
    # a one-pixel plus between four 2×2 regions: every arm pixel is reached by two fronts at once (a dam), and
    # the centre is reached only by dams, so it stays 0 too — nothing moves
    membrane = np.zeros((5, 5), bool)
    membrane[2, :] = membrane[:, 2] = True
    np.testing.assert_array_equal(regions_from_membranes(membrane, thin=True), regions_from_membranes(membrane))
    membrane[2, 0] = False  # open the left arm: the two left regions join through it (region 1) ...
    thinned = regions_from_membranes(membrane, thin=True)
    expected = np.array([[1, 1, 0, 2, 2],
                         [1, 1, 0, 2, 2],
                         [1, 1, 1, 0, 0],  # ... whose front alone reaches (2, 1), then the centre behind it
                         [1, 1, 0, 3, 3],
                         [1, 1, 0, 3, 3]])
    np.testing.assert_array_equal(thinned, expected)


def test_challenge_scores_average_over_slices():
    true_membrane = np.zeros((2, 6, 6), bool)
    true_membrane[:, :, 2] = True
    pred_membrane = true_membrane.astype(float) * 0.8  # slice 0: right
    pred_membrane[1] = 0.1  # slice 1: no membrane predicted, everything merged into one region
    scores = challenge_scores(pred_membrane, true_membrane)
    merged = rand_scores(np.ones((6, 6), int), regions_from_membranes(true_membrane[1]))
    assert scores["v_rand"] == pytest.approx([(1 + m) / 2 for m in merged], abs=1e-12)
    assert scores["v_info"].merge == pytest.approx(0.5, abs=1e-12)  # slice 0: 1, slice 1: I = 0
    single = challenge_scores(pred_membrane[0], true_membrane[0])
    assert single["v_rand"] == pytest.approx((1, 1, 1)) and single["v_info"] == pytest.approx((1, 1, 1))
