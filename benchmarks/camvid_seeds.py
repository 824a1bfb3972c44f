"""CamVid three times per framework: the spread of a short training run, measured.

    python benchmarks/camvid_seeds.py [--seeds 0 1 2] [--out runs/camvid_seeds] [camvid.py options ...]

Runs ``camvid.py`` (minseg and its PyTorch twin from the same start) once per seed — each seed changes the
initial weights, the data order and the flips — and prints mean ± sample standard deviation over the seeds
of val mIoU and of every class's IoU for both frameworks, the per-seed differences, and the wall time.
Options this script does not know are passed on to ``camvid.py``.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/camvid_seeds")
    args, passed_on = parser.parse_known_args()
    import numpy as np

    sys.path.insert(0, str(HERE.parent))
    from minseg.data import CamVid

    runs, start = [], time.perf_counter()
    for seed in args.seeds:
        out = Path(args.out) / f"seed{seed}"
        command = [sys.executable, str(HERE / "camvid.py"), "--seed", str(seed), "--out", str(out)] + passed_on
        print(f"$ {' '.join(command)}", flush=True)
        subprocess.run(command, check=True)
        runs.append({fw: json.loads((out / f"history_{fw}.json").read_text()) for fw in ("minseg", "torch")})
    wall = time.perf_counter() - start

    def spread(values):
        values = np.asarray(values, dtype=float)
        return f"{values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.4f}"

    print(f"\nCamVid, seeds {args.seeds}: mean ± standard deviation over the seeds (wall time {wall / 60:.1f} min)")
    print(f"| {'':<14} | {'minseg':>17} | {'torch':>17} |")
    print(f"|{'-' * 16}|{'-' * 19}|{'-' * 19}|")
    for label, pick in [("val mIoU", lambda r: r["metrics"]["val mIoU"])] + [
            (name, lambda r, c=c: r["metrics"]["class IoU"][c]) for c, name in enumerate(CamVid.class_names)]:
        print(f"| {label:<14} | {spread([pick(r['minseg']) for r in runs]):>17} | "
              f"{spread([pick(r['torch']) for r in runs]):>17} |")
    gaps = [100 * (r["minseg"]["metrics"]["val mIoU"] - r["torch"]["metrics"]["val mIoU"]) for r in runs]
    print(f"minseg − torch val mIoU per seed (points): {', '.join(f'{g:+.2f}' for g in gaps)}; "
          f"mean {np.mean(gaps):+.2f}")
    times = {fw: np.mean([r[fw]["train_seconds"] for r in runs]) for fw in ("minseg", "torch")}
    print(f"train time per run: minseg {times['minseg']:.0f} s, torch {times['torch']:.0f} s")


if __name__ == "__main__":
    main()
