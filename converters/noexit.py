"""The network without exits: the baseline every anytime speed claim is measured against.

The same trained weights as the ADP-C model with exit heads 1..N-1 deleted and no masks (the
HRNet backbone and the final head), exported as one ExecuTorch method and lowered to XNNPACK
like the bundle; int8 by post-training quantisation with the bundle's quantizer config (a
deployment without exits would ship exactly this). `build_noexit` caches it beside a bundle;
`noexit_gflops` is its cost in the paper's accounting, for FLOPs-ideal ratios.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch
from torch import nn

from model_zoo import create_model
from model_zoo.adpc import NUM_STAGES, ADPCConfig
from model_zoo.flops import conv_costs

DEFAULT_MODEL = "w18_small_v2"


class NoExitNet(nn.Module):
    """The ADP-C backbone and its final head: exit heads 1..N-1 deleted, no masks."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.m = copy.deepcopy(model).eval()
        for k in range(1, NUM_STAGES):
            if hasattr(self.m, f"exit{k}"):
                delattr(self.m, f"exit{k}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state, raw = x, None
        for k in range(1, NUM_STAGES + 1):
            state, raw = self.m.run_stage(k, state, None)
        assert raw is not None
        return raw


def noexit_path(bundle: str | Path, precision: str, height: int, width: int) -> Path:
    """Where the baseline of a bundle is cached: next to the bundle folder."""
    return Path(bundle).parent / f"noexit_{precision}_{height}x{width}.pte"


def build_noexit(path: Path, precision: str, height: int, width: int,
                 model: nn.Module | None = None) -> Path:
    """Export (once; atomically) the no-exit network of `model` (default: the shipped one)."""
    if path.is_file():
        return path
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    net = NoExitNet(model if model is not None else create_model(DEFAULT_MODEL, pretrained=True))
    example = (torch.zeros(1, 3, height, width),)
    with torch.no_grad():
        program = torch.export.export(net, example)
        if precision == "int8":
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

            from converters.export import calibration_images
            from model_zoo.quantize import make_quantizer

            gm = prepare_pt2e(program.module(), make_quantizer(is_qat=False))
            for image in calibration_images(height, width):
                gm(image)
            program = torch.export.export(convert_pt2e(gm), example)
        buffer = to_edge_transform_and_lower(
            program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{time.time_ns()}.tmp")
    tmp.write_bytes(buffer)
    tmp.replace(path)
    return path


def noexit_gflops(height: int, width: int, config: ADPCConfig | None = None) -> float:
    """GFLOPs (the paper's accounting) of the network without exits."""
    config = config or create_model(DEFAULT_MODEL).config
    heads = {f"exit{k}" for k in range(1, NUM_STAGES)}
    return sum(c.macs for c in conv_costs(config, height, width)
               if c.name.split(".")[0] not in heads) / 2**30
