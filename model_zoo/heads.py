"""Exit heads: the redesigned encoder-decoder head (RH) and HRNet's own final head.

Both are MaskedSequentials with the reference code's module order, so the keys of ADP-C
reference checkpoints (`exit2.1.weight`, `last_layer.3.bias`) line up with ours.
"""

from __future__ import annotations

from torch import nn

from .hrnet import bn
from .masking import MaskedConv2d, MaskedSequential

HEAD_TYPES = ("rh", "ee", "none")
"""rh: redesigned heads at exits 1-3 (ADP-C); ee: HRNet-style 1x1 heads at every exit (plain
early exits); none: no early exits (the plain HRNet)."""


def _conv1x1(cin: int, cout: int, fill_window: int | None, masked: bool) -> nn.Conv2d:
    if masked:
        return MaskedConv2d(cin, cout, 1, bias=True, fill_window=fill_window)
    return nn.Conv2d(cin, cout, 1, bias=True)


def redesigned_head(
    in_channels: int,
    hidden: int,
    num_classes: int,
    depth: int,
    fill_window: int | None,
    masked: bool,
) -> MaskedSequential:
    """D x [pool, conv, BN, ReLU], (D-1) x [up, conv, BN, ReLU], up, conv to the classes.

    Every conv is 1x1 (code, not paper). The first conv maps to the hidden width.
    """
    if depth < 1:
        raise ValueError(f"head depth must be >= 1, got {depth}")
    layers: list[nn.Module] = []
    cin = in_channels
    for _ in range(depth):
        layers += [nn.AvgPool2d(2, 2), _conv1x1(cin, hidden, fill_window, masked), bn(hidden)]
        layers.append(nn.ReLU(inplace=True))
        cin = hidden
    for _ in range(depth - 1):
        layers += [_upsample(), _conv1x1(hidden, hidden, fill_window, masked), bn(hidden)]
        layers.append(nn.ReLU(inplace=True))
    layers += [_upsample(), _conv1x1(hidden, num_classes, fill_window, masked)]
    return MaskedSequential(*layers)


def hrnet_head(
    in_channels: int, num_classes: int, fill_window: int | None, masked: bool
) -> MaskedSequential:
    """Conv1x1(C->C, bias) -> BN -> ReLU -> Conv1x1(C->classes): HRNet's `last_layer`."""
    return MaskedSequential(
        _conv1x1(in_channels, in_channels, fill_window, masked),
        bn(in_channels),
        nn.ReLU(inplace=True),
        _conv1x1(in_channels, num_classes, fill_window, masked),
    )


def _upsample() -> nn.Upsample:
    return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
