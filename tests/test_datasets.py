"""Dataset readers (§7.5.1): native layouts written by the test, id remapping, clear errors, and the real
samples in ../shared/data (or $MINSEG_DATA), skipped when absent."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minseg.data import (ADE20K, ISBI2012, CamVid, Cityscapes, DataLoader, RandomCrop, VOCSegmentation, color_map,
                         data_root)

# cityscapesScripts labels.py, (label id, train id) for ids 0..33, written out independently of the reader.
CITYSCAPES = [(0, 255), (1, 255), (2, 255), (3, 255), (4, 255), (5, 255), (6, 255), (7, 0), (8, 1), (9, 255),
              (10, 255), (11, 2), (12, 3), (13, 4), (14, 255), (15, 255), (16, 255), (17, 5), (18, 255), (19, 6),
              (20, 7), (21, 8), (22, 9), (23, 10), (24, 11), (25, 12), (26, 13), (27, 14), (28, 15), (29, 255),
              (30, 255), (31, 16), (32, 17), (33, 18)]


def _write(path, array, palette=None):
    """Save ``array`` as uint8 (a palette turns a single-channel image into a mode P one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.asarray(array, dtype=np.uint8))
    if palette is not None:
        image.putpalette(palette.ravel().tolist())
    image.save(path, quality=100) if path.suffix == ".jpg" else image.save(path)
    return path


def _rgb(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3))


def _labels(values, height=4):
    """A label image whose columns run through ``values``."""
    return np.tile(np.asarray(values), (height, 1))


def _shared(name):
    base = Path(os.environ["MINSEG_DATA"]) if os.environ.get("MINSEG_DATA") else \
        Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    root = base / name
    if not root.is_dir():
        pytest.skip(f"real-data sample {root} is not present (set MINSEG_DATA to its parent folder)")
    return root


# ---------------------------------------------------------------- ISBI 2012 -------------------------------


def _isbi_pngs(root, stems=("0", "1", "2", "10")):
    for k, stem in enumerate(stems):
        _write(root / "images" / f"{stem}.png", np.full((6, 8), 10 * k))
        _write(root / "labels" / f"{stem}.png", _labels([0, 255, 127, 128, 0, 255, 255, 0], 6))
        _write(root / "test" / f"{stem}.png", np.full((6, 8), 5 * k))
    return root


def test_isbi_png_layout(tmp_path):
    ds = ISBI2012(_isbi_pngs(tmp_path))
    assert len(ds) == 4 and [p[0].name for p in ds.pairs] == ["0.png", "1.png", "2.png", "10.png"]
    image, mask = ds[3]
    assert image.shape == (1, 6, 8) and image.dtype == np.float32 and np.allclose(image, 30 / 255)
    np.testing.assert_array_equal(mask[0], [0, 1, 0, 1, 0, 1, 1, 0])  # membrane 0, cell interior 1
    assert mask.dtype == np.int64 and ds.num_classes == 2 and ds.class_names == ("membrane", "cell")
    test_image, test_mask = ISBI2012(tmp_path, "test")[1]
    assert np.allclose(test_image, 5 / 255) and np.all(test_mask == 255)


