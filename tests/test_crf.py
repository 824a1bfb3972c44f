"""Dense CRF (§7.4.4): exact method vs a plain-loop reference, permutohedral lattice vs exact, and the
refinement it is for — sharper boundaries on a noisy prediction of a synthetic scene."""

import math

import numpy as np
import pytest

import minseg
from minseg.core.backend import device_of
from minseg.inference.crf import PermutohedralLattice, dense_crf
from minseg.data.synthetic import MultiClassShapes
from minseg.metrics import boundary_f1

PARAMS = dict(gaussian_sxy=1.5, gaussian_compat=2.0, bilateral_sxy=3.0, bilateral_srgb=20.0, bilateral_compat=4.0)


def to_numpy(array):
    return minseg.Tensor(array).numpy()


def loop_reference(p, image, iterations, gaussian_sxy, gaussian_compat, bilateral_sxy, bilateral_srgb,
                   bilateral_compat):
    """Mean field written pixel by pixel from the formulas: kernels k(i, j), D_i = Σ_j k(i, j),
    message_i(l) = Σ_m w_m Σ_j k_m(i, j) Q_j(l) / √(D_i D_j), Q_i(l) ∝ exp(−ψ_i(l) + message_i(l))."""
    classes, h, w = p.shape
    pixels = [(y, x) for y in range(h) for x in range(w)]
    unary = [[-math.log(min(max(p[l, y, x], 1e-5), 1.0)) for l in range(classes)] for y, x in pixels]

    def smoothness(a, b):
        return math.exp(-((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) / (2 * gaussian_sxy**2))

    def appearance(a, b):
        colour = sum((float(image[a][c]) - float(image[b][c])) ** 2 for c in range(3))
        return math.exp(-((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) / (2 * bilateral_sxy**2)
                        - colour / (2 * bilateral_srgb**2))

    kernels = []
    for weight, k in ((gaussian_compat, smoothness), (bilateral_compat, appearance)):
        matrix = [[k(a, b) for b in pixels] for a in pixels]
        degree = [sum(row) for row in matrix]
        kernels.append((weight, matrix, degree))

    def normalise(scores):
        top = max(scores)
        e = [math.exp(s - top) for s in scores]
        return [v / sum(e) for v in e]

    q = [normalise([-u for u in unary[i]]) for i in range(len(pixels))]
    for _ in range(iterations):
        new = []
        for i in range(len(pixels)):
            scores = []
            for l in range(classes):
                message = sum(weight * sum(matrix[i][j] * q[j][l] / math.sqrt(degree[i] * degree[j])
                                           for j in range(len(pixels)))
                              for weight, matrix, degree in kernels)
                scores.append(-unary[i][l] + message)
            new.append(normalise(scores))
        q = new
    return np.array(q).T.reshape(classes, h, w)


def random_problem(rng, classes, h, w):
    p = rng.dirichlet(np.ones(classes), size=(h, w)).transpose(2, 0, 1)
    image = rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8)
    return p, image


def test_exact_method_matches_a_plain_loop_reference(rng, device):
    p, image = random_problem(rng, 3, 4, 5)
    expected = loop_reference(p, image, 3, **PARAMS)
    result = dense_crf(minseg.to_device(p, device), minseg.to_device(image, device), iterations=3, method="exact",
                       **PARAMS)
    assert device_of(result) == device and result.dtype == np.float64
    np.testing.assert_allclose(to_numpy(result), expected, rtol=1e-10, atol=1e-12)


def noisy_scene(index, size=(48, 64), noise=1.5):
    """A synthetic scene, its mask, and a noisy class-probability map of it (the 'network output')."""
    image, mask = MultiClassShapes(length=4, size=size, seed=0)[index]
    rng = np.random.default_rng(index)
    logits = 2.0 * np.eye(5)[mask].transpose(2, 0, 1) + noise * rng.standard_normal((5,) + mask.shape)
    p = np.exp(logits)
    return (image * 255).astype(np.uint8), mask, (p / p.sum(0)).astype(np.float32)


@pytest.mark.parametrize("index", [0, 1])
@pytest.mark.parametrize("params", [{}, dict(bilateral_sxy=20.0)], ids=["pydensecrf-defaults", "sxy20"])
def test_permutohedral_and_exact_map_labels_agree(index, params, device):
    image, _, p = noisy_scene(index)
    image, p = minseg.to_device(image, device), minseg.to_device(p, device)
    lattice = to_numpy(dense_crf(p, image, method="permutohedral", **params)).argmax(0)
    exact = to_numpy(dense_crf(p, image, method="exact", **params)).argmax(0)
    assert (lattice == exact).mean() >= 0.99


def test_crf_raises_boundary_f1_of_a_noisy_prediction(device):
    for index in (0, 1, 2):
        image, mask, p = noisy_scene(index)
        refined = to_numpy(dense_crf(minseg.to_device(p, device), minseg.to_device(image, device)))
        before = boundary_f1(p.argmax(0)[None], mask[None], 5, tolerance_px=2)
        after = boundary_f1(refined.argmax(0)[None], mask[None], 5, tolerance_px=2)
        assert after > before + 0.3, (index, before, after)
        assert (refined.argmax(0) == mask).mean() > 0.98 > (p.argmax(0) == mask).mean()


def test_free_energy_decreases_and_the_output_is_a_distribution(rng, device):
    image, _, p = noisy_scene(2, size=(24, 32))
    p = p.astype(np.float64)
    q, trace = dense_crf(minseg.to_device(p, device), minseg.to_device(image, device), iterations=6, method="exact",
                         return_trace=True)
    assert len(trace) == 7 and all(b <= a + 1e-9 for a, b in zip(trace, trace[1:])) and trace[-1] < trace[0]
    np.testing.assert_allclose(to_numpy(q).sum(0), 1.0, rtol=1e-12)
    q32, trace32 = dense_crf(minseg.to_device(p.astype(np.float32), device), image, iterations=2, return_trace=True)
    assert q32.dtype == np.float32 and len(trace32) == 3 and trace32[-1] < trace32[0]


def test_inputs_layouts_and_switched_off_terms(rng, device):
    p, image = random_problem(rng, 4, 9, 11)
    p, image = minseg.to_device(p, device), minseg.to_device(image, device)
    reference = to_numpy(dense_crf(p, image))
    np.testing.assert_allclose(to_numpy(dense_crf(p, image.transpose(2, 0, 1).copy())), reference, rtol=1e-12)
    np.testing.assert_allclose(to_numpy(dense_crf(minseg.Tensor(p), image.astype(np.float32))), reference,
                               rtol=1e-12)
    # no pairwise term (or no iteration): Q = softmax(−ψ_u), i.e. p clipped at 1e-5 and renormalised
    clipped = np.clip(to_numpy(p), 1e-5, 1.0)
    for kwargs in (dict(gaussian_compat=0, bilateral_compat=0), dict(iterations=0)):
        np.testing.assert_allclose(to_numpy(dense_crf(p, image, **kwargs)), clipped / clipped.sum(0), rtol=1e-12)
    with pytest.raises(ValueError, match="image must be"):
        dense_crf(p, image[:5])
    with pytest.raises(ValueError, match="permutohedral"):
        dense_crf(np.full((2, 150, 150), 0.5), np.zeros((150, 150, 3)), method="exact")


# ---------------------------------------------------------------- the lattice itself
def elevate(features):
    """Adams et al.'s E·f written as a matrix product: E (d+1)×d with column k = s_k·(1, …, 1, −(k+1), 0, …, 0)
    (k + 1 ones), s_k = √(2/3)(d+1)/√((k+1)(k+2))."""
    d = features.shape[1]
    matrix = np.zeros((d + 1, d))
    for k in range(d):
        matrix[: k + 1, k] = 1.0
        matrix[k + 1, k] = -(k + 1)
        matrix[:, k] *= math.sqrt(2 / 3) * (d + 1) / math.sqrt((k + 1) * (k + 2))
    return features @ matrix.T


@pytest.mark.parametrize("d", [1, 2, 5])
def test_lattice_embedding_is_a_barycentric_interpolation(d, rng):
    """Every point is the barycentric combination of its simplex's d+1 vertices (remainder-r lattice points)."""
    features = rng.standard_normal((500, d)) * 3
    keys, weights = PermutohedralLattice._embed(features, np)
    assert np.all(weights >= -1e-12) and np.allclose(weights.sum(1), 1.0)
    np.testing.assert_allclose((weights[:, :, None] * keys).sum(1), elevate(features)[:, :d], atol=1e-9)
    for r in range(d + 1):  # vertex r has every coordinate ≡ r (mod d+1)
        assert np.all(keys[:, r] % (d + 1) == r)


def test_lattice_filter_approximates_a_unit_gaussian(device):
    """The impulse response has about the Gaussian's spread (variance 1 in feature units, here 3² px²), and
    its mass the Gaussian's (2π·3² ≈ 56.5 px) to within the lattice's approximation."""
    ys, xs = np.mgrid[:41, :41]
    features = minseg.to_device(np.stack([xs.ravel(), ys.ravel()], 1) / 3.0, device)
    impulse = np.zeros((41 * 41, 1))
    impulse[20 * 41 + 20] = 1.0
    response = to_numpy(PermutohedralLattice(features).filter(minseg.to_device(impulse, device))).reshape(41, 41)
    peak = np.unravel_index(response.argmax(), response.shape)
    assert max(abs(peak[0] - 20), abs(peak[1] - 20)) <= 1 and response.min() >= 0  # the lattice is not isotropic
    variance = (response * (xs - 20) ** 2).sum() / response.sum()
    assert abs(variance - 9.0) < 0.5 and 0.8 < response.sum() / (2 * math.pi * 9) < 1.1
