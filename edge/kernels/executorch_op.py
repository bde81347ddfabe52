"""Load the ExecuTorch kernel library of `adpc::masked_conv2d.out` into this process, once.

A sparse .pte names the op; ExecuTorch resolves it when a method is loaded, so this must run
before `load_method`. Loading the library twice aborts the process (re-registration), hence
the cache.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

from .build import build, executorch_library

OP_NAME = "adpc::masked_conv2d.out"


@functools.cache
def load_executorch_kernels() -> Path:
    """Build (cached) and load the kernel library; raises KernelUnavailable with the fix."""
    path = build(executorch_library())
    ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    return path
