"""The bundle: a folder with `manifest.json` and the stage files a runtime loads.

This module owns the manifest schema (docs/formats.md documents it). Converters write bundles
through `write_bundle`; runtimes read them through `read_bundle`, which validates everything
and names the first problem in one line (missing file, checksum mismatch, unknown schema
version, bad shape, ...).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .flops import stage_macs

SCHEMA_VERSION = 1
FORMAT = "adpc-bundle"
MANIFEST = "manifest.json"
DTYPES = ("float32", "float16", "int8", "uint8", "int32", "int64")
BACKENDS = ("executorch", "tflite", "coreml", "torch")
PRECISIONS = ("fp32", "fp16", "int8")
KERNELS = ("adpc::masked_conv2d", "adpc::qmasked_conv2d")
"""Custom kernels a file may need from the runtime (edge/kernels builds them)."""


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the first problem and the fix."""


# ------------------------------------------------------------------------------ the schema
@dataclass(frozen=True)
class Quantization:
    """Affine int8 parameters: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    layout: str = "NCHW"
    quantization: Quantization | None = None


@dataclass(frozen=True)
class StageFlops:
    """GFLOPs terms of one stage (paper accounting): see `edge.flops.stage_macs`."""

    fixed: float
    masked: float
    fill: float

    def gflops(self, computed: float = 1.0) -> float:
        return stage_macs(self.fixed, self.masked, self.fill, computed)


@dataclass(frozen=True)
class StageSpec:
    index: int  # 1-based stage number
    exit: int | None  # the exit this stage ends in (None: no exit)
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    flops: StageFlops


@dataclass(frozen=True)
class MethodIO:
    """A file's own I/O of one stage where it differs from the stage contract (int8 inputs with
    their scale / zero point, fp16, NHWC): the runtime converts at the boundary."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the bundle folder
    sha256: str
    bytes: int
    backend: str
    precision: str
    methods: tuple[str, ...] = ()  # stage entry points inside the file (e.g. "stage1")
    io: Mapping[str, MethodIO] = field(default_factory=dict)  # method -> its own I/O
    kernels: tuple[str, ...] = ()  # custom ops the runtime must load first (sparse mode)


@dataclass(frozen=True)
class ClassInfo:
    id: int
    name: str
    color: tuple[int, int, int]


@dataclass(frozen=True)
class InputSpec:
    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    color_order: str = "RGB"
    pixel_scale: float = 1.0 / 255.0  # uint8 -> [0, 1] before mean/std


@dataclass(frozen=True)
class Manifest:
    model: str
    model_config: Mapping
    classes: tuple[ClassInfo, ...]
    input: InputSpec
    threshold: float | None
    stages: tuple[StageSpec, ...]
    files: tuple[FileEntry, ...] = ()
    cost_tables: Mapping = field(default_factory=dict)  # device name -> measured table
    provenance: Mapping = field(default_factory=dict)  # checkpoint, sha256, quantized_from
    schema_version: int = SCHEMA_VERSION
    format: str = FORMAT

    def to_dict(self) -> dict:
        return _jsonable(asdict(self))

    def files_for(self, backend: str, precision: str | None = None) -> list[FileEntry]:
        return [f for f in self.files
                if f.backend == backend and (precision is None or f.precision == precision)]

    @property
    def num_exits(self) -> int:
        return sum(1 for s in self.stages if s.exit is not None)


