"""Quantization-aware training of the whole ADP-C forward (torchao pt2e QAT, XNNPACK quantizer).

One QAT model is meant to feed ExecuTorch, TFLite and Core ML (TOOLCHAIN.md, "QAT of masked
convolutions"). The flow: `prepare_qat` (torch.export of `ADPCNet.forward` in train mode with
CA active, then `prepare_qat_pt2e`) -> train with `train.anytime_loss` -> `freeze` to evaluate
in fake-quant -> `convert` (twice: folded Q/DQ for ExecuTorch / Core ML, unfolded for LiteRT).

What the quantizer annotates, and what is kept float on purpose:

- int8 (symmetric per-channel weights, per-tensor affine activations): every conv outside the
  fills (stem, layer1, exit 1 as fused conv+BN(+ReLU) with QAT BN folding; all masked convs as
  plain convs, since their BN follows the fill), residual adds, the concat of the branches.
  Activations are observed where those ops read or write them; avg-pool and bilinear upsampling
  run in float between them.
- `MaskFill` stays float (`set_module_type(MaskFill, None)`): with a per-tensor int8 distance
  table (centre 1e5) every distance rounds to 0, the kernel collapses to a flat box, Lambda's
  gradient is 0 and all three backends fail. The masked conv's *output* is still observed (it
  is the int8 conv's output); the fill then runs in float on its dequantised value, so neither
  the depthwise fill conv nor its kernel generator carries a fake-quant.
- The mask rule stays float by a node filter: without it the quantizer's `mul` pattern catches
  `1.0 / sum(exp(...))` (which traces as `reciprocal(s) * 1.0`) and quantises the confidence
  per tensor to steps of ~1/255 right before the `<= threshold` comparison, which would make a
  0.998 threshold meaningless. Everything between a `detach` (the logits entering
  `compute_mask`) and a comparison is excluded. The other mask arithmetic (`1 - m`, `y * m`,
  the mask slices, `where` of the carry-over, masked fractions) is either inside `MaskFill` or
  an op no pattern covers; `prepare_qat` checks the result and raises if a fake-quant ever
  lands inside these float islands.

Shapes: the batch is always dynamic (a QAT graph exported at one batch fails a guard when
re-exported at batch 1). H and W are dynamic multiples of 32 by default, so a model trained at
one crop evaluates at another size; pass `dynamic_hw=False` for a fixed-size graph.

The threshold is baked into the graph at `prepare_qat` time (from `model.config`): to train or
evaluate at another threshold (or, with a fixed-size graph, at another size), prepare a graph
for it and `restore_qat` the saved state into it. Checkpoints hold the state only, never the
graph (weights-only loading cannot read code): `load_qat` re-exports, which takes as long as
`prepare_qat` (tens of seconds for W18-Small-v2 on one CPU thread).
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.fx import Graph, GraphModule, Node

from .adpc import INPUT_MULTIPLE, ADPCConfig, ADPCNet
from .masking import MaskFill
from .registry import CheckpointError, read_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from torchao.quantization.pt2e.quantizer import QuantizationConfig

QAT_FORMAT = "adpc-qat"
QAT_VERSION = 1
EXPORT_BATCH = 2
"""Example batch for export: 0 and 1 would be specialised and the batch could not stay dynamic."""
SCALE_FLOOR = 2**-12
"""Smallest quantisation scale (the XNNPACK quantizer's eps), in training and in convert."""
MAX_BATCH = 1024
MAX_SIDE = 2048
"""Largest H and W of a dynamic-size QAT graph (full Cityscapes frames are 1024 x 2048)."""
_META_KEY = "adpc_qat"
_TRAINING_ATTR = "_exported_training"  # torchao's flag for the train/eval form of the graph
_COMPARISONS = {
    torch.ops.aten.le.Scalar, torch.ops.aten.le.Tensor, torch.ops.aten.lt.Scalar,
    torch.ops.aten.lt.Tensor, torch.ops.aten.ge.Scalar, torch.ops.aten.ge.Tensor,
    torch.ops.aten.gt.Scalar, torch.ops.aten.gt.Tensor, torch.ops.aten.eq.Scalar,
    torch.ops.aten.eq.Tensor,
}  # fmt: skip
_MASK_RULE_SOURCES = {
    torch.ops.aten.detach.default, torch.ops.aten.detach_.default,  # compute_mask's input
    torch.ops.aten.ones_like.default, torch.ops.aten.zeros_like.default,  # CA off: all-ones
    torch.ops.aten.full_like.default, torch.ops.aten.empty_like.default,
}  # fmt: skip
"""Where the walk back from a comparison stops: the value no longer carries network data."""
_CONVS = {torch.ops.aten.conv2d.default, torch.ops.aten.convolution.default}


def _require() -> None:
    """Fail with an install hint instead of a bare ImportError deep in a call."""
    try:
        import executorch.backends.xnnpack.quantizer.xnnpack_quantizer  # noqa: F401
        import torchao.quantization.pt2e  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"quantization-aware training needs torchao and executorch ({exc}): "
            "pip install 'adpc[executorch]'"
        ) from None


