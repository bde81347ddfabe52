"""Golden files for the Android Java core: inputs and expected outputs from the real Python code.

Every expected value here comes from the Python implementation the phone must agree with
(edge.host, edge.runtime.AnytimeRunner, edge.budget, edge.costmodel, edge.sources.fit_to,
edge.preprocess, edge.viz, edge.bundle, edge.backends.base, edge.bench), never from the Java code
under test. Inputs are drawn from numpy with fixed seeds, so the files are the same on every
run; nothing is committed (tests/test_android_core.py writes them into a temporary folder).

Layout of the output folder:
  index.json        every array (file, dtype, shape) and every JSON case, by name
  arrays/*.bin      raw little-endian arrays
  bundle/           a real bundle written by edge.bundle.write_bundle (tiny stage files)

Run by hand: python android_demo/tools/golden.py OUT_DIR
"""

from __future__ import annotations

import copy
import dataclasses
import json
import statistics
import sys
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np

from edge import bench as edge_bench
from edge import host
from edge import runtime as edge_runtime
from edge.backends.base import dequantize, from_file_layout, quantize, to_file_layout
from edge.budget import BatteryGovernor, Cancel, Deadline, EnergyBudget, compose
from edge.bundle import (
    BundleError,
    BundleFile,
    MethodIO,
    Quantization,
    TensorSpec,
    manifest_from_dict,
    read_bundle,
    write_bundle,
)
from edge.costmodel import CostModel
from edge.power import ModelMeter
from edge.preprocess import to_input
from edge.sources import fit_to
from edge.viz import overlay, palette_lut

THRESHOLDS = (0.5, 0.9, 0.99, 0.998, 1.0)
COST_KEY = "fake-device/fake/fp32"


class Golden:
    """Collects arrays and JSON cases and writes them with one index."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "arrays").mkdir(parents=True, exist_ok=True)
        self.arrays: dict[str, dict] = {}
        self.cases: dict[str, object] = {}

    def array(self, name: str, value: np.ndarray) -> None:
        value = np.ascontiguousarray(value)
        dtype = value.dtype.newbyteorder("<")
        (self.root / "arrays" / f"{name}.bin").write_bytes(value.astype(dtype).tobytes())
        self.arrays[name] = {"file": f"arrays/{name}.bin", "dtype": value.dtype.name,
                             "shape": list(value.shape)}

    def case(self, name: str, value: object) -> None:
        json.dumps(value, allow_nan=True)  # fail here, not in Java, on an unwritable value
        self.cases[name] = value

    def write(self) -> Path:
        index = self.root / "index.json"
        index.write_text(json.dumps({"arrays": self.arrays, "cases": self.cases}, indent=1))
        return index


# --------------------------------------------------------------------------- host step
def confident_logits(rng: np.random.Generator, k: int, h: int, w: int, scale: float,
                     thresholds=THRESHOLDS) -> np.ndarray:
    """Random logits whose confidences keep a clear margin from every threshold, so the mask
    is decided by the rule and not by the last ulp of exp (which numpy's SIMD exp and Java's
    Math.exp may round differently); ties and exact thresholds are added on purpose below."""
    logits = (rng.standard_normal((1, k, h, w)) * scale).astype(np.float32)
    for _ in range(100):
        conf = 1.0 / np.exp(logits.astype(np.float64)
                            - logits.max(axis=1, keepdims=True)).sum(axis=1)
        near = np.zeros(conf.shape, bool)
        for t in thresholds:
            near |= np.abs(conf - np.float32(t)) <= 1e-5
        if not near.any():
            return logits
        top = logits.argmax(axis=1)
        b, y, x = np.nonzero(near)
        logits[b, top[b, y, x], y, x] += np.float32(0.25)
    raise RuntimeError("could not move confidences away from the thresholds")


def host_cases(g: Golden) -> None:
    rng = np.random.default_rng(7)
    k, h, w = 19, 32, 64
    previous = confident_logits(rng, k, h, w, 2.0)
    fresh = confident_logits(rng, k, h, w, 4.0)
    # Exact cases: two classes tie and the rest underflow exp to 0 -> confidence exactly 0.5;
    # one class alone -> exactly 1.0 (both equal a threshold: equality computes).
    previous[0, :, 0, :8] = -200.0
    previous[0, 3, 0, :4] = 5.0
    previous[0, 7, 0, :4] = 5.0
    previous[0, 2, 0, 4:8] = 1.0
    # A tie in argmax: the first maximum wins.
    previous[0, :, 1, 0] = 0.0
    g.array("host_previous", previous)
    g.array("host_fresh", fresh)
    g.array("host_confidence", host.confidence(previous))
    g.array("host_labels", previous.argmax(axis=1).astype(np.int32))
    results = []
    for i, t in enumerate(THRESHOLDS):
        mask = host.compute_mask(previous, t)
        g.array(f"host_mask_{i}", mask)
        g.array(f"host_carried_{i}", host.carry_over(previous, fresh, mask))
        results.append({"threshold": t, "mask": f"host_mask_{i}", "carried": f"host_carried_{i}",
                        "masked_fraction": host.masked_fraction(mask),
                        "computed": float(mask.mean())})
    g.case("host", {"logits": "host_previous", "fresh": "host_fresh",
                    "confidence": "host_confidence", "labels": "host_labels",
                    "thresholds": results})


# --------------------------------------------------------------------------- scheduler
class FakeClock:
    """perf_counter for the runner and the Deadline: moves only when a stage 'runs'."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class ScriptedBackend:
    """A backend that replays recorded stage times and exit logits (the runner's only view of
    a runtime is run_stage), and can press a cancel button during a given stage."""

    name, precision, threads = "fake", "fp32", 2

    def __init__(self, manifest, clock: FakeClock, frames: list[dict], arrays: dict,
                 cancel: Cancel | None = None, cancel_at: dict | None = None) -> None:
        self.manifest = manifest
        self.clock = clock
        self.frames = frames
        self.arrays = arrays
        self.frame = 0
        self.cancel = cancel
        self.cancel_at = cancel_at

    def run_stage(self, k: int, inputs):
        script = self.frames[self.frame]
        self.clock.t += script["stage_ms"][k - 1] / 1000.0
        at = self.cancel_at
        if at and at["frame"] == self.frame and at["stage"] == k:
            self.cancel.cancel(at["reason"])
        feature = np.zeros((1, 2, 2, 2), np.float32)
        return [feature, self.arrays[script["logits"][k - 1]]]


