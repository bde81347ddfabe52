"""The ADP-C model: HRNet stages, exits after stages 1-3, confidence adaptivity, carry-over.

A trained model is a sequence of four stages (BLUEPRINT.md): stage 1 maps the image to the
layer1 features and exit-1 logits; stage k = 2..4 maps the previous branch features and the
mask of exit k-1 to new branch features and exit-k logits. `forward` chains the stages with
the host step in between (mask, carry-over); `run_stage` runs one stage alone, which is what
the converters export and the runtime drives.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .heads import HEAD_TYPES, hrnet_head, redesigned_head
from .hrnet import (
    HRNET_CONFIGS,
    HRNetConfig,
    apply_transition,
    bn,
    concat_branches,
    make_layer1,
    make_stage,
    make_transition,
)
from .masking import (
    DEFAULT_FILL_WINDOW,
    DEFAULT_THRESHOLD,
    MaskPyramid,
    carry_over,
    compute_mask,
    masked_fraction,
)

NUM_STAGES = 4
INPUT_MULTIPLE = 32
"""Input H and W must be multiples of 32: the 1/4 map must halve three times in the heads."""

RH_DEPTHS = {1: 3, 2: 2, 3: 1}
"""Redesigned-head depth D = N - i for exit i of N = 4."""


class InputSizeError(ValueError):
    """The input image has a size the network cannot process without padding."""


@dataclass(frozen=True)
class ADPCConfig:
    backbone: str = "w18_small_v2"
    num_classes: int = 19
    exits: str = "rh"
    head_channels: int = 64
    threshold: float | None = DEFAULT_THRESHOLD
    fill_window: int = DEFAULT_FILL_WINDOW

    def __post_init__(self) -> None:
        if self.backbone not in HRNET_CONFIGS:
            raise ValueError(
                f"unknown backbone {self.backbone!r}; choose one of {', '.join(HRNET_CONFIGS)}"
            )
        if self.exits not in HEAD_TYPES:
            raise ValueError(f"unknown exits {self.exits!r}; choose one of {', '.join(HEAD_TYPES)}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1] or be None, got {self.threshold}")
        if self.exits == "none" and self.threshold is not None:
            raise ValueError("the plain HRNet (exits='none') has no exits to be confident at: "
                             "pass threshold=None")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")

    @property
    def hrnet(self) -> HRNetConfig:
        return HRNET_CONFIGS[self.backbone]

    @property
    def exit_stages(self) -> tuple[int, ...]:
        """The stages that end in an exit."""
        return (4,) if self.exits == "none" else (1, 2, 3, 4)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class ExitStep(NamedTuple):
    """One finished exit while iterating: its carried-over logits and the mask its stage used."""

    exit: int
    stage: int
    logits: Tensor
    mask: Tensor | None


class ExitOutputs(NamedTuple):
    """Everything `forward` returns (a NamedTuple, so it is a pytree for export and DDP).

    logits: carried-over logits of every exit, N x classes x H/4 x W/4.
    masks: the mask after each exit but the last (1 = still computed), N x 1 x H/4 x W/4.
    masked_fractions: per exit but the last, the fraction of skipped pixels per image, N.
    """

    logits: list[Tensor]
    masks: list[Tensor]
    masked_fractions: list[Tensor]


def check_input_size(height: int, width: int) -> None:
    if height % INPUT_MULTIPLE or width % INPUT_MULTIPLE or height <= 0 or width <= 0:
        fix_h = max(INPUT_MULTIPLE, -(-height // INPUT_MULTIPLE) * INPUT_MULTIPLE)
        fix_w = max(INPUT_MULTIPLE, -(-width // INPUT_MULTIPLE) * INPUT_MULTIPLE)
        raise InputSizeError(
            f"input height and width must be multiples of {INPUT_MULTIPLE}, got "
            f"{height}x{width}: resize to e.g. {fix_h}x{fix_w} or pass pad=True"
        )


class AnytimeChain:
    """The anytime forward over stages: the one definition of how exits chain.

    Mixed into every stage-wise model (the float ADPCNet, the quantized stage graphs): a
    subclass provides `config` (an ADPCConfig) and `run_stage(k, state, mask)` with
    ADPCNet.run_stage's contract, where mask=None means CA off.
    """

    config: ADPCConfig

    @property
    def num_exits(self) -> int:
        return len(self.config.exit_stages)

    def run_stage(
        self, k: int, state: Tensor | list[Tensor], mask: Tensor | None = None
    ) -> tuple[list[Tensor] | None, Tensor | None]:
        raise NotImplementedError

    def iter_exits(self, x: Tensor, threshold: float | None) -> Iterator[ExitStep]:
        """Run the stages one after another, yielding each exit as soon as it is ready.

        The host step between stages: mask from the carried logits (all ones when CA is off),
        stage k masked by it, carry-over. A caller may stop iterating at any exit.
        """
        if threshold is not None and self.config.exits == "none":
            raise ValueError("the plain HRNet has no early exits: CA needs threshold=None")
        state: Tensor | list[Tensor] = x
        carried: Tensor | None = None
        exit_index = 0
        for k in range(1, NUM_STAGES + 1):
            mask = None
            if carried is not None:
                if threshold is None:
                    mask = torch.ones_like(carried[:, :1])
                else:
                    mask = compute_mask(carried, threshold)
            state, raw = self.run_stage(k, state, mask if threshold is not None else None)
            if raw is None:
                continue
            carried = raw if carried is None or mask is None else carry_over(carried, raw, mask)
            exit_index += 1
            yield ExitStep(exit_index, k, carried, mask)

    # ---------------------------------------------------------------------------- forward
    def forward(
        self, x: Tensor, threshold: float | None | str = "config", pad: bool = False
    ) -> ExitOutputs:
        """Every exit's carried-over logits, plus masks and masked fractions.

        threshold: "config" uses the model's; None switches CA off (the EE+RH model from the
        same weights); a float overrides it. pad=True pads the input bottom/right to a multiple
        of 32 and crops the outputs back to ceil(H/4) x ceil(W/4).
        """
        if x.dim() != 4 or x.shape[1] != 3:
            raise InputSizeError(f"expected an N x 3 x H x W image batch, got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        if pad:
            x = F.pad(x, (0, -width % INPUT_MULTIPLE, 0, -height % INPUT_MULTIPLE))
        check_input_size(*x.shape[-2:])
        thr = self.config.threshold if threshold == "config" else threshold
        logits: list[Tensor] = []
        masks: list[Tensor] = []
        fractions: list[Tensor] = []
        for step in self.iter_exits(x, thr):
            if step.mask is not None:
                masks.append(step.mask)
                fractions.append(masked_fraction(step.mask))
            logits.append(step.logits)
        if pad:
            out_h, out_w = -(-height // 4), -(-width // 4)
            logits = [t[..., :out_h, :out_w] for t in logits]
            masks = [t[..., :out_h, :out_w] for t in masks]
        return ExitOutputs(logits, masks, fractions)


def state_shapes(
    config: ADPCConfig, k: int, height: int, width: int, batch: int = 1
) -> list[tuple[int, int, int, int]]:
    """Shapes of the branch features stage k hands on (k = 1: the layer1 map), from the config."""
    check_input_size(height, width)
    h4, w4 = height // 4, width // 4
    if k == 1:
        return [(batch, config.hrnet.stage1_planes * 4, h4, w4)]
    if not 2 <= k < NUM_STAGES:
        raise ValueError(f"stages 1..{NUM_STAGES - 1} hand on features, got {k}")
    widths = config.hrnet.stages[k - 2].widths
    return [(batch, c, h4 >> i, w4 >> i) for i, c in enumerate(widths)]


class ADPCNet(AnytimeChain, nn.Module):
    """HRNet with early exits and confidence adaptivity; also the EE+RH and plain HRNet.

    Module attributes are assigned in the reference code's order so state-dict keys and their
    order match the official HRNet and ADP-C checkpoints.
    """

    def __init__(self, config: ADPCConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ADPCConfig()
        hr = config.hrnet
        early = config.exits != "none"
        fill = config.fill_window if early else None
        self.conv1 = nn.Conv2d(3, hr.stem_width, 3, stride=2, padding=1, bias=False)
        self.bn1 = bn(hr.stem_width)
        self.conv2 = nn.Conv2d(hr.stem_width, hr.stem_width, 3, stride=2, padding=1, bias=False)
        self.bn2 = bn(hr.stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_layer1(hr)
        layer1_width = hr.stage1_planes * 4
        if early:
            self.exit1 = self._exit_head(1, layer1_width, masked=False)
        widths_in: tuple[int, ...] = (layer1_width,)
        for k, stage in enumerate(hr.stages, start=2):
            setattr(self, f"transition{k - 1}", make_transition(widths_in, stage.widths, fill))
            setattr(self, f"stage{k}", make_stage(stage, fill))
            if early and k < NUM_STAGES:
                setattr(self, f"exit{k}", self._exit_head(k, sum(stage.widths), masked=True))
            widths_in = stage.widths
        self.last_layer = hrnet_head(sum(hr.widths), config.num_classes, fill, masked=early)
        self._init_weights()

    def _exit_head(self, k: int, in_channels: int, masked: bool) -> nn.Module:
        cfg = self.config
        if cfg.exits == "rh":
            return redesigned_head(
                in_channels, cfg.head_channels, cfg.num_classes, RH_DEPTHS[k], cfg.fill_window,
                masked,
            )
        return hrnet_head(in_channels, cfg.num_classes, cfg.fill_window, masked)

    def _init_weights(self) -> None:
        """The reference initialisation: convs N(0, 0.001), BN weight 1 and bias 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.001)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    # ----------------------------------------------------------------------------- stages
    def head(self, k: int) -> nn.Module | None:
        """The exit head that ends stage k, or None when stage k has no exit."""
        if k == NUM_STAGES:
            return self.last_layer
        return getattr(self, f"exit{k}", None)

    def stage_modules(self, k: int) -> dict[str, nn.Module]:
        """The modules stage k runs, by attribute name (FLOPs attribution, export)."""
        if k == 1:
            names = ["conv1", "bn1", "conv2", "bn2", "layer1", "exit1"]
        elif 2 <= k <= NUM_STAGES:
            names = [f"transition{k - 1}", f"stage{k}"]
            names.append("last_layer" if k == NUM_STAGES else f"exit{k}")
        else:
            raise ValueError(f"stage must be 1..{NUM_STAGES}, got {k}")
        return {n: getattr(self, n) for n in names if hasattr(self, n)}

    def stages(self) -> list[dict[str, nn.Module]]:
        return [self.stage_modules(k) for k in range(1, NUM_STAGES + 1)]

    def run_stage(
        self, k: int, state: Tensor | list[Tensor], mask: Tensor | None = None
    ) -> tuple[list[Tensor] | None, Tensor | None]:
        """Run stage k alone.

        k = 1: state is the normalised image (N x 3 x H x W); the mask must be None.
        k >= 2: state is the list of branch features from stage k-1; mask is the mask of
        exit k-1 at 1/4 resolution (N x 1 x H/4 x W/4, 1 = compute) or None (CA off).
        Returns (branch features for the next stage or None after the last stage,
        raw exit-k logits or None when stage k has no exit).
        """
        if k == 1:
            if mask is not None:
                raise ValueError("stage 1 is never masked")
            x = self.relu(self.bn1(self.conv1(state)))
            x = self.relu(self.bn2(self.conv2(x)))
            x = self.layer1(x)
            logits = self.exit1(x) if hasattr(self, "exit1") else None
            return [x], logits
        if not 2 <= k <= NUM_STAGES:
            raise ValueError(f"stage must be 1..{NUM_STAGES}, got {k}")
        masks = None if mask is None else MaskPyramid(mask)
        xs = apply_transition(getattr(self, f"transition{k - 1}"), list(state), masks)
        xs = getattr(self, f"stage{k}")(xs, masks)
        head = self.head(k)
        logits = head(concat_branches(xs), masks) if head is not None else None
        return (None if k == NUM_STAGES else xs), logits
