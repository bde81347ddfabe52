"""FLOPs per exit with the paper's accounting (SPEC.md section 6).

"GFLOPs" are multiply-accumulates / 2^30 of convs and linear layers
(`prod(weight.shape) * H_out * W_out`), cumulative per exit. A masked conv that computes a
fraction p of its pixels costs `macs * p + (1 - p) * p * C_out * window^2 * H * W` (the RBF
fill term of the reference accounting). Shapes are read by one forward on the meta device, so
counting the 1024x2048 W48 model allocates nothing and takes well under a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from edge.flops import stage_macs

from .adpc import NUM_STAGES, ADPCConfig, ADPCNet, ExitOutputs, check_input_size
from .masking import MaskedConv2d

GIGA = float(2**30)


@dataclass(frozen=True)
class ConvCost:
    name: str
    stage: int
    macs: int
    fill_macs: int  # C_out * window^2 * H_out * W_out for masked convs, else 0


@dataclass(frozen=True)
class StageCost:
    """The cost of one stage as a function of the fraction p of pixels it computes."""

    stage: int
    fixed_macs: float  # convs never masked (stage 1)
    masked_macs: float  # convs governed by the previous exit's mask
    fill_macs: float

    def macs(self, computed: float = 1.0) -> float:
        return stage_macs(self.fixed_macs, self.masked_macs, self.fill_macs, computed)

    def gflops(self, computed: float = 1.0) -> float:
        return self.macs(computed) / GIGA


def _stage_of(name: str, prefixes: dict[str, int]) -> int:
    top = name.split(".", 1)[0]
    if top not in prefixes:
        raise KeyError(f"module {name} belongs to no stage")
    return prefixes[top]


def conv_costs(config: ADPCConfig, height: int, width: int) -> list[ConvCost]:
    """Every conv and linear layer with its MACs at the given input size (one meta forward)."""
    meta = meta_model(config)
    prefixes = {n: k for k in range(1, NUM_STAGES + 1) for n in meta.stage_modules(k)}
    names = {module: name for name, module in meta.named_modules()}
    costs: list[ConvCost] = []

    def hook(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        spatial = output.shape[-2] * output.shape[-1] if isinstance(module, nn.Conv2d) else 1
        macs = module.weight.numel() * spatial
        fill = 0
        if isinstance(module, MaskedConv2d) and module.fill is not None:
            fill = module.out_channels * module.fill.window**2 * spatial
        name = names[module]
        costs.append(ConvCost(name, _stage_of(name, prefixes), macs, fill))

    handles = [
        m.register_forward_hook(hook)
        for m in meta.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    try:
        with torch.no_grad():
            meta(torch.empty(1, 3, height, width, device="meta"), threshold=None)
    finally:
        for handle in handles:
            handle.remove()
    return costs


def meta_model(config: ADPCConfig) -> ADPCNet:
    """The model on the meta device: shapes and parameter counts without memory or init time."""
    with torch.device("meta"):
        meta = ADPCNet(config)
    return meta.eval()


def stage_costs(config: ADPCConfig, height: int, width: int) -> list[StageCost]:
    """Per stage: fixed, maskable and fill MACs. Stage 1 is never masked."""
    out = []
    convs = conv_costs(config, height, width)
    masking = config.exits != "none"
    for k in range(1, NUM_STAGES + 1):
        mine = [c for c in convs if c.stage == k]
        if k == 1 or not masking:
            out.append(StageCost(k, float(sum(c.macs for c in mine)), 0.0, 0.0))
        else:
            out.append(
                StageCost(k, 0.0, float(sum(c.macs for c in mine)),
                          float(sum(c.fill_macs for c in mine)))
            )
    return out


def exit_gflops(
    stages: Sequence[StageCost],
    exit_stages: Sequence[int],
    masked_fractions: Sequence[float] | None = None,
) -> list[float]:
    """Cumulative GFLOPs at each exit. masked_fractions[i] = share of pixels skipped after
    exit i+1 (so stage i+2 computes 1 - that), for every exit but the last."""
    masked = list(masked_fractions or [])
    if len(masked) > NUM_STAGES - 1:
        raise ValueError(f"at most {NUM_STAGES - 1} masked fractions, got {len(masked)}")
    for f in masked:
        if not 0.0 <= f <= 1.0:
            raise ValueError(f"masked fractions must lie in [0, 1], got {f}")
    total, cumulative = 0.0, []
    for cost in stages:
        k = cost.stage
        computed = 1.0 - masked[k - 2] if 2 <= k <= len(masked) + 1 else 1.0
        total += cost.gflops(computed)
        if k in exit_stages:
            cumulative.append(total)
    return cumulative


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_report(
    config: ADPCConfig,
    height: int,
    width: int,
    masked_fractions: Sequence[float] | None = None,
) -> dict:
    """The `adpc flops --json` object: cumulative GFLOPs per exit, base HRNet, params."""
    check_input_size(height, width)
    stages = stage_costs(config, height, width)
    base = replace(config, exits="none", threshold=None)
    report: dict = {
        "model": config.backbone,
        "exits_type": config.exits,
        "head_channels": config.head_channels,
        "size": [height, width],
        "exits": _per_exit(exit_gflops(stages, config.exit_stages)),
        "base_gflops": round(sum(s.gflops() for s in stage_costs(base, height, width)), 4),
        "params": count_params(meta_model(config)),
        "base_params": count_params(meta_model(base)),
    }
    if masked_fractions is not None:
        report["masked_fractions"] = [float(f) for f in masked_fractions]
        report["adaptive_exits"] = _per_exit(
            exit_gflops(stages, config.exit_stages, masked_fractions)
        )
    report["stages"] = [
        {
            "stage": s.stage,
            "fixed_gflops": round(s.fixed_macs / GIGA, 4),
            "masked_gflops": round(s.masked_macs / GIGA, 4),
            "fill_gflops": round(s.fill_macs / GIGA, 4),
        }
        for s in stages
    ]
    return report


def _per_exit(gflops: Sequence[float]) -> list[dict]:
    return [{"exit": i + 1, "gflops": round(g, 4)} for i, g in enumerate(gflops)]


def measured_masked_fractions(outputs: ExitOutputs) -> list[float]:
    """Batch-average masked fraction after each exit, from `ADPCNet.forward` outputs."""
    return [float(f.float().mean()) for f in outputs.masked_fractions]