def scheduler_manifest() -> dict:
    """A small manifest for the scheduler cases: 4 stages, 5 classes, 32x64 input."""
    def t(name, shape):
        return {"name": name, "shape": shape}

    stages = []
    flops = [(0.30, 0.0, 0.0), (0.0, 0.70, 0.08), (0.0, 1.50, 0.30), (0.0, 3.20, 0.75)]
    for i, (fixed, masked, fill) in enumerate(flops, start=1):
        inputs = [t("image", [1, 3, 32, 64])] if i == 1 else [t("x0", [1, 2, 2, 2]),
                                                              t("mask", [1, 1, 8, 16])]
        stages.append({"index": i, "exit": i, "inputs": inputs,
                       "outputs": [t("x0", [1, 2, 2, 2]), t("logits", [1, 5, 8, 16])],
                       "flops": {"fixed": fixed, "masked": masked, "fill": fill}})
    table = {"stages": {"1": {"overhead_ms": 2.0, "ms_per_gflop": 20.0, "samples": 9},
                        "2": {"overhead_ms": 1.5, "ms_per_gflop": 11.0, "samples": 9},
                        "3": {"overhead_ms": 1.0, "ms_per_gflop": 9.5, "samples": 9},
                        "4": {"overhead_ms": 0.5, "ms_per_gflop": 8.25, "samples": 9}},
             "power_w": 3.0, "backend": "fake", "threads": 2}
    return {"format": "adpc-bundle", "schema_version": 1, "model": "scheduler_test",
            "model_config": {}, "classes": [{"id": i, "name": f"c{i}", "color": [i, 2 * i, 3 * i]}
                                            for i in range(5)],
            "input": {"height": 32, "width": 64, "mean": [0.5, 0.5, 0.5],
                      "std": [0.25, 0.25, 0.25]},
            "threshold": 0.9, "stages": stages, "cost_tables": {COST_KEY: table}}


