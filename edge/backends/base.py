"""The backend interface: load one backend's stage files from a bundle, run stage k.

Every backend takes and returns the stage contract's tensors (float32, NCHW, the names and
shapes of the manifest's stage specs) and converts at its own boundary: int8 quantisation with
the file's stored scale / zero point, fp16, NHWC. The host step between stages (edge.host) is
therefore the same numpy code for every backend.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..bundle import FileEntry, Manifest, Quantization, StageSpec, TensorSpec, read_bundle

BACKEND_MODULES = {
    "executorch": "edge.backends.executorch",
    "tflite": "edge.backends.tflite",
    "coreml": "edge.backends.coreml",
    "torch": "edge.backends.torch_program",
}


class BackendUnavailable(RuntimeError):
    """The runtime is not installed or cannot run here; the message says what to install."""


def quantize(x: np.ndarray, q: Quantization, dtype: str = "int8") -> np.ndarray:
    """real -> int: round(x / scale) + zero_point, saturated to the dtype's range."""
    info = np.iinfo(dtype)
    values = np.round(x.astype(np.float32) / np.float32(q.scale)) + q.zero_point
    return np.clip(values, info.min, info.max).astype(dtype)


def dequantize(x: np.ndarray, q: Quantization) -> np.ndarray:
    """int -> real: scale * (x - zero_point), float32."""
    return (np.float32(q.scale) * (x.astype(np.float32) - np.float32(q.zero_point))).astype(
        np.float32)


def to_file_layout(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """A contract tensor (float32 NCHW) in the file's own dtype / layout / quantisation."""
    if spec.layout == "NHWC" and x.ndim == 4:
        x = x.transpose(0, 2, 3, 1)
    if spec.quantization is not None:
        return np.ascontiguousarray(quantize(x, spec.quantization, spec.dtype))
    return np.ascontiguousarray(x.astype(spec.dtype))


def from_file_layout(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """A file's output back to the contract: float32 NCHW."""
    x = np.asarray(x)
    if spec.quantization is not None:
        x = dequantize(x, spec.quantization)
    x = x.astype(np.float32, copy=False)
    if spec.layout == "NHWC" and x.ndim == 4:
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x)


def same_form(a: TensorSpec, b: TensorSpec) -> bool:
    """Whether two specs describe the same bytes (names aside)."""
    return (tuple(a.shape), a.dtype, a.layout, a.quantization) == (
        tuple(b.shape), b.dtype, b.layout, b.quantization)


@dataclass(frozen=True)
class FileTensor:
    """A stage's feature output in its file's own form (e.g. int8 NHWC with a scale).

    The next stage takes it as it is when its file wants exactly that form (no dequantise,
    transpose and quantise at the boundary); `np.asarray` gives the contract tensor (float32
    NCHW) for anything else.
    """

    data: np.ndarray
    spec: TensorSpec

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.spec.shape)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        x = from_file_layout(self.data, self.spec)
        return x if dtype is None else x.astype(dtype)


