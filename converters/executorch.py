"""Stage graphs -> one ExecuTorch program (.pte) with one method per stage, XNNPACK-delegated.

One file holds the four stages (`stage1`..`stage4`): a method call costs ~5.5 us, the weights
and the XNNPACK runtime are loaded once, and an app opens a single file. fp32 lowers the float
stage graphs; int8 lowers the folded Q/DQ graphs (from the QAT model, or PTQ), which XNNPACK
runs as int8 kernels. Inputs are float32 NCHW in both (an int8 program quantises them inside
the delegate); an int8 program returns its branch features as int8 with the scale / zero
point recorded in the manifest's `io` (the backend dequantises them): XNNPACK 1.5.1 fails at
run time ("Propagating input shapes failed") when a dequantised value is both a program output
and read by further ops, which is exactly what a stage's features are.

The report counts, per stage, the graph's compute ops and how many of them XNNPACK took: ops
left outside run as slow portable kernels, so 100% is the goal.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from edge.bundle import BundleFile, MethodIO, Quantization, TensorSpec

from .export import BackendFiles, ExportError, StageSet, export_stage, program_example

_NOT_COMPUTE = {"getitem", "executorch_call_delegate", "alloc", "_assert_tensor_metadata"}


def _require():
    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
    except ImportError as exc:
        raise ImportError(f"ExecuTorch conversion needs executorch ({exc}): "
                          "pip install 'adpc[executorch]'") from None
    return XnnpackPartitioner, to_edge_transform_and_lower


def _op_name(node) -> str:
    return str(getattr(node.target, "__name__", node.target)).split(".")[0].split("::")[-1]


def _compute_ops(graph) -> Counter:
    return Counter(_op_name(n) for n in graph.nodes
                   if n.op == "call_function" and _op_name(n) not in _NOT_COMPUTE)


def _delegated_ops(program) -> int:
    """Compute ops inside XNNPACK delegates of one lowered method."""
    total = 0
    for module in program.graph_module.modules():
        original = getattr(module, "original_module", None)
        if original is not None:  # a LoweredBackendModule keeps the partition it replaced
            total += sum(_compute_ops(original.graph).values())
    return total


_DEQUANT = "quantized_decomposed.dequantize_per_tensor.default"
_QMASKED = "adpc.qmasked_conv2d.default"


def int8_feature_outputs(
    program: torch.export.ExportedProgram, example: tuple,
    requantize: Sequence[Quantization | None] | None = None,
) -> tuple[torch.export.ExportedProgram, list[Quantization | None]]:
    """Return every output but the last (the logits) as the int8 tensor it is dequantised from.

    requantize: per output, the parameters the next stage's int8 input takes (int8 sparse
    mode): the output is requantised to them inside this graph, so the runtime hands it over
    untouched. Returns the re-exported program and, per output, its quantisation (None: stays
    float).
    """
    gm = program.module()
    graph = gm.graph
    out = graph.output_node()
    values = list(out.args[0])
    params: list[Quantization | None] = []
    for i, node in enumerate(values):
        if i < len(values) - 1 and str(node.target) == _DEQUANT:
            scale, zero_point = float(node.args[1]), int(node.args[2])
            values[i] = node.args[0]
            want = requantize[i] if requantize is not None and i < len(requantize) else None
            if want is not None and (want.scale, want.zero_point) != (scale, zero_point):
                with graph.inserting_before(out):
                    real = graph.call_function(node.target, (values[i], *node.args[1:]))
                    values[i] = graph.call_function(
                        torch.ops.quantized_decomposed.quantize_per_tensor.default,
                        (real, want.scale, want.zero_point, *node.args[3:]))
                scale, zero_point = want.scale, want.zero_point
            params.append(Quantization(scale, zero_point))
        else:
            params.append(None)
    out.args = (tuple(values),)
    graph.eliminate_dead_code()
    gm.recompile()
    with torch.no_grad():
        return torch.export.export(gm, example), params


def int8_input_params(program: torch.export.ExportedProgram) -> list[Quantization | None]:
    """Per user input: the quantisation of an int8 input (read off its dequantise), or None."""
    user = set(program.graph_signature.user_inputs)
    params: list[Quantization | None] = []
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in user:
            continue
        found = [_read_as(node, u) for u in node.users] if node.meta["val"].dtype == torch.int8 \
            else []
        params.append(next((q for q in found if q is not None), None))
    return params


def _read_as(value: torch.fx.Node, user: torch.fx.Node) -> Quantization | None:
    """The quantisation an int8 value is read with: by a dequantise or a fused masked conv."""
    if str(user.target) == _DEQUANT:
        return Quantization(float(user.args[1]), int(user.args[2]))
    if str(user.target) == _QMASKED:
        from edge.kernels.qtorch_op import ARG_RESIDUAL, ARG_X

        at = ARG_X if user.args[ARG_X] is value else ARG_RESIDUAL
        return Quantization(float(user.args[at + 1]), int(user.args[at + 2]))
    return None


def _method_io(stages: StageSet, k: int, outputs: list[Quantization | None],
               inputs: list[Quantization | None] | None = None) -> MethodIO:
    """The file's I/O: int8 tensors where quantised (NHWC in int8 sparse mode)."""
    io = stages.io[k - 1]
    layout = "NHWC" if stages.sparse else "NCHW"

    def spec(name: str, shape: tuple, q: Quantization | None) -> TensorSpec:
        return TensorSpec(name, shape, "int8", layout, q) if q is not None else TensorSpec(
            name, shape)

    ins = inputs or [None] * len(io.inputs)
    return MethodIO(tuple(spec(n, s, q) for (n, s), q in zip(io.inputs, ins, strict=True)),
                    tuple(spec(n, s, q) for (n, s), q in zip(io.outputs, outputs, strict=True)))


