"""Readers for the benchmark datasets of §7.5.1 (and U-Net's ISBI 2012, §7.3), in their native layouts.

Every reader takes the dataset's root folder and a split, checks at construction that the expected
folders exist and that every image has its label (and vice versa), and returns ``(image, mask)``:
``image`` float32 (C, H, W) scaled to [0, 1], ``mask`` int64 (H, W) of training ids with
``ignore_index`` (255) for void pixels. The raw label values are converted by a 256-entry lookup table
(``lut[raw] = train id``), which is where each dataset's convention lives. A file that cannot be decoded,
has the wrong kind of pixels or a size that differs from its partner raises ``ValueError`` naming it.

Readers expose ``num_classes``, ``class_names``, ``ignore_index``, ``palette`` (num_classes × 3 uint8,
for overlays) and ``sample(index, rng)``, which applies ``transform(image, mask, rng)`` for augmentation.
``data_root(name)`` finds the data on disk.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence

IGNORE_INDEX = 255


def data_root(name, data_dir=None) -> Path:
    """The folder of dataset ``name`` (e.g. ``"isbi2012"``), looked up in this order:

    1. ``data_dir`` (a ``--data-dir`` option): ``data_dir/<name>``, or ``data_dir`` itself if it is that
       dataset's folder; a ``data_dir`` that does not exist is an error, not a reason to look elsewhere;
    2. ``$MINSEG_DATA/<name>``;
    3. ``../shared/data/<name>`` next to the repository, then next to the working directory.
    """
    if data_dir is not None:
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise FileNotFoundError(f"data_root: --data-dir {data_dir} is not a folder")
        return data_dir / name if (data_dir / name).is_dir() else data_dir
    candidates = []
    if os.environ.get("MINSEG_DATA"):
        candidates.append(Path(os.environ["MINSEG_DATA"]) / name)
    repository = Path(__file__).resolve().parents[2]
    for base in (repository.parent, Path.cwd().resolve().parent):
        if base / "shared" / "data" / name not in candidates:
            candidates.append(base / "shared" / "data" / name)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    tried = "\n  ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"data_root: dataset {name!r} not found; tried\n  {tried}\n"
                            f"pass --data-dir, or set MINSEG_DATA to the folder that holds {name}/")


def color_map(count) -> np.ndarray:
    """PASCAL VOC's colour map: class c's RGB bits are c's bits, interleaved from the most significant."""
    colours = np.zeros((count, 3), dtype=np.uint8)
    for c in range(count):
        value, bit = c, 7
        while value:
            for channel in range(3):
                colours[c, channel] |= ((value >> channel) & 1) << bit
            value, bit = value >> 3, bit - 1
    return colours


def _natural_key(path):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _require_dir(path, who):
    if not path.is_dir():
        raise FileNotFoundError(f"{who}: folder {path} not found")
    return path


def _read_split_file(path, who):
    if not path.is_file():
        raise FileNotFoundError(f"{who}: split file {path} not found")
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def _pair_by_stem(images, labels, who, image_dir, label_dir):
    """Pair image and label files by name stem; any file without a partner is an error naming it."""
    by_stem = {p.stem: p for p in labels}
    image_stems = {p.stem for p in images}
    for path in images:
        if path.stem not in by_stem:
            raise FileNotFoundError(f"{who}: image {path} has no label in {label_dir}")
    for path in labels:
        if path.stem not in image_stems:
            raise FileNotFoundError(f"{who}: label {path} has no image in {image_dir}")
    if not images:
        raise FileNotFoundError(f"{who}: no images found in {image_dir}")
    return [(path, by_stem[path.stem]) for path in sorted(images, key=_natural_key)]


def _open(path, who):
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except FileNotFoundError:
        raise FileNotFoundError(f"{who}: file {path} not found") from None
    except Exception as error:  # PIL raises several types for truncated or foreign files
        raise ValueError(f"{who}: cannot read {path}: {error}") from error


def _pages(path, who):
    """Every page of a multi-page TIFF, as separate images."""
    try:
        with Image.open(path) as stack:
            return [page.copy() for page in ImageSequence.Iterator(stack)]
    except FileNotFoundError:
        raise FileNotFoundError(f"{who}: file {path} not found") from None
    except Exception as error:
        raise ValueError(f"{who}: cannot read {path}: {error}") from error