def _jsonable(value):
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# ----------------------------------------------------------------------------- validation
class _Reader:
    """Typed access to the raw JSON that reports the path of the first bad field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> BundleError:
        return BundleError(f"{self.source}: {where} {problem}")

    def get(self, obj: Mapping, key: str, where: str):
        if not isinstance(obj, Mapping):
            raise self.fail(where, "must be an object")
        if key not in obj:
            raise self.fail(f"{where}.{key}".lstrip("."), "is missing")
        return obj[key]

    def integer(self, value, where: str, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(where, f"must be >= {minimum}, got {value}")
        return value

    def number(self, value, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(where, f"must be a number, got {value!r}")
        return float(value)

    def string(self, value, where: str, choices: Sequence[str] | None = None) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(where, f"must be a non-empty string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.fail(where, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def array(self, value, where: str, length: int | None = None) -> list:
        if not isinstance(value, list):
            raise self.fail(where, f"must be a list, got {type(value).__name__}")
        if length is not None and len(value) != length:
            raise self.fail(where, f"must have {length} entries, got {len(value)}")
        return value


def manifest_from_dict(data: Mapping, source: str = MANIFEST) -> Manifest:
    """Validate a parsed manifest and build the typed Manifest (first problem raised)."""
    r = _Reader(source)
    if not isinstance(data, Mapping):
        raise r.fail("the top level", "must be a JSON object")
    fmt = r.get(data, "format", "")
    if fmt != FORMAT:
        raise r.fail("format", f"must be {FORMAT!r}, got {fmt!r}: this is not an adpc bundle")
    version = r.integer(r.get(data, "schema_version", ""), "schema_version")
    if version != SCHEMA_VERSION:
        raise r.fail("schema_version", f"{version} is not supported (this adpc reads "
                     f"{SCHEMA_VERSION}): re-convert the model with this adpc version")
    model = r.string(r.get(data, "model", ""), "model")
    config = r.get(data, "model_config", "")
    if not isinstance(config, Mapping):
        raise r.fail("model_config", "must be an object")
    classes = tuple(_class(r, c, f"classes[{i}]")
                    for i, c in enumerate(r.array(r.get(data, "classes", ""), "classes")))
    if not classes or [c.id for c in classes] != list(range(len(classes))):
        raise r.fail("classes", "must list ids 0..K-1 in order")
    spec = _input(r, r.get(data, "input", ""))
    threshold = data.get("threshold")
    if threshold is not None:
        threshold = r.number(threshold, "threshold")
        if not 0.0 <= threshold <= 1.0:
            raise r.fail("threshold", f"must lie in [0, 1], got {threshold}")
    stages = tuple(_stage(r, s, f"stages[{i}]")
                   for i, s in enumerate(r.array(r.get(data, "stages", ""), "stages")))
    if [s.index for s in stages] != list(range(1, len(stages) + 1)) or not stages:
        raise r.fail("stages", "must be numbered 1..N in order")
    files = tuple(_file(r, f, f"files[{i}]")
                  for i, f in enumerate(r.array(data.get("files", []), "files")))
    costs = data.get("cost_tables", {})
    if not isinstance(costs, Mapping):
        raise r.fail("cost_tables", "must be an object")
    provenance = data.get("provenance", {})
    if not isinstance(provenance, Mapping):
        raise r.fail("provenance", "must be an object")
    return Manifest(model=model, model_config=dict(config), classes=classes, input=spec,
                    threshold=threshold, stages=stages, files=files, cost_tables=dict(costs),
                    provenance=dict(provenance))


def _class(r: _Reader, c, where: str) -> ClassInfo:
    color = r.array(r.get(c, "color", where), f"{where}.color", 3)
    rgb = tuple(r.integer(v, f"{where}.color", 0) for v in color)
    if any(v > 255 for v in rgb):
        raise r.fail(f"{where}.color", f"must be 0..255, got {list(rgb)}")
    return ClassInfo(r.integer(r.get(c, "id", where), f"{where}.id", 0),
                     r.string(r.get(c, "name", where), f"{where}.name"), rgb)


def _input(r: _Reader, i) -> InputSpec:
    h = r.integer(r.get(i, "height", "input"), "input.height", 32)
    w = r.integer(r.get(i, "width", "input"), "input.width", 32)
    if h % 32 or w % 32:
        raise r.fail("input", f"size {h}x{w} must be multiples of 32")
    mean = tuple(r.number(v, "input.mean") for v in r.array(r.get(i, "mean", "input"),
                                                            "input.mean", 3))
    std = tuple(r.number(v, "input.std") for v in r.array(r.get(i, "std", "input"),
                                                          "input.std", 3))
    if any(s <= 0 for s in std):
        raise r.fail("input.std", "must be > 0")
    order = r.string(i.get("color_order", "RGB"), "input.color_order", ("RGB", "BGR"))
    scale = r.number(i.get("pixel_scale", 1.0 / 255.0), "input.pixel_scale")
    return InputSpec(h, w, mean, std, order, scale)  # type: ignore[arg-type]


def _tensor(r: _Reader, t, where: str) -> TensorSpec:
    shape = tuple(r.integer(v, f"{where}.shape", 1)
                  for v in r.array(r.get(t, "shape", where), f"{where}.shape"))
    if not shape:
        raise r.fail(f"{where}.shape", "must not be empty")
    q = t.get("quantization") if isinstance(t, Mapping) else None
    quant = None
    if q is not None:
        scale = r.number(r.get(q, "scale", f"{where}.quantization"), f"{where}.quantization")
        if scale <= 0:
            raise r.fail(f"{where}.quantization.scale", f"must be > 0, got {scale}")
        zp = r.integer(r.get(q, "zero_point", f"{where}.quantization"),
                       f"{where}.quantization.zero_point")
        quant = Quantization(scale, zp)
    return TensorSpec(
        name=r.string(r.get(t, "name", where), f"{where}.name"),
        shape=shape,
        dtype=r.string(t.get("dtype", "float32"), f"{where}.dtype", DTYPES),
        layout=r.string(t.get("layout", "NCHW"), f"{where}.layout", ("NCHW", "NHWC")),
        quantization=quant,
    )


def _stage(r: _Reader, s, where: str) -> StageSpec:
    exit_ = s.get("exit") if isinstance(s, Mapping) else None
    inputs = tuple(_tensor(r, t, f"{where}.inputs[{i}]")
                   for i, t in enumerate(r.array(r.get(s, "inputs", where), f"{where}.inputs")))
    outputs = tuple(_tensor(r, t, f"{where}.outputs[{i}]")
                    for i, t in enumerate(r.array(r.get(s, "outputs", where),
                                                  f"{where}.outputs")))
    if not inputs or not outputs:
        raise r.fail(where, "needs at least one input and one output")
    f = r.get(s, "flops", where)
    flops = StageFlops(*(r.number(r.get(f, k, f"{where}.flops"), f"{where}.flops.{k}")
                         for k in ("fixed", "masked", "fill")))
    return StageSpec(
        index=r.integer(r.get(s, "index", where), f"{where}.index", 1),
        exit=None if exit_ is None else r.integer(exit_, f"{where}.exit", 1),
        inputs=inputs, outputs=outputs, flops=flops,
    )


def _file(r: _Reader, f, where: str) -> FileEntry:
    path = r.string(r.get(f, "path", where), f"{where}.path")
    if Path(path).is_absolute() or ".." in Path(path).parts:
        raise r.fail(f"{where}.path", f"must be relative inside the bundle, got {path!r}")
    digest = r.string(r.get(f, "sha256", where), f"{where}.sha256")
    if len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
        raise r.fail(f"{where}.sha256", "must be 64 lowercase hex digits")
    methods = tuple(r.string(m, f"{where}.methods")
                    for m in r.array(f.get("methods", []), f"{where}.methods"))
    raw_io = f.get("io", {})
    if not isinstance(raw_io, Mapping):
        raise r.fail(f"{where}.io", "must be an object")
    io = {}
    for method, spec in raw_io.items():
        at = f"{where}.io.{method}"
        io[method] = MethodIO(*(
            tuple(_tensor(r, t, f"{at}.{side}[{i}]")
                  for i, t in enumerate(r.array(r.get(spec, side, at), f"{at}.{side}")))
            for side in ("inputs", "outputs")))
    kernels = tuple(r.string(k, f"{where}.kernels", KERNELS)
                    for k in r.array(f.get("kernels", []), f"{where}.kernels"))
    return FileEntry(
        path=path, sha256=digest, bytes=r.integer(r.get(f, "bytes", where), f"{where}.bytes", 0),
        backend=r.string(r.get(f, "backend", where), f"{where}.backend", BACKENDS),
        precision=r.string(r.get(f, "precision", where), f"{where}.precision", PRECISIONS),
        methods=methods, io=io, kernels=kernels,
    )


# ---------------------------------------------------------------------------- read, write
def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_bundle(folder: str | Path, verify_files: bool = True) -> Manifest:
    """Read and validate a bundle folder; with verify_files, every file's size and sha256."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise BundleError(f"bundle {folder} is not a folder: pass the folder `adpc convert` wrote")
    if not path.is_file():
        raise BundleError(f"bundle {folder} has no {MANIFEST}: re-run `adpc convert`")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON ({exc}): re-run `adpc convert`") from None
    manifest = manifest_from_dict(data, str(path))
    if verify_files:
        for entry in manifest.files:
            file = folder / entry.path
            if not file.is_file():
                raise BundleError(f"bundle {folder}: file {entry.path} listed in the manifest "
                                  "is missing: copy the whole bundle folder")
            size = file.stat().st_size
            if size != entry.bytes:
                raise BundleError(f"bundle {folder}: {entry.path} has {size} bytes, the manifest "
                                  f"says {entry.bytes} (truncated copy?): copy it again")
            if sha256_of(file) != entry.sha256:
                raise BundleError(f"bundle {folder}: {entry.path} fails its sha256 check "
                                  "(corrupt or modified): re-run `adpc convert`")
    return manifest


