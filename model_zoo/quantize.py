"""Stage-wise int8 quantization (torchao pt2e, XNNPACK quantizer): QAT, PTQ and convert.

The unit of quantization is the stage graph of the stage contract (BLUEPRINT.md): each of the
four stages is exported and prepared on its own, and `QuantizedADPC` chains them with the host
step in float between them, exactly like `ADPCNet.forward` (both mix in `AnytimeChain`). So one
QAT model feeds ExecuTorch, TFLite and Core ML stage by stage, the threshold is a run-time
choice (the mask rule runs on the host, never inside a graph), and what converters export is
literally what was trained.

The flow: `prepare_qat` (export each stage in train mode, `prepare_qat_pt2e`) -> train with
`train.anytime_loss` like any module (`.train()` / `.eval()` switch BN and the observers) ->
`convert` (twice: folded Q/DQ for ExecuTorch / Core ML, unfolded for LiteRT). Without a QAT
model, `prepare_ptq` + `calibrate` give post-training quantization of a float model.

What the quantizer annotates, and what is kept float on purpose:

- int8 (symmetric per-channel weights, per-tensor affine activations): every conv outside the
  fills (stem, layer1, exit 1 as fused conv+BN(+ReLU) with QAT BN folding; all masked convs as
  plain convs, since their BN follows the fill), residual adds, the concat of the branches.
  Activations are observed where those ops read or write them; avg-pool and bilinear upsampling
  run in float between them.
- `MaskFill` stays float (`set_module_type(MaskFill, None)`): with a per-tensor int8 fill
  kernel every weight rounds to one step, the RBF collapses to a flat box, Lambda's gradient is
  0 and all three backends fail (TOOLCHAIN.md). The masked conv's *output* is still observed
  (it is the int8 conv's output); the fill then runs in float on its dequantised value.
- The mask is a float graph input (0/1) that only slices and fills read; confidence, the
  comparison and carry-over are host work outside every graph.

Shapes: the batch is always dynamic (a QAT graph exported at one batch fails a guard when
re-exported at batch 1). H and W are dynamic multiples of 32 by default, so a model trained at
one crop evaluates at another size; pass `dynamic_hw=False` for fixed-size graphs.

Checkpoints hold the state only, never the graphs (weights-only loading cannot read code):
`load_qat` re-exports, which takes as long as `prepare_qat` (tens of seconds on one thread).
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.fx import GraphModule, Node

from .adpc import (
    INPUT_MULTIPLE,
    NUM_STAGES,
    ADPCConfig,
    ADPCNet,
    AnytimeChain,
    check_input_size,
    state_shapes,
)
from .masking import MaskFill
from .registry import CheckpointError, read_checkpoint, save_checkpoint
from .stage_graph import StageGraph, run_flat_stage, stage_examples

if TYPE_CHECKING:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from torchao.quantization.pt2e.quantizer import QuantizationConfig

QAT_FORMAT = "adpc-qat"
QAT_VERSION = 2
MODES = ("qat", "ptq", "int8")
EXPORT_BATCH = 2
"""Example batch for export: 0 and 1 would be specialised and the batch could not stay dynamic."""
SCALE_FLOOR = 2**-12
"""Smallest quantisation scale (the XNNPACK quantizer's eps), in training and in convert."""
MAX_BATCH = 1024
MAX_SIDE = 2048
"""Largest H and W of a dynamic-size graph (full Cityscapes frames are 1024 x 2048)."""
_CONVS = {torch.ops.aten.conv2d.default, torch.ops.aten.convolution.default}
_SLICES = {torch.ops.aten.slice.Tensor, torch.ops.aten.alias.default}


def _require() -> None:
    """Fail with an install hint instead of a bare ImportError deep in a call."""
    try:
        import executorch.backends.xnnpack.quantizer.xnnpack_quantizer  # noqa: F401
        import torchao.quantization.pt2e  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"int8 quantization needs torchao and executorch ({exc}): "
            "pip install 'adpc[executorch]'"
        ) from None


