"""Where one U-Net training step spends its time: minseg alone, under cProfile.

    python benchmarks/profile_step.py [--device cpu|cuda] [--repeats 10] [--threads 2] [--batch-norm] [--quick]

Builds U-Net (base 32, depth 4, same padding) for a batch of 4 one-channel 256×256 images, runs a few
warm-up steps (forward, cross-entropy, backward, SGD with momentum), prints the synchronised time per
step, then the functions with the most time of their own over ``--repeats`` profiled steps. On a GPU
the profile shows how much of a step is Python dispatch and kernel launches rather than GPU work.
"""

import cProfile
import pstats
import time

from common import parse_args, synchronize

ARGS = parse_args(__doc__, extra=lambda p: p.add_argument("--batch-norm", action="store_true",
                                                           help="U-Net with batch norm after every conv"))

import numpy as np  # noqa: E402  (after parse_args has fixed the thread counts)

import minseg  # noqa: E402
import minseg.functional as F  # noqa: E402
from minseg.models import UNet  # noqa: E402
from minseg.optim import SGD  # noqa: E402

size, base = (32, 8) if ARGS.quick else (256, 32)
model = UNet(1, 2, base_channels=base, depth=4, padding="same", batch_norm=ARGS.batch_norm).to(ARGS.device)
optimizer = SGD(model.parameters(), lr=0.01, momentum=0.9)
rng = np.random.default_rng(0)
images = minseg.tensor(rng.standard_normal((4, 1, size, size), dtype=np.float32), device=ARGS.device)
masks = minseg.tensor(rng.integers(0, 2, (4, size, size)), device=ARGS.device)


def step():
    optimizer.zero_grad()
    F.cross_entropy(model(images), masks).backward()
    optimizer.step()


for _ in range(3):
    step()
synchronize(ARGS.device)
start = time.perf_counter()
for _ in range(ARGS.repeats):
    step()
synchronize(ARGS.device)
print(f"U-Net base {base}{' + BN' if ARGS.batch_norm else ''}, 4×1×{size}×{size}, {ARGS.device}: {1000 * (time.perf_counter() - start) / ARGS.repeats:.1f} ms "
      f"a step (mean of {ARGS.repeats}, synchronised)")
profile = cProfile.Profile()
profile.enable()
for _ in range(ARGS.repeats):
    step()
synchronize(ARGS.device)
profile.disable()
pstats.Stats(profile).sort_stats("tottime").print_stats(18)
