"""Stage graphs -> one ExecuTorch program (.pte) with one method per stage, XNNPACK-delegated.

One file holds the four stages (`stage1`..`stage4`): a method call costs ~5.5 us, the weights
and the XNNPACK runtime are loaded once, and an app opens a single file. fp32 lowers the float
stage graphs; int8 lowers the folded Q/DQ graphs (from the QAT model, or PTQ), which XNNPACK
runs as int8 kernels. I/O stay float32 NCHW in both (the Q/DQ at a graph's boundary run
inside the delegate), so the host step is the same as for PyTorch.

The report counts, per stage, the graph's compute ops and how many of them XNNPACK took: ops
left outside run as slow portable kernels, so 100% is the goal.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from edge.bundle import BundleFile

from .export import BackendFiles, ExportError, StageSet, export_stage

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


def convert(
    stages: StageSet, workdir: Path, progress: Callable[[str], None] | None = None
) -> BackendFiles:
    """Lower every stage with the XNNPACK partitioner and write one multi-method .pte."""
    XnnpackPartitioner, to_edge_transform_and_lower = _require()
    say = progress or (lambda _msg: None)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    programs = {}
    for k in range(1, len(stages.modules) + 1):
        say(f"executorch {stages.precision}: exporting stage {k}")
        programs[f"stage{k}"] = export_stage(stages, k)
    say(f"executorch {stages.precision}: lowering to XNNPACK")
    start = time.perf_counter()
    try:
        edge = to_edge_transform_and_lower(programs, partitioner=[XnnpackPartitioner()])
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
    path = workdir / f"stages_{stages.precision}.pte"
    path.write_bytes(program.buffer)
    seconds = time.perf_counter() - start
    files = {f"executorch/{path.name}": BundleFile(
        path, "executorch", stages.precision, tuple(programs))}
    notes = []
    partial = [r for r in report if r["delegated_fraction"] < 1.0]
    if partial:
        notes.append("ops outside XNNPACK (portable kernels): " + "; ".join(
            f"stage {r['stage']}: {', '.join(sorted(r['not_delegated']))}" for r in partial))
    for r in report:
        r["lower_seconds"] = round(seconds / len(report), 2)
    return BackendFiles("executorch", stages.precision, files, report, notes)