def _image_array(image, mode):
    """Image → float32 (C, H, W) in [0, 1] (``mode`` "L" or "RGB")."""
    array = np.asarray(image.convert(mode), dtype=np.float32) / 255.0
    return array[None] if array.ndim == 2 else np.ascontiguousarray(array.transpose(2, 0, 1))


def _label_array(image, path, who):
    """A single-channel label image → raw integer array, or a ValueError naming the file."""
    if image.mode not in ("L", "P", "I", "I;16"):
        raise ValueError(f"{who}: label {path} has mode {image.mode}; expected a single-channel "
                         "(L, P or 16-bit) PNG of class ids")
    raw = np.asarray(image).astype(np.int64)
    if raw.min() < 0 or raw.max() > 255:
        raise ValueError(f"{who}: label {path} has values outside 0..255 (found {raw.min()}..{raw.max()})")
    return raw


def _lut(mapping):
    """A 256-entry table sending raw id → train id per ``mapping`` (a dict), everything else → 255."""
    table = np.full(256, IGNORE_INDEX, dtype=np.int64)
    for raw, train in mapping.items():
        table[raw] = train
    return table


class SegmentationDataset:
    """Common reader: ``self.pairs`` holds (image path, label path); subclasses set the class attributes,
    ``image_mode`` ("RGB" or "L") and ``lut``, and build ``pairs`` in ``__init__``."""

    ignore_index = IGNORE_INDEX
    image_mode = "RGB"
    num_classes: int
    class_names: tuple
    palette: np.ndarray
    lut: np.ndarray

    def __init__(self, root, split, transform=None):
        self.root, self.split, self.transform = Path(root), split, transform
        _require_dir(self.root, self._who)
        self.pairs: list = []

    @property
    def _who(self):
        return f"{type(self).__name__}({self.split!r})"

    def __len__(self):
        return len(self.pairs)

    def load_image(self, index) -> np.ndarray:
        """Image ``index`` as float32 (C, H, W) in [0, 1]."""
        return _image_array(_open(self.pairs[index][0], self._who), self.image_mode)

    def load_mask(self, index) -> np.ndarray:
        """Label ``index`` as int64 (H, W) train ids (raw ids through ``lut``)."""
        path = self.pairs[index][1]
        return self.lut[_label_array(_open(path, self._who), path, self._who)]

    def __getitem__(self, index):
        image, mask = self.load_image(index), self.load_mask(index)
        if image.shape[-2:] != mask.shape:
            image_path, label_path = self.pairs[index][:2]
            raise ValueError(f"{self._who}: image {image_path} is {image.shape[-1]}x{image.shape[-2]} but label "
                             f"{label_path} is {mask.shape[1]}x{mask.shape[0]}")
        return image, mask

    def sample(self, index, rng):
        """Sample ``index`` passed through ``transform(image, mask, rng)`` (unchanged without a transform)."""
        image, mask = self[index]
        return (image, mask) if self.transform is None else self.transform(image, mask, rng)

    def __repr__(self):
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, {len(self)} samples)"


