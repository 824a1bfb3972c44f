"""FCN (§7.2): convolutionalize(), FCN-32s/16s/8s against a plain PyTorch FCN, sizes, init and crop offsets."""

import numpy as np
import pytest
import torch
import torch.nn as tnn

import minseg
from model_helpers import assert_close_scaled, check_model
from minseg import nn
from minseg.models import FCN8s, FCN16s, FCN32s, bilinear_upsampling, convolutionalize, vgg16
from minseg.models.backbones import VGG16_LAYERS, scale_channels
from minseg.models.receptive_field import receptive_field

WIDTH = 1 / 32  # channels 2, 4, 8, 16, 16 and 128 in fc6/fc7


class TorchFCN(tnn.Module):
    """The reference FCN written directly in PyTorch: Caffe's pad-100 conv1_1 and ceil-mode pools, fixed crops."""

    def __init__(self, variant, num_classes, width, batch_norm):
        super().__init__()
        layers, channels = [], 3
        for entry in VGG16_LAYERS:
            if entry == "M":
                layers.append(tnn.MaxPool2d(2, 2, ceil_mode=True))
                continue
            out = scale_channels(entry, width)
            layers.append(tnn.Conv2d(channels, out, 3, padding=100 if not layers else 1))
            layers += [tnn.BatchNorm2d(out)] if batch_norm else []
            layers.append(tnn.ReLU())
            channels = out
        self.features = tnn.Sequential(*layers)
        self.pools = [i for i, layer in enumerate(layers) if isinstance(layer, tnn.MaxPool2d)]
        hidden = scale_channels(4096, width)
        self.classifier = tnn.Sequential(tnn.Conv2d(channels, hidden, 7), tnn.ReLU(), tnn.Dropout(0.0),
                                         tnn.Conv2d(hidden, hidden, 1), tnn.ReLU(), tnn.Dropout(0.0))
        self.score_fr = tnn.Conv2d(hidden, num_classes, 1)
        self.variant = variant
        up = lambda f: tnn.ConvTranspose2d(num_classes, num_classes, 2 * f, stride=f, bias=False)  # noqa: E731
        if variant == 32:
            self.upscore = up(32)
        else:
            self.upscore2, self.score_pool4 = up(2), tnn.Conv2d(scale_channels(512, width), num_classes, 1)
        if variant == 16:
            self.upscore16 = up(16)
        if variant == 8:
            self.upscore_pool4, self.score_pool3 = up(2), tnn.Conv2d(scale_channels(256, width), num_classes, 1)
            self.upscore8 = up(8)

    def forward(self, x):
        h, w = x.shape[-2:]
        pools, y = [], x
        for index, layer in enumerate(self.features):
            y = layer(y)
            if index in self.pools:
                pools.append(y)
        score = self.score_fr(self.classifier(y))
        if self.variant == 32:
            return self.upscore(score)[:, :, 19:19 + h, 19:19 + w]
        up = self.upscore2(score)
        score = up + self.score_pool4(pools[3])[:, :, 5:5 + up.shape[2], 5:5 + up.shape[3]]
        if self.variant == 16:
            return self.upscore16(score)[:, :, 27:27 + h, 27:27 + w]
        up = self.upscore_pool4(score)
        score = up + self.score_pool3(pools[2])[:, :, 9:9 + up.shape[2], 9:9 + up.shape[3]]
        return self.upscore8(score)[:, :, 31:31 + h, 31:31 + w]


MODELS = {32: FCN32s, 16: FCN16s, 8: FCN8s}


@pytest.mark.parametrize("variant,batch_norm,size", [(32, False, (13, 17)), (16, True, (9, 40)), (8, False, (33, 31)),
                                                     (8, True, (2, 1))], ids=str)
def test_fcn_matches_torch(variant, batch_norm, size, device):
    """Same weights (random, so every score layer is live) → same output and gradients, for odd sizes."""
    torch.manual_seed(0)
    theirs = TorchFCN(variant, 3, WIDTH, batch_norm)
    ours = MODELS[variant](3, width=WIDTH, batch_norm=batch_norm, dropout=0.0)
    out = check_model(ours, theirs, np.random.default_rng(0).standard_normal((1, 3) + size), device)
    assert out.shape == (1, 3) + size


@pytest.mark.parametrize("model_class", [FCN32s, FCN16s, FCN8s])
def test_output_has_the_input_size(model_class, device):
    model = model_class(2, width=1 / 32).to(device).eval()
    with minseg.no_grad():
        for size in [(1, 1), (7, 30), (64, 65), (97, 33)]:
            assert model(minseg.zeros(1, 3, *size, device=device)).shape == (1, 2) + size


