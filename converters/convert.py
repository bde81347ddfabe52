"""`adpc convert`: a checkpoint -> a bundle folder with every requested backend's stage files.

The steps (each a function of the previous artefact): `export.load_source` -> `export.stage_set`
-> each backend's `convert` into a private work folder -> `stages.build_manifest` plus the
files -> `edge.bundle.write_bundle` (atomic: a failed conversion leaves no half-written
bundle, and an existing bundle is replaced only once the new one is complete).
"""

from __future__ import annotations

import importlib
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from edge.bundle import Manifest, read_bundle, sha256_of, write_bundle

from .export import BackendFiles, ExportError, Source, StageSet, load_source, stage_set
from .stages import build_manifest

PHONE_BACKENDS = ("executorch", "tflite", "coreml")
"""What `--backend all` converts: the runtimes a phone has."""
BACKENDS = (*PHONE_BACKENDS, "torch")
_MODULES = {**{name: f"converters.{name}" for name in PHONE_BACKENDS},
            "torch": "converters.torch_program"}
_EXTRAS = {"executorch": "executorch", "tflite": "tflite", "coreml": "coreml", "torch": "dev"}


class MissingBackend(ImportError):
    """A converter's package is not installed; the message names the extra to install."""


def backend_module(name: str):
    """The converter module of a backend, or MissingBackend with the install hint."""
    if name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}: choose from {', '.join(BACKENDS)} or all")
    module = importlib.import_module(_MODULES[name])
    try:
        module._require()
    except ImportError as exc:
        raise MissingBackend(f"{name} conversion is not installed ({exc}); "
                             f"pip install 'adpc[{_EXTRAS[name]}]'") from None
    return module


@dataclass
class ConvertResult:
    bundle: Path
    manifest: Manifest
    stages: StageSet
    outputs: list[BackendFiles]
    seconds: dict[str, float]


def provenance(source: Source, stages: StageSet) -> dict:
    """Where the bundle came from, so `adpc verify` can rebuild the PyTorch reference."""
    out: dict = {"precision": stages.precision, "quantized_from": stages.quantized_from}
    if source.checkpoint is not None:
        out["checkpoint"] = str(Path(source.checkpoint).resolve())
        out["checkpoint_sha256"] = sha256_of(Path(source.checkpoint))
    if source.qat_path is not None and stages.quantized_from == "qat":
        out["qat_checkpoint"] = str(Path(source.qat_path).resolve())
    return out


def convert_stages(
    out: str | Path,
    stages: StageSet,
    backends: Sequence[str],
    origin: dict | None = None,
    progress: Callable[[str], None] | None = None,
) -> ConvertResult:
    """Convert a StageSet for each backend and write the bundle folder `out` atomically."""
    say = progress or (lambda _msg: None)
    modules = {name: backend_module(name) for name in backends}  # fail before any work
    outputs, seconds = [], {}
    with tempfile.TemporaryDirectory(prefix="adpc-convert-") as work:
        for name, module in modules.items():
            start = time.perf_counter()
            outputs.append(module.convert(stages, Path(work) / name, say))
            seconds[name] = round(time.perf_counter() - start, 1)
        files = {rel: item for result in outputs for rel, item in result.files.items()}
        manifest = build_manifest(stages.config, stages.height, stages.width)
        manifest = replace(manifest, provenance=dict(origin or {}))
        say(f"writing the bundle to {out}")
        folder = write_bundle(out, manifest, files)
    return ConvertResult(folder, read_bundle(folder), stages, outputs, seconds)


def convert_bundle(
    out: str | Path,
    backends: Sequence[str],
    precision: str,
    height: int,
    width: int,
    checkpoint: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    sparse: bool = False,
) -> ConvertResult:
    """Convert a checkpoint (None: the shipped model) into the bundle folder `out`.

    sparse: ExecuTorch only; the stage files call the native sparse masked conv.
    """
    say = progress or (lambda _msg: None)
    if sparse and not set(backends) <= {"executorch", "torch"}:
        raise ExportError("--sparse runs only in ExecuTorch and PyTorch: use --backend "
                          "executorch, torch or executorch,torch")
    if "torch" in backends and precision != "fp32":
        raise ExportError("the torch backend runs fp32 stage programs only: use --precision "
                          "fp32, or executorch/tflite for int8")
    for name in backends:
        backend_module(name)  # a missing extra fails before the slow steps
    source = load_source(checkpoint)
    say(f"building the {precision} stage graphs at {height}x{width}"
        + (" (PTQ calibration on synthetic scenes)" if precision == "int8"
           and source.qat_path is None else ""))
    stages = stage_set(source, precision, height, width, sparse)
    return convert_stages(out, stages, backends, provenance(source, stages), say)
