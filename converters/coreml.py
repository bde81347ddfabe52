"""Stage graphs -> one Core ML .mlpackage per stage (mlprogram), zipped for the bundle.

Choices, and why:
- One package per stage, not one multifunction package: the stages share no weights, so a
  multifunction package saves nothing, yet it would need iOS 18 / macOS 15 (per-stage files
  need iOS 16 for fp16, iOS 17 for int8) and a model load per function anyway.
- fp32 stage sets become fp16 compute (Core ML's native precision on the GPU / Neural Engine)
  with float32 inputs and outputs (casts inside the model), so the host step and the backend
  stay float32 like every other backend. The manifest entry says precision "fp16".
- int8 stage sets convert the folded pt2e Q/DQ graphs to W8A8: per-channel int8 weights become
  `constexpr_affine_dequantize`, activation Q/DQ pairs become iOS 17 `quantize`/`dequantize`
  (fills, BN after them and the mask arithmetic stay fp16, as in the PyTorch graph).
- Core ML refuses a name used as both a function input and output (stage 2 reads and writes
  `x0`): an output that repeats an input name is called `<name>_out` in the file, and the
  bundle entry records the file's own names (MethodIO). Every other name is the contract's.
- An .mlpackage is a folder; the bundle stores files: each package is zipped (stored, sorted,
  fixed timestamps and modes). Its Manifest.json item ids (random UUIDs) are replaced by ids
  derived from the item paths, so one model converts to the same bytes every time, and the
  `executorch_debug_handle_mapping.json` that coremltools adds for ExecuTorch's tools is left
  out (no runtime reads it).

Core ML cannot predict on Linux: here the packages are spec-validated (I/O names, shapes and
dtypes against the stage contract, the MIL op histogram against the expected op set, size).
On macOS `convert` also loads every stage and predicts once against the PyTorch stage.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge.backends.coreml import PARITY_NOTE, unpack_mlpackage
from edge.bundle import BundleFile, MethodIO, TensorSpec

from .export import BackendFiles, ExportError, StageSet, export_stage
from .stages import StageIO

FILE_PRECISION = {"fp32": "fp16", "int8": "int8"}
"""Stage-set precision -> the precision of the Core ML files."""
TARGETS = {"fp16": "iOS16", "int8": "iOS17"}
"""Minimum deployment targets: iOS 17 / macOS 14 brought activation quantize / dequantize."""
_COMMON_OPS = frozenset({
    "const", "cast", "conv", "relu", "add", "mul", "sub", "batch_norm", "avg_pool",
    "upsample_bilinear", "slice_by_index", "concat",
})
EXPECTED_OPS = {
    "fp16": _COMMON_OPS,
    "int8": _COMMON_OPS | {"quantize", "dequantize", "constexpr_affine_dequantize"},
}
"""MIL ops a stage may contain. Host work (softmax, comparisons, reductions) must never appear."""
_DEBUG_FILES = ("executorch_debug_handle_mapping.json",)
_EPOCH = (1980, 1, 1, 0, 0, 0)
_ARRAY_DTYPES = {65568: "float32", 65552: "float16", 65600: "float64", 131104: "int32",
                 131080: "int8"}
"""ArrayFeatureType.ArrayDataType values -> numpy dtype names."""


def _require() -> Any:
    try:
        import coremltools as ct
    except ImportError as exc:
        raise ImportError(f"Core ML conversion needs coremltools ({exc}): "
                          "pip install 'adpc[coreml]'") from None
    return ct


def output_names(stage_io: StageIO) -> list[str]:
    """The file's output names: the contract's, `<name>_out` where an input has that name."""
    taken = {n for n, _ in stage_io.inputs}
    return [f"{n}_out" if n in taken else n for n, _ in stage_io.outputs]


def package_name(k: int, precision: str) -> str:
    """The bundle-relative name of stage k's zipped package."""
    return f"coreml/stage{k}_{precision}.mlpackage.zip"