# ------------------------------------------------------------------------- float islands
_MASK_RULE_CACHE: weakref.WeakKeyDictionary[Graph, tuple[int, frozenset[Node]]] = (
    weakref.WeakKeyDictionary()
)


def mask_rule_nodes(graph: Graph) -> frozenset[Node]:
    """The ops computing confidence and masks: every ancestor of a comparison up to a detach.

    `compute_mask` detaches the logits first (with CA off the mask is a `ones_like`), so the
    walk stops there and never reaches the network itself. The comparisons are the mask's
    `<=` and the carry-over's `mask > 0`.
    """
    region: set[Node] = set()
    stack = [n for n in graph.nodes if n.op == "call_function" and n.target in _COMPARISONS]
    while stack:
        node = stack.pop()
        if node in region or node.op != "call_function":
            continue
        region.add(node)
        if node.target not in _MASK_RULE_SOURCES:
            stack.extend(node.all_input_nodes)
    return frozenset(region)


def _cached_mask_rule_nodes(graph: Graph) -> frozenset[Node]:
    size = len(graph.nodes)
    cached = _MASK_RULE_CACHE.get(graph)
    if cached is None or cached[0] != size:  # the graph changed: recompute
        cached = (size, mask_rule_nodes(graph))
        _MASK_RULE_CACHE[graph] = cached
    return cached[1]


def _outside_mask_rule(node: Node) -> bool:
    """Quantizer filter: True where the node may be annotated."""
    return node not in _cached_mask_rule_nodes(node.graph)


def in_mask_fill(node: Node) -> bool:
    """Whether the node was traced inside a MaskFill module."""
    name = f"{MaskFill.__module__}.{MaskFill.__qualname__}"
    for _, module_type in node.meta.get("nn_module_stack", {}).values():
        if module_type is MaskFill or module_type == name:
            return True
    return False


def is_fake_quant(node: Node) -> bool:
    """Whether the node calls an observer / fake-quant module inserted by prepare."""
    if node.op != "call_module":
        return False
    module = node.graph.owning_module.get_submodule(node.target)
    from torchao.quantization.pt2e import FakeQuantizeBase, ObserverBase

    return isinstance(module, FakeQuantizeBase | ObserverBase)


def float_island_violations(gm: GraphModule) -> list[str]:
    """Fake-quants inside the fills or the mask rule (should be none; one line each).

    A fake-quant may observe a network activation that enters an island (the masked conv's
    output, the exit logits), but must never observe a value computed inside one, nor a weight
    or constant that an island reads (the fill's Lambda and distance table).
    """
    islands = mask_rule_nodes(gm.graph) | {n for n in gm.graph.nodes if in_mask_fill(n)}
    problems = []
    for node in gm.graph.nodes:
        if not is_fake_quant(node):
            continue
        source = node.args[0]
        readers = [u for u in node.users if u in islands]
        if source in islands:
            problems.append(f"{node.target} observes {source.name}, computed in a float island")
        elif readers and (source.op != "call_function" or source.target in _COMPARISONS):
            problems.append(f"{node.target} quantises {source.name}, read by {readers[0].name}")
    return problems


