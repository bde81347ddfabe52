"""Deadline adherence of the anytime runner, and quality rising with the deadline.

For deadlines spread from exit 1's p99 latency to 1.1x the full frame's p99, every
labelled synthetic scene runs under `Deadline(d)` (the runner never starts a stage the
calibrated cost model says will not fit; exit 1 always runs). Per deadline: the share of
frames whose wall time (around `run_frame`, host work included) is within d + 5%, the exits
reached, agreement with the unbudgeted run's final labels, and mIoU against the scenes' labels.
Frames are the outer loop and deadlines the inner one, so every deadline sees the same machine.
Two runners, interleaved: `static` predicts from the calibrated cost table alone;
`adaptive` (`AnytimeRunner(adapt=True)`) scales predictions by how much slower than predicted
its recent stages ran, for a machine that got slower after calibration (a co-tenant on a
shared core here, thermal throttling on a phone).

    python benchmarks/deadline_adherence.py --threads 1 --frames 100 --repeats 2 \
        --out benchmarks/results/deadline_adherence.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter

import numpy as np
from runtime_setup import (
    add_bundle_args,
    calibrated_bundle,
    confusion,
    miou,
    quarter,
    say,
    scenes,
)

from edge.atomic import write_text
from edge.backends import open_backend
from edge.budget import Deadline
from edge.bundle import read_bundle
from edge.runtime import AnytimeRunner

SLACK = 0.05


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bundle_args(p)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--deadlines", type=int, default=6, help="how many, evenly spread")
    p.add_argument("--deadline-list", default=None,
                   help="comma list of deadlines in ms instead (e.g. a fine sweep near exit 1)")
    p.add_argument("--out", default="benchmarks/results/deadline_adherence.json")
    args = p.parse_args()

    manifest = read_bundle(args.source)
    data = scenes(manifest, args.frames)
    bundle = calibrated_bundle(args.source, args.bundle, args.backend, args.precision,
                               args.threads, [x for x, _ in data[:4]])
    k = len(manifest.classes)
    with open_backend(args.backend, bundle, args.precision, threads=args.threads) as backend:
        runner = AnytimeRunner(backend)
        say(f"cost model: {runner.cost_model.source}")
        reference = []
        exit1 = np.full((3, len(data)), np.inf)
        full = np.full((3, len(data)), np.inf)
        for n in range(4):  # a warm-up pass, then 3
            for i, (x, _) in enumerate(data):
                t0 = time.perf_counter()
                result = runner.run_frame(x)
                if n:
                    full[n - 1, i] = (time.perf_counter() - t0) * 1e3
                    exit1[n - 1, i] = result.exits[0].elapsed_ms
                    if n == 1:
                        reference.append(result.final.labels[0])
        ref_matrix = sum(confusion(r, quarter(lab), k) for r, (_, lab) in zip(
            reference, data, strict=True))
        # exit 1 always runs (an anytime model must answer), so no deadline below its own
        # spread can be met: the range starts at exit 1's p99 and ends 10% above the full
        # frame's p99 (where the cost model's envelope grants every stage); per frame the
        # median of the 3 passes, so a co-tenant's burst does not move the deadlines
        lo = float(np.percentile(np.median(exit1, axis=0), 99))
        hi = 1.1 * float(np.percentile(np.median(full, axis=0), 99))
        deadlines = ([float(d) for d in args.deadline_list.split(",")] if args.deadline_list
                     else [float(d) for d in np.linspace(lo, hi, args.deadlines)])
        say(f"deadlines {', '.join(f'{d:.1f}' for d in deadlines)} ms")
        runners = {"static": runner, "adaptive": AnytimeRunner(backend, adapt=True)}
        cells = [(mode, i) for i in range(len(deadlines)) for mode in runners]
        walls: dict[tuple, list[float]] = {c: [] for c in cells}
        exits: dict[tuple, Counter] = {c: Counter() for c in cells}
        agree: dict[tuple, list[float]] = {c: [] for c in cells}
        matrices = {c: np.zeros((k, k), np.int64) for c in cells}
        for r in range(args.repeats):
            say(f"repeat {r + 1}/{args.repeats}")
            for (x, label), ref in zip(data, reference, strict=True):
                for mode, i in cells:
                    t0 = time.perf_counter()
                    result = runners[mode].run_frame(x, Deadline(deadlines[i]))
                    walls[mode, i].append((time.perf_counter() - t0) * 1e3)
                    final = result.final
                    exits[mode, i][final.exit] += 1
                    labels = final.labels[0]
                    agree[mode, i].append(float((labels == ref).mean()))
                    matrices[mode, i] += confusion(labels, quarter(label), k)
    rows = []
    for mode, i in cells:
        d = deadlines[i]
        w = np.asarray(walls[mode, i])
        rows.append({
            "mode": mode, "deadline_ms": d, "samples": len(w),
            "within_5pct": float(np.mean(w <= d * (1 + SLACK))),
            "within": float(np.mean(w <= d)),
            "median_ms": float(np.median(w)), "p99_ms": float(np.percentile(w, 99)),
            "max_over_deadline": float(w.max() / d),
            "mean_exit": float(sum(e * n for e, n in exits[mode, i].items()) / len(w)),
            "exits": {str(e): n for e, n in sorted(exits[mode, i].items())},
            "agreement": float(np.mean(agree[mode, i])), "miou": miou(matrices[mode, i]),
        })
    load = os.getloadavg()
    print(f"{args.backend} {args.precision}, {args.threads} thread(s), "
          f"{manifest.input.height}x{manifest.input.width}, {args.frames} scenes x "
          f"{args.repeats} repeats per deadline; unbudgeted: exit 1 p99 {lo:.1f} ms, full frame "
          f"p99 {hi / 1.1:.1f} ms, mIoU {miou(ref_matrix):.1f}")
    print(f"{'costs':>8} {'deadline':>9} {'<= d+5%':>8} {'<= d':>7} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'max/d':>6} {'exit':>5} {'exits 1/2/3/4':>16} {'agree':>7} "
          f"{'mIoU':>6}")
    for r in rows:
        hist = "/".join(str(r["exits"].get(str(e), 0)) for e in range(1, manifest.num_exits + 1))
        print(f"{r['mode']:>8} {r['deadline_ms']:>9.1f} {r['within_5pct']:>8.1%} "
              f"{r['within']:>7.1%} {r['median_ms']:>7.1f} {r['p99_ms']:>7.1f} "
              f"{r['max_over_deadline']:>6.2f} {r['mean_exit']:>5.2f} {hist:>16} "
              f"{r['agreement']:>7.1%} {r['miou']:>6.1f}")
    verdict = {}
    for mode in runners:
        mine = [r for r in rows if r["mode"] == mode]
        met = all(r["within_5pct"] >= 0.99 for r in mine)
        rising = all(b["agreement"] >= a["agreement"]
                     for a, b in zip(mine, mine[1:], strict=False))
        verdict[mode] = {"target_met": met, "agreement_rises": rising}
        print(f"{mode}: >= 99% of frames within d+5% at every deadline: "
              f"{'met' if met else 'MISSED'}; agreement rises with the deadline: "
              f"{'yes' if rising else 'NO'}")
    print(f"load average during the run (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    write_text(args.out, json.dumps({
        "command": " ".join(sys.argv), "backend": args.backend, "precision": args.precision,
        "threads": args.threads, "size": [manifest.input.height, manifest.input.width],
        "cost_model": runner.cost_model.source, "exit1_p99_ms": lo, "full_p99_ms": hi / 1.1,
        "full_miou": miou(ref_matrix), "rows": rows, "verdict": verdict,
        "loadavg": load}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
