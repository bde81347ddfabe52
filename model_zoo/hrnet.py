"""HRNetV2 backbone pieces with the official state-dict key names (SPEC.md section 2).

Architecture configs are plain data; the modules take a `fill_window` (None for the plain
HRNet) instead of switching a global conv class. Everything from `transition1` on is built
from MaskedConv2d, which is an ordinary conv when no mask is passed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .masking import MaskAware, MaskedConv2d, MaskedSequential, MaskPyramid

BN_MOMENTUM = 0.01


@dataclass(frozen=True)
class StageConfig:
    num_modules: int
    num_blocks: tuple[int, ...]
    widths: tuple[int, ...]


@dataclass(frozen=True)
class HRNetConfig:
    name: str
    stage1_blocks: int
    stage2: StageConfig
    stage3: StageConfig
    stage4: StageConfig
    stem_width: int = 64
    stage1_planes: int = 64  # Bottleneck planes; x4 = 256 output channels

    @property
    def stages(self) -> tuple[StageConfig, StageConfig, StageConfig]:
        return (self.stage2, self.stage3, self.stage4)

    @property
    def widths(self) -> tuple[int, ...]:
        return self.stage4.widths


def _config(name: str, stage1: int, blocks: int, modules: tuple[int, int, int], c: int):
    widths = (c, 2 * c, 4 * c, 8 * c)
    return HRNetConfig(
        name=name,
        stage1_blocks=stage1,
        stage2=StageConfig(modules[0], (blocks,) * 2, widths[:2]),
        stage3=StageConfig(modules[1], (blocks,) * 3, widths[:3]),
        stage4=StageConfig(modules[2], (blocks,) * 4, widths),
    )


HRNET_CONFIGS: dict[str, HRNetConfig] = {
    "w18_small_v2": _config("w18_small_v2", 2, 2, (1, 3, 2), 18),
    "w18": _config("w18", 4, 4, (1, 4, 3), 18),
    "w32": _config("w32", 4, 4, (1, 4, 3), 32),
    "w48": _config("w48", 4, 4, (1, 4, 3), 48),
}


def bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)


def upsample_to(x: Tensor, height: int, width: int) -> Tensor:
    """Bilinear, align_corners=False: the interpolation of the segmentation HRNet."""
    if x.shape[-2:] == (height, width):
        return x
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)


class Bottleneck(nn.Module):
    """Stage-1 block; never masked (stage 1 runs before the first exit)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, downsample: nn.Module | None = None):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = bn(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = bn(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


def make_layer1(config: HRNetConfig) -> nn.Sequential:
    planes = config.stage1_planes
    out = planes * Bottleneck.expansion
    downsample = nn.Sequential(nn.Conv2d(config.stem_width, out, 1, bias=False), bn(out))
    blocks = [Bottleneck(config.stem_width, planes, downsample)]
    blocks += [Bottleneck(out, planes) for _ in range(1, config.stage1_blocks)]
    return nn.Sequential(*blocks)


class BasicBlock(MaskAware):
    """Two masked 3x3 convs and a residual; channel counts never change inside HRNet branches."""

    def __init__(self, channels: int, fill_window: int | None):
        super().__init__()
        self.conv1 = MaskedConv2d(channels, channels, 3, padding=1, fill_window=fill_window)
        self.bn1 = bn(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = MaskedConv2d(channels, channels, 3, padding=1, fill_window=fill_window)
        self.bn2 = bn(channels)

    def forward(self, x: Tensor, masks: MaskPyramid | None = None) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x, masks)))
        out = self.bn2(self.conv2(out, masks))
        return self.relu(out + x)


