"""Dense CRF (§7.4.4): the permutohedral lattice at a VOC-like size, and how well it agrees with the exact CRF.

    python benchmarks/bench_crf.py [--threads 2] [--repeats 3] [--device cpu|cuda] [--quick]

Times ``dense_crf(method="permutohedral")`` on a 480×360 image with 21 classes and 5 mean-field
iterations (pydensecrf's example parameters). Then, on the same scene downscaled 8× (60×45), runs the
exact O(N²) method with the same parameters and prints the share of pixels whose MAP label agrees. When
pydensecrf (e.g. the ``pydensecrf2`` wheel; not a dependency of minseg) is importable, the same problem
also runs through its C++ lattice: time, ratio (minseg / pydensecrf) and agreement.
"""

from common import median_times, parse_args

ARGS = parse_args(__doc__)

import time  # noqa: E402

import numpy as np  # noqa: E402

import minseg  # noqa: E402
from minseg.inference.crf import dense_crf  # noqa: E402
from minseg.data.synthetic import MultiClassShapes  # noqa: E402

DEVICE = ARGS.device
HEIGHT, WIDTH, CLASSES, ITERATIONS = (90, 120, 21, 5) if ARGS.quick else (360, 480, 21, 5)
DOWNSCALE = 2 if ARGS.quick else 8


def scene():
    """A synthetic scene (uint8 H×W×3), its labels, and a noisy 21-class probability map of them."""
    image, mask = MultiClassShapes(length=1, size=(HEIGHT, WIDTH), num_objects=(6, 10), seed=0)[0]
    rng = np.random.default_rng(0)
    labels = mask * 4 % CLASSES  # the five shape classes spread over the 21
    logits = 2.0 * np.eye(CLASSES, dtype=np.float32)[labels].transpose(2, 0, 1)
    logits += 1.5 * rng.standard_normal(logits.shape, dtype=np.float32)
    p = np.exp(logits)
    return np.ascontiguousarray((image.transpose(1, 2, 0) * 255).astype(np.uint8)), labels, p / p.sum(0)


def downscale(array, factor, axes):
    """Block means over factor×factor pixels along the two spatial ``axes``."""
    shape = list(array.shape)
    for axis in sorted(axes, reverse=True):
        shape[axis:axis + 1] = [shape[axis] // factor, factor]
    means = array.reshape(shape).mean(axis=tuple(a + i + 1 for i, a in enumerate(sorted(axes))))
    return means.astype(array.dtype)


def pydensecrf_solver():
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError:
        return None

    def solve(p, image):
        crf = dcrf.DenseCRF2D(image.shape[1], image.shape[0], p.shape[0])
        crf.setUnaryEnergy(np.ascontiguousarray(-np.log(np.clip(p, 1e-5, 1.0)).reshape(p.shape[0], -1)))
        crf.addPairwiseGaussian(sxy=3, compat=3)
        crf.addPairwiseBilateral(sxy=80, srgb=13, rgbim=image, compat=10)
        return np.array(crf.inference(ITERATIONS)).reshape(p.shape)
    return solve


def ours(p, image, method="permutohedral"):
    result = dense_crf(minseg.to_device(p, DEVICE), minseg.to_device(image, DEVICE), iterations=ITERATIONS,
                       method=method)
    return minseg.Tensor(result).numpy()  # includes the copy back (and so the GPU's finish) in the time


def main():
    image, labels, p = scene()
    print(f"minseg {minseg.__version__} | numpy {np.__version__} | {DEVICE} | threads {ARGS.threads} | float32 | "
          f"{WIDTH}x{HEIGHT}, {CLASSES} classes, {ITERATIONS} iterations | median of 3 rounds x {ARGS.repeats}")
    start = time.perf_counter()
    ours(p, image)
    print(f"first call (imports, GPU kernels): {time.perf_counter() - start:.3f} s")
    functions = {"minseg permutohedral": lambda: ours(p, image)}
    solve = pydensecrf_solver()
    if solve is not None:
        functions["pydensecrf (C++)"] = lambda: solve(p, image)
    times = median_times(functions, ARGS.repeats)
    for name, seconds in times.items():
        print(f"{name:<22} {seconds * 1000:9.1f} ms")
    refined = ours(p, image)
    print(f"pixel accuracy of the noisy input {(p.argmax(0) == labels).mean():.1%}, after the CRF "
          f"{(refined.argmax(0) == labels).mean():.1%}")
    if solve is not None:
        reference = solve(p, image)
        print(f"ratio minseg / pydensecrf: {times['minseg permutohedral'] / times['pydensecrf (C++)']:.2f}x | "
              f"MAP agreement {(refined.argmax(0) == reference.argmax(0)).mean():.4%} | "
              f"max |ΔQ| {np.abs(refined - reference).max():.2e}")
    else:
        print("pydensecrf not importable: no C++ comparison (PyPI's pydensecrf2 provides it; not a minseg dependency)")
    small_image, small_p = downscale(image, DOWNSCALE, (0, 1)), downscale(p, DOWNSCALE, (1, 2))
    lattice, exact = ours(small_p, small_image), ours(small_p, small_image, method="exact")
    print(f"exact vs permutohedral at {small_image.shape[1]}x{small_image.shape[0]}: MAP agreement "
          f"{(lattice.argmax(0) == exact.argmax(0)).mean():.2%}, max |ΔQ| {np.abs(lattice - exact).max():.3f}")


if __name__ == "__main__":
    main()
