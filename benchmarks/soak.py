"""Soak: thousands of frames through the real `adpc run` command, watching memory and latency.

Starts `adpc run BUNDLE --source samples --loop --max-frames N --deadline-ms D` (the shipped
drive repeated, overlays written to an MP4, which streams frame by frame) as a child process,
reads its per-frame progress lines and samples the child's resident memory (VmRSS from
/proc/PID/status, Linux) every `--rss-every` frames. Afterwards reads the command's own
run.json: median frame latency (the last exit's elapsed ms, host work included) of the first
and the last `--window` frames, exits reached, frames over the deadline.
Targets (issue 6): RSS growth <= 5% after warm-up, no latency drift.

    python benchmarks/soak.py --frames 5000 --deadline-ms 40 --threads 1 \
        --out benchmarks/results/soak.json
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from runtime_setup import ROOT, add_bundle_args, calibrated_bundle, say, scenes

from edge.atomic import write_text
from edge.bundle import read_bundle

LINE = re.compile(r"^frame\s+(\d+):")


def rss_mb(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) / 1024 if match else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bundle_args(p)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--frames", type=int, default=5000)
    p.add_argument("--deadline-ms", type=float, default=40.0)
    p.add_argument("--window", type=int, default=500)
    p.add_argument("--rss-every", type=int, default=100)
    p.add_argument("--run-dir", default="runs/soak")
    p.add_argument("--out", default="benchmarks/results/soak.json")
    args = p.parse_args()
    manifest = read_bundle(args.source)
    bundle = calibrated_bundle(args.source, args.bundle, args.backend, args.precision,
                               args.threads, [x for x, _ in scenes(manifest, 4)])
    command = [str(Path(sys.executable).with_name("adpc")), "run", str(bundle),
               "--backend", args.backend, "--precision", args.precision,
               "--threads", str(args.threads), "--source", "samples", "--loop",
               "--max-frames", str(args.frames), "--deadline-ms", str(args.deadline_ms),
               "--out", args.run_dir, "--video", "overlay.mp4"]
    say(" ".join(command))
    start = time.perf_counter()
    rss: list[tuple[int, float]] = []
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True, bufsize=1) as child:
        assert child.stdout is not None
        for line in child.stdout:
            match = LINE.match(line)
            if not match:
                continue
            n = int(match.group(1)) + 1
            if n % args.rss_every == 0:
                value = rss_mb(child.pid)
                if value is not None:
                    rss.append((n, value))
                if n % 1000 == 0:
                    say(f"{n} frames, RSS {value:.0f} MB, {time.perf_counter() - start:.0f} s")
        code = child.wait()
    if code != 0:
        print(f"adpc run exited with {code}", file=sys.stderr)
        return 1
    report = json.loads((ROOT / args.run_dir / "run.json").read_text())
    frames = report["frames"]
    totals = [f["exit_ms"][-1] for f in frames]
    w = args.window
    first, last = totals[:w], totals[-w:]
    warm = [v for n, v in rss if n >= w]  # after the first window: warmed up
    rss_start, rss_end = (warm[0], warm[-1]) if warm else (0.0, 0.0)
    result = {
        "command": " ".join(sys.argv), "adpc_run": " ".join(command[1:]),
        "seconds": time.perf_counter() - start, "frames": len(frames),
        "deadline_ms": args.deadline_ms, "threads": args.threads,
        "first_median_ms": statistics.median(first), "last_median_ms": statistics.median(last),
        "drift": statistics.median(last) / statistics.median(first) - 1,
        "first_exits": dict(sorted(Counter(str(f["exit"]) for f in frames[:w]).items())),
        "last_exits": dict(sorted(Counter(str(f["exit"]) for f in frames[-w:]).items())),
        "over_deadline": report["summary"]["over_deadline"],
        "over_deadline_5pct": sum(t > args.deadline_ms * 1.05 for t in totals),
        "rss_after_warmup_mb": rss_start, "rss_end_mb": rss_end,
        "rss_max_mb": max((v for _, v in rss), default=0.0),
        "rss_growth": rss_end / rss_start - 1 if rss_start else None,
        "rss_samples": rss, "energy_source": report.get("energy_source"),
        "cost_model": report.get("cost_model"),
    }
    print(f"adpc run, {args.backend} {args.precision}, {args.threads} thread(s), deadline "
          f"{args.deadline_ms:g} ms, {len(frames)} frames in {result['seconds']:.0f} s")
    print(f"frame latency median: first {w} {result['first_median_ms']:.2f} ms, last {w} "
          f"{result['last_median_ms']:.2f} ms (drift {result['drift']:+.1%}); exits first "
          f"{result['first_exits']}, last {result['last_exits']}")
    print(f"RSS after {w} frames {rss_start:.0f} MB, at the end {rss_end:.0f} MB (growth "
          f"{(result['rss_growth'] or 0):+.1%}), max {result['rss_max_mb']:.0f} MB; over the "
          f"deadline: {result['over_deadline']} frames, over deadline+5%: "
          f"{result['over_deadline_5pct']}")
    write_text(args.out, json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
