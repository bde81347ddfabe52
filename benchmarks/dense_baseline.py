"""Every exit of anytime bundles next to the network without exits, timed in one run.

"The same network without exits on the same runtime and precision" (converters.noexit): the
same trained weights exported again as ONE ExecuTorch method with exit heads 1-3 deleted and
no masks (backbone + final head), XNNPACK-delegated like the bundles; int8 by post-training
quantisation with the bundles' quantizer config (their int8 stages come from the QAT model, so
int8 logits differ slightly; latency is what is compared). Cached beside the first bundle.

Per bundle (several may be compared in one run: dense-masked, sparse, ...), interleaved frame by
frame with the no-exit program: the CA runner's cumulative stage time per exit, its ratio to
the no-exit network (< 1: the exit answers sooner), the FLOPs-ideal ratio (exit GFLOPs at the
measured masked fractions / no-exit GFLOPs, the paper's accounting) and the share of that ideal
reached, plus CA off run to completion (every stage on every pixel, no host work between).
Prints a table, writes JSON.

    python benchmarks/dense_baseline.py --bundle bundles/bench/int8_256x512 \
        --bundle bundles/bench/int8_sparse_256x512 --precision int8 --threads 1 --frames 4 \
        --repeats 10 --out benchmarks/results/dense_baseline_int8.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch

from converters.noexit import build_noexit, noexit_gflops, noexit_path
from edge.atomic import write_text
from edge.backends import open_backend
from edge.bench import run_to_completion
from edge.bundle import read_bundle
from edge.preprocess import to_input
from edge.runtime import AnytimeRunner
from edge.sources import SyntheticDriveSource
from model_zoo import create_model
from model_zoo.adpc import NUM_STAGES
from model_zoo.flops import conv_costs, exit_gflops, stage_costs


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def exit_head_share(height: int, width: int) -> float:
    """GFLOPs share of exit heads 1..N-1 in the dense ADP-C network (no fills)."""
    model = create_model("w18_small_v2")
    convs = conv_costs(model.config, height, width)
    heads = sum(c.macs for c in convs if c.name.split(".")[0] in
                {f"exit{k}" for k in range(1, NUM_STAGES)})
    return heads / sum(c.macs for c in convs)


def ideal_ratios(config, height: int, width: int, masked: list[float]) -> list[float]:
    """Per exit: GFLOPs at the measured masked fractions / the no-exit network's GFLOPs."""
    costs = stage_costs(config, height, width)
    gflops = exit_gflops(costs, config.exit_stages, masked)
    return [g / noexit_gflops(height, width) for g in gflops]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", action="append", default=None,
                   help="bundle to time (repeat to compare several in the same run)")
    p.add_argument("--precision", default="int8")
    p.add_argument("--backend", default="executorch")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", default="benchmarks/results/dense_baseline.json")
    args = p.parse_args()
    torch.set_num_threads(1)  # torch's OpenMP workers spin and disturb ExecuTorch timings
    from executorch.runtime import Runtime

    bundles = args.bundle or ["bundles/bench/int8_256x512"]
    manifests = [read_bundle(b) for b in bundles]
    h, w = manifests[0].input.height, manifests[0].input.width
    if any((m.input.height, m.input.width) != (h, w) for m in manifests):
        raise SystemExit("every --bundle must have the same input size")
    t0 = time.perf_counter()
    pte = build_noexit(noexit_path(bundles[0], args.precision, h, w), args.precision, h, w)
    say(f"network without exits: {pte} ({time.perf_counter() - t0:.0f} s)")
    with SyntheticDriveSource() as source:
        frames = [to_input(f.image, manifests[0].input)[0]
                  for _, f in zip(range(args.frames), source, strict=False)]
    backends = [open_backend(args.backend, b, args.precision, threads=args.threads)
                for b in bundles]
    runners = [AnytimeRunner(b) for b in backends]
    n_exits = manifests[0].num_exits
    ca_ms = [[[] for _ in range(n_exits)] for _ in bundles]
    masked = [[[] for _ in range(n_exits - 1)] for _ in bundles]
    rtc_ms: list[list[float]] = [[] for _ in bundles]
    noexit_ms: list[float] = []
    method = Runtime.get().load_program(pte).load_method("forward")

    def noexit(x: np.ndarray) -> np.ndarray:
        return method.execute([torch.from_numpy(x)])[0].numpy()

    for x in frames:  # warm-up
        noexit(x)
        for backend, runner in zip(backends, runners, strict=True):
            runner.run_frame(x)
            run_to_completion(backend, x)
    for _ in range(args.repeats):
        for x in frames:
            t0 = time.perf_counter()
            noexit(x)
            noexit_ms.append((time.perf_counter() - t0) * 1e3)
            for i, (backend, runner) in enumerate(zip(backends, runners, strict=True)):
                result = runner.run_frame(x)
                cumulative = np.cumsum([e.stage_ms for e in result.exits])
                for e, ms in zip(result.exits, cumulative, strict=True):
                    ca_ms[i][e.exit - 1].append(float(ms))
                    if e.exit < n_exits:
                        masked[i][e.exit - 1].append(result.exits[e.exit].masked_fraction
                                                     if e.exit < len(result.exits) else 0.0)
                t0 = time.perf_counter()
                run_to_completion(backend, x)
                rtc_ms[i].append((time.perf_counter() - t0) * 1e3)
    for backend in backends:
        backend.close()
    nox = statistics.median(noexit_ms)
    report = {"command": " ".join(sys.argv), "backend": args.backend,
              "precision": args.precision, "threads": args.threads, "size": [h, w],
              "frames": len(frames), "repeats": args.repeats, "noexit_ms": nox,
              "noexit_p90_ms": float(np.percentile(noexit_ms, 90)),
              "noexit_gflops": noexit_gflops(h, w),
              "exit_head_gflops_share": exit_head_share(h, w), "bundles": []}
    print(f"{args.backend} {args.precision}, {args.threads} thread(s), {h}x{w}, "
          f"{len(frames)} frames x {args.repeats} repeats (medians); network without exits: "
          f"{nox:.2f} ms (p90 {np.percentile(noexit_ms, 90):.2f})")
    print(f"{'bundle':<36} {'exit':>4} {'CA ms':>8} {'CA / no-exit':>12} {'FLOPs ideal':>11} "
          f"{'share of ideal':>14} {'masked after':>12}")
    for i, bundle in enumerate(bundles):
        fractions = [statistics.mean(f) if f else 0.0 for f in masked[i]]
        ideal = ideal_ratios(create_model("w18_small_v2").config, h, w, fractions)
        rows = []
        for k, values in enumerate(ca_ms[i]):
            if not values:
                continue
            ms = statistics.median(values)
            row = {"exit": k + 1, "ms": ms, "ratio": ms / nox, "ideal_ratio": ideal[k],
                   "share_of_ideal": ideal[k] / (ms / nox),
                   "masked_after": fractions[k] if k < len(fractions) else None}
            rows.append(row)
            after = "-" if row["masked_after"] is None else f"{row['masked_after']:.1%}"
            print(f"{bundle:<36} {k + 1:>4} {ms:>8.2f} {row['ratio']:>11.2f}x "
                  f"{ideal[k]:>10.2f}x {row['share_of_ideal']:>13.0%} {after:>12}")
        rtc = statistics.median(rtc_ms[i])
        print(f"{bundle:<36}  CA off, run to completion: {rtc:.2f} ms = {rtc / nox:.2f}x "
              "the network without exits")
        report["bundles"].append({"bundle": bundle, "exits": rows, "ca_off_ms": rtc,
                                  "ca_off_ratio": rtc / nox,
                                  "ca_off_p90_ms": float(np.percentile(rtc_ms[i], 90))})
    write_text(args.out, json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
