"""PyTorch backend: runs the serialised stage programs of converters/torch_program.py.

Nothing is unpickled: the graph is JSON, and every tensor blob is loaded with
`torch.load(weights_only=True)` before torch's deserialiser sees it (its own loader would fall
back to `weights_only=False` on a blob that fails the safe load). Sparse files need the
`adpc::masked_conv2d` op, registered by importing edge.kernels.torch_op first.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np

from ..bundle import BundleError, FileEntry
from .base import Backend, BackendUnavailable

MEMBERS = ("program.json", "state_dict.pt", "constants.pt", "example_inputs.pt")


def runtime_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _safe_tensors(data: bytes, where: str):
    import torch

    if not data:
        return {}
    try:
        return torch.load(io.BytesIO(data), weights_only=True)
    except Exception as exc:  # pickle errors, unsafe globals, truncation
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise BundleError(f"{where} is not a plain tensor file ({first}): re-run "
                          "`adpc convert --backend torch`") from None


class TorchBackend(Backend):
    name = "torch"

    def _load(self, entry: FileEntry) -> None:
        if not runtime_available():
            raise BackendUnavailable("PyTorch is not installed: pip install torch==2.13.0")
        import torch
        from torch._export.serde.serialize import SerializedArtifact, deserialize

        self._torch = torch
        if entry.kernels:
            from ..kernels import torch_op  # noqa: F401  (registers adpc::masked_conv2d)
        if self.threads:
            torch.set_num_threads(int(self.threads))
        path = self.folder / entry.path
        self._programs = {}
        try:
            with zipfile.ZipFile(path) as archive:
                for method in entry.methods:
                    blobs = [archive.read(f"{method}/{m}") for m in MEMBERS]
                    tensors = [_safe_tensors(b, f"{path}:{method}/{m}")
                               for b, m in zip(blobs[1:], MEMBERS[1:], strict=True)]
                    program = deserialize(SerializedArtifact(blobs[0], *tensors))
                    self._programs[method] = program.module()
        except BundleError:
            raise
        except Exception as exc:  # zip, JSON or graph errors
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise BundleError(f"{path} is not a loadable torch stage file ({first}): re-run "
                              "`adpc convert --backend torch`") from None

    def _run(self, k: int, inputs: list[np.ndarray]) -> list[np.ndarray]:
        torch = self._torch
        with torch.no_grad():
            outputs = self._programs[self.method(k)](*(torch.from_numpy(x) for x in inputs))
        return [o.contiguous().numpy() for o in outputs]


BACKEND = TorchBackend