# ------------------------------------------------------------------------- float islands
def in_mask_fill(node: Node) -> bool:
    """Whether the node was traced inside a MaskFill module."""
    name = f"{MaskFill.__module__}.{MaskFill.__qualname__}"
    for _, module_type in node.meta.get("nn_module_stack", {}).values():
        if module_type is MaskFill or module_type == name:
            return True
    return False


def mask_nodes(gm: GraphModule) -> frozenset[Node]:
    """The mask input and its strided slices (a stage's last input, from stage 2 on)."""
    inputs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(inputs) < 2:
        return frozenset()
    region, stack = set(), [inputs[-1]]
    while stack:
        node = stack.pop()
        if node in region:
            continue
        region.add(node)
        stack.extend(u for u in node.users if u.op == "call_function" and u.target in _SLICES)
    return frozenset(region)


def is_fake_quant(node: Node) -> bool:
    """Whether the node calls an observer / fake-quant module inserted by prepare."""
    if node.op != "call_module":
        return False
    module = node.graph.owning_module.get_submodule(node.target)
    from torchao.quantization.pt2e import FakeQuantizeBase, ObserverBase

    return isinstance(module, FakeQuantizeBase | ObserverBase)


def float_island_violations(gm: GraphModule) -> list[str]:
    """Fake-quants inside the fills or on the mask (should be none; one line each).

    A fake-quant may observe the masked conv's output entering a fill, but never a value
    computed inside one, the fill's Lambda, or the mask.
    """
    islands = mask_nodes(gm) | {n for n in gm.graph.nodes if in_mask_fill(n)}
    problems = []
    for node in gm.graph.nodes:
        if not is_fake_quant(node):
            continue
        source = node.args[0]
        if source in islands:
            problems.append(f"{node.target} observes {source.name}, a float fill or mask value")
        elif source.op != "call_function" and any(u in islands for u in node.users):
            problems.append(f"{node.target} quantises {source.name}, read by a fill")
    return problems


# ------------------------------------------------------------------------------ quantizer
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
    """XNNPACK int8: symmetric per-channel weights; the fills stay float.

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
    return quantizer



# ---------------------------------------------------------------------------- the model
class QuantizedADPC(AnytimeChain, nn.Module):
    """The four quantized stage graphs of an ADP-C model, chained like `ADPCNet.forward`.

    mode: "qat" (fake-quant, trainable), "ptq" (observers, calibrated by `calibrate`) or
    "int8" (from `convert`: Q/DQ graphs, the parity reference for exported programs).
    `.train()` / `.eval()` switch BN between batch and running statistics and turn the
    observers on and off (eval alone would leave them running, TOOLCHAIN.md QAT step 3).
    """

    def __init__(
        self,
        graphs: Sequence[GraphModule],
        config: ADPCConfig,
        height: int,
        width: int,
        dynamic_hw: bool,
        mode: str,
    ) -> None:
        super().__init__()
        if len(graphs) != NUM_STAGES or mode not in MODES:
            raise ValueError(f"need {NUM_STAGES} stage graphs and a mode in {MODES}")
        self.graphs = nn.ModuleList(graphs)
        self.config = config
        self.height, self.width, self.dynamic_hw, self.mode = height, width, dynamic_hw, mode
        self.training = False

    def run_stage(
        self, k: int, state: Tensor | list[Tensor], mask: Tensor | None = None
    ) -> tuple[list[Tensor] | None, Tensor | None]:
        return run_flat_stage(self.graphs[k - 1], k, state, mask)

    def train(self, mode: bool = True) -> QuantizedADPC:
        _require()
        from torchao.quantization.pt2e import (
            disable_observer,
            enable_observer,
            move_exported_model_to_eval,
            move_exported_model_to_train,
        )

        for graph in self.graphs:
            (move_exported_model_to_train if mode else move_exported_model_to_eval)(graph)
            graph.apply(enable_observer if mode and self.mode == "qat" else disable_observer)
        self.training = mode
        return self

    def stage_graph(self, k: int) -> GraphModule:
        return self.graphs[k - 1]


def _dynamic_shapes(config: ADPCConfig, k: int, dynamic_hw: bool) -> dict[str, tuple]:
    """Dynamic dims of stage k's inputs: batch, and H/W as multiples of 32 (tied across maps)."""
    from torch.export import Dim

    batch = Dim("batch", min=1, max=MAX_BATCH)
    blocks = MAX_SIDE // INPUT_MULTIPLE
    hb, wb = Dim("h_blocks", min=1, max=blocks), Dim("w_blocks", min=1, max=blocks)

    def dims(factor: int) -> dict[int, Any]:
        return {0: batch, 2: factor * hb, 3: factor * wb} if dynamic_hw else {0: batch}

    if k == 1:
        return {"inputs": (dims(INPUT_MULTIPLE),)}
    n_branches = len(state_shapes(config, k - 1, INPUT_MULTIPLE * 2, INPUT_MULTIPLE * 2))
    quarter = INPUT_MULTIPLE // 4
    return {"inputs": (*(dims(quarter >> i) for i in range(n_branches)), dims(quarter))}


