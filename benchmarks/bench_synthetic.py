"""Benchmark the synthetic street-scene generator.

Why: training reads every image from ``SyntheticStreetDataset``; if rendering is slower than
the model's step, the GPU/CPU doing the training starves. This measures

* median (and p90) milliseconds per scene at 256x512 and 512x1024 on one core, as wall-clock
  and as process CPU time (the latter is robust to other jobs sharing the machine), and
* DataLoader throughput (images/s) with 0 and 2 workers at 256x512,

prints a table and writes JSON (atomically) to ``--out``.

Usage::

    python benchmarks/bench_synthetic.py [--scenes 20] [--out benchmarks/results/synthetic.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from model_zoo.data.synthetic import SyntheticStreetDataset, render_scene

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "synthetic.json"
SIZES = ((256, 512), (512, 1024))


def time_scenes(height: int, width: int, scenes: int, warmup: int) -> dict[str, float]:
    """Per-scene wall and CPU milliseconds over ``scenes`` different seeds after a warm-up."""
    for seed in range(warmup):
        render_scene(10_000 + seed, height, width)
    wall, cpu = [], []
    for seed in range(scenes):
        w0, c0 = time.perf_counter(), time.process_time()
        render_scene(seed, height, width)
        wall.append((time.perf_counter() - w0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return {
        "height": height,
        "width": width,
        "scenes": scenes,
        "median_ms": statistics.median(wall),
        "p90_ms": float(np.percentile(wall, 90)),
        "median_cpu_ms": statistics.median(cpu),
        "p90_cpu_ms": float(np.percentile(cpu, 90)),
    }


def time_loader(workers: int, items: int, batch_size: int, height: int, width: int) -> dict:
    """Images per second through a DataLoader, worker start-up included (as in training)."""
    ds = SyntheticStreetDataset(items, height, width, seed=123)
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers, shuffle=False)
    t0 = time.perf_counter()
    seen = sum(int(x.shape[0]) for x, _ in loader)
    elapsed = time.perf_counter() - t0
    return {
        "workers": workers,
        "items": seen,
        "batch_size": batch_size,
        "height": height,
        "width": width,
        "seconds": elapsed,
        "images_per_s": seen / elapsed,
    }


def write_json_atomic(data: dict, path: Path) -> None:
    """Write next to the target and rename, so a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=20, help="scenes timed per size")
    parser.add_argument("--warmup", type=int, default=3, help="untimed scenes first")
    parser.add_argument("--loader-items", type=int, default=160, help="images per loader run")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result path")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # rendering is numpy/Pillow; keep torch from competing
    load_before = os.getloadavg()
    scenes = [time_scenes(h, w, args.scenes, args.warmup) for h, w in SIZES]
    loaders = [
        time_loader(workers, args.loader_items, args.batch_size, *SIZES[0]) for workers in (0, 2)
    ]
    result = {
        "benchmark": "synthetic_scenes",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "scenes": scenes,
        "dataloader": loaders,
    }

    print(f"{'size':>10} {'median ms':>10} {'p90 ms':>8} {'median cpu ms':>14} {'p90 cpu ms':>11}")
    for r in scenes:
        size = f"{r['height']}x{r['width']}"
        print(
            f"{size:>10} {r['median_ms']:>10.1f} {r['p90_ms']:>8.1f} "
            f"{r['median_cpu_ms']:>14.1f} {r['p90_cpu_ms']:>11.1f}"
        )
    print(f"\n{'workers':>8} {'size':>10} {'batch':>6} {'images/s':>9}")
    for r in loaders:
        size = f"{r['height']}x{r['width']}"
        print(f"{r['workers']:>8} {size:>10} {r['batch_size']:>6} {r['images_per_s']:>9.1f}")
    print(f"\nload average before/after: {load_before} / {result['loadavg_after']}")
    write_json_atomic(result, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