# ------------------------------------------------------------------------------ convert
def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide coremltools' three progress bars and internal deprecation warnings per call (the
    CLI reports progress itself); ADPC_DEBUG=1 shows them."""
    if os.environ.get("ADPC_DEBUG"):
        yield
        return
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def convert_stage(stages: StageSet, k: int) -> Any:
    """Stage k as an in-memory MLModel (spec + weights; never loaded, so it works on Linux)."""
    ct = _require()
    from coremltools.converters.mil.mil import types

    precision = FILE_PRECISION[stages.precision]
    io_k = stages.io[k - 1]
    program = export_stage(stages, k, folded=True).run_decompositions({})
    inputs = [ct.TensorType(name=n, shape=s, dtype=types.fp32) for n, s in io_k.inputs]
    outputs = [ct.TensorType(name=n, dtype=types.fp32) for n in output_names(io_k)]
    try:
        with _quiet():
            return ct.convert(
                program, inputs=inputs, outputs=outputs, convert_to="mlprogram",
                compute_precision=ct.precision.FLOAT16,
                minimum_deployment_target=getattr(ct.target, TARGETS[precision]),
                skip_model_load=True)
    except Exception as exc:  # e.g. "convert function for op 'xyz' not implemented"
        raise ExportError(f"Core ML conversion of stage {k} ({stages.precision}) failed: "
                          f"{_first_line(exc)}. Set ADPC_DEBUG=1 for the converter's log; an "
                          "unsupported op must be rewritten in the stage graph") from exc


def normalize_package(package: Path) -> None:
    """Deterministic bytes: ids derived from item paths, no ExecuTorch debug map."""
    for name in _DEBUG_FILES:
        (package / name).unlink(missing_ok=True)
    path = package / "Manifest.json"
    data = json.loads(path.read_text())
    entries = data["itemInfoEntries"]
    ids = {old: str(uuid.uuid5(uuid.NAMESPACE_URL, f"adpc:{item['path']}"))
           for old, item in entries.items()}
    data["itemInfoEntries"] = {ids[old]: item for old, item in entries.items()}
    data["rootModelIdentifier"] = ids[data["rootModelIdentifier"]]
    path.write_text(json.dumps(data, indent=4, sort_keys=True) + "\n")


def zip_package(package: Path, archive: Path) -> Path:
    """Zip a package folder (stored, sorted, fixed time and mode): same folder, same bytes."""
    files = sorted(p for p in package.rglob("*") if p.is_file())
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in files:
            info = zipfile.ZipInfo(f"{package.name}/{path.relative_to(package).as_posix()}",
                                   date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.create_system = 3
            info.file_size = path.stat().st_size
            with open(path, "rb") as src, zf.open(info, "w", force_zip64=True) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    return archive


def write_package(model: Any, workdir: Path, k: int, precision: str) -> Path:
    """Save, normalise and zip stage k's package; returns the zip."""
    archive = workdir / package_name(k, precision)
    archive.parent.mkdir(parents=True, exist_ok=True)
    package = archive.with_suffix("")  # stage{k}_{precision}.mlpackage
    if package.exists():
        shutil.rmtree(package)
    model.save(str(package))
    normalize_package(package)
    zip_package(package, archive)
    shutil.rmtree(package)
    return archive


# ----------------------------------------------------------------------------- validate
def _array_io(features: Any) -> list[dict]:
    out = []
    for f in features:
        array = f.type.multiArrayType
        out.append({"name": f.name, "shape": [int(v) for v in array.shape],
                    "dtype": _ARRAY_DTYPES.get(array.dataType, str(array.dataType)),
                    "flexible": array.WhichOneof("ShapeFlexibility") is not None})
    return out


def _main_ops(spec: Any) -> list[Any]:
    function = spec.mlProgram.functions["main"]
    block = function.block_specializations[function.opset]
    return list(block.operations)


def op_histogram(spec: Any) -> dict[str, int]:
    """MIL op type -> count in the main function (most frequent first)."""
    return dict(Counter(op.type for op in _main_ops(spec)).most_common())


