"""ExecuTorch backend: one .pte with a method per stage, run by the ExecuTorch runtime.

The Python runtime exchanges torch tensors; torch is therefore needed here (the app side uses
ExecuTorch's Java/C++ API instead). Threads: ExecuTorch's one pool, shared by XNNPACK and
custom kernels, sized for the whole process.
"""

from __future__ import annotations

import numpy as np

from ..bundle import BundleError, FileEntry, TensorSpec
from .base import Backend, BackendUnavailable


def runtime_available() -> bool:
    try:
        import executorch.runtime  # noqa: F401
    except ImportError:
        return False
    return True


def set_threads(threads: int) -> None:
    """Size ExecuTorch's thread pool (XNNPACK and custom kernels share it)."""
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

    _unsafe_reset_threadpool(int(threads))


def load_kernels(entry: FileEntry) -> None:
    """Load the custom kernels a file names (sparse mode) before its methods are loaded."""
    from ..kernels.build import KernelUnavailable
    from ..kernels.executorch_op import load_executorch_kernels

    try:
        load_executorch_kernels()
    except KernelUnavailable as err:
        raise BackendUnavailable(f"{entry.path} needs the adpc sparse kernel "
                                 f"({', '.join(entry.kernels)}): {err}") from None


def nhwc(spec: TensorSpec, x) -> bool:
    return spec.layout == "NHWC" and x.ndim == 4


class ExecuTorchBackend(Backend):
    name = "executorch"

    def _load(self, entry: FileEntry) -> None:
        if not runtime_available():
            raise BackendUnavailable("the ExecuTorch runtime is not installed: "
                                     "pip install 'adpc[executorch]'")
        import torch
        from executorch.runtime import Runtime

        self._torch = torch
        if entry.kernels:
            load_kernels(entry)
        if self.threads:
            set_threads(self.threads)
        path = self.folder / entry.path
        try:
            program = Runtime.get().load_program(path)
            self._methods = {name: program.load_method(name) for name in entry.methods}
        except Exception as exc:  # the runtime raises plain RuntimeErrors with long text
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise BundleError(f"{path} is not a loadable ExecuTorch program ({first}): "
                              "re-run `adpc convert --backend executorch`") from None
        missing = [f"stage{k}" for k in range(1, len(self.manifest.stages) + 1)
                   if f"stage{k}" not in self._methods]
        if missing:
            raise BundleError(f"{path} lacks methods {', '.join(missing)}: re-run `adpc convert`")

    def _run(self, k: int, inputs: list[np.ndarray]) -> list[np.ndarray]:
        # NHWC file tensors: the program takes them as channels-last N x C x H x W tensors
        file_in, file_out = self.method_io(k)
        tensors = [self._torch.from_numpy(x).permute(0, 3, 1, 2) if nhwc(t, x)
                   else self._torch.from_numpy(x) for x, t in zip(inputs, file_in, strict=True)]
        outputs = self._methods[f"stage{k}"].execute(tensors)
        return [o.permute(0, 2, 3, 1).numpy() if nhwc(t, o) else o.numpy()
                for o, t in zip(outputs, file_out, strict=True)]


BACKEND = ExecuTorchBackend
