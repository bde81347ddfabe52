"""The stage contract: which module computes what, and the exact tensors between stages.

Stage 1: image -> layer1 features (256 ch at 1/4) and exit-1 logits.
Stage k = 2..4: the previous stage's branch features + the mask of exit k-1 (N x 1 x H/4 x W/4,
float 0/1, 1 = compute) -> new branch features (not after the last stage) and raw exit-k logits.
Confidence, mask and carry-over are host work between stages (edge/host.py): no softmax or
comparison sits inside a stage graph. Lower-resolution masks are derived inside the stage by
strided slicing (model_zoo.masking.MaskPyramid).

Every converter exports `StageGraph`s; `build_manifest` describes them for the bundle.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from edge.bundle import ClassInfo, InputSpec, Manifest, StageFlops, StageSpec, TensorSpec
from model_zoo.adpc import NUM_STAGES, ADPCConfig, ADPCNet, check_input_size, state_shapes
from model_zoo.data.cityscapes_classes import CLASS_COLORS, CLASS_NAMES
from model_zoo.data.normalize import IMAGENET_MEAN, IMAGENET_STD
from model_zoo.flops import GIGA, stage_costs
from model_zoo.stage_graph import FlatStageChain, StageGraph


@dataclass(frozen=True)
class StageIO:
    """Names and shapes of one stage's inputs and outputs (NCHW)."""

    index: int
    exit: int | None
    inputs: tuple[tuple[str, tuple[int, ...]], ...]
    outputs: tuple[tuple[str, tuple[int, ...]], ...]


def stage_io(config: ADPCConfig, height: int, width: int, batch: int = 1) -> list[StageIO]:
    """The I/O contract of every stage at one input size."""
    check_input_size(height, width)
    h4, w4 = height // 4, width // 4
    classes = config.num_classes
    logits = ("logits", (batch, classes, h4, w4))
    out: list[StageIO] = []
    exits = config.exit_stages
    exit_of = {k: i + 1 for i, k in enumerate(exits)}
    for k in range(1, NUM_STAGES + 1):
        if k == 1:
            inputs: tuple = (("image", (batch, 3, height, width)),)
        else:
            prev = state_shapes(config, k - 1, height, width, batch)
            inputs = tuple((f"x{i}", s) for i, s in enumerate(prev)) + (
                ("mask", (batch, 1, h4, w4)),
            )
        feats = () if k == NUM_STAGES else tuple(
            (f"x{i}", s) for i, s in enumerate(state_shapes(config, k, height, width, batch))
        )
        outs = feats + ((logits,) if k in exits else ())
        out.append(StageIO(k, exit_of.get(k), inputs, outs))
    return out


def stage_graphs(model: ADPCNet, masked: bool = True) -> list[StageGraph]:
    """All stages. masked=False drops the fills (exact only when the host passes all-ones
    masks, i.e. CA off); the mask input stays in the contract either way."""
    return [StageGraph(model, k, masked) for k in range(1, NUM_STAGES + 1)]


def run_stage_chain(
    graphs: list, image: Tensor, threshold: float | None, config: ADPCConfig
) -> tuple[list[Tensor], list[Tensor]]:
    """Drive stage graphs with the host step in torch; returns (carried logits, masks).

    `graphs[k-1](*inputs)` may be a StageGraph or anything with the same contract (an
    exported program's module), so converted stages are checked against the same chain.
    """
    out = FlatStageChain(graphs, config)(image, threshold)
    return list(out.logits), list(out.masks)


def build_manifest(config: ADPCConfig | ADPCNet, height: int, width: int) -> Manifest:
    """The bundle manifest for a model's stages at one input size (files added by writers).

    Takes the config (or a model, whose config is used): the manifest depends on nothing else.
    """
    config = config.config if isinstance(config, ADPCNet) else config
    costs = stage_costs(config, height, width)
    specs = []
    for io, cost in zip(stage_io(config, height, width), costs, strict=True):
        specs.append(StageSpec(
            index=io.index,
            exit=io.exit,
            inputs=tuple(TensorSpec(n, s) for n, s in io.inputs),
            outputs=tuple(TensorSpec(n, s) for n, s in io.outputs),
            flops=StageFlops(cost.fixed_macs / GIGA, cost.masked_macs / GIGA,
                             cost.fill_macs / GIGA),
        ))
    k = config.num_classes
    names = CLASS_NAMES if k == len(CLASS_NAMES) else tuple(f"class{i}" for i in range(k))
    colors = CLASS_COLORS if k == len(CLASS_COLORS) else tuple(
        ((37 * i) % 256, (91 * i) % 256, (151 * i) % 256) for i in range(k)
    )
    classes = tuple(
        ClassInfo(i, n, tuple(c)) for i, (n, c) in enumerate(zip(names, colors, strict=True))
    )
    return Manifest(
        model=config.backbone,
        model_config=config.to_dict(),
        classes=classes,
        input=InputSpec(height, width, IMAGENET_MEAN, IMAGENET_STD),
        threshold=config.threshold,
        stages=tuple(specs),
    )
