"""Sparse execution mode: every masked conv runs the native block-sparse kernel.

`sparsify(model)` returns an inference copy of an ADP-C model in which each masked conv, with
the BN, residual add and ReLU that follow it, is one `adpc::masked_conv2d` call (edge.kernels):
only active pixels are convolved, skipped pixels get the RBF fill, and the BN/add/ReLU
epilogue is applied on every pixel in the same pass. The numbers are those of the dense-masked
model (BN folded into an affine epilogue: equal to float rounding); the time is not.

Activations flow channels-last. `SparseStageGraph` converts at a stage's boundary, so the stage
contract (NCHW tensors in and out) is the same as in dense mode.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from edge.kernels.torch_op import fill_taps, masked_conv2d, pack_weight

from .adpc import ADPCNet
from .hrnet import BasicBlock
from .masking import MaskAware, MaskedConv2d, MaskedSequential, MaskPyramid
from .stage_graph import StageGraph

CHANNELS_LAST = torch.channels_last


class SparseConv(MaskAware):
    """A masked conv + optional BN (folded to scale/shift) + optional ReLU, as one kernel call."""

    def __init__(self, conv: MaskedConv2d, bn: nn.BatchNorm2d | None, relu: bool) -> None:
        super().__init__()
        if conv.fill is None:
            raise ValueError("only masked convs (built with a fill) have a sparse form")
        square = conv.kernel_size[0] == conv.kernel_size[1]
        if conv.groups != 1 or conv.dilation != (1, 1) or not square:
            raise ValueError("the sparse kernel covers square, ungrouped, undilated convs")
        self.stride = conv.stride[0]
        self.padding = conv.padding[0]
        self.kernel = conv.kernel_size[0]
        self.out_channels = conv.out_channels
        self.relu = relu
        self.register_buffer("weight", pack_weight(conv.weight))
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())
        with torch.no_grad():
            self.register_buffer("taps", fill_taps(*conv.fill.taps()))
        scale = shift = None
        if bn is not None:
            with torch.no_grad():
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                shift = bn.bias - bn.running_mean * scale
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)

    def output_size(self, x: Tensor) -> tuple[int, int]:
        h, w = x.shape[-2:]
        k, s, p = self.kernel, self.stride, self.padding
        return (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1

    def forward(self, x: Tensor, masks: MaskPyramid | None = None,
                residual: Tensor | None = None) -> Tensor:
        ho, wo = self.output_size(x)
        mask = masks.at(ho, wo) if masks is not None else x.new_ones(x.shape[0], 1, ho, wo)
        return masked_conv2d(
            x.contiguous(memory_format=CHANNELS_LAST), self.weight, self.bias,
            mask.contiguous(), self.taps, self.stride, self.padding, self.out_channels,
            self.scale, self.shift,
            None if residual is None else residual.contiguous(memory_format=CHANNELS_LAST),
            self.relu,
        )


class SparseBasicBlock(MaskAware):
    """BasicBlock as two kernel calls: conv1+BN+ReLU, then conv2+BN+residual+ReLU."""

    def __init__(self, block: BasicBlock) -> None:
        super().__init__()
        self.conv1 = SparseConv(block.conv1, block.bn1, relu=True)
        self.conv2 = SparseConv(block.conv2, block.bn2, relu=True)

    def forward(self, x: Tensor, masks: MaskPyramid | None = None) -> Tensor:
        return self.conv2(self.conv1(x, masks), masks, residual=x)


def _fuse_sequence(seq: MaskedSequential) -> None:
    """[MaskedConv2d, BN, ReLU] runs inside a MaskedSequential become [SparseConv, Id, Id]."""
    items = list(seq)
    for i, module in enumerate(items):
        if not isinstance(module, MaskedConv2d) or module.fill is None:
            continue
        after = items[i + 1] if i + 1 < len(items) else None
        bn = after if isinstance(after, nn.BatchNorm2d) else None
        relu = bn is not None and i + 2 < len(items) and isinstance(items[i + 2], nn.ReLU)
        seq[i] = SparseConv(module, bn, relu)
        if bn is not None:
            seq[i + 1] = nn.Identity()
        if relu:
            seq[i + 2] = nn.Identity()


def _convert(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, BasicBlock):
            setattr(module, name, SparseBasicBlock(child))
            continue
        if isinstance(child, MaskedSequential):
            _fuse_sequence(child)
        elif isinstance(child, MaskedConv2d) and child.fill is not None:
            setattr(module, name, SparseConv(child, None, relu=False))
            continue
        _convert(child)


def sparsify(model: ADPCNet) -> ADPCNet:
    """An inference copy of `model` whose masked convs run the native sparse kernel.

    The original is untouched. The copy is for inference only (BN is folded with its running
    statistics; no gradients flow through the kernel).
    """
    if model.config.exits == "none":
        raise ValueError("the plain HRNet has no masked convs: sparse mode needs an ADP-C model")
    sparse = copy.deepcopy(model).eval()
    _convert(sparse)
    for p in sparse.parameters():
        p.requires_grad_(False)
    return sparse


def is_sparse(model: nn.Module) -> bool:
    return any(isinstance(m, SparseConv) for m in model.modules())


class SparseStageGraph(StageGraph):
    """StageGraph of a sparsified model: channels-last inside, NCHW at the boundary."""

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        if self.k > 1:  # features to channels-last once; the mask has one channel
            inputs = (*(t.contiguous(memory_format=CHANNELS_LAST) for t in inputs[:-1]), inputs[-1])
        return tuple(t.contiguous() for t in super().forward(*inputs))
