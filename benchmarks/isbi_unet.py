"""U-Net on ISBI 2012 (the U-Net paper's EM membranes), trained in minseg and in PyTorch from the same start.

    python benchmarks/isbi_unet.py [--framework minseg|torch|both] [--steps N] [--batch-size B] [--crop C]
                                   [--base W] [--lr LR] [--weight-map unet|boundary] [--out DIR] [--data-dir D]
                                   [--quick]

Model: U-Net, depth 4, same padding, batch norm, transposed-conv upsampling, ``--base`` channels at the
first level. Data: the first 25 of the 30 labelled slices train, the last 5 are held out and predicted
at full size (512x512). Training samples: a random ``--crop`` window, U-Net's elastic deformation
(3x3 grid, sigma 10 px, mirrored at the border) and random flips, drawn once in NumPy from seeded
generators; both frameworks read the same arrays. Loss: cross-entropy weighted per pixel by U-Net's
weight map (``minseg.losses.unet_weight_map``: class balance + w0=10, sigma=5 px border term), computed
once on the full 512x512 labels with the cells' connected components as instances, and deformed with the
labels (as a second image channel). ``--weight-map boundary`` uses ``boundary_weight_map`` instead
(the same border term on the semantic labels; much cheaper, so ``--quick`` uses it).

Foreground: the U-Net paper segments the cells (class 1, "cell interior", white in the labels); the
membranes (class 0) are the thin borders between them that the weight map stresses. "cell IoU/Dice/BF1"
score class 1; BF1 is boundary F1 with a 2 px tolerance; "membrane IoU" is the harder class. V_rand and
V_info are the challenge's foreground-restricted Rand and information scores (``minseg.metrics.challenge_scores``:
the predicted membranes thinned, regions = connected components between membranes; 1 is perfect).

Defaults fit in an hour per framework on 2 CPU cores: on an otherwise idle 2-core machine with 2 threads,
minseg trained the 1500 steps in 26 min (1.06 s a step) and torch in 9 min (0.36 s), after 4 min for the
weight maps and batches (2026-11-26: cell IoU 0.8642 vs 0.8626); the stored batches take about 2 GB of
temporary disk. See twin_training.py for how the two
runs are kept identical.
"""

import os
import sys

import twin_training

NAME = "isbi_unet"
DEFAULTS = {"steps": 1500, "batch_size": 4, "lr": 1e-3, "crop": 192, "base": 16, "weight_map": "unet"}
QUICK = {"steps": 3, "batch_size": 2, "lr": 1e-3, "crop": 32, "base": 4, "weight_map": "boundary"}
EVAL_BATCH = 1
TRAIN_COUNT = 25


def add_options(option):
    option("--crop", int, "side of the random training crops (a multiple of 16)")
    option("--base", int, "channels at U-Net's first level (doubling at each of the 4 levels)")
    option("--weight-map", str, "per-pixel loss weights: unet (instance-based, the paper's) or boundary",
           choices=("unet", "boundary"))


def weight_map(mask, kind):
    """Loss weights (H, W) float32 for the label map ``mask``."""
    import numpy as np
    from scipy import ndimage

    from minseg.losses import boundary_weight_map, unet_weight_map

    if kind == "boundary":
        return boundary_weight_map(mask[None])[0].astype(np.float32)
    return unet_weight_map(ndimage.label(mask == 1)[0]).astype(np.float32)


def prepare(args):
    import numpy as np

    from minseg.data import ISBI2012, Compose, ElasticDeformation, RandomCrop, RandomFlip, data_root

    if args.crop % 16:
        raise SystemExit(f"--crop must be a multiple of 16 (U-Net's four poolings); got {args.crop}")
    dataset = ISBI2012(data_root("isbi2012", args.data_dir), "train")
    images = np.stack([dataset.load_image(i) for i in range(len(dataset))])
    masks = np.stack([dataset.load_mask(i) for i in range(len(dataset))])
    weights = {}  # index -> weight map, computed on first use (seconds per image) and then reused
    augment = Compose([RandomCrop(args.crop), ElasticDeformation(sigma=10, mode="reflect"),
                       RandomFlip("horizontal"), RandomFlip("vertical")])

    def sample(index, sample_rng):
        # the weight map rides along as a second image channel, so it is cropped, deformed and flipped
        # exactly as the image and the labels are
        if index not in weights:
            weights[index] = weight_map(masks[index], args.weight_map)
        stacked, mask = augment(np.concatenate([images[index], weights[index][None]]), masks[index], sample_rng)
        return stacked[:1], mask.astype(np.uint8), stacked[1]

    return sample, TRAIN_COUNT, images[TRAIN_COUNT:], masks[TRAIN_COUNT:]


def build(args, framework):
    if framework == "torch":
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
        from model_twins import TorchUNet

        return TorchUNet(1, 2, args.base, 4, "same", "transpose", True)
    from minseg.models import UNet

    return UNet(1, 2, base_channels=args.base, depth=4, padding="same", batch_norm=True)


def score(predictions, masks):
    """Pixel scores, boundary F1, and the challenge's V_rand / V_info on the membrane-separated regions."""
    from minseg.metrics import ConfusionMatrix, boundary_f1, challenge_scores

    matrix = ConfusionMatrix(2, ignore_index=twin_training.IGNORE_INDEX)
    matrix.update(predictions, masks)
    scores = matrix.compute()
    contours = boundary_f1(predictions, masks, 2, tolerance_px=2, reduction="none")
    challenge = challenge_scores(predictions == 0, masks == 0)            # class 0 is the membrane
    return {"cell IoU": float(scores["iou"][1]), "cell Dice": float(scores["dice"][1]),
            "cell BF1": float(contours[1]), "membrane IoU": float(scores["iou"][0]),
            "V_rand": challenge["v_rand"].score, "V_info": challenge["v_info"].score}


def describe(args):
    return (f"ISBI 2012, U-Net base {args.base} (same padding, BN) | 25 train / 5 held-out slices, evaluated at "
            f"512x512 | {args.steps} steps x batch {args.batch_size}, {args.crop}x{args.crop} crops, elastic + "
            f"flips, {args.weight_map} weight map | Adam lr {args.lr:g}, poly decay")


if __name__ == "__main__":
    twin_training.main(sys.modules[__name__])
