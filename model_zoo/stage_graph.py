"""One stage of an ADP-C model as a module with flat tensor inputs and outputs.

This is the unit that is quantized (model_zoo.quantize) and exported (converters): the stage
boundary itself is `ADPCNet.run_stage`; converters/stages.py names the tensors and builds the
manifest around it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .adpc import NUM_STAGES, ADPCConfig, ADPCNet, AnytimeChain, ExitOutputs, state_shapes


class StageGraph(nn.Module):
    """Stage k of a model: inputs `(image,)` for k = 1, `(*branch_features, mask)` after;
    outputs `(*branch_features, logits)`, the last stage `(logits,)`.

    It shares (does not copy) the model's parameters. masked=False drops the fills (exact only
    when the host passes all-ones masks, i.e. CA off); the mask input stays in the contract.
    """

    def __init__(self, model: ADPCNet, k: int, masked: bool = True) -> None:
        super().__init__()
        if not 1 <= k <= NUM_STAGES:
            raise ValueError(f"stage must be 1..{NUM_STAGES}, got {k}")
        if model.config.exits == "none" and k < NUM_STAGES:
            raise ValueError("the plain HRNet has no early exits: export it as one graph")
        self.model = model
        self.k = k
        self.masked = masked

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        if self.k == 1:
            feats, logits = self.model.run_stage(1, inputs[0])
        else:
            mask = inputs[-1] if self.masked else None
            feats, logits = self.model.run_stage(self.k, list(inputs[:-1]), mask)
        return (*(feats or []), *((logits,) if logits is not None else ()))


def run_flat_stage(
    graph, k: int, state: Tensor | list[Tensor], mask: Tensor | None
) -> tuple[list[Tensor] | None, Tensor]:
    """Call anything with StageGraph's flat contract as `ADPCNet.run_stage` would be called.

    mask=None (CA off) becomes an all-ones mask, which computes every pixel.
    """
    if k == 1:
        outputs = graph(state)
    else:
        feats = list(state)
        if mask is None:
            mask = feats[0].new_ones(feats[0].shape[0], 1, *feats[0].shape[-2:])
        outputs = graph(*feats, mask)
    if k == NUM_STAGES:
        return None, outputs[0]
    return list(outputs[:-1]), outputs[-1]


class FlatStageChain(AnytimeChain):
    """Stage graphs (exported programs, converted files behind a callable) chained by the one
    anytime forward: `FlatStageChain(graphs, config)(x, threshold)` -> ExitOutputs."""

    def __init__(self, graphs, config: ADPCConfig) -> None:
        if len(graphs) != NUM_STAGES:
            raise ValueError(f"need {NUM_STAGES} stage graphs, got {len(graphs)}")
        self.graphs = list(graphs)
        self.config = config

    def run_stage(self, k, state, mask=None):
        return run_flat_stage(self.graphs[k - 1], k, state, mask)

    def __call__(self, x: Tensor, threshold: float | None | str = "config") -> ExitOutputs:
        return self.forward(x, threshold)


def stage_examples(
    config: ADPCConfig, k: int, height: int, width: int, batch: int = 1
) -> tuple[Tensor, ...]:
    """Zero example inputs of stage k (for export): image, or branch features + mask."""
    if k == 1:
        return (torch.zeros(batch, 3, height, width),)
    feats = [torch.zeros(s) for s in state_shapes(config, k - 1, height, width, batch)]
    return (*feats, torch.ones(batch, 1, height // 4, width // 4))
