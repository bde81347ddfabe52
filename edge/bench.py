"""`adpc bench`: per-stage and per-exit latency of a bundle on this machine, against a dense
baseline measured in the same run, and the calibration of the runtime's cost model.

For each frame the bundle runs twice per repeat: with confidence adaptivity (the manifest's
threshold) and with CA off (every stage computes every pixel: the dense baseline). Reported
per exit: median cumulative ms of both, their ratio, the masked fraction, and what the cost
model predicted. `--calibrate` also runs a sweep of thresholds so every stage is seen at many
computed fractions, fits `ms = overhead + slope * GFLOPs(p)` per stage (an upper envelope,
edge.costmodel.fit_stage) and stores it in the bundle's `cost_tables` for this device.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .atomic import write_text
from .backends.base import Backend
from .bundle import MANIFEST, Manifest, read_bundle
from .costmodel import CostModel, device_name, fit_stage
from .runtime import AnytimeRunner

CALIBRATION_THRESHOLDS = (None, 0.9999, 0.999, 0.995, 0.99, 0.97, 0.9, 0.7)
"""CA off plus thresholds that leave more and more pixels to skip."""


@dataclass
class ExitTiming:
    exit: int
    ms: float  # median cumulative latency with CA
    p90_ms: float
    p99_ms: float
    cold_ms: float  # the first frame after loading, before any warm-up
    dense_ms: float  # median cumulative latency with CA off, same run
    ratio: float  # dense / CA (> 1: CA is faster)
    masked: float  # mean masked fraction of the stage ending in this exit
    predicted_ms: float  # the cost model's cumulative prediction


@dataclass
class BenchReport:
    backend: str
    precision: str
    threads: int | None
    device: str
    frames: int
    repeats: int
    threshold: float | None
    cost_model: str
    peak_rss_mb: float = 0.0  # of this process, after the run
    exits: list[ExitTiming] = field(default_factory=list)
    calibration: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _cumulative(per_stage: list[float]) -> list[float]:
    return list(np.cumsum(per_stage))


def bench(
    backend: Backend,
    frames: Sequence[np.ndarray],
    repeats: int = 5,
    warmup: int = 1,
    progress: Callable[[str], None] | None = None,
) -> BenchReport:
    """Median per-exit latency with CA and dense, interleaved so both see the same machine."""
    say = progress or (lambda _msg: None)
    ca = AnytimeRunner(backend)
    dense = AnytimeRunner(backend, threshold=None, cost_model=ca.cost_model)
    n_exits = backend.manifest.num_exits
    times: dict[str, list[list[float]]] = {"ca": [[] for _ in range(n_exits)],
                                           "dense": [[] for _ in range(n_exits)]}
    masked: list[list[float]] = [[] for _ in range(n_exits)]
    predicted: list[list[float]] = [[] for _ in range(n_exits)]
    cold = _cumulative([e.stage_ms for e in ca.run_frame(frames[0]).exits])
    for frame in frames:
        for _ in range(warmup):
            ca.run_frame(frame)
            dense.run_frame(frame)
    for r in range(repeats):
        say(f"repeat {r + 1}/{repeats}")
        for frame in frames:
            for key, runner in (("ca", ca), ("dense", dense)):
                result = runner.run_frame(frame)
                cumulative = _cumulative([e.stage_ms for e in result.exits])
                for e, ms in zip(result.exits, cumulative, strict=True):
                    times[key][e.exit - 1].append(ms)
                    if key == "ca":
                        masked[e.exit - 1].append(e.masked_fraction)
                        predicted[e.exit - 1].append(e.predicted.latency_ms)
    report = BenchReport(backend.name, backend.precision, backend.threads, device_name(),
                         len(frames), repeats, ca.threshold, ca.cost_model.source,
                         peak_rss_mb())
    for i in range(n_exits):
        if not times["ca"][i]:
            continue
        ms, dense_ms = statistics.median(times["ca"][i]), statistics.median(times["dense"][i])
        p90, p99 = (float(np.percentile(times["ca"][i], q)) for q in (90, 99))
        pred = float(np.sum([statistics.median(p) for p in predicted[: i + 1] if p]))
        report.exits.append(ExitTiming(
            i + 1, ms, p90, p99, cold[i] if i < len(cold) else float("nan"), dense_ms,
            dense_ms / ms if ms else 0.0, float(np.mean(masked[i])), pred))
    return report


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux / macOS), 0 where unknown."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def calibrate(
    backend: Backend,
    frames: Sequence[np.ndarray],
    repeats: int = 3,
    thresholds: Sequence[float | None] = CALIBRATION_THRESHOLDS,
    progress: Callable[[str], None] | None = None,
) -> CostModel:
    """Fit every stage's latency against its GFLOPs over a sweep of computed fractions."""
    say = progress or (lambda _msg: None)
    model = CostModel.from_flops(backend.manifest.stages)
    samples: dict[int, tuple[list[float], list[float]]] = {
        s.index: ([], []) for s in backend.manifest.stages}
    for thr in thresholds:
        say(f"calibrating at threshold {thr}")
        runner = AnytimeRunner(backend, threshold=thr)
        for frame in frames:
            runner.run_frame(frame)  # warm-up at this workload
            for _ in range(repeats):
                for e in runner.run_frame(frame).exits:
                    computed = 1.0 - e.masked_fraction
                    samples[e.stage][0].append(model.gflops(e.stage, computed))
                    samples[e.stage][1].append(e.stage_ms)
    fits = {k: fit_stage(g, ms) for k, (g, ms) in samples.items() if g}
    return CostModel(backend.manifest.stages, fits, model.power_w,
                     f"calibrated ({backend.name}, {backend.threads} threads)")


def cost_table_key(backend: Backend) -> str:
    return f"{device_name()}/{backend.name}/{backend.precision}"


def store_cost_table(folder: str | Path, key: str, table: dict) -> Manifest:
    """Add a cost table to a bundle's manifest, atomically (the stage files stay as they are)."""
    from .bundle import manifest_from_dict

    folder = Path(folder)
    manifest = read_bundle(folder, verify_files=False)
    updated = replace(manifest, cost_tables={**manifest.cost_tables, key: table})
    manifest_from_dict(updated.to_dict(), "manifest to write")
    write_text(folder / MANIFEST, json.dumps(updated.to_dict(), indent=1))
    return updated


def format_report(report: BenchReport) -> str:
    head = (f"{'exit':>4} {'CA p50':>8} {'p90':>8} {'p99':>8} {'cold':>8} {'dense p50':>9} "
            f"{'dense/CA':>9} {'masked':>7} {'predicted':>10}")
    lines = [f"{report.backend} {report.precision}, {report.threads or 'default'} threads, "
             f"{report.frames} frames x {report.repeats} repeats, threshold {report.threshold}; "
             f"cumulative ms per exit; cost model: {report.cost_model}; peak RSS "
             f"{report.peak_rss_mb:.0f} MB", head, "-" * len(head)]
    for e in report.exits:
        lines.append(f"{e.exit:>4} {e.ms:>8.2f} {e.p90_ms:>8.2f} {e.p99_ms:>8.2f} "
                     f"{e.cold_ms:>8.2f} {e.dense_ms:>9.2f} {e.ratio:>8.2f}x {e.masked:>7.1%} "
                     f"{e.predicted_ms:>10.2f}")
    return "\n".join(lines)