# ------------------------------------------------------------------------------ the flow
def _matching_fake_quant(config: QuantizationConfig) -> QuantizationConfig:
    """Swap the fused fake-quants for ones whose scales are the ones `convert` will use.

    The stock QAT config uses `FusedMovingAvgObsFakeQuantize`, whose ATen kernel floors scales
    at 6.1e-5, while `convert_pt2e` takes the observer's qparams, floored at the config's eps
    2^-12 (XNNPACK needs input_scale * weight_scale / output_scale >= 2^-32). A weight channel
    with max |w| < 127 * 2^-12 = 0.031 (common here: the reference init is N(0, 0.001)) was
    then trained with a 4x finer grid than it is deployed with, and the converted model
    disagreed with the fake-quant one. `FakeQuantize` computes its qparams through the same
    observer as `convert` (same moving-average min/max, same eps), so both agree.
    """
    from dataclasses import replace

    from torchao.quantization.pt2e import (
        FakeQuantize,
        MovingAverageMinMaxObserver,
        MovingAveragePerChannelMinMaxObserver,
    )

    act = replace(config.input_activation, observer_or_fake_quant_ctr=FakeQuantize.with_args(
        observer=MovingAverageMinMaxObserver, eps=SCALE_FLOOR))
    weight = replace(config.weight, observer_or_fake_quant_ctr=FakeQuantize.with_args(
        observer=MovingAveragePerChannelMinMaxObserver, eps=SCALE_FLOOR))
    return replace(config, input_activation=act, output_activation=act, weight=weight)


def make_quantizer(is_qat: bool = True) -> XNNPACKQuantizer:
    """XNNPACK int8: symmetric per-channel weights; the fills and the mask rule stay float.

    is_qat=False gives the PTQ variant (histogram observers, for `prepare_pt2e` calibration).
    """
    _require()
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    config = get_symmetric_quantization_config(is_per_channel=True, is_qat=is_qat)
    if is_qat:
        config = _matching_fake_quant(config)
    quantizer = XNNPACKQuantizer()
    quantizer.set_global(config)
    quantizer.set_module_type(MaskFill, None)  # set_module_name(..., None) asserts
    quantizer.set_filter_function(_outside_mask_rule)
    return quantizer


def _dynamic_shapes(dynamic_hw: bool) -> dict[str, dict[int, Any]]:
    from torch.export import Dim

    dims: dict[int, Any] = {0: Dim("batch", min=1, max=MAX_BATCH)}
    if dynamic_hw:
        blocks = MAX_SIDE // INPUT_MULTIPLE
        dims[2] = INPUT_MULTIPLE * Dim("h_blocks", min=1, max=blocks)
        dims[3] = INPUT_MULTIPLE * Dim("w_blocks", min=1, max=blocks)
    return {"x": dims}


def prepare_qat(
    model: ADPCNet, height: int, width: int, dynamic_hw: bool = True
) -> GraphModule:
    """Export the full forward (train mode, CA at `model.config.threshold`) and insert QAT.

    The model is copied first: the returned graph owns its weights and training it leaves
    `model` untouched. Call it like the model, `gm(x)` -> ExitOutputs, and train it with
    `anytime_loss`; use `freeze` / `thaw` instead of `.eval()` / `.train()`.
    height, width: the training size (the export example; with dynamic_hw any multiple of 32
    up to MAX_SIDE also runs).
    """
    _require()
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    if height % INPUT_MULTIPLE or width % INPUT_MULTIPLE or min(height, width) <= 0:
        raise ValueError(f"height and width must be multiples of {INPUT_MULTIPLE}, got "
                         f"{height}x{width}")
    if dynamic_hw and max(height, width) > MAX_SIDE:
        raise ValueError(f"dynamic-size QAT graphs take sides up to {MAX_SIDE}, got "
                         f"{height}x{width}")
    float_model = copy.deepcopy(model).train()
    device = next(float_model.parameters()).device
    example = torch.zeros(EXPORT_BATCH, 3, height, width, device=device)
    exported = torch.export.export(
        float_model, (example,), dynamic_shapes=_dynamic_shapes(dynamic_hw)
    )
    graph_module = exported.module()
    escaped = [n for n in mask_rule_nodes(graph_module.graph) if n.target in _CONVS]
    if escaped:  # the walk from a comparison did not stop at the detach: the model changed
        raise RuntimeError(f"the mask rule reaches {escaped[0].name}: compute_mask must detach "
                           "its logits so the quantizer can tell the mask rule from the network")
    gm = prepare_qat_pt2e(graph_module, make_quantizer(is_qat=True))
    problems = float_island_violations(gm)
    if problems:
        raise RuntimeError(f"the quantizer put {len(problems)} fake-quant(s) into the float "
                           f"fills / mask rule, first: {problems[0]}")
    gm.meta[_META_KEY] = {
        "model_config": model.config.to_dict(), "height": height, "width": width,
        "dynamic_hw": dynamic_hw,
    }
    return gm


