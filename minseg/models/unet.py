"""U-Net (§7.3): a contracting path, a symmetric expanding path, and skip connections that concatenate.

**Layout.** Level ``l`` (0 = full resolution) works with ``base_channels · 2^l`` channels. The
contracting path repeats *two 3×3 convolutions + ReLU, then a 2×2 max pool* ``depth`` times; the
bottleneck is one more pair of convolutions at level ``depth``. The expanding path walks back up:
upsample ×2 while halving the channels, concatenate the skip features of the same level (skip first),
two 3×3 convolutions + ReLU. A final 1×1 convolution gives ``num_classes`` scores per pixel.

**padding="valid"** is the paper's network: no convolution is padded, so each one trims a pixel on every
side and every output pixel is computed from real image content only. The skip features are then larger
than the upsampled maps and are centre-cropped (``F.center_crop``) before the concatenation. For
``depth=4`` a 572×572 tile gives a 388×388 map, as in the paper's figure. Sizes: with ``b`` the
bottleneck's output size, an input of ``2^d·(b + 8) − 4`` gives an output of ``2^d·(b − 4) + 4`` — so the
input exceeds the output by ``12·2^d − 8`` pixels (184 at depth 4): **92 pixels per side**, the context
that the overlap-tile strategy (§7.3.4) supplies by mirroring. Output pixel (i, j) lies over input pixel
(i + 92, j + 92): the crops keep the full-resolution path exactly aligned (the deeper paths, upsampled
by transposed convolutions, reach a few pixels further on one side or the other depending on i mod 2^d).

Crop offsets (pixels cut from each side of a skip map) do not depend on the input size: at skip level
``l`` the offset is ``6·2^(d−l) − 8``, i.e. 4, 16, 40, 88 from the deepest skip (level 3) to the
shallowest (level 0) at depth 4. The margins are always even, so the crop is symmetric.

Not every size works with valid padding: the map entering each pool must have an even size (else a
row would be dropped and the skip alignment lost). ``unet_output_size`` raises a clear error naming the
nearest sizes that do work, and ``unet_valid_input_size`` gives the smallest one for a wanted output.

**padding="same"** is the common variant: 3×3 convolutions padded by 1, no cropping, and an output as
large as the input — provided the size is divisible by ``2^depth`` (otherwise a pool would drop a row and
the upsampled map would no longer match its skip); other sizes are refused with an error that suggests
padding the image with ``F.pad``.

**up="transpose"** is the paper's 2×2, stride-2 transposed convolution; **up="bilinear"** is
"resize, then convolve" (§7.7.3): ``F.interpolate`` by 2 (bilinear, align_corners=False) followed by a
3×3 convolution that halves the channels. That convolution is padded by 1 in both modes so that the
map sizes, and hence the size helpers, are the same for both kinds of upsampling (with valid padding this
one padded layer — and interpolation's clamped borders — means the outermost output pixels are no longer
entirely free of border effects).

**skip="concat"** is the paper's fusion, ``decoder(cat[skip, up(x)])``; **skip="add"** sums instead,
``decoder(skip + up(x))`` (as FCN fuses its scores, §7.2.2), so each decoder block reads C channels
instead of 2C — an ablation of what the concatenation buys.
"""

from __future__ import annotations

from .. import functional as F
from .. import nn

PADDINGS = ("valid", "same")
UPSAMPLINGS = ("transpose", "bilinear")
SKIPS = ("concat", "add")


def _per_axis(function, size):
    """Apply ``function`` to an int, or to each entry of an (H, W) pair (returned as a tuple)."""
    if isinstance(size, (tuple, list)):
        return tuple(function(int(s)) for s in size)
    return function(int(size))


def _check_depth(depth) -> None:
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"U-Net depth (number of poolings) must be a positive int; got {depth!r}")


def _valid_output_size(size: int, depth: int) -> int:
    """Follow one axis through the valid-padding network, refusing sizes that do not tile evenly.

    Working sizes are exactly ``2^d·(b + 8) − 4`` with a bottleneck ``b`` large enough for a non-empty
    output: the sizes ≡ −4 (mod 2^d) from ``unet_valid_input_size(1, depth)`` on.
    """
    step, smallest = 2**depth, unet_valid_input_size(1, depth)
    above = max(smallest, size + (-4 - size) % step)
    nearest = f"{above - step} or {above}" if above - step >= smallest else f"{above}"
    current = size
    for level in range(depth):
        current -= 4  # two unpadded 3×3 convolutions
        if current < 2 or current % 2:
            raise ValueError(f"U-Net (padding='valid', depth={depth}): input size {size} does not tile evenly — "
                             f"the map entering pool {level + 1} would be {current} pixels, which is "
                             f"{'too small' if current < 2 else 'odd'}; nearest working input sizes: {nearest} "
                             f"(see unet_valid_input_size)")
        current //= 2
    current -= 4  # bottleneck
    for _ in range(depth):
        current = 2 * current - 4  # upsample ×2, then two unpadded 3×3 convolutions
    if current < 1:
        raise ValueError(f"U-Net (padding='valid', depth={depth}): input size {size} is too small — the output "
                         f"would be empty; nearest working input sizes: {nearest}")
    return current


