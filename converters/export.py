"""The export flow every backend shares: each step a function from one artefact to the next.

    load_source(checkpoint | shipped)          -> Source   (float model, QAT model if any)
    stage_set(source, precision, size)         -> StageSet (flat-contract module per stage,
                                                            the PyTorch reference chain)
    export_stage(stage_set, k, folded)         -> torch.export.ExportedProgram (batch 1, fixed
                                                            size, fill kernels folded to constants)

Backends (converters/executorch.py, tflite.py, coreml.py) start from the ExportedPrograms (or
the stage modules, where their converter wants a module) and write files; `converters.bundle`
puts the files and the manifest together; `converters.verify` runs them against the reference.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from edge.bundle import BundleFile
from model_zoo.adpc import NUM_STAGES, ADPCConfig, ADPCNet, AnytimeChain
from model_zoo.registry import (
    DEFAULT_WEIGHTS,
    WEIGHTS_DIR,
    CheckpointError,
    create_model,
    load_trained,
    read_checkpoint,
)
from model_zoo.stage_graph import StageGraph, stage_examples

from .stages import StageIO, stage_io

PRECISIONS = ("fp32", "int8")
CALIBRATION_IMAGES = 16
"""Synthetic validation scenes for PTQ calibration when no QAT model exists."""


class ExportError(RuntimeError):
    """A conversion step failed; the message names the stage and the fix."""


@dataclass
class BackendFiles:
    """What one backend's converter produced for a StageSet (files in a work folder)."""

    backend: str
    precision: str  # the precision of the files: fp32 | fp16 | int8
    files: dict[str, BundleFile]  # bundle-relative name -> file to copy into the bundle
    report: list[dict] = field(default_factory=list)  # one dict per stage (ops, delegation)
    notes: list[str] = field(default_factory=list)  # what the user must know (e.g. macOS)


@dataclass
class Source:
    """What a conversion starts from: the float model and, when there is one, its QAT model."""

    float_model: ADPCNet | None
    qat_path: Path | None  # a qat.pt from `adpc train --qat`
    checkpoint: Path | None  # the file the float model came from (None: built in memory)


def shipped_qat_path(name: str = "w18_small_v2") -> Path | None:
    """The shipped QAT checkpoint next to the float weights, if it exists."""
    if name not in DEFAULT_WEIGHTS:
        return None
    path = WEIGHTS_DIR / DEFAULT_WEIGHTS[name].replace(".pt", "_qat.pt")
    return path if path.is_file() else None


def load_source(checkpoint: str | Path | None) -> Source:
    """A training / packed checkpoint, a qat.pt, or (None) the shipped model and its QAT twin."""
    if checkpoint is None:
        model = create_model("w18_small_v2", pretrained=True)
        path = WEIGHTS_DIR / DEFAULT_WEIGHTS["w18_small_v2"]
        return Source(model.eval(), shipped_qat_path(), path)
    path = Path(checkpoint)
    ckpt = read_checkpoint(path)
    if isinstance(ckpt, dict) and ckpt.get("format") == "adpc-qat":
        return Source(None, path, path)
    return Source(load_trained(path).eval(), None, path)


@dataclass
class StageSet:
    """Per stage, a module with the StageGraph contract, plus the reference it must match.

    modules: fp32 StageGraphs, or int8 Q/DQ graphs with int8-folded weights (ExecuTorch,
    Core ML); `unfolded`: int8 graphs with float weights + Q/DQ (LiteRT), None for fp32.
    reference: the PyTorch chain whose exits the converted files must reproduce (the float
    model, or the converted int8 model: TOOLCHAIN.md QAT step 4).
    """

    config: ADPCConfig
    height: int
    width: int
    precision: str
    modules: list[nn.Module]
    quantized: object | None  # the QuantizedADPC the int8 graphs came from (None for fp32)
    reference: AnytimeChain
    quantized_from: str | None  # "qat" | "ptq" | None
    sparse: bool = False  # masked convs run the native sparse kernel (model_zoo.sparse/qsparse)
    _unfolded: list[nn.Module] | None = field(default=None, repr=False)

    @property
    def unfolded(self) -> list[nn.Module] | None:
        """int8 graphs with float weights + Q/DQ (what LiteRT wants), converted on first use."""
        if self.quantized is None:
            return None
        if self._unfolded is None:
            from model_zoo.quantize import convert

            self._unfolded = list(convert(self.quantized, fold_quantize=False).graphs)
        return self._unfolded

    @property
    def io(self) -> list[StageIO]:
        return stage_io(self.config, self.height, self.width)

    def example(self, k: int) -> tuple[Tensor, ...]:
        """Batch-1 example inputs of stage k (zeros; an all-ones mask)."""
        return stage_examples(self.config, k, self.height, self.width, batch=1)


def calibration_images(height: int, width: int, count: int = CALIBRATION_IMAGES) -> list[Tensor]:
    """Synthetic validation scenes (fixed seeds) at the bundle size, normalised, batch 1."""
    from model_zoo.data.sources import build_source
    from model_zoo.data.transforms import eval_transform

    source = build_source("synthetic", "val", (height, width), length=count)
    return [eval_transform(*source[i])[0][None] for i in range(min(count, len(source)))]