def make_budget(specs: list[dict], clock: FakeClock):
    parts, cancel = [], None
    for s in specs:
        kind = s["type"]
        if kind == "deadline":
            parts.append(Deadline(s["ms"], clock=clock))
        elif kind == "energy":
            parts.append(EnergyBudget(s["mj"]))
        elif kind == "battery_per_hour":
            parts.append(BatteryGovernor.per_hour(s["fraction"], s["battery_wh"], s["fps"],
                                                  carry_frames=s["carry_frames"]))
        elif kind == "battery_per_session":
            parts.append(BatteryGovernor.per_session(s["mwh"], s["frames"],
                                                     carry_frames=s["carry_frames"]))
        elif kind == "cancel":
            cancel = Cancel()
            parts.append(cancel)
        else:
            raise ValueError(kind)
    if not parts:
        return None, None
    return (parts[0] if len(parts) == 1 else compose(*parts)), cancel


def budget_state(budget) -> dict:
    parts = budget.budgets if hasattr(budget, "budgets") else ([budget] if budget else [])
    state = {}
    for b in parts:
        if isinstance(b, BatteryGovernor):
            state["battery"] = {"bank_mj": b.bank_mj, "allowance_mj": b.allowance_mj,
                                "total_spent_mj": b.total_spent_mj, "frames": b.frames}
        if isinstance(b, EnergyBudget):
            state["energy_spent_mj"] = b.spent_mj
    return state


def scheduler_logits(g: Golden, rng: np.random.Generator) -> list[str]:
    """Exit logits per stage: later exits more confident, as a trained model's are."""
    names = []
    for k, scale in enumerate((1.2, 2.0, 3.0, 4.5), start=1):
        name = f"sched_logits_{k}"
        g.array(name, confident_logits(rng, 5, 8, 16, scale, thresholds=(0.9,)))
        names.append(name)
    sure = np.full((1, 5, 8, 16), -50.0, np.float32)
    sure[0, 1] = 50.0  # every pixel certain: nothing left to compute after this exit
    g.array("sched_logits_sure", sure)
    return names


SCENARIOS = [
    # name, budgets, threshold ("manifest" / None), cost model, min_exits, per-frame stage ms
    ("no_budget", [], "manifest", "table", 1, [[6, 7, 9, 12]]),
    ("ca_off", [], None, "table", 1, [[6, 7, 9, 12]]),
    ("deadline_table", [{"type": "deadline", "ms": 40}], "manifest", "table", 1,
     [[6, 7, 9, 12], [9, 14, 12, 11], [25, 10, 10, 10], [45, 5, 5, 5]]),
    ("deadline_flops", [{"type": "deadline", "ms": 120}], "manifest", "flops", 1,
     [[6, 7, 9, 12], [40, 7, 9, 12]]),
    ("deadline_strict", [{"type": "deadline", "ms": 5}], "manifest", "table", 0,
     [[6, 7, 9, 12]]),
    ("energy", [{"type": "energy", "mj": 60}], "manifest", "table", 1,
     [[6, 7, 9, 12], [3, 3, 3, 3], [12, 12, 12, 12]]),
    ("battery_hour", [{"type": "battery_per_hour", "fraction": 0.05, "battery_wh": 15.0,
                       "fps": 10.0, "carry_frames": 3.0}], "manifest", "table", 1,
     [[6, 7, 9, 12], [6, 7, 9, 12], [2, 2, 2, 2], [2, 2, 2, 2], [6, 7, 9, 12], [15, 9, 9, 9]]),
    ("battery_session", [{"type": "battery_per_session", "mwh": 0.02, "frames": 3,
                          "carry_frames": 2.0}], "manifest", "table", 1,
     [[6, 7, 9, 12], [6, 7, 9, 12], [6, 7, 9, 12], [6, 7, 9, 12]]),
    ("composite", [{"type": "deadline", "ms": 45}, {"type": "energy", "mj": 75},
                   {"type": "cancel"}], "manifest", "table", 1,
     [[6, 7, 9, 12], [5, 5, 30, 5], [6, 7, 9, 12]]),
]