def _prepare(
    model: ADPCNet, height: int, width: int, dynamic_hw: bool, qat: bool
) -> QuantizedADPC:
    _require()
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e, prepare_qat_pt2e

    check_input_size(height, width)
    if dynamic_hw and max(height, width) > MAX_SIDE:
        raise ValueError(f"dynamic-size graphs take sides up to {MAX_SIDE}, got {height}x{width}")
    if dynamic_hw and min(height, width) < 2 * INPUT_MULTIPLE:
        raise ValueError(f"dynamic-size graphs need an example of at least {2 * INPUT_MULTIPLE} "
                         f"px per side (smaller sizes specialise), got {height}x{width}")
    if model.config.exits == "none":
        raise ValueError("the plain HRNet has no stages to quantize separately")
    float_model = copy.deepcopy(model).train(qat)
    device = next(float_model.parameters()).device
    quantizer = make_quantizer(is_qat=qat)
    graphs = []
    for k in range(1, NUM_STAGES + 1):
        example = tuple(t.to(device) for t in stage_examples(
            model.config, k, height, width, EXPORT_BATCH))
        exported = torch.export.export(
            StageGraph(float_model, k), example,
            dynamic_shapes=_dynamic_shapes(model.config, k, dynamic_hw),
        )
        gm = (prepare_qat_pt2e if qat else prepare_pt2e)(exported.module(), quantizer)
        problems = float_island_violations(gm)
        if problems:
            raise RuntimeError(f"the quantizer put {len(problems)} fake-quant(s) into the float "
                               f"fills / mask of stage {k}, first: {problems[0]}")
        graphs.append(gm)
    q = QuantizedADPC(graphs, model.config, height, width, dynamic_hw, "qat" if qat else "ptq")
    return q.train(qat)


def prepare_qat(
    model: ADPCNet, height: int, width: int, dynamic_hw: bool = True
) -> QuantizedADPC:
    """Export every stage in train mode and insert QAT fake-quants; returns a training model.

    The model is copied first: training the result leaves `model` untouched. Call it like the
    model, `q(x)` -> ExitOutputs, and train it with `anytime_loss`. height, width: the
    training size (the export example; with dynamic_hw any multiple of 32 up to MAX_SIDE runs).
    """
    return _prepare(model, height, width, dynamic_hw, qat=True)


def prepare_ptq(
    model: ADPCNet, height: int, width: int, dynamic_hw: bool = False
) -> QuantizedADPC:
    """Export every stage in eval mode with PTQ observers; `calibrate` it, then `convert`."""
    return _prepare(model, height, width, dynamic_hw, qat=False)


def calibrate(
    q: QuantizedADPC, images: Iterable[Tensor], threshold: float | None | str = "config"
) -> QuantizedADPC:
    """Run images through the chain with observers on (eval-mode BN); leaves them off."""
    from torchao.quantization.pt2e import disable_observer, enable_observer

    q.eval()
    for graph in q.graphs:
        graph.apply(enable_observer)
    try:
        with torch.no_grad():
            for batch in images:
                q(batch, threshold=threshold)
    finally:
        for graph in q.graphs:
            graph.apply(disable_observer)
    return q


def freeze(q: QuantizedADPC) -> QuantizedADPC:
    """Evaluation form, in place (same as `q.eval()`): running BN stats, observers off."""
    return q.eval()