def stage_set(
    source: Source, precision: str, height: int, width: int, sparse: bool = False
) -> StageSet:
    """The stage modules of one precision at one size (int8: QAT when present, else PTQ).

    sparse=True: stages whose masked convs run the native sparse kernel (fp32: model_zoo.sparse;
    int8: the quantized chains fused at export, model_zoo.qsparse); their reference is still
    the dense-masked model of the same precision (the kernel must reproduce it).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    float_model = source.float_model
    if precision == "fp32":
        if float_model is None:
            raise CheckpointError(f"{source.qat_path} is a QAT checkpoint: fp32 conversion needs "
                                  "the float checkpoint it was fine-tuned from")
        model = copy.deepcopy(float_model).eval()
        if sparse:
            from model_zoo.sparse import SparseStageGraph, sparsify

            fast = sparsify(model)
            modules = [SparseStageGraph(fast, k).eval() for k in range(1, NUM_STAGES + 1)]
        else:
            modules = [StageGraph(model, k).eval() for k in range(1, NUM_STAGES + 1)]
        return StageSet(model.config, height, width, "fp32", list(modules), None, model, None,
                        sparse)
    from model_zoo.quantize import calibrate, convert, load_qat, prepare_ptq

    if source.qat_path is not None:  # prepared at the bundle size: static graphs export faster
        q = load_qat(source.qat_path, size=(height, width)).eval()
        if float_model is not None:  # convert at the float model's threshold
            q.config = float_model.config
        kind = "qat"
    else:
        assert float_model is not None
        q = calibrate(prepare_ptq(float_model, height, width), calibration_images(height, width))
        kind = "ptq"
    folded = convert(q)
    return StageSet(q.config, height, width, "int8", list(folded.graphs), q, folded, kind,
                    sparse)


def _is_qdq(node: torch.fx.Node) -> bool:
    return "quantize" in str(node.target)  # quantize_per_* and dequantize_per_*


def fold_constants(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Fold the fill kernels (computed from Lambda) into contiguous constants, in place.

    Without it every fill recomputes exp/sum in portable ops at run time; Q/DQ ops stay (the
    backends pattern-match them). A stride-0 expanded constant silently lost 3e-3 in LiteRT.
    """
    from torchao.quantization.pt2e.constant_fold import constant_fold

    with torch.no_grad():
        constant_fold(gm, constraint_fn=lambda node: not _is_qdq(node))
    for node in gm.graph.find_nodes(op="get_attr"):
        value = getattr(gm, node.target, None)
        if isinstance(value, Tensor) and not value.is_contiguous():
            setattr(gm, node.target, value.contiguous())
    gm.recompile()
    return gm


def _quiet_copy(module: nn.Module) -> nn.Module:
    """deepcopy of an exported graph without torch's per-node LeafSpec FutureWarning flood."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        return copy.deepcopy(module)


def _int8_sparse_graph(gm: torch.fx.GraphModule, k: int, example: tuple[Tensor, ...]
                       ) -> tuple[Tensor, ...]:
    """Fuse the masked conv chains and run NHWC from the input on; feature inputs become the
    int8 tensors the previous stage hands over. Returns the example the new graph takes."""
    from model_zoo.qsparse import channels_last_inputs, fuse_masked_convs, int8_feature_inputs

    if k > 1:
        fuse_masked_convs(gm)
    channels_last_inputs(gm)
    params = int8_feature_inputs(gm)
    return tuple(
        x if q is None else torch.zeros_like(x, dtype=torch.int8).contiguous(
            memory_format=torch.channels_last)
        for x, q in zip(example, params, strict=True))


def program_example(program: torch.export.ExportedProgram) -> tuple[Tensor, ...]:
    """Zero inputs of the dtypes, shapes and layouts an exported program takes."""
    user = set(program.graph_signature.user_inputs)
    values = [n.meta["val"] for n in program.graph.nodes
              if n.op == "placeholder" and n.name in user]
    return tuple(torch.empty_strided(v.shape, v.stride(), dtype=v.dtype).zero_() for v in values)


def export_stage(stages: StageSet, k: int, folded: bool = True) -> torch.export.ExportedProgram:
    """Stage k as an ExportedProgram at batch 1 and the bundle size, constants folded."""
    module = stages.modules[k - 1] if folded or stages.unfolded is None else stages.unfolded[k - 1]
    example = stages.example(k)
    try:
        with torch.no_grad():
            gm = torch.export.export(_quiet_copy(module), example).module()
            fold_constants(gm)
            if stages.sparse and stages.precision == "int8" and folded:
                example = _int8_sparse_graph(gm, k, example)
            return torch.export.export(gm, example)
    except Exception as exc:  # export errors are long; keep the first line and the stage
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ExportError(f"torch.export of stage {k} ({stages.precision}) failed: {first}. "
                          "Set ADPC_DEBUG=1 for the full trace") from exc