def _compute_dtypes(spec: Any) -> dict[str, int]:
    """Output dtypes of the convolutions: shows whether the stage really computes in fp16."""
    from coremltools.proto import MIL_pb2

    dtypes = Counter(MIL_pb2.DataType.Name(op.outputs[0].type.tensorType.dataType)
                     for op in _main_ops(spec) if op.type == "conv")
    return dict(dtypes)


def _contract_problems(found: list[dict], expected: list[tuple[str, tuple]], side: str) -> list:
    problems = []
    names = [f["name"] for f in found]
    if names != [n for n, _ in expected]:
        return [f"{side} names {names} != {[n for n, _ in expected]}"]
    for f, (name, shape) in zip(found, expected, strict=True):
        if tuple(f["shape"]) != tuple(shape):
            problems.append(f"{side} {name} shape {f['shape']} != {list(shape)}")
        if f["dtype"] != "float32":
            problems.append(f"{side} {name} dtype {f['dtype']} != float32")
        if f["flexible"]:
            problems.append(f"{side} {name} has a flexible shape; the bundle size is fixed")
    return problems


def _precision_problems(ops: dict[str, int], compute: dict[str, int], precision: str) -> list:
    problems = []
    unexpected = sorted(set(ops) - EXPECTED_OPS[precision])
    if unexpected:
        problems.append(f"unexpected MIL ops {unexpected} (host work such as softmax or "
                        "comparisons belongs in edge/host.py; if an op is intended, add it to "
                        "EXPECTED_OPS in converters/coreml.py)")
    if set(compute) != {"FLOAT16"}:
        problems.append(f"convolutions compute in {compute}, expected FLOAT16 only")
    if precision == "int8" and not (ops.get("constexpr_affine_dequantize") and
                                    ops.get("quantize")):
        problems.append("no int8 weights or activation quantize ops: the Q/DQ graph was not "
                        "converted to W8A8")
    return problems


def _spec_of(path: Path) -> tuple[Any, int]:
    """The spec and total package bytes of an .mlpackage folder or its zip."""
    ct = _require()
    if path.is_dir():
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return ct.utils.load_spec(str(path)), size
    with tempfile.TemporaryDirectory(prefix="adpc-coreml-") as tmp:
        package = unpack_mlpackage(path, Path(tmp))
        return _spec_of(package)


def validate_spec(path: str | Path, stage_io: StageIO, precision: str | None = None) -> dict:
    """Check one stage's package (folder or zip) against the contract without predicting.

    Returns the stage's report (I/O, op histogram, conv compute dtype, deployment target,
    sizes); raises ExportError listing every mismatch. precision ("fp16" | "int8"): also check
    the op set and the compute dtype of that precision.
    """
    ct = _require()
    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path} does not exist: convert with `adpc convert --backend coreml`")
    spec, package_bytes = _spec_of(path)
    if spec.WhichOneof("Type") != "mlProgram":
        raise ExportError(f"{path} is not an mlprogram: re-convert with converters.coreml")
    inputs, outputs = _array_io(spec.description.input), _array_io(spec.description.output)
    ops, compute = op_histogram(spec), _compute_dtypes(spec)
    problems = _contract_problems(inputs, list(stage_io.inputs), "input")
    problems += _contract_problems(
        outputs, list(zip(output_names(stage_io), (s for _, s in stage_io.outputs),
                          strict=True)), "output")
    if precision is not None:
        problems += _precision_problems(ops, compute, precision)
    if problems:
        raise ExportError(f"{path.name} (stage {stage_io.index}) does not match the stage "
                          f"contract: {'; '.join(problems)}. Re-convert with converters.coreml")
    return {
        "stage": stage_io.index, "inputs": inputs, "outputs": outputs, "ops": ops,
        "compute_dtype": compute, "deployment_target": ct.target(spec.specificationVersion).name,
        "specification_version": spec.specificationVersion, "package_bytes": package_bytes,
        "bytes": path.stat().st_size if path.is_file() else package_bytes,
        "checks": ["I/O names, shapes and float32 dtypes match the stage contract"]
        + (["every MIL op is in the expected set", "convolutions compute in fp16"]
           + (["W8A8: int8 weights and activation quantize ops"] if precision == "int8" else [])
           if precision is not None else []),
    }