def conv_bn(
    cin: int, cout: int, kernel: int, stride: int, fill_window: int | None, relu: bool
) -> MaskedSequential:
    layers: list[nn.Module] = [
        MaskedConv2d(cin, cout, kernel, stride, kernel // 2, fill_window=fill_window),
        bn(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return MaskedSequential(*layers)


class HighResolutionModule(MaskAware):
    """Parallel branches of BasicBlocks followed by the all-to-all fuse layers."""

    def __init__(self, num_blocks: tuple[int, ...], widths: tuple[int, ...], fill_window):
        super().__init__()
        self.branches = nn.ModuleList(
            MaskedSequential(*(BasicBlock(c, fill_window) for _ in range(n)))
            for n, c in zip(num_blocks, widths, strict=True)
        )
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(self._fuse(j, i, widths, fill_window) for j in range(len(widths)))
            for i in range(len(widths))
        )
        self.relu = nn.ReLU(inplace=True)

    @staticmethod
    def _fuse(j: int, i: int, widths: tuple[int, ...], fill_window) -> nn.Module:
        """Path from branch j to branch i: 1x1 conv (then upsample), identity, or s2 convs."""
        if j > i:
            return conv_bn(widths[j], widths[i], 1, 1, fill_window, relu=False)
        if j == i:
            return nn.Identity()
        steps = [
            conv_bn(widths[j], widths[j], 3, 2, fill_window, relu=True) for _ in range(i - j - 1)
        ]
        steps.append(conv_bn(widths[j], widths[i], 3, 2, fill_window, relu=False))
        return MaskedSequential(*steps)

    def forward(self, xs: list[Tensor], masks: MaskPyramid | None = None) -> list[Tensor]:
        xs = [branch(x, masks) for branch, x in zip(self.branches, xs, strict=True)]
        fused = []
        for i, row in enumerate(self.fuse_layers):
            height, width = xs[i].shape[-2:]
            total = xs[i]
            for j, path in enumerate(row):
                if j == i:
                    continue
                y = path(xs[j], masks)
                total = total + (upsample_to(y, height, width) if j > i else y)
            fused.append(self.relu(total))
        return fused


def make_transition(
    widths_in: tuple[int, ...], widths_out: tuple[int, ...], fill_window
) -> nn.ModuleList:
    """Official transition: a 3x3 conv where a branch changes width, a s2 conv for a new branch.

    Unchanged branches are Identity (the official code stores None; neither has keys).
    """
    layers: list[nn.Module] = []
    for i, cout in enumerate(widths_out):
        if i < len(widths_in):
            if widths_in[i] == cout:
                layers.append(nn.Identity())
            else:
                layers.append(conv_bn(widths_in[i], cout, 3, 1, fill_window, relu=True))
        else:
            layers.append(
                MaskedSequential(conv_bn(widths_in[-1], cout, 3, 2, fill_window, relu=True))
            )
    return nn.ModuleList(layers)


def apply_transition(
    transition: nn.ModuleList, xs: list[Tensor], masks: MaskPyramid | None
) -> list[Tensor]:
    """New branches read the previous lowest-resolution branch, as in the official code."""
    out = []
    for i, layer in enumerate(transition):
        source = xs[i] if i < len(xs) else xs[-1]
        out.append(layer(source, masks) if isinstance(layer, MaskAware) else layer(source))
    return out


def make_stage(stage: StageConfig, fill_window) -> MaskedStage:
    return MaskedStage(
        *(
            HighResolutionModule(stage.num_blocks, stage.widths, fill_window)
            for _ in range(stage.num_modules)
        )
    )


class MaskedStage(nn.Sequential, MaskAware):
    """A sequence of HighResolutionModules (key layout `stageS.M.*`)."""

    def forward(self, xs: list[Tensor], masks: MaskPyramid | None = None) -> list[Tensor]:  # type: ignore[override]
        for module in self:
            xs = module(xs, masks)
        return xs


def concat_branches(xs: list[Tensor]) -> Tensor:
    """Exit input: lower branches upsampled to branch 0's size, then concatenated."""
    height, width = xs[0].shape[-2:]
    if len(xs) == 1:
        return xs[0]
    return torch.cat([xs[0]] + [upsample_to(x, height, width) for x in xs[1:]], dim=1)
