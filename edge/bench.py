"""`adpc bench`: per-stage and per-exit latency and energy of a bundle on this machine, against
dense baselines measured in the same run, and the calibration of the runtime's cost model.

For each frame the bundle runs three times per repeat, interleaved: with confidence adaptivity
(the manifest's threshold), with CA off through the same runner (every stage computes every
pixel, host step included), and run to completion (`run_to_completion`: the stages back to
back, nothing between them: the dense network without the runner's exit work). Reported per
exit: median / p90 / p99 cumulative ms, the stage alone, the cold first frame, the ratios to
both dense runs, the masked fraction, what the cost model predicted, and energy (mean mJ per
stage and cumulative) from the meter given (RAPL / battery, else the model estimate, always
named in the report). The JSON form (`BenchReport.to_dict`) is the schema in docs/formats.md,
which the Android app writes too.

`--calibrate` also runs a sweep of thresholds so every stage is seen at many computed fractions,
fits `ms = overhead + slope * GFLOPs(p)` per stage (an upper envelope, edge.costmodel.fit_stage)
and stores it in the bundle's `cost_tables` for this device.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .atomic import write_text
from .backends.base import Backend
from .bundle import MANIFEST, Manifest, read_bundle
from .costmodel import CostModel, device_name, fit_stage
from .power import EnergyMeter, ModelMeter
from .runtime import AnytimeRunner

CALIBRATION_THRESHOLDS = (None, 0.9999, 0.999, 0.995, 0.99, 0.97, 0.9, 0.7)
"""CA off plus thresholds that leave more and more pixels to skip."""


BENCH_FORMAT = "adpc-bench"
BENCH_SCHEMA_VERSION = 1
"""The bench JSON (docs/formats.md, "Benchmark report"): fields are only ever added; a reader
accepts any report with this format and a schema_version it knows, and ignores unknown fields."""

BASELINE_KIND = "run-to-completion"
BASELINE_DESCRIPTION = (
    "the bundle's stages 1..N back to back on one frame with an all-ones mask (every pixel "
    "computed), no confidence, mask, carry-over, cost prediction or budget check between them; "
    "the stage graphs still compute the exit heads 1..N-1 and the masked convs' fill"
)


@dataclass
class ExitTiming:
    exit: int
    ms: float  # median cumulative latency with CA
    p90_ms: float
    p99_ms: float
    cold_ms: float | None  # the first frame after loading, before any warm-up (None:
    # the cold frame stopped before this exit: every pixel was confident)
    dense_ms: float  # median cumulative latency with CA off, same run
    ratio: float  # dense / CA (> 1: CA is faster)
    masked: float  # mean masked fraction of the stage ending in this exit
    predicted_ms: float  # the cost model's cumulative prediction
    # schema 1 additions (only ever add fields: the Android app writes the same schema)
    stage: int = 0  # the stage that ends in this exit
    stage_ms: float = 0.0  # median latency of that stage alone, with CA
    elapsed_ms: float = 0.0  # median wall time from frame start to this exit, host work included
    stage_energy_mj: float = 0.0  # mean energy of that stage, with CA
    energy_mj: float = 0.0  # mean cumulative energy to this exit, with CA
    dense_energy_mj: float = 0.0  # mean cumulative energy to this exit, CA off
    baseline_ratio: float = 0.0  # baseline ms / this exit's ms (> 1: the exit answers sooner)


@dataclass
class Baseline:
    """The dense, run-to-completion network on the same backend, timed in the same run."""

    kind: str = BASELINE_KIND
    description: str = BASELINE_DESCRIPTION
    ms: float = 0.0  # median latency of the whole frame
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    energy_mj: float = 0.0  # mean energy of the whole frame


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
    # schema 1 additions
    format: str = BENCH_FORMAT
    schema_version: int = BENCH_SCHEMA_VERSION
    writer: str = ""  # the program that wrote the report, e.g. "adpc 0.1.0 (python)"
    created: str = ""  # UTC, ISO 8601
    model: str = ""
    input_size: list[int] = field(default_factory=list)  # [height, width]
    bundle: str | None = None  # the bundle folder as given
    energy_meter: str = ""  # the meter's source: "rapl:...", "battery:...", "model: ..."
    energy_measured: bool = False  # False: the model meter's power x time estimate
    energy_meter_skipped: list[str] = field(default_factory=list)  # why better meters weren't
    host_ms: float = 0.0  # median per frame: runner work outside stage calls, with CA
    host_share: float = 0.0  # median per frame: host_ms / frame wall time
    baseline: Baseline | None = None

    def to_dict(self) -> dict:
        return asdict(self)


_NUM = (int, float)
_TOP_FIELDS: dict[str, tuple] = {
    "format": (str,), "schema_version": (int,), "writer": (str,), "created": (str,),
    "backend": (str,), "precision": (str,), "threads": (int, type(None)), "device": (str,),
    "model": (str,), "input_size": (list,), "bundle": (str, type(None)), "frames": (int,),
    "repeats": (int,), "threshold": (*_NUM, type(None)), "cost_model": (str,),
    "peak_rss_mb": _NUM, "energy_meter": (str,), "energy_measured": (bool,),
    "energy_meter_skipped": (list,), "host_ms": _NUM, "host_share": _NUM,
    "baseline": (dict, type(None)), "exits": (list,), "calibration": (dict, type(None)),
}
_EXIT_FIELDS: dict[str, tuple] = {
    "exit": (int,), "stage": (int,), "ms": _NUM, "p90_ms": _NUM, "p99_ms": _NUM,
    "cold_ms": (*_NUM, type(None)), "stage_ms": _NUM, "elapsed_ms": _NUM, "dense_ms": _NUM,
    "ratio": _NUM, "baseline_ratio": _NUM, "masked": _NUM, "predicted_ms": _NUM,
    "stage_energy_mj": _NUM, "energy_mj": _NUM, "dense_energy_mj": _NUM,
}
_BASELINE_FIELDS: dict[str, tuple] = {
    "kind": (str,), "description": (str,), "ms": _NUM, "p90_ms": _NUM, "p99_ms": _NUM,
    "energy_mj": _NUM,
}


def check_report(data: object) -> list[str]:
    """Problems with a bench JSON object against schema 1 (docs/formats.md); [] = valid.

    For reports from any writer (e.g. the Android app): every documented field present with
    its JSON type (bool is not a number); unknown fields are allowed (fields are only added).
    """

    def fields(obj: object, spec: dict[str, tuple], where: str) -> list[str]:
        if not isinstance(obj, dict):
            return [f"{where}: expected an object, got {type(obj).__name__}"]
        out = []
        for name, types in spec.items():
            if name not in obj:
                out.append(f"{where}.{name}: missing")
            elif (isinstance(obj[name], bool) and bool not in types) or not isinstance(
                    obj[name], types):
                out.append(f"{where}.{name}: expected {'/'.join(t.__name__ for t in types)}, "
                           f"got {type(obj[name]).__name__}")
        return out

    problems = fields(data, _TOP_FIELDS, "report")
    if problems and not isinstance(data, dict):
        return problems
    assert isinstance(data, dict)
    if data.get("format") != BENCH_FORMAT:
        problems.append(f"report.format: expected {BENCH_FORMAT!r}, got {data.get('format')!r}")
    if data.get("schema_version") != BENCH_SCHEMA_VERSION:
        problems.append(f"report.schema_version: this reader knows {BENCH_SCHEMA_VERSION}, got "
                        f"{data.get('schema_version')!r}")
    for i, e in enumerate(data.get("exits") or []):
        problems += fields(e, _EXIT_FIELDS, f"report.exits[{i}]")
    if isinstance(data.get("baseline"), dict):
        problems += fields(data["baseline"], _BASELINE_FIELDS, "report.baseline")
    return problems


def _cumulative(per_stage: list[float]) -> list[float]:
    return list(np.cumsum(per_stage))


def run_to_completion(backend: Backend, image: np.ndarray) -> np.ndarray:
    """The dense baseline: every stage on every pixel, nothing between them; the last logits."""
    state: list[np.ndarray] = [np.ascontiguousarray(image, dtype=np.float32)]
    ones: np.ndarray | None = None
    outputs: list[np.ndarray] = state
    for spec in backend.manifest.stages:
        if spec.index == 1:
            inputs = state
        else:
            if ones is None:
                ones = np.ones(spec.inputs[-1].shape, np.float32)
            inputs = [*state, ones]
        outputs = backend.run_stage(spec.index, inputs)
        state = outputs if spec.exit is None else outputs[:-1]
    return outputs[-1]


def _writer() -> str:
    try:
        from importlib.metadata import version

        return f"adpc {version('adpc')} (python)"
    except Exception:  # noqa: BLE001 (not installed as a distribution: a source checkout)
        return "adpc (python, source checkout)"


def bench(
    backend: Backend,
    frames: Sequence[np.ndarray],
    repeats: int = 5,
    warmup: int = 1,
    progress: Callable[[str], None] | None = None,
    meter: EnergyMeter | None = None,
    bundle: str | None = None,
) -> BenchReport:
    """Per-exit latency and energy with CA, dense (CA off) and the run-to-completion
    baseline, interleaved frame by frame so all three see the same machine.

    meter: measured around every stage (edge.power.find_meter picks RAPL / battery / the model
    estimate); None uses a ModelMeter (power x time, named as such in the report).
    """
    say = progress or (lambda _msg: None)
    meter = meter if meter is not None else ModelMeter()
    ca = AnytimeRunner(backend, meter=meter)
    dense = AnytimeRunner(backend, threshold=None, cost_model=ca.cost_model, meter=meter)
    n_exits = backend.manifest.num_exits
    times: dict[str, list[list[float]]] = {"ca": [[] for _ in range(n_exits)],
                                           "dense": [[] for _ in range(n_exits)]}
    energy: dict[str, list[list[float]]] = {"ca": [[] for _ in range(n_exits)],
                                            "dense": [[] for _ in range(n_exits)]}
    stage_ms: list[list[float]] = [[] for _ in range(n_exits)]
    elapsed: list[list[float]] = [[] for _ in range(n_exits)]
    stages = [0] * n_exits
    masked: list[list[float]] = [[] for _ in range(n_exits)]
    predicted: list[list[float]] = [[] for _ in range(n_exits)]
    host: list[float] = []
    host_share: list[float] = []
    base_ms: list[float] = []
    base_mj: list[float] = []
    cold = _cumulative([e.stage_ms for e in ca.run_frame(frames[0]).exits])
    for frame in frames:
        for _ in range(warmup):
            ca.run_frame(frame)
            dense.run_frame(frame)
            run_to_completion(backend, frame)
    for r in range(repeats):
        say(f"repeat {r + 1}/{repeats}")
        for frame in frames:
            for key, runner in (("ca", ca), ("dense", dense)):
                result = runner.run_frame(frame)
                cumulative = _cumulative([e.stage_ms for e in result.exits])
                for e, ms in zip(result.exits, cumulative, strict=True):
                    i = e.exit - 1
                    times[key][i].append(ms)
                    energy[key][i].append(e.energy_mj)
                    if key == "ca":
                        stages[i] = e.stage
                        stage_ms[i].append(e.stage_ms)
                        elapsed[i].append(e.elapsed_ms)
                        masked[i].append(e.masked_fraction)
                        predicted[i].append(e.predicted.latency_ms)
                if key == "ca" and result.exits:
                    frame_host = sum(e.host_ms for e in result.exits)
                    host.append(frame_host)
                    host_share.append(frame_host / result.final.elapsed_ms
                                      if result.final.elapsed_ms > 0 else 0.0)
            span = meter.start()
            t0 = time.perf_counter()
            run_to_completion(backend, frame)
            base_ms.append((time.perf_counter() - t0) * 1e3)
            base_mj.append(span.stop().energy_mj)
    manifest = backend.manifest
    report = BenchReport(
        backend.name, backend.precision, backend.threads, device_name(), len(frames), repeats,
        ca.threshold, ca.cost_model.source, peak_rss_mb(),
        writer=_writer(), created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        model=manifest.model, input_size=[manifest.input.height, manifest.input.width],
        bundle=bundle, energy_meter=meter.source,
        energy_measured=not isinstance(meter, ModelMeter),
        energy_meter_skipped=list(meter.skipped),
        host_ms=statistics.median(host) if host else 0.0,
        host_share=statistics.median(host_share) if host_share else 0.0,
        baseline=Baseline(ms=statistics.median(base_ms),
                          p90_ms=float(np.percentile(base_ms, 90)),
                          p99_ms=float(np.percentile(base_ms, 99)),
                          energy_mj=float(np.mean(base_mj))))
    for i in range(n_exits):
        if not times["ca"][i]:
            continue
        ms, dense_ms = statistics.median(times["ca"][i]), statistics.median(times["dense"][i])
        p90, p99 = (float(np.percentile(times["ca"][i], q)) for q in (90, 99))
        pred = float(np.sum([statistics.median(p) for p in predicted[: i + 1] if p]))
        stage_mj = float(np.mean(energy["ca"][i]))
        report.exits.append(ExitTiming(
            i + 1, ms, p90, p99, cold[i] if i < len(cold) else None, dense_ms,
            dense_ms / ms if ms else 0.0, float(np.mean(masked[i])), pred,
            stage=stages[i], stage_ms=statistics.median(stage_ms[i]),
            elapsed_ms=statistics.median(elapsed[i]), stage_energy_mj=stage_mj,
            energy_mj=float(sum(np.mean(v) for v in energy["ca"][: i + 1] if v)),
            dense_energy_mj=float(sum(np.mean(v) for v in energy["dense"][: i + 1] if v)),
            baseline_ratio=report.baseline.ms / ms if ms else 0.0))
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
    repeats: int = 5,
    thresholds: Sequence[float | None] = CALIBRATION_THRESHOLDS,
    progress: Callable[[str], None] | None = None,
) -> CostModel:
    """Fit every stage's latency against its GFLOPs over a sweep of computed fractions.

    Each (threshold, frame) workload runs `repeats` times and contributes the median of its
    stage latencies, so the fit (an upper envelope over workloads) is not set by one
    scheduling hiccup on a shared machine: a single 5x outlier among 100 samples raised
    every prediction to 5x and starved the deadline runs of later exits.
    """
    say = progress or (lambda _msg: None)
    model = CostModel.from_flops(backend.manifest.stages)
    samples: dict[int, tuple[list[float], list[float]]] = {
        s.index: ([], []) for s in backend.manifest.stages}
    for thr in thresholds:
        say(f"calibrating at threshold {thr}")
        runner = AnytimeRunner(backend, threshold=thr)
        for frame in frames:
            runner.run_frame(frame)  # warm-up at this workload
            runs: dict[int, tuple[float, list[float]]] = {}
            for _ in range(repeats):
                for e in runner.run_frame(frame).exits:
                    gflops = model.gflops(e.stage, 1.0 - e.masked_fraction)
                    runs.setdefault(e.stage, (gflops, []))[1].append(e.stage_ms)
            for stage, (gflops, ms) in runs.items():
                samples[stage][0].append(gflops)
                samples[stage][1].append(statistics.median(ms))
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


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_report(report: BenchReport) -> str:
    head = (f"{'exit':>4} {'stage':>7} {'CA p50':>8} {'p90':>8} {'p99':>8} {'cold':>8} "
            f"{'dense p50':>9} {'dense/CA':>9} {'base/CA':>8} {'masked':>7} {'predicted':>10} "
            f"{'stage mJ':>9} {'mJ':>8} {'dense mJ':>9}")
    measured = "measured" if report.energy_measured else "estimated, no meter readable"
    lines = [f"{report.backend} {report.precision}, {report.threads or 'default'} threads, "
             f"{report.frames} frames x {report.repeats} repeats, threshold {report.threshold}; "
             f"cumulative ms per exit (stage: that stage alone); cost model: "
             f"{report.cost_model}; peak RSS {report.peak_rss_mb:.0f} MB",
             f"energy ({measured}): {report.energy_meter}", head, "-" * len(head)]
    for e in report.exits:
        lines.append(f"{e.exit:>4} {e.stage_ms:>7.2f} {e.ms:>8.2f} {e.p90_ms:>8.2f} "
                     f"{e.p99_ms:>8.2f} {_ms(e.cold_ms):>8} {e.dense_ms:>9.2f} {e.ratio:>8.2f}x "
                     f"{e.baseline_ratio:>7.2f}x {e.masked:>7.1%} {e.predicted_ms:>10.2f} "
                     f"{e.stage_energy_mj:>9.2f} {e.energy_mj:>8.2f} {e.dense_energy_mj:>9.2f}")
    b = report.baseline
    if b is not None:
        lines.append(f"dense baseline ({b.kind}): p50 {b.ms:.2f} ms, p90 {b.p90_ms:.2f}, "
                     f"p99 {b.p99_ms:.2f}, {b.energy_mj:.2f} mJ per frame")
    lines.append(f"host work between stages (CA): {report.host_ms:.3f} ms per frame, "
                 f"{report.host_share:.2%} of the frame")
    return "\n".join(lines)