SPARSE_KERNELS = {"fp32": ("adpc::masked_conv2d",), "int8": ("adpc::qmasked_conv2d",)}


def _compile_config(stages: StageSet):
    """Sparse programs carry a custom op, which the edge-dialect IR check does not know."""
    from executorch.exir import EdgeCompileConfig

    return EdgeCompileConfig(_check_ir_validity=not stages.sparse)


def convert(
    stages: StageSet, workdir: Path, progress: Callable[[str], None] | None = None
) -> BackendFiles:
    """Lower every stage with the XNNPACK partitioner and write one multi-method .pte."""
    XnnpackPartitioner, to_edge_transform_and_lower = _require()
    say = progress or (lambda _msg: None)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    programs, io = {}, {}
    for k in range(1, len(stages.modules) + 1):
        say(f"executorch {stages.precision}: exporting stage {k}")
        programs[f"stage{k}"] = export_stage(stages, k)
    if stages.precision == "int8":
        inputs = [int8_input_params(p) for p in programs.values()]
        for k, name in enumerate(programs, start=1):
            after = inputs[k][:-1] if k < len(inputs) else None  # features, not the mask
            program, params = int8_feature_outputs(programs[name], program_example(
                programs[name]), after)
            programs[name] = program
            if any(q is not None for q in (*params, *inputs[k - 1])):
                io[name] = _method_io(stages, k, params, inputs[k - 1])
    say(f"executorch {stages.precision}: lowering to XNNPACK")
    start = time.perf_counter()
    try:
        edge = to_edge_transform_and_lower(programs, partitioner=[XnnpackPartitioner()],
                                           compile_config=_compile_config(stages))
        program = edge.to_executorch()
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ExportError(f"ExecuTorch lowering failed: {first}. Set ADPC_DEBUG=1 for the "
                          "full trace") from exc
    report = []
    for name in programs:
        lowered = edge.exported_program(name)
        left = _compute_ops(lowered.graph)
        inside = _delegated_ops(lowered)
        total = inside + sum(left.values())
        report.append({
            "stage": int(name[5:]),
            "ops": total,
            "delegated_ops": inside,
            "delegated_fraction": round(inside / total, 4) if total else 1.0,
            "not_delegated": dict(left),
            "delegates": sum(1 for n in lowered.graph.nodes
                             if _op_name(n) == "executorch_call_delegate"),
        })
    variant = "_sparse" if stages.sparse else ""
    path = workdir / f"stages_{stages.precision}{variant}.pte"
    path.write_bytes(program.buffer)
    seconds = time.perf_counter() - start
    files = {f"executorch/{path.name}": BundleFile(
        path, "executorch", stages.precision, tuple(programs), io,
        SPARSE_KERNELS[stages.precision] if stages.sparse else ())}
    notes = []
    partial = [r for r in report if r["delegated_fraction"] < 1.0]
    if partial:
        notes.append("ops outside XNNPACK (portable kernels): " + "; ".join(
            f"stage {r['stage']}: {', '.join(sorted(r['not_delegated']))}" for r in partial))
    for r in report:
        r["lower_seconds"] = round(seconds / len(report), 2)
    return BackendFiles("executorch", stages.precision, files, report, notes)
