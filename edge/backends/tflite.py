"""LiteRT (TFLite) backend: one .tflite whose signatures `stage1` .. `stage4` are the stages.

The runtime is `ai_edge_litert` (XNNPACK by default), or the older `tflite_runtime` when only
that is installed. The base class already converts contract tensors to the file's own form
(int8 with the recorded scale / zero point, layout), so this class only binds tensors by name.
litert names a signature's tensors `args_0..` / `output_0..` in argument order, but the
runtime's dictionaries are sorted by name (`args_10` before `args_2`): order by the index.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import BundleError, FileEntry, TensorSpec
from .base import Backend, BackendUnavailable

INSTALL_HINT = "pip install 'adpc[tflite]'"
_INDEX = re.compile(r"(\d+)$")


def _interpreter_class() -> Any:
    """ai_edge_litert's Interpreter, else tflite_runtime's, else BackendUnavailable."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise BackendUnavailable("the TFLite backend needs the LiteRT runtime "
                                     f"(ai-edge-litert): {INSTALL_HINT}") from None
    return Interpreter


def runtime_available() -> bool:
    try:
        _interpreter_class()
    except BackendUnavailable:
        return False
    return True


def ordered_names(names: Collection[str], what: str = "tensor") -> list[str]:
    """Signature tensor names in argument order (by their trailing index, not by name)."""
    indexed = {}
    for name in names:
        match = _INDEX.search(name)
        if match is None or int(match.group(1)) in indexed:
            raise ValueError(f"unexpected {what} name {name!r} in the .tflite signature "
                             f"({sorted(names)}): convert with litert-torch")
        indexed[int(match.group(1))] = name
    if sorted(indexed) != list(range(len(indexed))):
        raise ValueError(f"the .tflite signature's {what}s {sorted(names)} are not numbered "
                         "0..N-1: convert with litert-torch")
    return [indexed[i] for i in range(len(indexed))]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


class TFLiteBackend(Backend):
    """Runs a bundle's .tflite through signature runners, one per stage."""

    name = "tflite"

    def _load(self, entry: FileEntry) -> None:
        path = self.folder / entry.path
        if not path.is_file():
            raise BundleError(f"bundle {self.folder}: {entry.path} is missing: copy the whole "
                              "bundle folder")
        self._interpreter = self._open(path)
        self._runners: dict[int, tuple[Any, list[str], list[str]]] = {}
        for k in range(1, len(self.manifest.stages) + 1):
            self._runners[k] = self._bind(path, k)

    def _open(self, path: Path) -> Any:
        """The interpreter, or one line naming the bad file (truncated, not a .tflite)."""
        interpreter = _interpreter_class()
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 (or None: LiteRT's default), got "
                             f"{self.threads}")
        try:
            return interpreter(model_path=str(path), num_threads=self.threads)
        except (ValueError, RuntimeError) as exc:
            raise BundleError(f"{path} is not a loadable .tflite ({_first_line(exc)}): copy the "
                              "bundle again or re-run `adpc convert --backend tflite`") from None

    def _bind(self, path: Path, k: int) -> tuple[Any, list[str], list[str]]:
        """Stage k's runner and its tensor names in contract order, checked against the
        manifest's I/O (count, shape and dtype: a layout mix-up would run silently wrong)."""
        method = self.method(k)
        try:
            runner = self._interpreter.get_signature_runner(method)
            ins = runner.get_input_details()
            outs = runner.get_output_details()
            in_names, out_names = ordered_names(ins, "input"), ordered_names(outs, "output")
        except ValueError as exc:
            raise BundleError(f"{path} has no usable signature {method!r} "
                              f"({_first_line(exc)}): re-run `adpc convert --backend tflite`"
                              ) from None
        want_in, want_out = self.method_io(k)
        for side, names, details, want in (("input", in_names, ins, want_in),
                                           ("output", out_names, outs, want_out)):
            self._check(path, method, side, [details[n] for n in names], want)
        return runner, in_names, out_names

    @staticmethod
    def _check(
        path: Path, method: str, side: str, details: list[dict], want: Sequence[TensorSpec]
    ) -> None:
        if len(details) != len(want):
            raise BundleError(f"{path} signature {method} has {len(details)} {side}s, the "
                              f"manifest says {len(want)}: the file and manifest do not match")
        for detail, spec in zip(details, want, strict=True):
            shape = tuple(int(v) for v in detail["shape"])
            expect = spec.shape
            if spec.layout == "NHWC" and len(expect) == 4:
                expect = (expect[0], *expect[2:], expect[1])
            dtype = np.dtype(detail["dtype"]).name
            if shape != tuple(expect) or dtype != spec.dtype:
                raise BundleError(
                    f"{path} signature {method} {side} {spec.name} is {dtype} {list(shape)}, the "
                    f"manifest says {spec.dtype} {spec.layout} {list(expect)}: re-run `adpc "
                    "convert --backend tflite`")

    def _run(self, k: int, inputs: list[np.ndarray]) -> list[np.ndarray]:
        runner, in_names, out_names = self._runners[k]
        outputs = runner(**dict(zip(in_names, inputs, strict=True)))
        return [outputs[n] for n in out_names]

    def close(self) -> None:
        self._runners = {}
        self._interpreter = None


BACKEND = TFLiteBackend