class ISBI2012(SegmentationDataset):
    """ISBI 2012 EM membranes (the U-Net paper's data). Two classes: 0 = membrane, 1 = cell interior,
    the same sense as ``TouchingCells`` (boundary 0, cell 1). Raw labels are 0 (membrane) / 255 (interior);
    values are thresholded at 128.

    Layouts: PNG folders ``images/``, ``labels/`` (same file names) and ``test/`` (unlabelled), or the
    challenge's multi-page TIFFs ``train-volume.tif``, ``train-labels.tif``, ``test-volume.tif``. The test
    split has no released labels: its masks are all ``ignore_index``.
    """

    num_classes = 2
    class_names = ("membrane", "cell")
    palette = np.array([[0, 0, 0], [255, 255, 255]], dtype=np.uint8)
    image_mode = "L"
    lut = np.where(np.arange(256) >= 128, 1, 0)

    def __init__(self, root, split="train", transform=None):
        super().__init__(root, split, transform)
        if split not in ("train", "test"):
            raise ValueError(f"ISBI2012: split must be 'train' or 'test'; got {split!r}")
        volume = self.root / f"{split}-volume.tif"
        self.stacks = None
        if (self.root / "images").is_dir() or not volume.is_file():
            self._pngs(split)
        else:
            self._tiffs(volume, self.root / "train-labels.tif" if split == "train" else None)

    def _pngs(self, split):
        if split == "test":
            images = sorted(_require_dir(self.root / "test", self._who).glob("*.png"), key=_natural_key)
            if not images:
                raise FileNotFoundError(f"{self._who}: no images found in {self.root / 'test'}")
            self.pairs = [(path, None) for path in images]
            return
        if not (self.root / "images").is_dir():
            raise FileNotFoundError(f"{self._who}: neither {self.root / 'images'} (PNG layout) nor "
                                    f"{self.root / 'train-volume.tif'} (TIFF layout) found")
        image_dir, label_dir = self.root / "images", _require_dir(self.root / "labels", self._who)
        self.pairs = _pair_by_stem(list(image_dir.glob("*.png")), list(label_dir.glob("*.png")), self._who,
                                   image_dir, label_dir)

    def _tiffs(self, volume, labels):
        pages = _pages(volume, self._who)
        label_pages = None
        if labels is not None:
            if not labels.is_file():
                raise FileNotFoundError(f"{self._who}: label stack {labels} not found (beside {volume})")
            label_pages = _pages(labels, self._who)
            if len(label_pages) != len(pages):
                raise ValueError(f"{self._who}: {volume} has {len(pages)} pages but {labels} has {len(label_pages)}")
        self.stacks = (pages, label_pages)
        self.pairs = [(f"{volume}[{i}]", None if labels is None else f"{labels}[{i}]") for i in range(len(pages))]

    def load_image(self, index):
        if self.stacks is None:
            return super().load_image(index)
        return _image_array(self.stacks[0][index], self.image_mode)

    def load_mask(self, index):
        path = self.pairs[index][1]
        if path is None:
            return np.full(self.load_image(index).shape[-2:], IGNORE_INDEX, dtype=np.int64)
        if self.stacks is None:
            return super().load_mask(index)
        return self.lut[_label_array(self.stacks[1][index], path, self._who)]


class VOCSegmentation(SegmentationDataset):
    """PASCAL VOC 2012 segmentation: ``root`` holds ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png``
    (palette PNGs whose index is the class) and ``ImageSets/Segmentation/<split>.txt``. 21 classes
    (0 = background); 255 (object borders, "difficult") is ignored, as is any index above 20."""

    num_classes = 21
    class_names = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
                   "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
                   "train", "tvmonitor")
    palette = color_map(21)
    lut = _lut({c: c for c in range(21)})

    def __init__(self, root, split="train", transform=None):
        super().__init__(root, split, transform)
        ids = _read_split_file(self.root / "ImageSets" / "Segmentation" / f"{split}.txt", self._who)
        image_dir = _require_dir(self.root / "JPEGImages", self._who)
        label_dir = _require_dir(self.root / "SegmentationClass", self._who)
        self.pairs = []
        for (stem, *_) in ids:
            image, label = image_dir / f"{stem}.jpg", label_dir / f"{stem}.png"
            for path, kind in ((image, "image"), (label, "label")):
                if not path.is_file():
                    raise FileNotFoundError(f"{self._who}: {kind} {path} listed in {split}.txt not found")
            self.pairs.append((image, label))


# cityscapesScripts labels.py: label id → train id for the 19 evaluated classes; all others are ignored.
_CITYSCAPES_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                         25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


class Cityscapes(SegmentationDataset):
    """Cityscapes fine annotations: ``leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`` with
    ``gtFine/<split>/<city>/<name>_gtFine_labelIds.png``. The 34 label ids become the 19 train ids
    (road 0 … bicycle 18); every other id (void, ego vehicle, parking, …) becomes 255."""

    num_classes = 19
    class_names = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                   "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
                   "bicycle")
    palette = np.array([[128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153],
                        [153, 153, 153], [250, 170, 30], [220, 220, 0], [107, 142, 35], [152, 251, 152],
                        [70, 130, 180], [220, 20, 60], [255, 0, 0], [0, 0, 142], [0, 0, 70], [0, 60, 100],
                        [0, 80, 100], [0, 0, 230], [119, 11, 32]], dtype=np.uint8)
    lut = _lut(_CITYSCAPES_TRAIN_IDS)

    def __init__(self, root, split="train", transform=None):
        super().__init__(root, split, transform)
        image_dir = _require_dir(self.root / "leftImg8bit" / split, self._who)
        label_dir = _require_dir(self.root / "gtFine" / split, self._who)
        images = {p.relative_to(image_dir).as_posix()[:-len("_leftImg8bit.png")]: p
                  for p in image_dir.glob("*/*_leftImg8bit.png")}
        labels = {p.relative_to(label_dir).as_posix()[:-len("_gtFine_labelIds.png")]: p
                  for p in label_dir.glob("*/*_gtFine_labelIds.png")}
        unpaired_images, unpaired_labels = sorted(images.keys() - labels.keys()), sorted(labels.keys() - images.keys())
        if unpaired_images:
            key = unpaired_images[0]
            raise FileNotFoundError(f"{self._who}: image {images[key]} has no label "
                                    f"{label_dir / key}_gtFine_labelIds.png")
        if unpaired_labels:
            key = unpaired_labels[0]
            raise FileNotFoundError(f"{self._who}: label {labels[key]} has no image {image_dir / key}_leftImg8bit.png")
        if not images:
            raise FileNotFoundError(f"{self._who}: no */*_leftImg8bit.png images in {image_dir}")
        self.pairs = [(images[key], labels[key]) for key in sorted(images)]


_ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
    "glass", "clock", "flag")


class ADE20K(SegmentationDataset):
    """ADE20K scene parsing (ADEChallengeData2016): ``images/<split>/*.jpg`` with
    ``annotations/<split>/*.png``; split "training" or "validation" ("train"/"val" accepted).

    ``reduce_zero_label=True`` (the usual setting) drops raw 0 ("other objects", not evaluated):
    0 → 255 and c → c − 1, leaving 150 classes 0..149. With ``False``, 0..150 are kept as 151 classes.
    The palette is VOC's bit-interleaved colour map (ADE20K has no official one)."""

    image_mode = "RGB"

    def __init__(self, root, split="training", reduce_zero_label=True, transform=None):
        split = {"train": "training", "val": "validation"}.get(split, split)
        super().__init__(root, split, transform)
        self.reduce_zero_label = reduce_zero_label
        if reduce_zero_label:
            self.class_names, self.lut = _ADE20K_CLASSES, _lut({c: c - 1 for c in range(1, 151)})
        else:
            self.class_names, self.lut = ("other",) + _ADE20K_CLASSES, _lut({c: c for c in range(151)})
        self.num_classes = len(self.class_names)
        self.palette = color_map(self.num_classes + 1)[1:] if reduce_zero_label else color_map(self.num_classes)
        image_dir = _require_dir(self.root / "images" / split, self._who)
        label_dir = _require_dir(self.root / "annotations" / split, self._who)
        self.pairs = _pair_by_stem(list(image_dir.glob("*.jpg")), list(label_dir.glob("*.png")), self._who,
                                   image_dir, label_dir)


class CamVid(SegmentationDataset):
    """CamVid in SegNet's 11-class, 360×480 version: ``<split>/`` images and ``<split>annot/`` label PNGs
    holding 0..10 (sky, building, pole, road, pavement, tree, sign-symbol, fence, car, pedestrian,
    bicyclist) and 11 = void, which becomes 255. Pairs come from ``<split>.txt`` when present (lines
    "<image> <label>"; only the last two path parts are used, so SegNet's absolute ``/SegNet/CamVid/…``
    paths work) and otherwise by matching file stems in the two folders."""

    num_classes = 11
    class_names = ("sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence", "car",
                   "pedestrian", "bicyclist")
    palette = np.array([[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222],
                        [128, 128, 0], [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192]],
                       dtype=np.uint8)
    lut = _lut({c: c for c in range(11)})

    def __init__(self, root, split="train", transform=None):
        super().__init__(root, split, transform)
        listing = self.root / f"{split}.txt"
        if listing.is_file():
            self.pairs = []
            for line in _read_split_file(listing, self._who):
                if len(line) != 2:
                    raise ValueError(f"{self._who}: {listing}: expected '<image> <label>' per line; got {line}")
                pair = tuple(self.root.joinpath(*Path(p).parts[-2:]) for p in line)
                for path, kind in zip(pair, ("image", "label")):
                    if not path.is_file():
                        raise FileNotFoundError(f"{self._who}: {kind} {path} listed in {listing} not found")
                self.pairs.append(pair)
        else:
            image_dir = _require_dir(self.root / split, self._who)
            label_dir = _require_dir(self.root / f"{split}annot", self._who)
            images = [p for p in image_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
            self.pairs = _pair_by_stem(images, list(label_dir.glob("*.png")), self._who, image_dir, label_dir)