@dataclass(frozen=True)
class BundleFile:
    """A file to put into a bundle: where it is now and what it holds."""

    source: Path
    backend: str
    precision: str
    methods: tuple[str, ...] = ()
    io: Mapping[str, MethodIO] = field(default_factory=dict)
    kernels: tuple[str, ...] = ()


def write_bundle(folder: str | Path, manifest: Manifest, files: Mapping[str, BundleFile]) -> Path:
    """Write a bundle atomically: build it in a temp folder, then rename into place.

    files: bundle-relative name -> BundleFile. Their manifest entries (size, sha256) are
    computed here and replace `manifest.files`. A bad manifest is refused before anything is
    written; an existing bundle at `folder` is replaced only once the new one is complete.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        entries = []
        for rel, item in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(item.source, target)
            entries.append(FileEntry(rel, sha256_of(target), target.stat().st_size,
                                     item.backend, item.precision, tuple(item.methods),
                                     dict(item.io), tuple(item.kernels)))
        final = Manifest(**{**manifest.__dict__, "files": tuple(entries)})
        manifest_from_dict(final.to_dict(), "manifest to write")  # never write a bad one
        (tmp / MANIFEST).write_text(json.dumps(final.to_dict(), indent=1))
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old.{os.getpid()}")
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old)
        else:
            tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return folder