def unet_output_size(input_size, depth: int = 4, padding: str = "valid"):
    """Output size of ``UNet(depth=depth, padding=padding)`` for ``input_size`` (an int or an (H, W) pair).

    Valid padding: e.g. 572 → 388 at depth 4. Raises ``ValueError`` when the size does not tile evenly
    (an odd map before some pool, or too small), naming the nearest sizes that work. Same padding: the
    input size itself, which must be divisible by ``2^depth``.
    """
    _check_depth(depth)
    if padding not in PADDINGS:
        raise ValueError(f"U-Net padding must be one of {PADDINGS}; got {padding!r}")
    if padding == "valid":
        return _per_axis(lambda s: _valid_output_size(s, depth), input_size)

    def same(size):
        if size < 1 or size % 2**depth:
            raise ValueError(f"U-Net (padding='same', depth={depth}): input size {size} must be a positive multiple "
                             f"of 2^{depth} = {2**depth} so that every pool halves it exactly; pad the image "
                             f"(F.pad, e.g. reflect) to {-(-max(size, 1) // 2**depth) * 2**depth} and crop the output")
        return size
    return _per_axis(same, input_size)


def unet_valid_input_size(output_size, depth: int = 4):
    """The smallest valid-padding input size whose output is **at least** ``output_size`` (int or pair).

    Outputs come in steps of ``2^depth`` (they are ``2^d·m + 4``), so the output equals ``output_size``
    exactly when ``output_size − 4`` is a multiple of ``2^depth`` (e.g. 388 ← 572 at depth 4) and is
    otherwise the next larger possible size: crop it to what you need.
    """
    _check_depth(depth)

    def smallest(size):
        if size < 1:
            raise ValueError(f"unet_valid_input_size: output size must be positive; got {size}")
        bottleneck = 4 + -(-(size - 4) // 2**depth)  # b = 4 + ⌈(o − 4) / 2^d⌉ gives o' = 2^d·(b − 4) + 4 ≥ o
        return 2**depth * (bottleneck + 8) - 4
    return _per_axis(smallest, output_size)


def double_conv(in_channels: int, out_channels: int, padding: int, batch_norm: bool) -> nn.Sequential:
    """Two 3×3 convolutions, each followed by (batch norm and) ReLU: the unit of every U-Net level."""
    layers = []
    for channels in (in_channels, out_channels):
        layers.append(nn.Conv2d(channels, out_channels, 3, padding=padding, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """U-Net of Ronneberger, Fischer & Brox (§7.3); see the module docstring for sizes and crop offsets.

    Submodules, in the order ``forward`` uses them: ``encoder[l]`` (the two convolutions of level l),
    ``pool`` (2×2 max pool), ``bottleneck``, then for each level from the deepest up ``up[i]`` (transposed
    conv, or ``Sequential(Upsample, Conv2d)`` for ``up="bilinear"``) and ``decoder[i]``; finally ``head``,
    the 1×1 classifier. ``batch_norm=True`` adds batch norm after every 3×3 convolution (which then drops
    its bias) — not in the paper, but the usual modern choice.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, base_channels: int = 64, depth: int = 4,
                 padding: str = "valid", up: str = "transpose", batch_norm: bool = False, skip: str = "concat"):
        super().__init__()
        _check_depth(depth)
        if padding not in PADDINGS:
            raise ValueError(f"UNet: padding must be one of {PADDINGS}; got {padding!r}")
        if up not in UPSAMPLINGS:
            raise ValueError(f"UNet: up must be one of {UPSAMPLINGS}; got {up!r}")
        if skip not in SKIPS:
            raise ValueError(f"UNet: skip must be one of {SKIPS}; got {skip!r}")
        self.depth, self.padding, self.up_mode, self.skip = depth, padding, up, skip
        conv_padding = 1 if padding == "same" else 0
        channels = [base_channels * 2**level for level in range(depth + 1)]
        self.encoder = nn.ModuleList(double_conv(c_in, c_out, conv_padding, batch_norm)
                                     for c_in, c_out in zip([in_channels] + channels[:-2], channels[:-1]))
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bottleneck = double_conv(channels[-2], channels[-1], conv_padding, batch_norm)
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for level in reversed(range(depth)):
            wide, narrow = channels[level + 1], channels[level]
            if up == "transpose":
                self.up.append(nn.ConvTranspose2d(wide, narrow, 2, stride=2))
            else:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                             nn.Conv2d(wide, narrow, 3, padding=1)))
            fused = 2 * narrow if skip == "concat" else narrow
            self.decoder.append(double_conv(fused, narrow, conv_padding, batch_norm))
        self.head = nn.Conv2d(channels[0], num_classes, 1)

    def contracting_path(self) -> nn.Sequential:
        """The encoder as one chain — level blocks and pools, ending with the bottleneck — sharing this
        model's layers (e.g. for ``minseg.models.receptive_field.receptive_field``)."""
        layers = []
        for block in self.encoder:
            layers.extend(list(block) + [self.pool])
        return nn.Sequential(*layers, *self.bottleneck)

    def forward(self, x):
        unet_output_size(tuple(x.shape[-2:]), self.depth, self.padding)  # refuse sizes that do not tile evenly
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for upsample, block, skip in zip(self.up, self.decoder, reversed(skips)):
            x = upsample(x)
            if skip.shape[-2:] != x.shape[-2:]:
                skip = F.center_crop(skip, tuple(x.shape[-2:]))
            x = block(F.cat([skip, x], dim=1) if self.skip == "concat" else skip + x)
        return self.head(x)

    def extra_repr(self) -> str:
        return f"depth={self.depth}, padding={self.padding!r}, up={self.up_mode!r}, skip={self.skip!r}"
