"""Shared setup of the runtime benchmarks (deadline adherence, host overhead, soak).

`calibrated_bundle` copies a bundle (so the benchmark's cost table does not touch the source)
and runs `adpc bench --calibrate`'s fit once for this device, backend, precision and thread
count; `scenes` renders labelled synthetic street scenes at the bundle's size.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.backends import open_backend  # noqa: E402
from edge.bench import calibrate, cost_table_key, store_cost_table  # noqa: E402
from edge.bundle import Manifest, read_bundle  # noqa: E402
from edge.preprocess import to_input  # noqa: E402

DEFAULT_SOURCE = "bundles/bench/int8_256x512"
"""The shipped model's int8 (QAT) bundle at 256x512 made by benchmarks/runtime_latency.py."""


def add_bundle_args(p) -> None:
    """The bundle options every runtime benchmark shares (source bundle, copy, backend)."""
    p.add_argument("--source", default=DEFAULT_SOURCE, help="bundle to copy and calibrate")
    p.add_argument("--bundle", default="bundles/runtime/int8_256x512")
    p.add_argument("--backend", default="executorch")
    p.add_argument("--precision", default="int8")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def calibrated_bundle(source: str | Path, dest: str | Path, backend: str, precision: str,
                      threads: int, frames: list[np.ndarray]) -> Path:
    """A copy of `source` at `dest` whose cost table for this device fits `threads`."""
    source, dest = Path(source), Path(dest)
    if not dest.is_dir():
        read_bundle(source)  # names a missing / damaged source in one line
        shutil.copytree(source, dest)
    with open_backend(backend, dest, precision, threads=threads) as b:
        table = read_bundle(dest, verify_files=False).cost_tables.get(cost_table_key(b))
        if table is None or table.get("threads") != threads:
            say(f"calibrating the cost model of {dest} ({backend} {precision}, "
                f"{threads} threads)")
            model = calibrate(b, frames, progress=say)
            store_cost_table(dest, cost_table_key(b),
                             model.to_table(backend=b.name, threads=threads))
    return dest


def scenes(manifest: Manifest, count: int, seed0: int = 10_000
           ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(network input, trainId labels at full size) of `count` held-out synthetic scenes."""
    from model_zoo.data.synthetic import render_scene

    out = []
    for i in range(count):
        image, label = render_scene(seed0 + i, manifest.input.height, manifest.input.width)
        out.append((to_input(image, manifest.input)[0], np.asarray(label)))
    return out


def quarter(labels: np.ndarray) -> np.ndarray:
    """Full-size labels at the exits' 1/4 resolution (nearest: every 4th pixel, offset 2)."""
    return labels[2::4, 2::4]


def confusion(pred: np.ndarray, truth: np.ndarray, k: int) -> np.ndarray:
    keep = truth != 255
    return np.bincount(k * truth[keep].astype(np.int64) + pred[keep], minlength=k * k
                       ).reshape(k, k)


def miou(matrix: np.ndarray) -> float:
    """Mean IoU in % over the classes present in the ground truth."""
    inter = np.diag(matrix).astype(float)
    union = matrix.sum(0) + matrix.sum(1) - np.diag(matrix)
    present = matrix.sum(1) > 0
    return float(100 * np.mean(inter[present] / np.maximum(union[present], 1)))