def scheduler_cases(g: Golden) -> None:
    rng = np.random.default_rng(11)
    data = scheduler_manifest()
    g.case("scheduler_manifest", data)
    manifest = manifest_from_dict(data, "scheduler manifest")
    names = scheduler_logits(g, rng)
    arrays = {n: _read_back(g, n) for n in names + ["sched_logits_sure"]}
    scenarios = [(*s, None, None) for s in SCENARIOS]
    scenarios.append(("cancel_mid_frame", [{"type": "cancel"}], "manifest", "table", 1,
                      [[6, 7, 9, 12], [6, 7, 9, 12]],
                      {"frame": 0, "stage": 2, "reason": "user pressed stop"}, None))
    scenarios.append(("all_confident", [{"type": "deadline", "ms": 500}], "manifest", "table",
                      1, [[6, 7, 9, 12]], None, [names[0], "sched_logits_sure"] + names[2:]))
    out = []
    for name, specs, thr, cost, min_exits, times, cancel_at, logits in scenarios:
        clock = FakeClock()
        budget, cancel = make_budget(specs, clock)
        frames = [{"stage_ms": t, "logits": logits or names} for t in times]
        backend = ScriptedBackend(manifest, clock, frames, arrays, cancel, cancel_at)
        model = (CostModel.from_table(manifest.stages, manifest.cost_tables[COST_KEY])
                 if cost == "table" else CostModel.from_flops(manifest.stages))
        runner = edge_runtime.AnytimeRunner(backend, threshold=thr, cost_model=model,
                                            min_exits=min_exits)
        expected = []
        with mock.patch.object(edge_runtime, "time", SimpleNamespace(perf_counter=clock)):
            for f in range(len(frames)):
                backend.frame = f
                result = runner.run_frame(np.zeros((1, 3, 32, 64), np.float32), budget)
                final = None
                if result.exits:
                    final = f"sched_{name}_final_{f}"
                    g.array(final, result.final.logits)
                expected.append({
                    "stop_reason": result.stop_reason,
                    "final_logits": final,
                    "exits": [{"exit": e.exit, "stage": e.stage,
                               "masked_fraction": e.masked_fraction, "stage_ms": e.stage_ms,
                               "elapsed_ms": e.elapsed_ms, "energy_mj": e.energy_mj,
                               "predicted_ms": e.predicted.latency_ms,
                               "predicted_mj": e.predicted.energy_mj} for e in result.exits],
                    "budget": budget_state(budget)})
        out.append({"name": name, "budgets": specs, "threshold": thr, "cost_model": cost,
                    "cost_source": model.source, "min_exits": min_exits, "frames": frames,
                    "cancel_at": cancel_at, "start_seconds": 100.0, "expected": expected})
    g.case("scheduler", out)


def _read_back(g: Golden, name: str) -> np.ndarray:
    meta = g.arrays[name]
    raw = (g.root / meta["file"]).read_bytes()
    return np.frombuffer(raw, dtype=meta["dtype"]).reshape(meta["shape"]).copy()