def test_initialisation_follows_the_paper():
    model = FCN8s(4, width=1 / 32)
    for name in ("score_fr", "score_pool4", "score_pool3"):
        assert not np.any(getattr(model, name).weight.numpy()) and not np.any(getattr(model, name).bias.numpy())
    for name in ("upscore2", "upscore_pool4", "upscore8"):
        weight = getattr(model, name).weight.numpy()
        assert getattr(model, name).bias is None
        assert np.all(weight[~np.eye(4, dtype=bool)] == 0) and weight[0, 0].max() > 0
    assert model.features[0].padding == (100, 100)
    assert all(model.features[i].ceil_mode for i in model.features.pool_indices)


@pytest.mark.parametrize("factor", [2, 3, 8, 32])
def test_bilinear_upsampling_keeps_a_constant_map_constant(factor, device):
    """Away from the borders every output pixel gets weights summing to one from its two nearest inputs."""
    layer = bilinear_upsampling(2, factor).double().to(device)
    out = layer(minseg.full((1, 2, 4, 5), 2.5, dtype=np.float64, device=device)).numpy()
    assert out.shape == (1, 2, 5 * factor, 6 * factor)
    np.testing.assert_allclose(out[:, :, factor:-factor, factor:-factor], 2.5, rtol=1e-6)  # float32 kernel
    ramp = out[0, 0, factor:-factor, :factor]  # the left border blends with the zero beyond the first pixel
    assert np.all(ramp < 2.5) and np.all(np.diff(ramp, axis=1) > 0)


def test_convolutionalized_vgg_equals_the_classifier(device):
    """fc6 → 7×7 conv, fc7/fc8 → 1×1 convs: the 224×224 output is the classifier's logits; larger → a map."""
    vgg = vgg16(num_classes=5, width=WIDTH).double()
    rng = np.random.default_rng(0)
    for layer in vgg.classifier:
        if isinstance(layer, nn.Linear):  # larger than torchvision's N(0, 0.01) so the logits are not tiny
            layer.weight.data[...] = rng.normal(0, 0.2, layer.weight.shape)
            layer.bias.data[...] = rng.normal(0, 0.2, layer.bias.shape)
    vgg.to(device).eval()
    conv = convolutionalize(vgg).eval()
    assert [tuple(conv.classifier[i].weight.shape) for i in (0, 3, 6)] == [(128, 16, 7, 7), (128, 128, 1, 1),
                                                                          (5, 128, 1, 1)]
    x = minseg.tensor(rng.standard_normal((2, 3, 224, 224)), device=device)
    with minseg.no_grad():
        logits, scores = vgg(x), conv(x)
        assert scores.shape == (2, 5, 1, 1)
        assert_close_scaled(scores.reshape(2, 5), torch.tensor(logits.numpy()), "convolutionalized logits")
        assert conv(minseg.tensor(rng.standard_normal((1, 3, 256, 288)), device=device)).shape == (1, 5, 2, 3)
    conv.classifier[0].weight.data[...] = 0  # a copy: the original keeps its weights
    assert np.any(vgg.classifier[0].weight.numpy())


def test_load_vgg_transfers_the_convolutionalized_weights():
    vgg, model = vgg16(width=WIDTH), FCN16s(3, width=WIDTH)
    model.load_vgg(vgg)
    np.testing.assert_array_equal(model.features[28].weight.numpy(), vgg.features[28].weight.numpy())
    np.testing.assert_array_equal(model.classifier[0].weight.numpy().reshape(128, -1),
                                  vgg.classifier[0].weight.numpy())
    np.testing.assert_array_equal(model.classifier[3].bias.numpy(), vgg.classifier[3].bias.numpy())
    assert model.features[0].padding == (100, 100) and not np.any(model.score_fr.weight.numpy())


def test_crop_offsets_follow_from_the_layer_geometry():
    """The hard-coded offsets 5, 9, 19, 27, 31 are where the maps' pixel centres line up (their ``start``)."""
    model = FCN8s(2, width=1 / 32)
    features = list(model.features)
    trunk = features + list(model.classifier) + [model.score_fr]
    pool3 = receptive_field(features[:model.features.pool_indices[2] + 1] + [model.score_pool3])[-1]
    pool4 = receptive_field(features[:model.features.pool_indices[3] + 1] + [model.score_pool4])[-1]
    upscore2 = receptive_field(trunk + [model.upscore2])[-1]
    upscore_pool4 = receptive_field(trunk + [model.upscore2, model.upscore_pool4])[-1]
    assert (pool4.start[0], pool4.jump[0], upscore2.start[0], upscore2.jump[0]) == (-91.5, 16, -11.5, 16)
    assert (upscore2.start[0] - pool4.start[0]) / 16 == 5
    assert (upscore_pool4.start[0] - pool3.start[0]) / 8 == 9
    finals = {32: [bilinear_upsampling(2, 32)], 16: [model.upscore2, bilinear_upsampling(2, 16)],
              8: [model.upscore2, model.upscore_pool4, model.upscore8]}
    for variant, offset in ((32, 19), (16, 27), (8, 31)):
        final = receptive_field(trunk + finals[variant])[-1]
        assert final.jump == (1, 1) and final.start == (-offset, -offset)  # output pixel y is image pixel y − offset
