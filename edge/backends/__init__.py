"""Runtimes behind one interface: `open_backend(name, bundle, precision)` -> Backend.

Each backend is a small class in its own module, imported only when asked for, so a phone-side
install needs only the runtime it uses.
"""

from .base import (
    BACKEND_MODULES,
    Backend,
    BackendUnavailable,
    available_backends,
    dequantize,
    open_backend,
    quantize,
)

__all__ = [
    "BACKEND_MODULES",
    "Backend",
    "BackendUnavailable",
    "available_backends",
    "dequantize",
    "open_backend",
    "quantize",
]
