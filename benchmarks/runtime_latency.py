"""Per-exit latency of converted bundles on this machine: CA vs dense, every backend/precision.

Converts the shipped model (fp32 and int8, ExecuTorch and TFLite) at one size unless bundles
already exist, then runs `edge.bench.bench` for each backend x precision x thread count on the
shipped drive. The baseline is measured in the same run: the same bundle with CA off (every
stage computes every pixel). Prints one table, writes JSON.

    python benchmarks/runtime_latency.py --size 256x512 --threads 1,2 --repeats 10 \
        --out benchmarks/results/runtime_latency.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from converters.cli import parse_size  # noqa: E402
from converters.convert import convert_bundle  # noqa: E402
from edge.atomic import write_text  # noqa: E402
from edge.backends import open_backend  # noqa: E402
from edge.bench import bench  # noqa: E402
from edge.bundle import BundleError, read_bundle  # noqa: E402
from edge.preprocess import to_input  # noqa: E402
from edge.sources import SyntheticDriveSource  # noqa: E402


def bundle_for(folder: Path, precision: str, size: tuple[int, int], backends: list[str]) -> Path:
    try:
        manifest = read_bundle(folder)
        have = {f.backend for f in manifest.files}
        if (manifest.input.height, manifest.input.width) == size and set(backends) <= have:
            return folder
    except BundleError:
        pass
    start = time.perf_counter()
    convert_bundle(folder, backends, precision, *size,
                   progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
    print(f"converted {folder} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return folder


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="256x512")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--backends", default="executorch,tflite")
    p.add_argument("--precisions", default="fp32,int8")
    p.add_argument("--bundles", default="bundles/bench")
    p.add_argument("--out", default="benchmarks/results/runtime_latency.json")
    args = p.parse_args()
    size = parse_size(args.size)
    backends = args.backends.split(",")
    rows = []
    for precision in args.precisions.split(","):
        folder = bundle_for(Path(args.bundles) / f"{precision}_{size[0]}x{size[1]}", precision,
                            size, backends)
        manifest = read_bundle(folder)
        with SyntheticDriveSource() as source:
            frames = [to_input(f.image, manifest.input)[0]
                      for _, f in zip(range(args.frames), source, strict=False)]
        for backend_name in backends:
            for threads in (int(t) for t in args.threads.split(",")):
                with open_backend(backend_name, folder, precision, threads=threads) as backend:
                    report = bench(backend, frames, repeats=args.repeats)
                rows.append(report.to_dict())
                for e in report.exits:
                    print(f"{backend_name:<10} {precision:<4} {threads}t exit {e.exit}: "
                          f"CA {e.ms:7.2f} ms  dense {e.dense_ms:7.2f} ms  "
                          f"dense/CA {e.ratio:4.2f}x  masked {e.masked:5.1%}", flush=True)
    write_text(args.out, json.dumps({"size": size, "repeats": args.repeats,
                                     "command": " ".join(sys.argv), "rows": rows}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