def freeze(gm: GraphModule) -> GraphModule:
    """Evaluation form, in place: BN uses running stats and observers stop updating.

    `move_exported_model_to_eval` alone leaves observers running (TOOLCHAIN.md, QAT step 3),
    so every evaluation batch would still move the quantisation ranges.
    """
    _require()
    from torchao.quantization.pt2e import disable_observer, move_exported_model_to_eval

    move_exported_model_to_eval(gm)
    gm.apply(disable_observer)
    return gm


def thaw(gm: GraphModule) -> GraphModule:
    """Back to the training form after `freeze`, in place: batch BN stats, observers on."""
    _require()
    from torchao.quantization.pt2e import enable_observer, move_exported_model_to_train

    move_exported_model_to_train(gm)
    gm.apply(enable_observer)
    return gm


def is_training(gm: GraphModule) -> bool:
    """Whether the graph is in its training form (batch-statistics BN)."""
    return bool(getattr(gm, _TRAINING_ATTR, True))


def convert(gm: GraphModule, fold_quantize: bool = True) -> GraphModule:
    """The int8 Q/DQ graph of a frozen copy; `gm` itself stays trainable.

    fold_quantize=True (weights stored as int8) feeds ExecuTorch and Core ML; False (float
    weights followed by Q/DQ) is what LiteRT's converter wants. Use the converted graph, not
    the fake-quant one, as the parity reference for exported programs: convert folds BN into
    the stem / layer1 / exit-1 weights before quantising them, which moves a few roundings.
    """
    _require()
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    frozen = freeze(copy.deepcopy(gm))
    return convert_pt2e(frozen, fold_quantize=fold_quantize)


# --------------------------------------------------------------------------- checkpoints
def _check_plain(value: object, where: str = "extra") -> None:
    """Only what `torch.load(weights_only=True)` reads back: tensors and plain containers."""
    if value is None or isinstance(value, bool | int | float | str | Tensor):
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where} has a non-string key {key!r}")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise ValueError(f"{where} holds a {type(value).__name__}: only tensors, numbers, strings "
                     "and lists/dicts of them can be loaded with weights_only=True")


