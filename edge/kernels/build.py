"""Compile the masked-conv core on first use, cached by a hash of sources, compiler and flags.

No network, no build system: one g++ call per library (2-3 s). Builds go to a temporary file
and are renamed into the cache, so a crashed or concurrent build never leaves half a library.
A missing compiler is reported as `KernelUnavailable`; callers fall back or say what to install.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent
FLAGS = ("-O3", "-std=c++17", "-fPIC", "-shared", "-fno-math-errno", "-Wall")
"""Portable flags only: no -march. On x86-64 the core compiles clones for AVX-512, AVX2 and the
baseline and picks one at load time (target_clones); aarch64 gets NEON as its baseline."""


class KernelUnavailable(RuntimeError):
    """The native kernel cannot be built here (no compiler, or the build failed)."""


@dataclass(frozen=True)
class Library:
    """One shared library to build: its sources, and extra compile/link arguments."""

    name: str
    sources: tuple[Path, ...]
    extra: tuple[str, ...] = ()


def cache_dir() -> Path:
    root = os.environ.get("ADPC_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "adpc"
    )
    return Path(root) / "kernels"


def compiler() -> str:
    wanted = os.environ.get("CXX")
    found = shutil.which(wanted) if wanted else shutil.which("g++") or shutil.which("c++")
    if not found:
        raise KernelUnavailable(
            f"no C++ compiler found{f' (CXX={wanted})' if wanted else ''}: install g++ "
            "(Debian: apt-get install g++) or point CXX at one"
        )
    return found


def _fingerprint(cxx: str, library: Library) -> str:
    digest = hashlib.sha256()
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    digest.update(version.encode())
    for path in (*sorted(SOURCE_DIR.glob("*.h")), *library.sources):
        digest.update(path.read_bytes())
    digest.update(" ".join((*FLAGS, *library.extra)).encode())
    return digest.hexdigest()[:16]


def build(library: Library) -> Path:
    """Path of the compiled library, building it once per source/compiler/flags change."""
    cxx = compiler()
    target = cache_dir() / f"{library.name}-{_fingerprint(cxx, library)}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    command = [cxx, *FLAGS, "-I", str(SOURCE_DIR), *map(str, library.sources), "-o", tmp,
               *library.extra, "-lpthread"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        os.unlink(tmp)
        first = (result.stderr.strip().splitlines() or ["unknown error"])[0]
        raise KernelUnavailable(f"building {library.name} failed ({first}); run with a working g++")
    os.replace(tmp, target)
    return target


CORE = Library("adpc_kernels", (SOURCE_DIR / "c_api.cpp",))


def executorch_root() -> Path:
    """The installed executorch wheel (it ships headers and libexecutorch.so)."""
    try:
        import executorch
    except ImportError as err:
        raise KernelUnavailable(
            "executorch is not installed: pip install 'adpc[executorch]'"
        ) from err
    return Path(executorch.__path__[0])


def executorch_library() -> Library:
    """The ExecuTorch binding, compiled against the installed wheel (flags: TOOLCHAIN.md)."""
    root = executorch_root()
    lib = root / "lib"
    include = root / "include"
    return Library(
        "adpc_executorch_kernels",
        (SOURCE_DIR / "et_kernel.cpp",),
        ("-DC10_USING_CUSTOM_GENERATED_MACROS", "-DET_USE_THREADPOOL", f"-I{include}",
         f"-I{include / 'executorch/runtime/core/portable_type/c10'}", f"-L{lib}",
         "-lexecutorch", "-lexecutorch_threadpool", f"-Wl,-rpath,{lib}"),
    )