def thaw(q: QuantizedADPC) -> QuantizedADPC:
    """Training form, in place (same as `q.train()`): batch BN stats, QAT observers on."""
    return q.train()


def is_training(q: QuantizedADPC) -> bool:
    return bool(q.training)


@contextlib.contextmanager
def _patterns_exported_once():
    """While converting: torchao's QAT conv-BN folding exports the same 24 small pattern
    graphs again for every graph it converts (~10 s each time on one core); export each once,
    and skip the search in graphs without a fused conv-BN pair.

    Keyed by the pattern function's code and closure and the example inputs' shapes; every
    caller gets its own copy (the matcher must not see another caller's edits).
    """
    from torchao.quantization.pt2e import qat_utils

    original = qat_utils._get_aten_graph_module_for_pattern
    cache: dict = {}

    def describe(value: object) -> object:
        if isinstance(value, Tensor):
            return ("tensor", tuple(value.shape), value.dtype)
        return value

    def exported_once(pattern, example_inputs, is_cuda=False, **kwargs):
        try:
            key = (pattern.__code__, tuple(describe(c.cell_contents)
                                           for c in pattern.__closure__ or ()),
                   tuple(describe(x) for x in example_inputs), is_cuda,
                   tuple(sorted((k, describe(v)) for k, v in kwargs.items())))
            hash(key)
        except (AttributeError, TypeError, ValueError):  # not a plain function: no cache
            return original(pattern, example_inputs, is_cuda, **kwargs)
        if key not in cache:
            cache[key] = original(pattern, example_inputs, is_cuda, **kwargs)
        return copy.deepcopy(cache[key])

    replace = qat_utils.replace_pattern_with_filters

    def replace_where_fused(m: GraphModule, *args, **kwargs):
        # QAT conv-BN fusion divides the conv output by the BN scale: without such a division
        # there is no fused pair to fold (the masked stages, whose BN follows the fill), so
        # skip the subgraph search; every other step of the folding runs as it would
        if not any(n.target == torch.ops.aten.div.Tensor and isinstance(n.args[0], Node)
                   and n.args[0].target in _CONVS for n in m.graph.nodes):
            return []
        return replace(m, *args, **kwargs)

    qat_utils._get_aten_graph_module_for_pattern = exported_once
    qat_utils.replace_pattern_with_filters = replace_where_fused
    try:
        yield
    finally:
        qat_utils._get_aten_graph_module_for_pattern = original
        qat_utils.replace_pattern_with_filters = replace


def convert(q: QuantizedADPC, fold_quantize: bool = True) -> QuantizedADPC:
    """The int8 Q/DQ stage graphs of a frozen copy; `q` itself stays as it is.

    fold_quantize=True (weights stored as int8) feeds ExecuTorch and Core ML; False (float
    weights followed by Q/DQ) is what LiteRT's converter wants. Use the converted model, not
    the fake-quant one, as the parity reference for exported programs: convert folds BN into
    the stem / layer1 / exit-1 weights before quantising them, which moves a few roundings.
    """
    _require()
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    if q.mode == "int8":
        raise ValueError("this model is already converted")
    with warnings.catch_warnings():  # torch warns per node when copying exported graphs
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        frozen = copy.deepcopy(q).eval()
    with _patterns_exported_once():
        graphs = [convert_pt2e(g, fold_quantize=fold_quantize) for g in frozen.graphs]
    return QuantizedADPC(graphs, q.config, q.height, q.width, q.dynamic_hw, "int8").eval()


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