def save_qat(
    path: str | Path,
    gm: GraphModule,
    model_config: ADPCConfig,
    height: int,
    width: int,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a QAT checkpoint atomically: enough to rebuild the graph, plus its state.

    The graph itself is not pickled (weights-only loading cannot read code); `load_qat`
    re-exports ADPCNet(model_config) at height x width and loads the state into it.
    """
    meta = gm.meta.get(_META_KEY)
    if meta is None:
        raise ValueError("not a graph from prepare_qat (no adpc_qat metadata)")
    given = {"model_config": model_config.to_dict(), "height": height, "width": width}
    for key, value in given.items():
        if meta[key] != value:
            raise ValueError(f"save_qat: {key}={value!r} differs from the graph's "
                             f"{meta[key]!r} (prepare_qat was called with that)")
    extra = dict(extra or {})
    _check_plain(extra)
    payload = {
        "format": QAT_FORMAT,
        "version": QAT_VERSION,
        "model_config": {k: list(v) if isinstance(v, tuple) else v
                         for k, v in meta["model_config"].items()},
        "height": height,
        "width": width,
        "dynamic_hw": bool(meta["dynamic_hw"]),
        "training": is_training(gm),
        "state": gm.state_dict(),
        "extra": extra,
    }
    return save_checkpoint(payload, path)


_STRUCTURE = ("backbone", "num_classes", "exits", "head_channels", "fill_window")
"""Config keys that shape the weights; threshold and input size may differ on restore."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def read_qat(path: str | Path) -> dict[str, Any]:
    """Read and check a `save_qat` file without rebuilding the graph (e.g. for `extra`)."""
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, Mapping) or ckpt.get("format") != QAT_FORMAT:
        raise CheckpointError(f"{path} is not an adpc QAT checkpoint (written by save_qat)")
    if ckpt.get("version") != QAT_VERSION:
        raise CheckpointError(f"{path} is QAT checkpoint version {ckpt.get('version')!r}; this "
                              f"adpc reads version {QAT_VERSION}")
    missing = [k for k in ("model_config", "height", "width", "dynamic_hw", "training", "state")
               if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}: the file is incomplete")
    if not isinstance(ckpt["model_config"], Mapping) or not isinstance(ckpt["state"], Mapping):
        raise CheckpointError(f"{path}: model_config and state must be dictionaries")
    return dict(ckpt)


def restore_qat(
    gm: GraphModule, ckpt: Mapping[str, Any], path: str | Path = "checkpoint"
) -> GraphModule:
    """Load a `read_qat` state into a graph from `prepare_qat`, in place, mode included.

    The graph may have been prepared at another size or threshold (that is how to evaluate a
    static-size QAT model elsewhere); the weight-shaping config must match.
    """
    _require()
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

    meta = gm.meta.get(_META_KEY)
    if meta is not None:
        saved, mine = ckpt["model_config"], meta["model_config"]
        for key in _STRUCTURE:
            if saved.get(key) != mine.get(key):
                raise CheckpointError(f"{path} holds a model with {key}={saved.get(key)!r}; "
                                      f"this graph has {key}={mine.get(key)!r}")
    own, theirs = set(gm.state_dict()), set(ckpt["state"])
    if own != theirs:  # checked before the mode changes: a failed restore leaves gm as it was
        odd = sorted(own - theirs)[:1] or sorted(theirs - own)[:1]
        raise CheckpointError(f"{path}: the QAT state does not fit the graph ({len(own - theirs)} "
                              f"key(s) missing, {len(theirs - own)} unexpected, e.g. {odd[0]!r})")
    if ckpt["training"]:
        move_exported_model_to_train(gm)
    else:
        move_exported_model_to_eval(gm)
    try:
        gm.load_state_dict(ckpt["state"], strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: the QAT state does not fit the graph "
                              f"({_first_line(exc)})") from None
    return gm


def load_qat(path: str | Path) -> GraphModule:
    """Rebuild a QAT graph from `save_qat`; it evaluates bit-identically to the saved one.

    Re-exports ADPCNet(model_config) at the stored size (tens of seconds, like prepare_qat)
    and restores the state. The mode travels with it: a frozen graph comes back frozen (the
    observer switches are part of the state), a training one in training form. Bad files raise
    a one-line CheckpointError.
    """
    ckpt = read_qat(path)
    try:
        config = ADPCConfig(**dict(ckpt["model_config"]))
        height, width = int(ckpt["height"]), int(ckpt["width"])
        gm = prepare_qat(ADPCNet(config), height, width, dynamic_hw=bool(ckpt["dynamic_hw"]))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has an unusable model_config or size: "
                              f"{_first_line(exc)}") from None
    return restore_qat(gm, ckpt, path)


__all__ = [
    "QAT_FORMAT",
    "convert",
    "float_island_violations",
    "freeze",
    "in_mask_fill",
    "is_fake_quant",
    "is_training",
    "load_qat",
    "make_quantizer",
    "mask_rule_nodes",
    "prepare_qat",
    "read_qat",
    "restore_qat",
    "save_qat",
    "thaw",
]