class Backend(ABC):
    """One runtime driving one precision of a bundle's stages.

    Subclasses set `name` and implement `_load(entry)` (the file holding stage 1; a backend
    with one file per stage reads `self.entries`, stage -> file) and `_run(k, inputs)`, where
    inputs are already in the file's own I/O form (see `method_io`).
    """

    name: str = ""

    def __init__(
        self,
        bundle: str | Path,
        precision: str = "fp32",
        threads: int | None = None,
        manifest: Manifest | None = None,
    ) -> None:
        self.folder = Path(bundle)
        self.manifest = manifest if manifest is not None else read_bundle(self.folder)
        precision = self._float_alias(precision)
        self.precision = precision
        self.threads = threads
        files = self.manifest.files_for(self.name, precision)
        if not files:
            have = sorted({f"{f.backend}/{f.precision}" for f in self.manifest.files})
            raise BackendUnavailable(
                f"bundle {self.folder} has no {self.name} {precision} files (it has "
                f"{', '.join(have) or 'none'}): run `adpc convert --backend {self.name} "
                f"--precision {precision}`")
        by_method = {m: f for f in files for m in f.methods}
        missing = [self.method(s.index) for s in self.manifest.stages
                   if self.method(s.index) not in by_method]
        if missing:
            raise BackendUnavailable(
                f"bundle {self.folder} has no {self.name} {precision} file for "
                f"{', '.join(missing)}: re-run `adpc convert --backend {self.name}`")
        self.entries = {s.index: by_method[self.method(s.index)] for s in self.manifest.stages}
        self.entry = self.entries[1]
        self._load(self.entry)

    # ----------------------------------------------------------------------- subclass API
    @abstractmethod
    def _load(self, entry: FileEntry) -> None: ...

    @abstractmethod
    def _run(self, k: int, inputs: list[np.ndarray]) -> list[np.ndarray]: ...

    # ---------------------------------------------------------------------------- shared
    def _float_alias(self, precision: str) -> str:
        """"fp32" means the float files: a backend whose bundle holds them as fp16 (Core ML)
        gets those."""
        files = self.manifest.files_for
        if precision == "fp32" and not files(self.name, "fp32") and files(self.name, "fp16"):
            return "fp16"
        return precision

    def stage(self, k: int) -> StageSpec:
        return self.manifest.stages[k - 1]

    def method(self, k: int) -> str:
        return f"stage{k}"

    def method_io(self, k: int) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        """The file's own I/O of stage k (the contract unless the file overrides it)."""
        spec = self.stage(k)
        own = self.entries[k].io.get(self.method(k))
        return (own.inputs, own.outputs) if own is not None else (spec.inputs, spec.outputs)

    def run_stage(self, k: int, inputs: Sequence[np.ndarray | FileTensor]
                  ) -> list[np.ndarray | FileTensor]:
        """Stage k on contract tensors (float32 NCHW) -> contract tensors.

        Features whose file form is not the contract's come back as FileTensors, which the
        next stage takes without conversion when its file wants the same form.
        """
        spec = self.stage(k)
        if len(inputs) != len(spec.inputs):
            raise ValueError(f"stage {k} takes {len(spec.inputs)} inputs "
                             f"({', '.join(t.name for t in spec.inputs)}), got {len(inputs)}")
        for x, t in zip(inputs, spec.inputs, strict=True):
            if tuple(x.shape) != tuple(t.shape):
                raise ValueError(f"stage {k} input {t.name} must be {list(t.shape)}, got "
                                 f"{list(x.shape)}: frames must be resized to the bundle size")
        file_in, file_out = self.method_io(k)
        raw = self._run(k, [
            x.data if isinstance(x, FileTensor) and same_form(x.spec, t)
            else to_file_layout(np.asarray(x), t) for x, t in zip(inputs, file_in, strict=True)])
        features = len(file_out) - (spec.exit is not None)  # the logits come last
        return [FileTensor(np.asarray(y), t)
                if i < features and (t.quantization is not None or t.layout != "NCHW")
                else from_file_layout(y, t) for i, (y, t) in enumerate(zip(raw, file_out,
                                                                           strict=True))]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the runtime (optional)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_backend(
    name: str, bundle: str | Path, precision: str = "fp32", threads: int | None = None,
    manifest: Manifest | None = None,
) -> Backend:
    """The backend class for `name`, loaded on a bundle; BackendUnavailable names the fix."""
    if name not in BACKEND_MODULES:
        raise BackendUnavailable(f"unknown backend {name!r}: choose one of "
                                 f"{', '.join(BACKEND_MODULES)}")
    module = importlib.import_module(BACKEND_MODULES[name])
    return module.BACKEND(bundle, precision=precision, threads=threads, manifest=manifest)


def available_backends() -> list[str]:
    """Backends whose runtime imports here (Core ML imports on Linux but cannot predict)."""
    out = []
    for name, path in BACKEND_MODULES.items():
        module = importlib.import_module(path)
        if module.runtime_available():
            out.append(name)
    return out