# --------------------------------------------------------------------------- preprocessing
def yuv_to_rgb_reference(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Full-range BT.601 (JFIF) in 16-bit fixed point: the integer rule the Java core uses.
    tests/test_android_core.py checks it against the floating-point definition."""
    h, w = y.shape
    uu = np.repeat(np.repeat(u.astype(np.int32) - 128, 2, axis=0), 2, axis=1)[:h, :w]
    vv = np.repeat(np.repeat(v.astype(np.int32) - 128, 2, axis=0), 2, axis=1)[:h, :w]
    yy = y.astype(np.int32)
    r = yy + ((91881 * vv + 32768) >> 16)
    g = yy + ((-22554 * uu - 46802 * vv + 32768) >> 16)
    b = yy + ((116130 * uu + 32768) >> 16)
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


def yuv_float_reference(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    h, w = y.shape
    uu = np.repeat(np.repeat(u.astype(np.float64) - 128, 2, axis=0), 2, axis=1)[:h, :w]
    vv = np.repeat(np.repeat(v.astype(np.float64) - 128, 2, axis=0), 2, axis=1)[:h, :w]
    yy = y.astype(np.float64)
    rgb = np.stack([yy + 1.402 * vv, yy - 0.344136 * uu - 0.714136 * vv, yy + 1.772 * uu], -1)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def pack_planes(y: np.ndarray, u: np.ndarray, v: np.ndarray, layout: str) -> dict:
    """Plane buffers as camera HALs hand them out: padded rows, interleaved or planar chroma."""
    h, w = y.shape
    ch, cw = u.shape
    y_stride = w + 16
    ybuf = np.zeros(y_stride * h, np.uint8)
    for r in range(h):
        ybuf[r * y_stride:r * y_stride + w] = y[r]
    if layout == "nv21":  # V U V U ..., the U plane starts one byte into the V plane
        c_stride = 2 * cw + 8
        vu = np.zeros(c_stride * ch, np.uint8)
        for r in range(ch):
            vu[r * c_stride:r * c_stride + 2 * cw:2] = v[r]
            vu[r * c_stride + 1:r * c_stride + 2 * cw:2] = u[r]
        return {"y": ybuf, "y_row": y_stride, "u": vu[1:], "v": vu, "c_row": c_stride,
                "c_pixel": 2}
    c_stride = cw + 4
    ubuf = np.zeros(c_stride * ch, np.uint8)
    vbuf = np.zeros(c_stride * ch, np.uint8)
    for r in range(ch):
        ubuf[r * c_stride:r * c_stride + cw] = u[r]
        vbuf[r * c_stride:r * c_stride + cw] = v[r]
    return {"y": ybuf, "y_row": y_stride, "u": ubuf, "v": vbuf, "c_row": c_stride, "c_pixel": 1}


def preprocess_cases(g: Golden, input_spec) -> None:
    rng = np.random.default_rng(5)
    cases = []
    for i, (h, w, layout, rotation) in enumerate(
            [(48, 64, "nv21", 0), (30, 40, "i420", 90), (22, 34, "nv21", 270),
             (16, 20, "i420", 180)]):
        y = rng.integers(0, 256, (h, w), dtype=np.uint8)
        u = rng.integers(0, 256, ((h + 1) // 2, (w + 1) // 2), dtype=np.uint8)
        v = rng.integers(0, 256, ((h + 1) // 2, (w + 1) // 2), dtype=np.uint8)
        planes = pack_planes(y, u, v, layout)
        for key in ("y", "u", "v"):
            g.array(f"yuv{i}_{key}", planes[key])
        rgb = np.rot90(yuv_to_rgb_reference(y, u, v), k=-rotation // 90)
        g.array(f"yuv{i}_rgb", np.ascontiguousarray(rgb))
        cases.append({"width": w, "height": h, "rotation": rotation, "y_row": planes["y_row"],
                      "c_row": planes["c_row"], "c_pixel": planes["c_pixel"],
                      "y": f"yuv{i}_y", "u": f"yuv{i}_u", "v": f"yuv{i}_v",
                      "rgb": f"yuv{i}_rgb"})
    g.case("yuv", cases)

    fits = []
    sizes = [(480, 640), (100, 150), (37, 91), (300, 200), (128, 256), (64, 640)]
    for i, (h, w) in enumerate(sizes):
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        frame = (frame // 2 + np.linspace(0, 120, w, dtype=np.uint8)[None, :, None])
        frame = frame.astype(np.uint8)
        fitted, geometry = fit_to(frame, input_spec.height, input_spec.width, "letterbox")
        tensor, _ = to_input(frame, input_spec, "letterbox")
        g.array(f"fit{i}_frame", frame)
        g.array(f"fit{i}_fitted", fitted)
        g.array(f"fit{i}_tensor", tensor)
        top, bottom, left, right = geometry.content_box()
        fits.append({"frame": f"fit{i}_frame", "fitted": f"fit{i}_fitted",
                     "tensor": f"fit{i}_tensor", "content_box": [top, bottom, left, right]})
    bgr = dataclasses.replace(input_spec, color_order="BGR", pixel_scale=1 / 127.5,
                              mean=(0.1, 0.2, 0.3), std=(0.9, 1.1, 1.3))
    frame = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    tensor, _ = to_input(frame, bgr, "letterbox")
    g.array("fit_bgr_frame", frame)
    g.array("fit_bgr_tensor", tensor)
    g.case("fit", {"height": input_spec.height, "width": input_spec.width,
                   "mean": list(input_spec.mean), "std": list(input_spec.std),
                   "pixel_scale": input_spec.pixel_scale, "cases": fits,
                   "bgr": {"frame": "fit_bgr_frame", "tensor": "fit_bgr_tensor",
                           "mean": list(bgr.mean), "std": list(bgr.std),
                           "pixel_scale": bgr.pixel_scale}})


# --------------------------------------------------------------------------- overlay
def overlay_cases(g: Golden, colors: list) -> None:
    rng = np.random.default_rng(3)
    lut = palette_lut(colors)
    cases = []
    for i, (h, w, lh, lw) in enumerate([(128, 256, 32, 64), (100, 150, 32, 64),
                                        (64, 128, 64, 128), (50, 70, 16, 24)]):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        labels = rng.integers(0, len(colors), (lh, lw)).astype(np.int32)
        labels[0, :3] = 255  # ignore -> black
        g.array(f"ov{i}_image", image)
        g.array(f"ov{i}_labels", labels)
        g.array(f"ov{i}_expected", overlay(image, labels, lut, alpha=0.55))
        cases.append({"image": f"ov{i}_image", "labels": f"ov{i}_labels",
                      "expected": f"ov{i}_expected", "alpha": 0.55})
    g.case("overlay", {"palette": [list(map(int, c)) for c in colors],
                       "lut": lut.astype(int).tolist(), "cases": cases})


# --------------------------------------------------------------------------- manifest
def manifest_cases(g: Golden, manifest) -> None:
    """A real bundle (edge.bundle.write_bundle) and damaged manifests with the field each
    must be refused for."""
    root = g.root / "bundle_src"
    root.mkdir(exist_ok=True)
    (root / "stages.pte").write_bytes(bytes(range(256)) * 3)
    (root / "stages.tflite").write_bytes(b"TFL3" + bytes(100))
    q_in = TensorSpec("x0", (1, 256, 64, 128), "int8", "NHWC", Quantization(0.0478, -3))
    io = {"stage2": MethodIO((q_in, manifest.stages[1].inputs[1]), manifest.stages[1].outputs)}
    files = {"executorch/stages_fp32.pte": BundleFile(root / "stages.pte", "executorch", "fp32",
                                                       ("stage1", "stage2", "stage3", "stage4")),
             "tflite/stages_int8.tflite": BundleFile(root / "stages.tflite", "tflite", "int8",
                                                      ("stage1", "stage2", "stage3", "stage4"),
                                                      io)}
    table = {"stages": {str(s.index): {"overhead_ms": 1.0 + s.index, "ms_per_gflop": 9.0,
                                       "samples": 4} for s in manifest.stages},
             "power_w": 2.0, "backend": "executorch", "threads": 2}
    manifest = dataclasses.replace(manifest, cost_tables={COST_KEY: table},
                                   provenance={"checkpoint": "/x.pt", "quantized_from": None})
    bundle = write_bundle(g.root / "bundle", manifest, files)
    parsed = read_bundle(bundle)
    g.case("manifest", {
        "dir": "bundle", "model": parsed.model, "threshold": parsed.threshold,
        "num_exits": parsed.num_exits,
        "input": dataclasses.asdict(parsed.input),
        "classes": [[c.id, c.name, list(c.color)] for c in parsed.classes],
        "stages": [{"index": s.index, "exit": s.exit,
                    "inputs": [[t.name, list(t.shape), t.dtype, t.layout] for t in s.inputs],
                    "outputs": [[t.name, list(t.shape), t.dtype, t.layout] for t in s.outputs],
                    "flops": dataclasses.asdict(s.flops),
                    "gflops": [s.flops.gflops(p) for p in (0.0, 0.25, 0.5, 1.0)]}
                   for s in parsed.stages],
        "files": [{"path": f.path, "sha256": f.sha256, "bytes": f.bytes, "backend": f.backend,
                   "precision": f.precision, "methods": list(f.methods),
                   "io": {m: [[t.name, list(t.shape), t.dtype, t.layout,
                               None if t.quantization is None
                               else [t.quantization.scale, t.quantization.zero_point]]
                              for t in spec.inputs] for m, spec in f.io.items()}}
                  for f in parsed.files],
        "cost_key": COST_KEY,
        "predict": [[k, p, *_predict(parsed, k, p)] for k in (1, 2, 3, 4) for p in (0.1, 0.6)],
        "flops_predict": [[k, p, *_predict(parsed, k, p, flops=True)]
                          for k in (1, 2, 3, 4) for p in (0.1, 0.6)],
    })
    # A copy with one stage file truncated: the size check must refuse it.
    damaged = g.root / "bundle_damaged"
    damaged.mkdir()
    (damaged / "manifest.json").write_text((bundle / "manifest.json").read_text())
    for f in parsed.files:
        target = damaged / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((bundle / f.path).read_bytes())
    first = damaged / parsed.files[0].path
    first.write_bytes(first.read_bytes()[:-1])
    altered = damaged.parent / "bundle_altered"
    altered.mkdir()
    (altered / "manifest.json").write_text((bundle / "manifest.json").read_text())
    for f in parsed.files:
        target = altered / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        body = bytearray((bundle / f.path).read_bytes())
        body[0] ^= 1
        target.write_bytes(bytes(body))
    refusals = []
    for where in (damaged, altered):
        try:
            read_bundle(where)
        except BundleError as exc:
            refusals.append({"dir": where.name, "message": str(exc).replace(str(where),
                                                                            "{dir}")})
    g.case("bundle_refusals", refusals)
    bad_manifest_cases(g, json.loads((bundle / "manifest.json").read_text()))


def _predict(manifest, k: int, p: float, flops: bool = False) -> list[float]:
    model = (CostModel.from_flops(manifest.stages) if flops
             else CostModel.from_table(manifest.stages, manifest.cost_tables[COST_KEY]))
    cost = model.predict(k, p)
    return [cost.latency_ms, cost.energy_mj, model.gflops(k, p)]


def _mutations(good: dict):
    """(description, mutate(d)) pairs: each breaks one rule of edge.bundle.manifest_from_dict."""
    def put(path, value):
        def apply(d):
            *head, last = path
            for key in head:
                d = d[key]
            d[last] = value
        return apply

    def drop(path):
        def apply(d):
            *head, last = path
            for key in head:
                d = d[key]
            del d[last]
        return apply

    return [
        ("format", put(["format"], "other")),
        ("schema version", put(["schema_version"], 2)),
        ("schema version float", put(["schema_version"], 1.0)),
        ("model empty", put(["model"], "")),
        ("model_config list", put(["model_config"], [])),
        ("classes order", put(["classes", 1, "id"], 5)),
        ("class color range", put(["classes", 2, "color"], [0, 256, 0])),
        ("class color length", put(["classes", 2, "color"], [0, 1])),
        ("class name missing", drop(["classes", 3, "name"])),
        ("input height", put(["input", "height"], 250)),
        ("input small", put(["input", "width"], 16)),
        ("input mean", put(["input", "mean"], [0.1, 0.2])),
        ("input std", put(["input", "std"], [0.1, 0.0, 0.2])),
        ("color order", put(["input", "color_order"], "RGBA")),
        ("threshold range", put(["threshold"], 1.5)),
        ("threshold bool", put(["threshold"], True)),
        ("stage numbering", put(["stages", 2, "index"], 7)),
        ("stage dtype", put(["stages", 1, "inputs", 0, "dtype"], "float64")),
        ("stage shape", put(["stages", 1, "outputs", 1, "shape"], [1, 0, 4])),
        ("stage shape empty", put(["stages", 0, "inputs", 0, "shape"], [])),
        ("stage layout", put(["stages", 3, "inputs", 0, "layout"], "NWHC")),
        ("stage flops", drop(["stages", 2, "flops", "fill"])),
        ("stage outputs empty", put(["stages", 0, "outputs"], [])),
        ("stage exit", put(["stages", 1, "exit"], 0)),
        ("quant scale", put(["files", 1, "io", "stage2", "inputs", 0, "quantization", "scale"],
                            0.0)),
        ("file path", put(["files", 0, "path"], "../escape.pte")),
        ("file sha", put(["files", 0, "sha256"], "ABC")),
        ("file backend", put(["files", 1, "backend"], "onnx")),
        ("file precision", put(["files", 1, "precision"], "fp64")),
        ("file bytes", put(["files", 0, "bytes"], -1)),
        ("cost tables", put(["cost_tables"], [])),
        ("top level", lambda d: d.clear() or d.update({"x": 1}) or None),
    ]


def bad_manifest_cases(g: Golden, good: dict) -> None:
    cases = []
    for what, mutate in _mutations(good):
        data = copy.deepcopy(good)
        mutate(data)
        try:
            manifest_from_dict(data, "bad.json")
        except BundleError as exc:
            message = str(exc)
        else:
            raise AssertionError(f"mutation {what!r} was accepted by edge.bundle")
        cases.append({"what": what, "manifest": data, "message": message})
    cases.append({"what": "not an object", "manifest": [1, 2], "message": _refusal([1, 2])})
    g.case("bad_manifests", cases)


def _refusal(data) -> str:
    try:
        manifest_from_dict(data, "bad.json")
    except BundleError as exc:
        return str(exc)
    raise AssertionError("accepted")


# --------------------------------------------------------------------------- codec, stats, bench
def codec_cases(g: Golden) -> None:
    rng = np.random.default_rng(9)
    x = (rng.standard_normal((1, 6, 5, 7)) * 4).astype(np.float32)
    x.flat[:6] = [0.5, 1.5, -0.5, -2.5, 1000.0, -1000.0]  # half-way and saturating values
    spec = TensorSpec("x", (1, 6, 5, 7), "int8", "NHWC", Quantization(0.05, -3))
    q = to_file_layout(x, spec)
    g.array("codec_x", x)
    g.array("codec_q_nhwc", q)
    g.array("codec_q_nchw", quantize(x, spec.quantization))
    g.array("codec_back", from_file_layout(q, spec))
    g.array("codec_deq", dequantize(quantize(x, spec.quantization), spec.quantization))
    g.case("codec", {"x": "codec_x", "scale": 0.05, "zero_point": -3, "q_nhwc": "codec_q_nhwc",
                     "q_nchw": "codec_q_nchw", "back": "codec_back", "deq": "codec_deq"})


def stats_cases(g: Golden) -> None:
    rng = np.random.default_rng(13)
    cases = []
    for n in (1, 2, 3, 7, 10, 24, 101):
        values = (rng.gamma(2.0, 10.0, n) + 5).tolist()
        cases.append({"values": values, "median": statistics.median(values),
                      "p50": float(np.percentile(values, 50)),
                      "p90": float(np.percentile(values, 90)),
                      "p99": float(np.percentile(values, 99)),
                      "mean": float(np.mean(values))})
    g.case("stats", cases)


def bench_cases(g: Golden) -> None:
    """edge.bench.bench on a scripted backend: the stage times it consumed, in call order,
    and the per-exit report it produced from them."""
    manifest = manifest_from_dict(scheduler_manifest(), "scheduler manifest")
    arrays = {f"sched_logits_{k}": _read_back(g, f"sched_logits_{k}") for k in (1, 2, 3, 4)}
    clock = FakeClock()
    rng = np.random.default_rng(17)
    consumed: list[list[float]] = []

    class Timed(ScriptedBackend):
        def run_stage(self, k, inputs):
            ms = float(np.round(rng.uniform(2.0, 20.0), 3))
            consumed.append([k, ms])
            self.clock.t += ms / 1000.0
            return [np.zeros((1, 2, 2, 2), np.float32), self.arrays[f"sched_logits_{k}"]]

    backend = Timed(manifest, clock, [], arrays)
    model = CostModel.from_table(manifest.stages, manifest.cost_tables[COST_KEY])
    fake_time = SimpleNamespace(perf_counter=clock)
    with mock.patch.object(edge_runtime, "time", fake_time), \
            mock.patch.object(edge_bench, "time", fake_time), \
            mock.patch.object(edge_runtime, "default_cost_model", lambda _b: model):
        report = edge_bench.bench(backend, [np.zeros((1, 3, 32, 64), np.float32)] * 3,
                                  repeats=4, warmup=1, meter=ModelMeter(clock=clock),
                                  bundle="scripted")
    g.case("bench", {"frames": 3, "repeats": 4, "warmup": 1, "stage_ms": consumed,
                     "report": report.to_dict()})
    g.case("bench_schema", {"report": list(report.to_dict()),
                            "exit": list(report.to_dict()["exits"][0])})


def format_cases(g: Golden) -> None:
    values = [0.0, 0.05, 0.15, 0.25, 2.675, 12.0, 12.05, -3.25, 1e-05, 123456.0, 1234567.0,
              0.0001234, 50.0, 1 / 3, 2.5e-7, 99.95, 1e16, 7.0e22]
    g.case("formats", [{"value": v, "f1": f"{v:.1f}", "g": f"{v:g}", "repr": repr(v)}
                       for v in values])


def write_golden(out: Path) -> Path:
    """Writes every golden case into `out` (created); returns the index path."""
    from converters.stages import build_manifest
    from model_zoo.adpc import ADPCConfig

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    g = Golden(out)
    manifest = build_manifest(ADPCConfig(), 256, 512)
    host_cases(g)
    scheduler_cases(g)
    preprocess_cases(g, dataclasses.replace(manifest.input, height=128, width=256))
    overlay_cases(g, [list(c.color) for c in manifest.classes])
    manifest_cases(g, manifest)
    codec_cases(g)
    stats_cases(g)
    bench_cases(g)
    format_cases(g)
    return g.write()


if __name__ == "__main__":
    print(write_golden(Path(sys.argv[1] if len(sys.argv) > 1 else "android_demo/build/golden")))
