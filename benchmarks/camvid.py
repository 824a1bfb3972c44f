"""DeepLab v3+ on CamVid at reduced resolution, trained in minseg and in PyTorch from the same start.

    python benchmarks/camvid.py [--framework minseg|torch|both] [--steps N] [--batch-size B] [--downscale F]
                                [--width W] [--lr LR] [--out DIR] [--data-dir D] [--quick]

Model: DeepLab v3+ on a ResNet-18 whose channel counts are scaled by ``--width``, output stride 16
(ASPP rates 6, 12, 18), dropout 0 (dropout masks are random numbers that the two frameworks would draw
differently). Data: SegNet's CamVid (11 classes, void ignored), 367 train and 101 val images, shrunk
by ``--downscale`` (image: mean of each F x F block; labels: the pixel nearest the block's centre) and
normalised with the training set's per-channel mean and standard deviation. Training batches (a fresh
permutation per epoch, random horizontal flips) are drawn once in NumPy from seeded generators, and both
frameworks read the same arrays. Loss: cross-entropy with void ignored; Adam with poly decay. Reported:
val mIoU (over the 11 classes), pixel accuracy and mean class accuracy, at the reduced resolution.
"""

import os
import sys

import twin_training

NAME = "camvid"
DEFAULTS = {"steps": 2000, "batch_size": 8, "lr": 1e-3, "downscale": 4, "width": 0.25}
QUICK = {"steps": 3, "batch_size": 4, "lr": 1e-3, "downscale": 8, "width": 0.125}
QUICK_IMAGES = 16  # --quick reads only the first images of each split
EVAL_BATCH = 16


def add_options(option):
    option("--downscale", int, "shrink factor of both image sides (360x480 / F)")
    option("--width", float, "channel multiplier of the ResNet-18 backbone, ASPP and decoder")


def load_split(root, split, factor, count):
    """The first ``count`` images of ``split`` (all with None), shrunk by ``factor``: (N, 3, h, w), (N, h, w)."""
    import numpy as np

    from minseg.data import CamVid

    dataset = CamVid(root, split)
    images, masks = [], []
    for index in range(len(dataset) if count is None else min(count, len(dataset))):
        image, mask = dataset[index]
        channels, height, width = image.shape
        if height % factor or width % factor:
            raise SystemExit(f"--downscale {factor} does not divide CamVid's {height}x{width} images")
        images.append(image.reshape(channels, height // factor, factor, width // factor, factor).mean(axis=(2, 4)))
        masks.append(mask[factor // 2::factor, factor // 2::factor])
    return np.stack(images), np.stack(masks).astype(np.uint8)


def prepare(args):
    from minseg.data import RandomFlip, data_root

    root = data_root("camvid", args.data_dir)
    count = QUICK_IMAGES if args.quick else None
    train_images, train_masks = load_split(root, "train", args.downscale, count)
    val_images, val_masks = load_split(root, "val", args.downscale, count)
    mean = train_images.mean(axis=(0, 2, 3), keepdims=True)
    std = train_images.std(axis=(0, 2, 3), keepdims=True)
    train_images, val_images = (train_images - mean) / std, (val_images - mean) / std
    flip = RandomFlip("horizontal")

    def sample(index, sample_rng):
        return flip(train_images[index], train_masks[index], sample_rng)

    return sample, len(train_images), val_images.astype("float32"), val_masks


def build(args, framework):
    if framework == "torch":
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
        from model_twins import TorchDeepLabV3Plus

        return TorchDeepLabV3Plus(11, "resnet18", args.width, 16, None, dropout=0.0)
    from minseg.models import DeepLabV3Plus

    return DeepLabV3Plus(11, "resnet18", 3, args.width, output_stride=16, dropout=0.0)


def score(predictions, masks):
    from minseg.metrics import ConfusionMatrix

    matrix = ConfusionMatrix(11, ignore_index=twin_training.IGNORE_INDEX)
    matrix.update(predictions, masks)
    scores = matrix.compute()
    return {"val mIoU": float(scores["miou"]), "pixel acc": float(scores["pixel_accuracy"]),
            "class acc": float(scores["mean_class_accuracy"]), "class IoU": [float(v) for v in scores["iou"]]}


def describe(args):
    size = f"{360 // args.downscale}x{480 // args.downscale}"
    images = f"first {QUICK_IMAGES} train / {QUICK_IMAGES} val" if args.quick else "367 train / 101 val"
    return (f"CamVid 11 classes, DeepLab v3+ ResNet-18 width {args.width:g} (OS 16, dropout 0) | {images} images "
            f"at {size} | {args.steps} steps x batch {args.batch_size}, flips | Adam lr {args.lr:g}, poly decay")


if __name__ == "__main__":
    twin_training.main(sys.modules[__name__])