# ----------------------------------------------------------------------------- predict
def _random_inputs(stages: StageSet, k: int) -> tuple[torch.Tensor, ...]:
    """Seeded normal features and a random 0/1 mask: a zero input would hide errors."""
    gen = torch.Generator().manual_seed(k)
    out = []
    for (name, shape) in stages.io[k - 1].inputs:
        x = torch.randn(shape, generator=gen)
        out.append((x > 0).float() if name == "mask" else x)
    return tuple(out)


def predict_check(archive: Path, stages: StageSet, k: int) -> dict:
    """macOS only: load stage k's package, predict once, max |diff| per output vs PyTorch."""
    ct = _require()
    inputs = _random_inputs(stages, k)
    with torch.no_grad():
        expected = stages.modules[k - 1](*inputs)
    io_k = stages.io[k - 1]
    with tempfile.TemporaryDirectory(prefix="adpc-coreml-") as tmp:
        model = ct.models.MLModel(str(unpack_mlpackage(archive, Path(tmp))))
        got = model.predict({n: x.numpy() for (n, _), x in zip(io_k.inputs, inputs, strict=True)})
    return {name: float(np.abs(np.asarray(got[name]) - e.numpy()).max())
            for name, e in zip(output_names(io_k), expected, strict=True)}


# ------------------------------------------------------------------------------- convert
def method_io(stage_io: StageIO) -> MethodIO | None:
    """The file's own I/O when an output had to be renamed (else None: the contract's)."""
    names = output_names(stage_io)
    if names == [n for n, _ in stage_io.outputs]:
        return None
    return MethodIO(tuple(TensorSpec(n, s) for n, s in stage_io.inputs),
                    tuple(TensorSpec(n, s) for n, (_, s) in zip(names, stage_io.outputs,
                                                                strict=True)))


def _bundle_file(archive: Path, stage_io: StageIO, precision: str) -> BundleFile:
    method = f"stage{stage_io.index}"
    own = method_io(stage_io)
    return BundleFile(source=archive, backend="coreml", precision=precision, methods=(method,),
                      io={method: own} if own is not None else {})


def _notes(precision: str, stages: StageSet) -> list[str]:
    notes = ["fp16 compute, float32 inputs and outputs (casts inside each package); minimum "
             f"deployment target {TARGETS[precision]}; one zipped .mlpackage per stage."]
    if precision == "int8":
        source = (stages.quantized_from or "pt2e").upper()
        notes.append(f"int8: W8A8 from the {source} Q/DQ graphs (int8 per-channel weights, int8 "
                     "activations between quantize/dequantize ops; fills and BN in fp16).")
    notes.append("outputs that repeat an input name are called <name>_out in the files.")
    if sys.platform != "darwin":
        notes.append(f"{PARITY_NOTE} (Core ML cannot predict on Linux; the packages were "
                     "spec-validated here: I/O, op set, size).")
    return notes


def convert(
    stages: StageSet, workdir: Path, progress: Callable[[str], None] | None = None
) -> BackendFiles:
    """Convert, zip and spec-validate every stage; on macOS also predict once per stage."""
    _require()
    say = progress or (lambda _msg: None)
    precision = FILE_PRECISION[stages.precision]
    files: dict[str, BundleFile] = {}
    report = []
    for stage_io in stages.io:
        k = stage_io.index
        say(f"coreml: converting stage {k}/{len(stages.io)} ({precision})")
        start = time.perf_counter()
        archive = write_package(convert_stage(stages, k), Path(workdir), k, precision)
        seconds = time.perf_counter() - start
        row = validate_spec(archive, stage_io, precision)
        row.update(file=package_name(k, precision), convert_seconds=round(seconds, 2))
        row["predicted"] = sys.platform == "darwin"
        if row["predicted"]:
            row["max_abs_diff"] = predict_check(archive, stages, k)
        files[package_name(k, precision)] = _bundle_file(archive, stage_io, precision)
        report.append(row)
    return BackendFiles("coreml", precision, files, report, _notes(precision, stages))
