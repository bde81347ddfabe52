"""StageSet -> one .tflite (LiteRT) with one signature per stage: `stage1` .. `stage4`.

fp32 converts the folded ExportedPrograms (fill kernels already contiguous constants: a
stride-0 constant silently lost 3e-3 in LiteRT). int8 converts the *unfolded* Q/DQ graphs
(float weights + quantize/dequantize) with litert's static PT2E mode, which rewrites them into
true int8 kernels (TOOLCHAIN.md, "TFLite"). The file's I/O is then partly int8 with its own
scale / zero point: this module reads the real I/O back from the written file and records it
in the bundle entry, so `edge.backends.tflite` converts at the boundary.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edge.backends.tflite import ordered_names
from edge.bundle import BundleFile, MethodIO, Quantization, TensorSpec
from model_zoo.adpc import NUM_STAGES

from .export import BackendFiles, ExportError, StageSet, export_stage

BACKEND = "tflite"
INSTALL_HINT = "pip install 'adpc[tflite]'"


def method_name(k: int) -> str:
    return f"stage{k}"


def bundle_name(precision: str) -> str:
    """Where the file lives inside a bundle."""
    return f"tflite/stages_{precision}.tflite"


def _require() -> Any:
    """litert_torch, or an ImportError that says what to install (converters.convert turns it
    into MissingBackend before any slow step)."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401 - read_io opens the written file
        import litert_torch
    except ImportError as exc:
        raise ImportError(f"TFLite conversion needs litert-torch and ai-edge-litert ({exc}): "
                          f"{INSTALL_HINT}") from None
    return litert_torch


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide litert's progress lines and the MLIR converter's C++ log lines on stderr (the CLI
    reports progress itself); ADPC_DEBUG=1 shows them."""
    if os.environ.get("ADPC_DEBUG"):
        yield
        return
    old_env = os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "n"
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        if old_env is None:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)
        else:
            os.environ["LITERT_TORCH_SHOW_PROGRESS"] = old_env


def _static_int8_config() -> Any:
    """litert's static PT2E mode: Q/DQ pairs become int8 kernels. The graphs are already
    quantised by model_zoo.quantize; litert only reads `is_dynamic` from this quantizer."""
    from litert_torch.quantize.pt2e_quantizer import (
        PT2EQuantizer,
        get_symmetric_quantization_config,
    )
    from litert_torch.quantize.quant_config import QuantConfig

    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    return QuantConfig(pt2e_quantizer=PT2EQuantizer().set_global(config))


def _stage_module(stages: StageSet, k: int) -> Any:
    """The module litert re-exports: fp32 folded, int8 the unfolded Q/DQ graph (LiteRT
    pattern-matches float weights + Q/DQ; int8-folded weights would not become int8 kernels)."""
    return export_stage(stages, k, folded=stages.precision != "int8").module()


def _convert_model(stages: StageSet, say: Callable[[str], None]) -> Any:
    """All stages as signatures of one litert model (in memory)."""
    converter = _require().Converter()
    for k in range(1, NUM_STAGES + 1):
        say(f"tflite {stages.precision}: exporting stage {k}/{NUM_STAGES}")
        converter.signature(method_name(k), _stage_module(stages, k), stages.example(k))
    say(f"tflite {stages.precision}: converting {NUM_STAGES} signatures (litert)")
    quant = _static_int8_config() if stages.precision == "int8" else None
    try:
        with _quiet():
            return converter.convert(quant_config=quant)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ExportError(f"litert conversion ({stages.precision}) failed: {first}. "
                          "Set ADPC_DEBUG=1 for the full trace") from exc


def convert(
    stages: StageSet, workdir: Path, progress: Callable[[str], None] | None = None
) -> BackendFiles:
    """Write `stages_<precision>.tflite` into workdir; return it with its real I/O specs."""
    say = progress or (lambda _msg: None)
    _require()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model = _convert_model(stages, say)
    path = workdir / f"stages_{stages.precision}.tflite"
    with _quiet():
        model.export(str(path))
    seconds = time.perf_counter() - start
    io = read_io(path, stages)
    methods = tuple(method_name(k) for k in range(1, NUM_STAGES + 1))
    entry = BundleFile(path, BACKEND, stages.precision, methods, io)
    report = op_report(path)
    for row in report:  # one file holds every stage: its size and time are shared
        row.update(file=bundle_name(stages.precision), file_bytes=path.stat().st_size,
                   convert_seconds=round(seconds / len(report), 2))
    return BackendFiles(BACKEND, stages.precision, {bundle_name(stages.precision): entry},
                        report, _notes(stages, io, report))


# ------------------------------------------------------------------------ the file's own I/O
def _ordered(details: dict[str, dict], count: int, what: str) -> list[dict]:
    """Signature tensors in contract order (the runtime's own ordering rule), count checked."""
    try:
        names = ordered_names(details, what)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    if len(names) != count:
        raise ExportError(f"the .tflite signature has {what}s {sorted(details)}, the stage "
                          f"contract has {count}: litert dropped or added a tensor")
    return [details[n] for n in names]


def _spec(name: str, shape: tuple[int, ...], detail: dict) -> TensorSpec:
    """A contract tensor as the file holds it: dtype, layout (from the shape), quantisation."""
    got = tuple(int(v) for v in detail["shape"])
    if got == tuple(shape):
        layout = "NCHW"
    elif len(shape) == 4 and got == (shape[0], *shape[2:], shape[1]):
        layout = "NHWC"
    else:
        raise ExportError(f"tensor {name} is {list(got)} in the .tflite, the contract says "
                          f"{list(shape)}")
    dtype = np.dtype(detail["dtype"]).name
    quant = None
    if dtype in ("int8", "uint8"):
        scale, zero_point = detail["quantization"]
        if scale <= 0:
            raise ExportError(f"{dtype} tensor {name} has no scale in the .tflite")
        quant = Quantization(float(scale), int(zero_point))
    return TensorSpec(name, tuple(shape), dtype, layout, quant)


def read_io(path: Path, stages: StageSet) -> dict[str, MethodIO]:
    """Each signature's real I/O, in contract order and with contract names."""
    from ai_edge_litert.interpreter import Interpreter

    with _quiet():
        interpreter = Interpreter(model_path=str(path))
    io = {}
    for contract in stages.io:
        runner = interpreter.get_signature_runner(method_name(contract.index))
        ins = _ordered(runner.get_input_details(), len(contract.inputs), "input")
        outs = _ordered(runner.get_output_details(), len(contract.outputs), "output")
        io[method_name(contract.index)] = MethodIO(
            tuple(_spec(n, s, d) for (n, s), d in zip(contract.inputs, ins, strict=True)),
            tuple(_spec(n, s, d) for (n, s), d in zip(contract.outputs, outs, strict=True)))
    return io


# ----------------------------------------------------------------------------- the report
def _op_names(model: Any, fb: Any) -> list[str]:
    """Operator-code index -> op type name (builtin or custom)."""
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    out = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        custom = code.CustomCode()
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        out.append(custom.decode() if custom else names.get(builtin, str(builtin)))
    return out


def op_report(path: Path) -> list[dict]:
    """Per signature, from the flatbuffer: op count, op-type histogram, and how many ops
    produce int8 (the rest compute in float: the fills and the BN after them stay float)."""
    from ai_edge_litert import schema_py_generated as fb

    model = fb.Model.GetRootAsModel(path.read_bytes(), 0)
    codes = _op_names(model, fb)
    rows = []
    for s in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(s)
        graph = model.Subgraphs(sig.SubgraphIndex())
        ops = [graph.Operators(i) for i in range(graph.OperatorsLength())]
        types = Counter(codes[op.OpcodeIndex()] for op in ops)
        int8 = sum(1 for op in ops if op.OutputsLength()
                   and graph.Tensors(op.Outputs(0)).Type() == fb.TensorType.INT8)
        method = sig.SignatureKey().decode()
        rows.append({"stage": int(method.removeprefix("stage")), "method": method,
                     "ops": len(ops), "int8_ops": int8, "op_types": dict(types.most_common())})
    return sorted(rows, key=lambda r: r["stage"])


def _notes(stages: StageSet, io: dict[str, MethodIO], report: list[dict]) -> list[str]:
    """What a user of the file must know: threads, int8 boundary, float islands."""
    notes = ["LiteRT runs XNNPACK by default (1 thread unless the backend gets `threads`)."]
    if stages.precision == "int8":
        floats = [f"{m}.{t.name}" for m, spec in io.items()
                  for t in (*spec.inputs, *spec.outputs) if t.quantization is None]
        notes.append("int8 file: int8 I/O carries its scale / zero point in the manifest and "
                     "the runtime quantises at the boundary; float32 I/O: "
                     + (", ".join(floats) or "none"))
        notes.append("ops computing in int8 per stage: " + ", ".join(
            f"stage {r['stage']} {r['int8_ops']}/{r['ops']}" for r in report)
            + " (the mask fills and the BN after them stay float by design)")
    layouts = sorted({t.layout for m in io.values() for t in (*m.inputs, *m.outputs)})
    notes.append(f"I/O layout in the file: {', '.join(layouts)}")
    return notes