def test_isbi_tiff_layout(tmp_path):
    pages = [Image.fromarray(np.full((5, 7), 40 * k, np.uint8)) for k in range(3)]
    labels = [Image.fromarray(_labels([0, 255] * 3 + [k * 255 // 2], 5).astype(np.uint8)) for k in range(3)]
    pages[0].save(tmp_path / "train-volume.tif", save_all=True, append_images=pages[1:])
    labels[0].save(tmp_path / "train-labels.tif", save_all=True, append_images=labels[1:])
    ds = ISBI2012(tmp_path)
    assert len(ds) == 3
    image, mask = ds[2]
    assert np.allclose(image, 80 / 255) and image.shape == (1, 5, 7)
    np.testing.assert_array_equal(mask[0], [0, 1, 0, 1, 0, 1, 1])  # the last column is 255 on page 2
    np.testing.assert_array_equal(ds[1][1][0], [0, 1, 0, 1, 0, 1, 0])  # and 127 on page 1
    labels[0].save(tmp_path / "train-labels.tif", save_all=True, append_images=labels[1:2])
    with pytest.raises(ValueError, match="train-labels.tif has 2"):
        ISBI2012(tmp_path)
    (tmp_path / "train-labels.tif").unlink()
    with pytest.raises(FileNotFoundError, match="train-labels.tif"):
        ISBI2012(tmp_path)


def test_isbi_errors_name_the_file(tmp_path):
    root = _isbi_pngs(tmp_path)
    (root / "labels" / "2.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"images/2\.png has no label"):
        ISBI2012(root)
    _write(root / "labels" / "2.png", _labels([0] * 8, 6))
    _write(root / "labels" / "7.png", _labels([0] * 8, 6))
    with pytest.raises(FileNotFoundError, match=r"labels/7\.png has no image"):
        ISBI2012(root)
    (root / "labels" / "7.png").unlink()
    (root / "images" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    ds = ISBI2012(root)
    with pytest.raises(ValueError, match=r"cannot read .*images/1\.png"):
        ds[1]
    _write(root / "labels" / "0.png", _labels([0] * 5))
    with pytest.raises(ValueError, match=r"0\.png is 8x6 but label .*0\.png is 5x4"):
        ds[0]
    with pytest.raises(FileNotFoundError, match="train-volume.tif"):
        ISBI2012(tmp_path / "test")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ISBI2012(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="split"):
        ISBI2012(root, "val")


# ---------------------------------------------------------------- PASCAL VOC ------------------------------


def _voc(root, ids=("2007_000032", "2007_000039")):
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids) + "\n")
    palette = np.zeros((256, 3), np.uint8)
    palette[:21] = color_map(21)
    palette[255] = (224, 224, 192)
    for k, stem in enumerate(ids):
        _write(root / "JPEGImages" / f"{stem}.jpg", np.full((4, 7, 3), (200, 20, 100 + k)))
        _write(root / "SegmentationClass" / f"{stem}.png", _labels([0, 1, 5, 20, 255, 21, 100]), palette)
    return root


def test_voc_layout_and_ids(tmp_path):
    ds = VOCSegmentation(_voc(tmp_path), "val")
    assert len(ds) == 2 and ds.num_classes == 21 and ds.class_names[15] == "person"
    image, mask = ds[1]
    with Image.open(ds.pairs[1][1]) as label:
        assert label.mode == "P"
    assert image.shape == (3, 4, 7) and np.allclose(image[:, 0, 0], np.array([200, 20, 101]) / 255, atol=3 / 255)
    np.testing.assert_array_equal(mask[0], [0, 1, 5, 20, 255, 255, 255])  # 255 void; unknown indices too
    np.testing.assert_array_equal(ds.palette[:4], [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]])


def test_voc_errors_name_the_file(tmp_path):
    root = _voc(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"Segmentation/train\.txt"):
        VOCSegmentation(root, "train")
    (root / "SegmentationClass" / "2007_000039.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"label .*2007_000039\.png listed in val\.txt"):
        VOCSegmentation(root, "val")
    _write(root / "SegmentationClass" / "2007_000039.png", np.zeros((4, 7, 3)))
    with pytest.raises(ValueError, match=r"2007_000039\.png has mode RGB"):
        VOCSegmentation(root, "val")[1]
    (root / "JPEGImages" / "2007_000032.jpg").write_bytes(b"\xff\xd8\xff truncated")
    with pytest.raises(ValueError, match=r"cannot read .*2007_000032\.jpg"):
        VOCSegmentation(root, "val")[0]


# ---------------------------------------------------------------- Cityscapes ------------------------------


def _cityscapes(root, split="val", names=("frankfurt/frankfurt_000000_000294", "lindau/lindau_000001_000019")):
    for k, name in enumerate(names):
        _write(root / "leftImg8bit" / split / f"{name}_leftImg8bit.png", _rgb(3, 34, k))
        _write(root / "gtFine" / split / f"{name}_gtFine_labelIds.png", _labels([i for i, _ in CITYSCAPES], 3))
        _write(root / "gtFine" / split / f"{name}_gtFine_labelTrainIds.png", np.zeros((3, 34)))
    return root


def test_cityscapes_label_ids_become_train_ids(tmp_path):
    ds = Cityscapes(_cityscapes(tmp_path), "val")
    assert len(ds) == 2 and ds.num_classes == 19 and ds.class_names[13] == "car"
    image, mask = ds[1]
    np.testing.assert_array_equal(image, _rgb(3, 34, 1).transpose(2, 0, 1).astype(np.float32) / 255)
    np.testing.assert_array_equal(mask[0], [train for _, train in CITYSCAPES])
    assert ds.pairs[0][0].parent.name == "frankfurt"


def test_cityscapes_unpaired_files(tmp_path):
    root = _cityscapes(tmp_path)
    label = root / "gtFine" / "val" / "lindau" / "lindau_000001_000019_gtFine_labelIds.png"
    label.unlink()
    with pytest.raises(FileNotFoundError, match=r"lindau_000001_000019_leftImg8bit\.png has no label"):
        Cityscapes(root, "val")
    _write(label, _labels([7] * 34, 3))
    _write(root / "gtFine" / "val" / "ulm" / "ulm_000000_000001_gtFine_labelIds.png", np.zeros((3, 34)))
    with pytest.raises(FileNotFoundError, match=r"ulm_000000_000001_gtFine_labelIds\.png has no image"):
        Cityscapes(root, "val")
    with pytest.raises(FileNotFoundError, match=r"leftImg8bit/train"):
        Cityscapes(root, "train")


# ---------------------------------------------------------------- ADE20K ----------------------------------


def _ade(root, split="validation"):
    for k in range(2):
        stem = f"ADE_val_{k + 1:08d}"
        _write(root / "images" / split / f"{stem}.jpg", _rgb(2, 6, k))
        _write(root / "annotations" / split / f"{stem}.png", _labels([0, 1, 2, 75, 150, 151], 2))
    return root


def test_ade20k_reduce_zero_label(tmp_path):
    root = _ade(tmp_path)
    reduced = ADE20K(root, "val")
    assert len(reduced) == 2 and reduced.num_classes == 150 and len(reduced.palette) == 150
    assert reduced.class_names[0] == "wall" and reduced.class_names[149] == "flag"
    np.testing.assert_array_equal(reduced[0][1][0], [255, 0, 1, 74, 149, 255])
    full = ADE20K(root, "validation", reduce_zero_label=False)
    assert full.num_classes == 151 and full.class_names[0] == "other" and len(full.palette) == 151
    np.testing.assert_array_equal(full[1][1][0], [0, 1, 2, 75, 150, 255])


def test_ade20k_unpaired_and_missing(tmp_path):
    root = _ade(tmp_path)
    _write(root / "images" / "validation" / "ADE_val_00000009.jpg", _rgb(2, 6))
    with pytest.raises(FileNotFoundError, match=r"ADE_val_00000009\.jpg has no label"):
        ADE20K(root, "validation")
    with pytest.raises(FileNotFoundError, match=r"images/training"):
        ADE20K(root, "train")


# ---------------------------------------------------------------- CamVid ----------------------------------


def _camvid(root, split="train", stems=("0001TP_006690", "Seq05VD_f00000"), listing="relative"):
    lines = []
    for k, stem in enumerate(stems):
        _write(root / split / f"{stem}.png", _rgb(3, 12, k))
        _write(root / f"{split}annot" / f"{stem}.png", _labels(list(range(12)), 3))
        prefix = "/SegNet/CamVid/" if listing == "segnet" else ""
        lines.append(f"{prefix}{split}/{stem}.png {prefix}{split}annot/{stem}.png")
    if listing:
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("listing", ["relative", "segnet", None])
def test_camvid_void_is_ignored(tmp_path, listing):
    ds = CamVid(_camvid(tmp_path, listing=listing), "train")
    assert len(ds) == 2 and ds.num_classes == 11 and ds.class_names[-1] == "bicyclist"
    image, mask = ds[1]
    np.testing.assert_array_equal(image, _rgb(3, 12, 1).transpose(2, 0, 1).astype(np.float32) / 255)
    np.testing.assert_array_equal(mask[0], list(range(11)) + [255])


def test_camvid_errors(tmp_path):
    root = _camvid(tmp_path)
    (root / "trainannot" / "Seq05VD_f00000.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"label .*trainannot/Seq05VD_f00000\.png listed in"):
        CamVid(root, "train")
    (root / "train.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"train/Seq05VD_f00000\.png has no label"):
        CamVid(root, "train")
    (root / "val.txt").write_text("val/a.png\n")
    with pytest.raises(ValueError, match="<image> <label>"):
        CamVid(root, "val")


# ---------------------------------------------------------------- shared behaviour ------------------------


def test_sample_applies_the_transform(tmp_path):
    ds = CamVid(_camvid(tmp_path), "train", transform=RandomCrop((2, 5)))
    image, mask = ds.sample(0, np.random.default_rng(3))
    again = ds.sample(0, np.random.default_rng(3))
    assert image.shape == (3, 2, 5) and mask.shape == (2, 5)
    np.testing.assert_array_equal(mask, again[1])
    batch = next(iter(DataLoader(ds, batch_size=2, seed=0)))
    assert batch[0].shape == (2, 3, 2, 5) and batch[1].dtype == np.int64
    plain = CamVid(tmp_path, "train")
    np.testing.assert_array_equal(plain.sample(1, np.random.default_rng(0))[1], plain[1][1])


def test_data_root_order(tmp_path, monkeypatch):
    (tmp_path / "mine" / "camvid").mkdir(parents=True)
    (tmp_path / "env" / "camvid").mkdir(parents=True)
    monkeypatch.setenv("MINSEG_DATA", str(tmp_path / "env"))
    assert data_root("camvid", tmp_path / "mine") == tmp_path / "mine" / "camvid"
    assert data_root("camvid", tmp_path / "mine" / "camvid") == tmp_path / "mine" / "camvid"
    assert data_root("camvid") == tmp_path / "env" / "camvid"
    with pytest.raises(FileNotFoundError, match="absent"):
        data_root("camvid", tmp_path / "absent")
    monkeypatch.setenv("MINSEG_DATA", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=r"(?s)'no_such_set' not found.*empty/no_such_set.*MINSEG_DATA"):
        data_root("no_such_set")
    monkeypatch.delenv("MINSEG_DATA")
    repository_guess = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "isbi2012"
    if repository_guess.is_dir():
        assert data_root("isbi2012") == repository_guess


def test_color_map_is_vocs():
    colours = color_map(256)
    assert len({tuple(c) for c in colours}) == 256
    np.testing.assert_array_equal(colours[[5, 15, 20]], [[128, 0, 128], [192, 128, 128], [0, 64, 128]])


# ---------------------------------------------------------------- real samples ----------------------------


def test_real_isbi2012():
    ds = ISBI2012(_shared("isbi2012"))
    assert len(ds) == 30 and len(ISBI2012(_shared("isbi2012"), "test")) == 30
    image, mask = ds[0]
    assert image.shape == (1, 512, 512) and set(np.unique(mask)) == {0, 1}
    assert 0.1 < np.mean(mask == 0) < 0.35  # membranes are about 22 % of the pixels
    assert image[0][mask == 0].mean() < image[0][mask == 1].mean()  # and dark


def test_real_voc_sample():
    root = _shared("voc_sample")
    ds = VOCSegmentation(root, "val")
    assert len(ds) == 14
    with Image.open(ds.pairs[0][1]) as label:
        file_palette = np.array(label.getpalette()[:63]).reshape(21, 3)
    np.testing.assert_array_equal(ds.palette, file_palette)
    seen = set()
    for i in (0, 5, 13):
        image, mask = ds[i]
        assert image.shape == (3, 513, 513) and 0 <= image.min() and image.max() <= 1
        seen |= set(np.unique(mask).tolist())
    assert seen <= set(range(21)) | {255} and 255 in seen and 0 in seen


def test_real_cityscapes_sample_matches_its_train_id_file():
    ds = Cityscapes(_shared("cityscapes_sample"), "val")
    assert len(ds) == 1
    image, mask = ds[0]
    assert image.shape == (3, 128, 256)
    with Image.open(str(ds.pairs[0][1]).replace("labelIds", "labelTrainIds")) as reference:
        assert np.mean(mask == np.asarray(reference)) > 0.99  # the README reports 99.8 %


def test_real_ade20k_sample():
    ds = ADE20K(_shared("ade20k_sample"), "validation")
    assert len(ds) == 3
    values = set()
    for i in range(3):
        image, mask = ds[i]
        assert image.shape[0] == 3 and image.shape[1:] == mask.shape
        values |= set(np.unique(mask).tolist())
    raw = {0, 1, 2, 3, 5, 7, 10, 12, 14, 18, 21, 44, 81, 88, 97, 103}  # from the sample's README
    assert values == {255} | {v - 1 for v in raw - {0}}


def test_real_camvid():
    root = _shared("camvid")
    sizes = {split: len(CamVid(root, split)) for split in ("train", "val", "test")}
    assert sizes == {"train": 367, "val": 101, "test": 233}
    image, mask = CamVid(root, "val")[0]
    assert image.shape == (3, 360, 480) and mask.shape == (360, 480)
    assert set(np.unique(mask).tolist()) <= set(range(11)) | {255}
