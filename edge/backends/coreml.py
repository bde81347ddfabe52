"""Core ML backend: one zipped .mlpackage per stage, predicted by coremltools on macOS.

Core ML runs only on Apple platforms: on Linux opening this backend raises BackendUnavailable
(the converter spec-validated the files instead). The packages are unzipped into a private
temp folder at load and removed at `close()`. `threads` is ignored (Core ML schedules itself);
`ADPC_COREML_COMPUTE_UNITS` picks the compute units (ALL, CPU_ONLY, CPU_AND_GPU, CPU_AND_NE;
default ALL). Asking for precision "fp32" opens the fp16 files when the bundle has no fp32
Core ML files: the converter writes float models as fp16 compute with float32 I/O.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..bundle import BundleError, FileEntry
from .base import Backend, BackendUnavailable

MACOS_ONLY = ("Core ML predictions need macOS (coremltools cannot run models on Linux); the "
              "files were spec-validated at conversion")
PARITY_NOTE = "Core ML numeric parity needs macOS: run `adpc verify` on a Mac"
INSTALL_HINT = "pip install 'adpc[coreml]'"
COMPUTE_UNITS_ENV = "ADPC_COREML_COMPUTE_UNITS"


def runtime_available() -> bool:
    """True only on macOS with coremltools installed (it cannot predict anywhere else)."""
    if sys.platform != "darwin":
        return False
    try:
        import coremltools  # noqa: F401
    except ImportError:
        return False
    return True


def unpack_mlpackage(archive: str | Path, dest: str | Path) -> Path:
    """Unzip a zipped .mlpackage into dest; returns the package folder.

    The zip must hold exactly one top-level `<name>.mlpackage/` folder and no absolute or
    parent paths (a crafted bundle must not write outside dest).
    """
    archive, dest = Path(archive), Path(dest)
    try:
        zf = zipfile.ZipFile(archive)
    except (OSError, zipfile.BadZipFile) as exc:
        raise BundleError(f"{archive} is not a readable zip ({exc}): re-run "
                          "`adpc convert --backend coreml`") from None
    with zf:
        names = [PurePosixPath(n) for n in zf.namelist()]
        tops = {n.parts[0] for n in names if n.parts}
        bad = [str(n) for n in names if n.is_absolute() or ".." in n.parts]
        if bad or len(tops) != 1 or not next(iter(tops)).endswith(".mlpackage"):
            raise BundleError(f"{archive} must hold one <name>.mlpackage/ folder and nothing "
                              f"else (found {sorted(tops)[:3]}{', unsafe paths' if bad else ''})"
                              ": re-run `adpc convert --backend coreml`")
        zf.extractall(dest)
    return dest / tops.pop()


def _compute_units(ct: Any) -> Any:
    name = os.environ.get(COMPUTE_UNITS_ENV, "ALL").upper()
    if name not in ct.ComputeUnit.__members__:
        raise BackendUnavailable(f"{COMPUTE_UNITS_ENV}={name!r} is not a Core ML compute unit: "
                                 f"use one of {', '.join(ct.ComputeUnit.__members__)}")
    return ct.ComputeUnit[name]


class CoreMLBackend(Backend):
    """Runs a bundle's per-stage Core ML packages (macOS only)."""

    name = "coreml"

    _tmp: Path | None = None

    # ----------------------------------------------------------------------- subclass API
    def _load(self, entry: FileEntry) -> None:
        """Load every stage's package (`self.entries`: one file per stage)."""
        self._models: dict[int, Any] = {}
        if sys.platform != "darwin":
            raise BackendUnavailable(MACOS_ONLY)
        try:
            import coremltools as ct
        except ImportError:
            raise BackendUnavailable(f"the Core ML backend needs coremltools: {INSTALL_HINT}") \
                from None
        units = _compute_units(ct)
        self._tmp = Path(tempfile.mkdtemp(prefix="adpc-coreml-"))
        try:
            for k, item in self.entries.items():
                package = unpack_mlpackage(self.folder / item.path, self._tmp / f"stage{k}")
                self._models[k] = ct.models.MLModel(str(package), compute_units=units)
        except Exception:
            self.close()
            raise

    def _run(self, k: int, inputs: list[np.ndarray]) -> list[np.ndarray]:
        file_in, file_out = self.method_io(k)
        got = self._models[k].predict({t.name: x for t, x in zip(file_in, inputs, strict=True)})
        return [np.asarray(got[t.name]) for t in file_out]

    def close(self) -> None:
        self._models.clear()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


BACKEND = CoreMLBackend
