"""Host overhead between stages as a share of frame time, the way `adpc run` drives frames.

Per frame, `AnytimeRunner.run_frame` under a Deadline (generous: every stage runs) with the
energy meter `adpc run` uses; frame wall time around the call, minus the stage calls, is the
host work: confidence, mask, masked fraction, cost prediction, budget check, energy readings,
carry-over and the runner's bookkeeping. Also times each piece alone on the frames' real
logits (many calls each) so the total can be attributed.

    python benchmarks/host_overhead.py --threads 1 --frames 8 --repeats 20 \
        --out benchmarks/results/host_overhead.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
from runtime_setup import add_bundle_args, calibrated_bundle, say, scenes

from edge.atomic import write_text
from edge.backends import open_backend
from edge.budget import Deadline
from edge.bundle import read_bundle
from edge.host import carry_over, compute_mask
from edge.power import find_meter
from edge.runtime import AnytimeRunner


def per_call_us(fn, calls: int = 200) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e6


def components(runner: AnytimeRunner, x: np.ndarray, meter) -> dict[str, float]:
    """Microseconds per frame of each host piece, on this frame's logits (stages 2..N)."""
    exits = runner.run_frame(x).exits
    threshold = runner.threshold
    out = {"confidence + mask": 0.0, "masked fraction": 0.0, "cost prediction": 0.0,
           "budget check + charge": 0.0, "energy reading": 0.0, "carry-over": 0.0}
    budget = Deadline(10_000.0)
    budget.start_frame()
    for prev, cur in zip(exits, exits[1:], strict=False):
        logits = prev.logits
        mask = compute_mask(logits, threshold)
        out["confidence + mask"] += per_call_us(lambda lg=logits: compute_mask(lg, threshold))
        out["masked fraction"] += per_call_us(lambda m=mask: float(m.mean()))
        computed = float(mask.mean())
        cost = runner.cost_model.predict(cur.stage, computed)
        out["cost prediction"] += per_call_us(
            lambda s=cur.stage, c=computed: runner.cost_model.predict(s, c))
        out["budget check + charge"] += per_call_us(
            lambda c=cost: (budget.allows(c), budget.charge(1.0, 1.0)))
        out["energy reading"] += per_call_us(lambda: meter.start().stop())
        out["carry-over"] += per_call_us(
            lambda p=logits, n=cur.logits, m=mask: carry_over(p, n, m))
    budget.end_frame()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bundle_args(p)
    p.add_argument("--threads", default="1")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out", default="benchmarks/results/host_overhead.json")
    args = p.parse_args()
    manifest = read_bundle(args.source)
    data = [x for x, _ in scenes(manifest, args.frames)]
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        bundle = calibrated_bundle(args.source, args.bundle, args.backend, args.precision,
                                   threads, data[:4])
        with open_backend(args.backend, bundle, args.precision, threads=threads) as backend, \
                find_meter() as meter:
            runner = AnytimeRunner(backend, meter=meter)
            for x in data:
                runner.run_frame(x, Deadline(10_000.0))  # warm-up
            walls, stages, shares, recorded = [], [], [], []
            say(f"{threads} thread(s): {args.frames} frames x {args.repeats} repeats")
            for _ in range(args.repeats):
                for x in data:
                    t0 = time.perf_counter()
                    result = runner.run_frame(x, Deadline(10_000.0))
                    wall = (time.perf_counter() - t0) * 1e3
                    stage = sum(e.stage_ms for e in result.exits)
                    walls.append(wall)
                    stages.append(stage)
                    shares.append((wall - stage) / wall)
                    recorded.append(sum(e.host_ms for e in result.exits))
            parts = {k: statistics.median(v) for k, v in zip(
                ("confidence + mask", "masked fraction", "cost prediction",
                 "budget check + charge", "energy reading", "carry-over"),
                zip(*(components(runner, x, meter).values() for x in data), strict=True),
                strict=True)}
            host = [w - s for w, s in zip(walls, stages, strict=True)]
            rows.append({
                "threads": threads, "samples": len(walls), "meter": meter.source,
                "frame_ms": statistics.median(walls), "stage_ms": statistics.median(stages),
                "host_ms": statistics.median(host), "host_share": statistics.median(shares),
                "host_share_p90": float(np.percentile(shares, 90)),
                "runner_recorded_host_ms": statistics.median(recorded),
                "components_us": parts,
            })
    print(f"{args.backend} {args.precision}, {manifest.input.height}x{manifest.input.width}, "
          f"Deadline + energy meter as in adpc run (medians per frame)")
    print(f"{'threads':>7} {'frame ms':>9} {'stages ms':>10} {'host ms':>8} {'host %':>7} "
          f"{'p90 %':>6}")
    for r in rows:
        print(f"{r['threads']:>7} {r['frame_ms']:>9.2f} {r['stage_ms']:>10.2f} "
              f"{r['host_ms']:>8.3f} {r['host_share']:>7.2%} {r['host_share_p90']:>6.2%}")
    for r in rows:
        print(f"{r['threads']} thread(s), host pieces per frame (us): " + ", ".join(
            f"{k} {v:.0f}" for k, v in r["components_us"].items()))
    met = all(r["host_share"] <= 0.03 for r in rows)
    print(f"target host share <= 3%: {'met' if met else 'MISSED'}")
    write_text(args.out, json.dumps({"command": " ".join(sys.argv), "backend": args.backend,
                                     "precision": args.precision,
                                     "size": [manifest.input.height, manifest.input.width],
                                     "rows": rows, "target_met": met}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
