"""U-Net (§7.3) against a plain PyTorch U-Net written here, plus its sizes, crops and size helpers."""

import numpy as np
import pytest
import torch

import minseg
from helpers import assert_close
from model_helpers import check_model
from model_twins import TorchUNet
from minseg.models import UNet, unet_output_size, unet_valid_input_size


CASES = [  # padding, up, batch_norm, depth, input (H, W), output (H, W)
    ("valid", "transpose", False, 2, (60, 60), (20, 20)),
    ("valid", "bilinear", True, 2, (60, 44), (20, 4)),
    ("valid", "transpose", True, 1, (22, 26), (6, 10)),
    ("same", "transpose", True, 3, (16, 24), (16, 24)),
    ("same", "bilinear", False, 2, (12, 8), (12, 8)),
]


@pytest.mark.parametrize("padding,up,batch_norm,depth,size,out_size", CASES, ids=str)
def test_unet_matches_torch(padding, up, batch_norm, depth, size, out_size, device):
    """Same weights → same output, same input gradient and same parameter gradients (batch norm in training
    mode also updates the same running statistics)."""
    torch.manual_seed(0)
    theirs = TorchUNet(2, 3, 2, depth, padding, up, batch_norm)
    ours = UNet(2, 3, base_channels=2, depth=depth, padding=padding, up=up, batch_norm=batch_norm)
    out = check_model(ours, theirs, np.random.default_rng(0).standard_normal((2, 2) + size), device)
    assert out.shape == (2, 3) + out_size
    assert unet_output_size(size, depth, padding) == out_size


def test_paper_unet_maps_572_to_388(device):
    """The paper's geometry at depth 4 (channels shrunk to keep it fast): 572×572 in, 388×388 out."""
    model = UNet(in_channels=1, num_classes=2, base_channels=1).to(device)
    with minseg.no_grad():
        x = minseg.ones(1, 1, 572, 572, device=device)
        assert model(x).shape == (1, 2, 388, 388)
        skips = []  # the forward pass by hand, to read the crop offsets the module docstring lists
        for block in model.encoder:
            skips.append(block(x))
            x = model.pool(skips[-1])
        x, offsets = model.bottleneck(x), []
        for up, block, skip in zip(model.up, model.decoder, reversed(skips)):
            x = up(x)
            offsets.append((skip.shape[-1] - x.shape[-1]) / 2)
            x = block(minseg.functional.cat([minseg.functional.center_crop(skip, x.shape[-2:]), x], dim=1))
    assert offsets == [4, 16, 40, 88] and [skip.shape[-1] for skip in skips] == [568, 280, 136, 64]
    assert [tuple(block[0].weight.shape) for block in model.encoder] == [(1, 1, 3, 3), (2, 1, 3, 3), (4, 2, 3, 3),
                                                                        (8, 4, 3, 3)]
    assert tuple(model.bottleneck[0].weight.shape) == (16, 8, 3, 3)
    assert [tuple(up.weight.shape) for up in model.up] == [(16, 8, 2, 2), (8, 4, 2, 2), (4, 2, 2, 2), (2, 1, 2, 2)]


def test_size_helpers():
    assert unet_output_size(572) == 388 and unet_valid_input_size(388) == 572
    assert unet_output_size((572, 188)) == (388, 4)
    assert unet_valid_input_size((388, 1)) == (572, 188)
    # 92 pixels of context on each side at depth 4; 12·2^d − 8 in general
    for depth in (1, 2, 3, 4, 5):
        size = unet_valid_input_size(50, depth)
        assert size - unet_output_size(size, depth) == 12 * 2**depth - 8
    # "at least": outputs come in steps of 2^depth, so 389 needs the next valid input, which gives 404
    assert unet_valid_input_size(389) == 588 and unet_output_size(588) == 404
    for depth in (1, 2, 3, 4):  # the helper returns the smallest input that works
        working = {}
        for size in range(1, 320):
            try:
                working[size] = unet_output_size(size, depth)
            except ValueError:
                pass
        for wanted in range(1, 120):
            assert unet_valid_input_size(wanted, depth) == min(s for s, o in working.items() if o >= wanted)
    assert unet_output_size((32, 48), depth=4, padding="same") == (32, 48)


def test_sizes_that_do_not_tile_are_refused(device):
    with pytest.raises(ValueError, match=r"input size 571 does not tile evenly.*pool 1.*odd.*556 or 572"):
        unet_output_size(571)
    with pytest.raises(ValueError, match=r"pool 4 would be 5 pixels"):
        unet_output_size(100)
    with pytest.raises(ValueError, match="too small"):
        unet_output_size(10)
    with pytest.raises(ValueError, match=r"multiple of 2\^3 = 8.*pad the image.*to 32"):
        unet_output_size(30, depth=3, padding="same")
    model = UNet(1, 2, base_channels=1, depth=2, padding="same").to(device)
    with pytest.raises(ValueError, match="input size 10 must be a positive multiple"):
        model(minseg.zeros(1, 1, 8, 10, device=device))
    valid = UNet(1, 2, base_channels=1, depth=2).to(device)
    with pytest.raises(ValueError, match="input size 61 does not tile evenly"):
        valid(minseg.zeros(1, 1, 60, 61, device=device))
    with pytest.raises(ValueError, match="padding must be one of"):
        UNet(padding="reflect")
    with pytest.raises(ValueError, match="up must be one of"):
        UNet(up="nearest")
    with pytest.raises(ValueError, match="positive int"):
        UNet(depth=0)


def test_contracting_path_is_the_encoder_in_order(device):
    """``contracting_path()`` chains the model's own encoder layers: it reproduces the bottleneck output."""
    model = UNet(1, 2, base_channels=2, depth=2).double().to(device)
    x = minseg.tensor(np.random.default_rng(0).standard_normal((1, 1, 44, 44)), device=device)
    path = model.contracting_path()
    manual = x
    for block in model.encoder:
        manual = model.pool(block(manual))
    assert_close(path(x), model.bottleneck(manual), what="contracting path")
    assert path[0] is model.encoder[0][0]


@pytest.mark.parametrize("padding,size", [("same", (16, 16)), ("valid", (44, 44))])
def test_additive_skips(padding, size, device):
    """``skip="add"`` computes decoder(skip + up(x)) (cropped skip with valid padding): same keys as the
    concatenating U-Net, decoder blocks that read C instead of 2C channels, and the output of a hand-written
    forward pass through the same layers."""
    import minseg.functional as F

    minseg.manual_seed(0)
    concat = UNet(2, 3, base_channels=2, depth=2, padding=padding)
    add = UNet(2, 3, base_channels=2, depth=2, padding=padding, skip="add").double().to(device)
    assert list(add.state_dict()) == list(concat.state_dict())
    assert [block[0].weight.shape[1] for block in add.decoder] == [4, 2]
    assert [block[0].weight.shape[1] for block in concat.decoder] == [8, 4]
    x = minseg.tensor(np.random.default_rng(1).standard_normal((2, 2) + size), device=device)
    skips, h = [], x
    for block in add.encoder:
        h = block(h)
        skips.append(h)
        h = add.pool(h)
    h = add.bottleneck(h)
    for upsample, block, skip in zip(add.up, add.decoder, reversed(skips)):
        h = upsample(h)
        h = block(F.center_crop(skip, tuple(h.shape[-2:])) + h)
    assert_close(add(x), add.head(h), what="additive-skip U-Net")
    with pytest.raises(ValueError, match="skip must be one of"):
        UNet(skip="sum")
