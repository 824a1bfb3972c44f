"""Fully connected CRF post-processing with mean-field inference (§7.4.4; Krähenbühl & Koltun, NIPS 2011).

**Model.** Every pixel i takes a label x_i ∈ {0..C−1}; every pair of pixels is connected. The energy is

    E(x) = Σ_i ψ_u(x_i) + Σ_{i<j} μ(x_i, x_j) Σ_m w_m k_m(f_i, f_j),      ψ_u(l) = −log p_i(l),

with the network's class probabilities p (clipped at 1e-5 before the log, as pydensecrf's
``unary_from_softmax``), the Potts compatibility μ(l, l') = [l ≠ l'] and two Gaussian kernels over
per-pixel feature vectors f_i, each already divided by its bandwidths so that k(f_i, f_j) = exp(−½‖f_i − f_j‖²):

* smoothness:  f = (x/θγ, y/θγ),                      weight w = ``gaussian_compat``   (θγ = ``gaussian_sxy``)
* appearance:  f = (x/θα, y/θα, r/θβ, g/θβ, b/θβ),   weight w = ``bilateral_compat``  (θα = ``bilateral_sxy``,
  θβ = ``bilateral_srgb``, colours on the 0–255 scale of the image that is passed in)

**Normalisation.** As pydensecrf's default (``NORMALIZE_SYMMETRIC``), each kernel matrix K (the self term
j = i included) is used as K̂ = D^(−1/2) K D^(−1/2) with D = diag(K·1): rows sum to about one, so a weight w
is measured in units of log-probability whatever the image size, and K̂ stays symmetric positive
semi-definite, which keeps parallel mean-field updates convergent (Krähenbühl & Koltun, ICML 2013).

**Mean field.** Q_i(l) approximates the marginals; starting from Q = softmax(−ψ_u), every iteration sets

    Q_i(l) ∝ exp(−ψ_u(l) + Σ_m w_m (K̂_m Q)_i(l)),

the Potts update with the per-pixel constant Σ_l' (K̂Q)_i(l') dropped (it cancels in the normalisation).
``return_trace=True`` also returns the mean-field free energy after 0, 1, …, ``iterations`` updates,

    F(Q) = Σ_i Σ_l Q_i(l) (log Q_i(l) + ψ_u(l)) − ½ Σ_m w_m Σ_i Σ_l Q_i(l) (K̂_m Q)_i(l),

which equals KL(Q ‖ P) − log Z up to a constant; it decreases for ``method="exact"``.

**Two ways to apply K.** ``method="exact"`` builds the dense N×N matrices (O(N²) memory: small images
only) and is the readable reference. ``method="permutohedral"`` filters with the permutohedral lattice of
Adams, Baek & Davis (2010) in O(N·d²): see ``PermutohedralLattice``. Its arithmetic is that of
Krähenbühl's C++ code, and on the scene of ``benchmarks/bench_crf.py`` (480×360, 21 classes) the refined
probabilities agree with pydensecrf's to about 1e-4, with identical MAP labels.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.autograd import raw
from ..core.backend import get_array_module

METHODS = ("exact", "permutohedral")
UNARY_CLIP = 1e-5
EXACT_MAX_PIXELS = 20_000  # an N×N float64 kernel of this size takes 3.2 GB



def _sparse_module(xp):
    """``scipy.sparse`` for NumPy arrays, ``cupyx.scipy.sparse`` for CuPy arrays."""
    if xp is np:
        import scipy.sparse as sparse
    else:
        import cupyx.scipy.sparse as sparse
    return sparse


def _softmax_rows(logits, xp):
    shifted = xp.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _unique_inverse(codes, xp):
    """``xp.unique(codes, return_inverse=True)`` through a stable argsort (about twice as fast on the
    partly ordered codes of neighbouring pixels)."""
    order = xp.argsort(codes, kind="stable")
    ordered = codes[order]
    first = xp.concatenate([xp.ones(1, dtype=bool), ordered[1:] != ordered[:-1]])
    inverse = xp.empty_like(order)
    inverse[order] = xp.cumsum(first) - 1
    return ordered[first], inverse


class ExactKernel:
    """K·V with the dense matrix K_ij = exp(−½‖f_i − f_j‖²) of ``features`` (N, d): O(N²) memory."""

    def __init__(self, features, dtype=None):
        xp = get_array_module(features)
        squared = (features**2).sum(axis=1)
        distances = xp.maximum(squared[:, None] + squared[None, :] - 2.0 * features @ features.T, 0.0)
        self.matrix = xp.exp(-0.5 * distances).astype(features.dtype if dtype is None else dtype)

    def filter(self, values):
        return self.matrix @ values


class PermutohedralLattice:
    """Approximate Gaussian filtering out_i = Σ_j exp(−½‖f_i − f_j‖²) v_j in O(N·d²) (Adams, Baek & Davis 2010).

    The d-dimensional features are lifted onto the hyperplane Σ_k y_k = 0 of R^(d+1) (``y = E f``, scaled
    so that the lattice's blur matches a unit Gaussian), which the permutohedral lattice A*_d tiles with
    simplices. Each point lies in one simplex, found by rounding to the nearest "remainder-0" lattice point
    and sorting the residual; its d+1 vertices and barycentric weights b_ir (Σ_r b_ir = 1) define the
    sparse *splat* matrix S (M×N) with S[v_ir, i] = b_ir, M being the number of distinct vertices touched.
    Then

        out ≈ α · Sᵀ · B_d ⋯ B_1 B_0 · S · v,      α = 1 / (1 + 2^(−d)),

    where B_j = I + ½(N_j⁺ + N_j⁻) blurs with the kernel [1, 2, 1]/2 along lattice direction j, i.e. to the
    neighbours key ± (1, …, 1, −d, 1, …, 1) (−d at coordinate j); absent neighbours count as zero. α is the
    constant Krähenbühl's implementation applies; it cancels under symmetric normalisation.

    Vertices are hashed without a Python loop over points: each vertex's first d coordinates (the last
    follows from Σ_k = 0) are packed into one int64 code, a sort numbers the distinct codes, and
    neighbours are found with ``xp.searchsorted`` in that sorted list. S, Sᵀ and B_j are ``scipy.sparse``
    (or ``cupyx.scipy.sparse``) matrices, so ``filter`` is a handful of sparse products; ``num_vertices``
    is M.
    """

    def __init__(self, features, dtype=None):
        xp = get_array_module(features)
        features = features.astype(xp.float64)
        n, d = features.shape
        self.dtype = features.dtype if dtype is None else dtype
        keys, barycentric = self._embed(features, xp)
        lowest, spans, strides = self._radix(keys.reshape(n * (d + 1), d), xp)
        codes = ((keys.reshape(n * (d + 1), d) - lowest) * strides).sum(axis=1)
        vertices, offsets = _unique_inverse(codes, xp)
        self.num_vertices = m = int(vertices.size)
        sparse = _sparse_module(xp)
        pixels = xp.repeat(xp.arange(n), d + 1)
        weights = barycentric.reshape(-1).astype(self.dtype)
        self.slice = sparse.coo_matrix((weights, (pixels, offsets.reshape(-1))), shape=(n, m)).tocsr()
        self.splat = self.slice.T  # CSC: scattering pixel rows in order is faster than gathering them
        self.alpha = 1.0 / (1.0 + 2.0**-d)
        # one blur matrix per lattice direction j
        vertex_keys = xp.zeros((m, d), dtype=xp.int64)
        vertex_keys[offsets.reshape(-1)] = keys.reshape(-1, d)
        self.blurs = []
        rows = xp.arange(m)
        for j in range(d + 1):
            step = xp.full(d, 1, dtype=xp.int64)
            if j < d:
                step[j] = -d
            entries = [(rows, rows, xp.ones(m, dtype=self.dtype))]
            for neighbour in (vertex_keys + step, vertex_keys - step):
                index, found = self._lookup(neighbour, vertices, lowest, spans, strides, xp)
                entries.append((rows[found], index[found], xp.full(int(found.sum()), 0.5, dtype=self.dtype)))
            r, c, v = (xp.concatenate(parts) for parts in zip(*entries))
            self.blurs.append(sparse.coo_matrix((v, (r, c)), shape=(m, m)).tocsr())

    @staticmethod
    def _embed(features, xp):
        """Simplex vertices (N, d+1, d) and barycentric weights (N, d+1) of every feature vector (§3 of Adams
        et al.; the same arithmetic, tie-breaking included, as Krähenbühl's ``permutohedral.cpp``)."""
        n, d = features.shape
        k = xp.arange(d, dtype=xp.float64)
        scaled = features * (math.sqrt(2.0 / 3.0) * (d + 1) / xp.sqrt((k + 1) * (k + 2)))
        # y = E f: y_0 = Σ_k c_k, y_j = Σ_{k≥j} c_k − j·c_{j−1}
        tail = xp.concatenate([xp.cumsum(scaled[:, ::-1], axis=1)[:, ::-1], xp.zeros((n, 1))], axis=1)
        elevated = tail - xp.concatenate([xp.zeros((n, 1)), scaled * (k + 1)], axis=1)
        # nearest remainder-0 point: each coordinate to the nearest multiple of d+1 (ties round down)
        up = xp.ceil(elevated / (d + 1)) * (d + 1)
        down = xp.floor(elevated / (d + 1)) * (d + 1)
        rem0 = xp.where(up - elevated < elevated - down, up, down)
        excess = xp.rint(rem0.sum(axis=1, keepdims=True) / (d + 1)).astype(xp.int64)
        # rank_i = place of residual i in decreasing order (ties: the earlier coordinate ranks first).
        # Loops here run over the d+1 coordinates, each step vectorised over all points.
        residual = elevated - rem0
        column = xp.arange(d + 1)
        rank = xp.repeat(excess, d + 1, axis=1)
        for j in range(d + 1):
            other = residual[:, j : j + 1]
            rank += (other > residual) | ((other == residual) & (j < column))
        # off the plane (Σ rem0 ≠ 0): wrap ranks into 0..d and move those coordinates by ±(d+1)
        rem0 = rem0 + (d + 1) * ((rank < 0).astype(xp.int64) - (rank > d).astype(xp.int64))
        rank %= d + 1
        # barycentric weights: b[d − rank_i] += δ_i, b[d − rank_i + 1] −= δ_i, then wrap b[d+1] into b[0]
        delta = (elevated - rem0) / (d + 1)
        by_place, points = xp.empty_like(delta), xp.arange(n)
        for i in range(d + 1):
            by_place[points, d - rank[:, i]] = delta[:, i]
        barycentric = xp.zeros((n, d + 2))
        barycentric[:, : d + 1] += by_place
        barycentric[:, 1:] -= by_place
        barycentric[:, 0] += 1.0 + barycentric[:, d + 1]
        # vertex r of the simplex: rem0 + r, minus d+1 on the coordinates ranked above d − r
        rem0 = rem0[:, :d].astype(xp.int64)
        keys = xp.empty((n, d + 1, d), dtype=xp.int64)
        for r in range(d + 1):
            keys[:, r] = rem0 + r - (d + 1) * (rank[:, :d] > d - r)
        return keys, barycentric[:, : d + 1]

    @staticmethod
    def _radix(keys, xp):
        """Mixed-radix packing key → Σ_k (key_k − lowest_k)·stride_k into one int64, with room for the blur
        neighbours (coordinates ± d) of every key."""
        d = keys.shape[1]
        lowest = keys.min(axis=0) - d
        spans = keys.max(axis=0) - lowest + d + 1
        if math.prod(int(s) for s in spans.tolist()) >= 2**62:
            raise ValueError("PermutohedralLattice: the features span too many lattice cells to hash in int64; "
                             "use larger bandwidths (sxy, srgb) or a smaller image")
        strides = xp.concatenate([xp.ones(1, dtype=xp.int64), xp.cumprod(spans[:-1])])
        return lowest, spans, strides

    @staticmethod
    def _lookup(keys, vertices, lowest, spans, strides, xp):
        """Index of each key among the sorted vertex codes, and whether it is a vertex at all."""
        shifted = keys - lowest
        inside = ((shifted >= 0) & (shifted < spans)).all(axis=1)
        codes = (xp.clip(shifted, 0, None) * strides).sum(axis=1)
        index = xp.minimum(xp.searchsorted(vertices, codes), vertices.size - 1)
        return index, inside & (vertices[index] == codes)

    def filter(self, values):
        """Approximately Σ_j exp(−½‖f_i − f_j‖²) values_j for every i; ``values`` is (N, C)."""
        lattice_values = self.splat @ values
        for blur in self.blurs:
            lattice_values = blur @ lattice_values
        return self.alpha * (self.slice @ lattice_values)


class NormalizedKernel:
    """K̂ = D^(−1/2) K D^(−1/2), D = diag(K·1): pydensecrf's NORMALIZE_SYMMETRIC (1e-20 guards D = 0)."""

    def __init__(self, kernel, n, dtype, xp):
        self.kernel = kernel
        self.scale = 1.0 / xp.sqrt(kernel.filter(xp.ones((n, 1), dtype=dtype)) + 1e-20)

    def __call__(self, q):
        return self.scale * self.kernel.filter(self.scale * q)


def _features(image, height, width, sxy, srgb, xp):
    """float64 (N, 2) positions / sxy, or with an image (N, 2 + K) positions / sxy and colours / srgb."""
    ys, xs = xp.meshgrid(xp.arange(height, dtype=xp.float64), xp.arange(width, dtype=xp.float64), indexing="ij")
    columns = [xs.reshape(-1) / sxy, ys.reshape(-1) / sxy]
    if image is not None:
        columns += [channel.reshape(-1).astype(xp.float64) / srgb for channel in image]
    return xp.stack(columns, axis=1)


def _channels_first(image, height, width):
    if image.ndim == 2 and image.shape == (height, width):
        return image[None]
    if image.ndim == 3 and image.shape[1:] == (height, width):
        return image
    if image.ndim == 3 and image.shape[:2] == (height, width):
        return image.transpose(2, 0, 1)
    raise ValueError(f"dense_crf: image must be (K, {height}, {width}), ({height}, {width}, K) or "
                     f"({height}, {width}) to match the probabilities; got shape {tuple(image.shape)}")


def _free_energy(q, unary, message, xp):
    """F(Q) = Σ Q (log Q + ψ_u) − ½ Σ Q · message, with message = Σ_m w_m K̂_m Q."""
    entropy_term = q * xp.log(xp.maximum(q, 1e-20))
    return float((entropy_term + q * unary - 0.5 * q * message).sum())


def mean_field(unary, pairwise, iterations, return_trace=False):
    """Parallel mean-field updates Q ← softmax(−ψ_u + Σ_m w_m K̂_m Q) on (N, C) arrays.

    ``pairwise`` is a list of ``(w_m, K̂_m)`` with ``K̂_m(Q)`` returning K̂_m·Q. Returns Q, or (Q, trace)
    with the free energies F(Q) (module docstring) before the first and after every update.
    """
    xp = get_array_module(unary)

    def message(q):
        return sum(weight * kernel(q) for weight, kernel in pairwise)

    q, trace = _softmax_rows(-unary, xp), []
    for _ in range(iterations):
        current = message(q)
        if return_trace:
            trace.append(_free_energy(q, unary, current, xp))
        q = _softmax_rows(current - unary, xp)
    if not return_trace:
        return q
    trace.append(_free_energy(q, unary, message(q), xp))
    return q, trace


def dense_crf(probabilities, image, iterations=5, gaussian_sxy=3.0, gaussian_compat=3.0, bilateral_sxy=80.0,
              bilateral_srgb=13.0, bilateral_compat=10.0, method="permutohedral", return_trace=False):
    """Refine class probabilities (C, H, W) with a fully connected CRF (§7.4.4); see the module docstring.

    ``image`` is (3, H, W), (H, W, 3) (or any number of channels K, or (H, W) grey), uint8 or float, on
    the 0–255 scale that ``bilateral_srgb`` is measured in. Defaults are pydensecrf's README example:
    smoothness θγ = 3 px with weight 3, appearance θα = 80 px and θβ = 13 with weight 10, 5 iterations.
    A compat of 0 drops that kernel. ``method="exact"`` (dense N×N kernels) is meant for images of at most
    20,000 pixels; ``"permutohedral"`` for real sizes. Works on NumPy and CuPy arrays (or Tensors) alike.

    Returns the refined probabilities (C, H, W) as an array of the input's dtype (float32 for integer
    input) on its device; with ``return_trace=True``, ``(probabilities, trace)`` with the free energy F(Q)
    before the first and after every iteration (``iterations + 1`` floats).
    """
    probabilities, image = raw(probabilities), raw(image)
    xp = get_array_module(probabilities)
    if method not in METHODS:
        raise ValueError(f"dense_crf: method must be one of {METHODS}; got {method!r}")
    if probabilities.ndim != 3:
        raise ValueError(f"dense_crf: probabilities must be (C, H, W); got shape {tuple(probabilities.shape)}")
    if int(iterations) != iterations or iterations < 0:
        raise ValueError(f"dense_crf: iterations must be a non-negative int; got {iterations!r}")
    classes, height, width = probabilities.shape
    n = height * width
    if method == "exact" and n > EXACT_MAX_PIXELS:
        raise ValueError(f"dense_crf: method='exact' builds N×N kernels; {height}×{width} = {n} pixels is more "
                         f"than {EXACT_MAX_PIXELS}: use method='permutohedral'")
    dtype = probabilities.dtype if np.issubdtype(probabilities.dtype, np.floating) else np.float32
    image = xp.asarray(_channels_first(image, height, width))
    unary = -xp.log(xp.clip(probabilities.reshape(classes, n).T.astype(dtype), UNARY_CLIP, 1.0))
    pairwise = []
    for weight, colours, sxy, srgb in ((gaussian_compat, None, gaussian_sxy, None),
                                       (bilateral_compat, image, bilateral_sxy, bilateral_srgb)):
        if weight:
            features = _features(colours, height, width, sxy, srgb, xp)
            kernel = (ExactKernel if method == "exact" else PermutohedralLattice)(features, dtype)
            pairwise.append((weight, NormalizedKernel(kernel, n, dtype, xp)))
    result = mean_field(unary, pairwise, int(iterations), return_trace)
    q, trace = result if return_trace else (result, None)
    refined = xp.ascontiguousarray(q.T.reshape(classes, height, width))
    return (refined, trace) if return_trace else refined
