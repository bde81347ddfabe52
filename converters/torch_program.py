"""PyTorch stage programs: each stage's ExportedProgram, serialised without pickled objects.

The fourth backend: for hosts with PyTorch (servers, laptops, CI) and for the sparse mode
without ExecuTorch. `torch.export.save` files are not used because `torch.export.load`
unpickles weights with `weights_only=False`; here the graph is torch's JSON serialisation and
every tensor blob is read back with `weights_only=True` (edge/backends/torch_program.py).

File: `torch/stages_fp32[_sparse].zip`, members `stage{k}/{program.json, state_dict.pt,
constants.pt, example_inputs.pt}` (stored, fixed timestamps: identical inputs give identical
bytes).
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch

from edge.bundle import BundleFile

from .export import BackendFiles, ExportError, StageSet, export_stage

MEMBERS = ("program.json", "state_dict.pt", "constants.pt", "example_inputs.pt")
SPARSE_KERNELS = ("adpc::masked_conv2d",)
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def _require() -> None:
    """PyTorch is a core dependency: nothing extra to install."""


def used_state_only(program: torch.export.ExportedProgram, example) -> torch.export.ExportedProgram:
    """Re-export without the parameters the stage never reads.

    A stage graph is built on the whole model, so export lifts every parameter of it (16 MB
    per stage for W18-Small-v2); only the ones the graph reads belong in the stage file.
    """
    gm = program.module()
    gm.graph.eliminate_dead_code()  # unlifting reads every parameter, used or not
    gm.recompile()
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name in [n for n, _ in gm.named_parameters()] + [n for n, _ in gm.named_buffers()]:
        if name in used:
            continue
        owner_path, _, attr = name.rpartition(".")
        owner = gm.get_submodule(owner_path) if owner_path else gm
        delattr(owner, attr)
    with torch.no_grad():
        return torch.export.export(gm, example)


def serialise(program: torch.export.ExportedProgram) -> dict[str, bytes]:
    from torch._export.serde.serialize import serialize

    artifact = serialize(program, serialize_example_inputs=False)  # zeros, up to 30 MB a stage
    return dict(zip(MEMBERS, (artifact.exported_program, artifact.state_dict,
                              artifact.constants, artifact.example_inputs), strict=True))


def convert(
    stages: StageSet, workdir: Path, progress: Callable[[str], None] | None = None
) -> BackendFiles:
    """Export every stage, drop unused parameters, and write one zip of serialised programs."""
    if stages.precision != "fp32":
        raise ExportError("the torch backend runs fp32 stage programs only: use --precision "
                          "fp32, or executorch/tflite for int8")
    say = progress or (lambda _msg: None)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    variant = "_sparse" if stages.sparse else ""
    path = workdir / f"stages_fp32{variant}.zip"
    report = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for k in range(1, len(stages.modules) + 1):
            say(f"torch {stages.precision}{variant}: exporting stage {k}")
            start = time.perf_counter()
            program = used_state_only(export_stage(stages, k), stages.example(k))
            for member, data in serialise(program).items():
                archive.writestr(zipfile.ZipInfo(f"stage{k}/{member}", _ZIP_DATE), data)
            ops = sum(1 for n in program.graph.nodes if n.op == "call_function")
            report.append({"stage": k, "ops": ops,
                           "export_seconds": round(time.perf_counter() - start, 2)})
    methods = tuple(f"stage{k}" for k in range(1, len(stages.modules) + 1))
    files = {f"torch/{path.name}": BundleFile(path, "torch", "fp32", methods, {},
                                              SPARSE_KERNELS if stages.sparse else ())}
    return BackendFiles("torch", "fp32", files, report, [])