def save_qat(path: str | Path, q: QuantizedADPC, extra: Mapping[str, Any] | None = None) -> Path:
    """Write a QAT / PTQ checkpoint atomically: enough to rebuild the graphs, plus their state.

    The graphs themselves are not pickled (weights-only loading cannot read code); `load_qat`
    re-exports ADPCNet(config) at the stored size and loads the state into it.
    """
    if not isinstance(q, QuantizedADPC) or q.mode == "int8":
        raise ValueError("save_qat takes a model from prepare_qat or prepare_ptq (convert "
                         "again after loading instead of saving an int8 graph)")
    extra = dict(extra or {})
    _check_plain(extra)
    payload = {
        "format": QAT_FORMAT,
        "version": QAT_VERSION,
        "mode": q.mode,
        "model_config": {k: list(v) if isinstance(v, tuple) else v
                         for k, v in q.config.to_dict().items()},
        "height": q.height,
        "width": q.width,
        "dynamic_hw": bool(q.dynamic_hw),
        "training": is_training(q),
        "state": q.state_dict(),
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
    missing = [k for k in ("mode", "model_config", "height", "width", "dynamic_hw",
                                  "training", "state")
               if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}: the file is incomplete")
    if ckpt["mode"] not in ("qat", "ptq"):
        raise CheckpointError(f"{path}: mode must be qat or ptq, got {ckpt['mode']!r}")
    if not isinstance(ckpt["model_config"], Mapping) or not isinstance(ckpt["state"], Mapping):
        raise CheckpointError(f"{path}: model_config and state must be dictionaries")
    return dict(ckpt)


def restore_qat(
    q: QuantizedADPC, ckpt: Mapping[str, Any], path: str | Path = "checkpoint"
) -> QuantizedADPC:
    """Load a `read_qat` state into a model from `prepare_qat`, in place, mode included.

    The model may have been prepared at another size (that is how to evaluate a static-size
    model elsewhere); the weight-shaping config and the mode must match.
    """
    saved, mine = ckpt["model_config"], q.config.to_dict()
    for key in _STRUCTURE:
        if saved.get(key) != mine.get(key):
            raise CheckpointError(f"{path} holds a model with {key}={saved.get(key)!r}; "
                                  f"this one has {key}={mine.get(key)!r}")
    if ckpt["mode"] != q.mode:
        raise CheckpointError(f"{path} holds a {ckpt['mode']} model; this one is {q.mode}")
    own, theirs = set(q.state_dict()), set(ckpt["state"])
    if own != theirs:  # checked before the mode changes: a failed restore leaves q as it was
        odd = sorted(own - theirs)[:1] or sorted(theirs - own)[:1]
        raise CheckpointError(f"{path}: the QAT state does not fit the graphs ({len(own - theirs)}"
                              f" key(s) missing, {len(theirs - own)} unexpected, e.g. {odd[0]!r})")
    try:
        q.load_state_dict(ckpt["state"], strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: the QAT state does not fit the graphs "
                              f"({_first_line(exc)})") from None
    return q.train(bool(ckpt["training"]))


def load_qat(path: str | Path, threshold: float | None | str = "saved",
             size: tuple[int, int] | None = None) -> QuantizedADPC:
    """Rebuild a model from `save_qat`; it evaluates bit-identically to the saved one.

    Re-exports ADPCNet(config) at the stored size (tens of seconds, like prepare_qat) and
    restores the state and the train/eval form. threshold overrides the stored CA threshold
    (it is host work, so any value works without re-exporting). size: prepare static graphs
    at this (height, width) instead (3x faster to build; what a conversion at one size needs).
    Bad files raise a one-line CheckpointError.
    """
    ckpt = read_qat(path)
    try:
        values = dict(ckpt["model_config"])
        if threshold != "saved":
            values["threshold"] = threshold
        config = ADPCConfig(**{k: tuple(v) if isinstance(v, list) else v
                               for k, v in values.items()})
        height, width = size if size is not None else (int(ckpt["height"]), int(ckpt["width"]))
        q = _prepare(ADPCNet(config), height, width, size is None and bool(ckpt["dynamic_hw"]),
                     qat=ckpt["mode"] == "qat")
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has an unusable model_config or size: "
                              f"{_first_line(exc)}") from None
    return restore_qat(q, ckpt, path)


__all__ = [
    "QAT_FORMAT",
    "QuantizedADPC",
    "calibrate",
    "convert",
    "float_island_violations",
    "freeze",
    "in_mask_fill",
    "is_fake_quant",
    "is_training",
    "load_qat",
    "make_quantizer",
    "mask_nodes",
    "prepare_ptq",
    "prepare_qat",
    "read_qat",
    "restore_qat",
    "save_qat",
    "thaw",
]
