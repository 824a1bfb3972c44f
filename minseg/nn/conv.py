"""Convolution layers: ``Conv2d`` and ``ConvTranspose2d``, with PyTorch's arguments, weights and init.

Weights are laid out as in PyTorch — conv (out, in/groups, kh, kw), transposed conv (in, out/groups, kh, kw)
— so a torch module's ``state_dict()`` loads directly. Both start from PyTorch's default initialisation
(``reset_parameters``): weight ~ U(−1/√fan_in, 1/√fan_in) via ``kaiming_uniform_(a=√5)`` and bias from
the same range, with fan_in read from axis 1 of the weight (out/groups·kh·kw for the transposed conv).
"""

from __future__ import annotations


import numpy as np

from .. import functional as F
from ..functional.conv import conv_transpose_output_size
from ..functional.shape import pair, same_padding
from . import init
from .module import Module, Parameter

PADDING_MODES = ("zeros", "reflect", "replicate")


class _ConvNd(Module):
    """What Conv2d and ConvTranspose2d share: argument checks, parameters, init and ``extra_repr``."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, transposed,
                 output_padding, groups, bias, padding_mode):
        super().__init__()
        name = type(self).__name__
        if not isinstance(groups, int) or groups < 1:
            raise ValueError(f"{name}: groups must be a positive int; got {groups!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"{name}: padding_mode must be one of {PADDING_MODES}; got {padding_mode!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = pair(kernel_size, "kernel_size", name, 1), pair(stride, "stride", name, 1)
        self.dilation = pair(dilation, "dilation", name, 1)
        self.padding = padding if isinstance(padding, str) else pair(padding, "padding", name, 0)
        self.output_padding = pair(output_padding, "output_padding", name, 0)
        self.transposed, self.groups, self.padding_mode = transposed, groups, padding_mode
        shape = (in_channels, out_channels // groups) if transposed else (out_channels, in_channels // groups)
        self.weight = Parameter(np.empty(shape + self.kernel_size, dtype=np.float32))
        if bias:
            self.bias = Parameter(np.empty(out_channels, dtype=np.float32))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: weight and bias ~ U(−1/√fan_in, 1/√fan_in)."""
        init.pytorch_default_(self.weight, self.bias)

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.output_padding != (0, 0):
            text += f", output_padding={self.output_padding}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        if self.padding_mode != "zeros":
            text += f", padding_mode={self.padding_mode}"
        return text


class Conv2d(_ConvNd):
    """y = W ⋆ x + b: 2-D cross-correlation of an (N, C, H, W) input; ``dilation`` spaces the taps (atrous
    convolution, §7.4.2).

    ``padding`` is an int, a pair, ``"valid"`` or ``"same"``. A ``padding_mode`` other than ``"zeros"``
    (``"reflect"``, ``"replicate"``) pads the input with ``F.pad`` first and then convolves unpadded, as
    PyTorch does; reflect padding is U-Net's border handling (§7.3.3).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros"):
        if isinstance(padding, str) and padding not in ("same", "valid"):
            raise ValueError(f"Conv2d: padding must be an int, a pair, 'same' or 'valid'; got {padding!r}")
        if padding == "same" and pair(stride, "stride", "Conv2d", 1) != (1, 1):
            raise ValueError(f"Conv2d: padding='same' needs stride 1; got stride={stride!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, False, 0, groups, bias,
                         padding_mode)

    def _pad_amounts(self) -> tuple:
        """(left, right, top, bottom) for ``F.pad``; 'same' puts an odd extra pixel at the right/bottom."""
        if self.padding == "valid":
            return (0, 0, 0, 0)
        if self.padding == "same":
            (top, bottom), (left, right) = same_padding(self.kernel_size, self.dilation)
        else:
            (top, bottom), (left, right) = ((p, p) for p in self.padding)
        return (left, right, top, bottom)

    def forward(self, input):
        if self.padding_mode != "zeros":
            padded = F.pad(input, self._pad_amounts(), mode=self.padding_mode)
            return F.conv2d(padded, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class ConvTranspose2d(_ConvNd):
    """Transposed convolution, the learnable upsampling of FCN and U-Net (§7.2.2): each input pixel adds a
    weighted copy of the kernel to the output, ``stride`` pixels apart.

    Output size (i − 1)·s − 2p + d·(k − 1) + output_padding + 1. A strided conv maps ``stride`` different
    input sizes to the same output size, so the inverse mapping is ambiguous; ``forward(x, output_size=…)``
    picks the output_padding that produces the requested size, as in PyTorch.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = True, dilation=1):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, True, output_padding,
                         groups, bias, "zeros")

    def _output_padding(self, input, output_size) -> tuple:
        if output_size is None:
            return self.output_padding
        output_size = tuple(output_size)[-2:] if len(output_size) in (3, 4) else tuple(output_size)
        if len(output_size) != 2:
            raise ValueError(f"ConvTranspose2d: output_size must be (H, W), optionally preceded by (N, C); "
                             f"got {output_size!r}")
        smallest = tuple(conv_transpose_output_size(input.shape[2 + a], self.kernel_size[a], self.stride[a],
                                                    self.padding[a], 0, self.dilation[a]) for a in (0, 1))
        largest = tuple(size + stride - 1 for size, stride in zip(smallest, self.stride))
        if not all(low <= size <= high for low, size, high in zip(smallest, output_size, largest)):
            raise ValueError(f"ConvTranspose2d: requested an output size of {output_size}, but valid sizes range "
                             f"from {smallest} to {largest} (for an input of {tuple(input.shape[2:])})")
        return tuple(size - low for size, low in zip(output_size, smallest))

    def forward(self, input, output_size=None):
        output_padding = self._output_padding(input, output_size)
        return F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding, output_padding,
                                  self.groups, self.dilation)
