"""AnytimeRunner and the cost model, on the real ExecuTorch bundle of the shipped model."""

from __future__ import annotations

import numpy as np
import pytest

from converters.verify import frames_for
from edge.backends import open_backend
from edge.budget import Cancel, Deadline
from edge.bundle import StageFlops, StageSpec, TensorSpec
from edge.costmodel import CostModel, StageFit, fit_stage
from edge.runtime import AnytimeRunner, iter_exits


@pytest.fixture(scope="module")
def backend(et_fp32_bundle):
    with open_backend("executorch", et_fp32_bundle.bundle, "fp32", threads=1) as b:
        yield b


@pytest.fixture(scope="module")
def image(et_fp32_bundle):
    return frames_for(et_fp32_bundle.manifest, 1)[0][0].numpy()


def fixed_costs(backend, per_stage_ms: dict[int, float]) -> CostModel:
    return CostModel(backend.manifest.stages,
                     {k: StageFit(ms, 0.0) for k, ms in per_stage_ms.items()})


def test_unbudgeted_frame_reaches_every_exit(backend, image):
    result = AnytimeRunner(backend).run_frame(image)
    assert [e.exit for e in result.exits] == [1, 2, 3, 4] and result.stop_reason == ""
    elapsed = [e.elapsed_ms for e in result.exits]
    assert elapsed == sorted(elapsed) and all(e.stage_ms > 0 for e in result.exits)
    assert result.exits[0].mask is None and result.exits[0].masked_fraction == 0.0
    for e in result.exits[1:]:  # masks only shrink, carried logits keep confident pixels
        assert e.masked_fraction == pytest.approx(1.0 - float(e.mask.mean()))
    prev, last = result.exits[2], result.exits[3]
    skipped = last.mask[:, 0] == 0
    assert skipped.any()
    assert np.array_equal(last.logits.transpose(0, 2, 3, 1)[skipped],
                          prev.logits.transpose(0, 2, 3, 1)[skipped])
    assert last.labels.shape == (1, 16, 32) and last.confidence.shape == (1, 1, 16, 32)
    assert result.energy_mj > 0


def test_deadline_stops_before_a_stage_it_cannot_afford(backend, image):
    frozen = Deadline(25.0, clock=lambda: 0.0)  # no time passes: only predictions count
    runner = AnytimeRunner(backend, cost_model=fixed_costs(backend, {1: 10, 2: 12, 3: 30, 4: 5}))
    result = runner.run_frame(image, frozen)
    assert [e.exit for e in result.exits] == [1, 2]
    assert "deadline" in result.stop_reason and "\n" not in result.stop_reason
    assert result.exits[1].predicted.latency_ms == pytest.approx(12.0)


def test_the_first_exit_always_runs_unless_strict(backend, image):
    cancel = Cancel()
    cancel.cancel("user pressed stop")
    result = AnytimeRunner(backend).run_frame(image, cancel)
    assert [e.exit for e in result.exits] == [1] and "user pressed stop" in result.stop_reason
    strict = AnytimeRunner(backend, min_exits=0).run_frame(image, cancel)
    assert strict.exits == [] and "user pressed stop" in strict.stop_reason
    with pytest.raises(ValueError, match="min_exits"):
        AnytimeRunner(backend, min_exits=-1)


def test_stops_early_when_every_pixel_is_confident(backend, image):
    result = AnytimeRunner(backend, threshold=0.0).run_frame(image)  # nothing is <= 0
    assert [e.exit for e in result.exits] == [1]
    assert "every pixel is confident" in result.stop_reason


def test_iter_exits_is_the_unbudgeted_runner(backend, image):
    a = [e.logits for e in iter_exits(backend, image, backend.manifest.threshold)]
    b = [e.logits for e in AnytimeRunner(backend).run(image)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)) and len(a) == 4


def _spec(k: int, fixed: float, masked: float, fill: float) -> StageSpec:
    t = (TensorSpec("x", (1, 1, 1, 1)),)
    return StageSpec(k, k, t, t, StageFlops(fixed, masked, fill))


def test_flops_cost_model_scales_with_the_computed_fraction():
    stages = [_spec(1, 1.0, 0.0, 0.0), _spec(2, 0.1, 1.0, 0.2)]
    model = CostModel.from_flops(stages, gflops_per_s=10.0)
    assert model.predict(1).latency_ms == pytest.approx(1.0 + 100.0)
    full, half, none = (model.predict(2, p).latency_ms for p in (1.0, 0.5, 0.0))
    assert full > half > none
    assert half == pytest.approx(1.0 + 100 * (0.1 + 0.5 + 0.25 * 0.2))
    assert model.predict(2, 0.5).energy_mj == pytest.approx(2.5 * half)
    assert "not calibrated" in model.source


def test_fit_is_an_upper_envelope_and_round_trips():
    g = [0.5, 1.0, 1.5, 2.0, 2.5]
    ms = [3.1, 5.2, 6.8, 9.4, 10.9]
    fit = fit_stage(g, ms)
    assert all(fit.ms(x) >= y - 1e-9 for x, y in zip(g, ms, strict=True))
    assert fit.ms_per_gflop == pytest.approx(3.9, rel=0.1) and fit.samples == 5
    assert fit_stage([1.0, 1.0], [2.0, 3.0]) == StageFit(3.0, 0.0, 2)
    stages = [_spec(1, 1.0, 0.0, 0.0)]
    model = CostModel(stages, {1: fit}, power_w=3.0)
    again = CostModel.from_table(stages, model.to_table(backend="executorch", threads=2))
    assert again.fits == model.fits and again.power_w == 3.0 and "calibrated" in again.source
    with pytest.raises(ValueError, match="calibrate"):
        CostModel.from_table(stages, {"stages": {"1": {"overhead_ms": "x"}}})
    with pytest.raises(ValueError, match="lacks stages"):
        CostModel(stages + [_spec(2, 1, 1, 1)], {1: fit})


# ------------------------------------------------------------------ adpc bench (edge.bench)
def counting_rapl(tmp_path, uj_per_read: int):
    """A RAPL tree in the kernel's format whose counter rises by `uj_per_read` at every read,
    so every measured span (start read, stop read) is exactly that much energy."""
    from edge.power import RaplMeter

    d = tmp_path / "sys/class/powercap/intel-rapl:0"
    d.mkdir(parents=True)
    (d / "name").write_text("package-0\n")
    (d / "max_energy_range_uj").write_text("262143328850\n")
    (d / "energy_uj").write_text("1000\n")
    reads = {"n": 0}

    def reader(path):
        if path.name == "energy_uj":
            reads["n"] += 1
            return f"{1000 + reads['n'] * uj_per_read}\n"
        return path.read_text()

    return RaplMeter.discover(tmp_path, reader=reader)


def test_runner_reports_host_time_outside_the_stage_calls(backend, image):
    result = AnytimeRunner(backend).run_frame(image)
    assert all(e.host_ms > 0 for e in result.exits)
    stage_plus_host = np.cumsum([e.stage_ms + e.host_ms for e in result.exits])
    assert all(s <= e.elapsed_ms + 1e-6
               for s, e in zip(stage_plus_host, result.exits, strict=True))


def test_run_to_completion_is_the_dense_network(backend, image):
    from edge.bench import run_to_completion

    dense = AnytimeRunner(backend, threshold=None).run_frame(image).final.logits
    np.testing.assert_array_equal(run_to_completion(backend, image), dense)


def test_bench_reports_the_meters_energy_per_stage_and_exit(backend, image, tmp_path):
    import json

    from edge.bench import bench, check_report, format_report

    meter = counting_rapl(tmp_path, uj_per_read=2000)  # 2 mJ per span
    report = bench(backend, [image], repeats=2, warmup=0, meter=meter, bundle="b")
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert check_report(data) == []
    assert data["format"] == "adpc-bench" and data["schema_version"] == 1
    assert data["energy_meter"].startswith("rapl:") and data["energy_measured"] is True
    assert [e["exit"] for e in data["exits"]] == [1, 2, 3, 4]
    assert [e["stage"] for e in data["exits"]] == [1, 2, 3, 4]
    assert [e["stage_energy_mj"] for e in data["exits"]] == pytest.approx([2.0] * 4)
    assert [e["energy_mj"] for e in data["exits"]] == pytest.approx([2.0, 4.0, 6.0, 8.0])
    assert [e["dense_energy_mj"] for e in data["exits"]] == pytest.approx([2.0, 4.0, 6.0, 8.0])
    assert data["baseline"]["kind"] == "run-to-completion"
    assert data["baseline"]["energy_mj"] == pytest.approx(2.0)  # one span per whole frame
    assert data["baseline"]["ms"] > 0 and data["input_size"] == list(image.shape[2:])
    for e in data["exits"]:
        assert e["elapsed_ms"] >= e["ms"] and 0 < e["stage_ms"] <= e["ms"]
        assert e["baseline_ratio"] == pytest.approx(data["baseline"]["ms"] / e["ms"])
    assert 0 < data["host_share"] < 1 and data["host_ms"] > 0
    table = format_report(report)
    assert "rapl:" in table and "run-to-completion" in table and "stage mJ" in table


def test_bench_without_a_meter_names_the_model_estimate(backend, image):
    from edge.bench import bench

    report = bench(backend, [image], repeats=1, warmup=0)
    assert report.energy_meter.startswith("model:") and not report.energy_measured
    assert all(e.stage_energy_mj > 0 for e in report.exits)


def test_check_report_names_each_problem():
    from edge.bench import check_report

    assert check_report([]) == ["report: expected an object, got list"]
    problems = check_report({"format": "adpc-bench", "schema_version": 2, "threads": True,
                             "exits": [{"exit": 1}], "baseline": {"kind": "x"}})
    assert "report.schema_version: this reader knows 1, got 2" in problems
    assert "report.threads: expected int/NoneType, got bool" in problems
    assert "report.writer: missing" in problems
    assert "report.exits[0].energy_mj: missing" in problems
    assert "report.baseline.ms: missing" in problems


def test_adaptive_runner_scales_predictions_by_the_measured_slowdown(backend, image):
    tiny = {1: 1e-9, 2: 1e-9, 3: 1e-9, 4: 1e-9}  # any real stage runs far slower than this
    frozen = Deadline(1e-3, clock=lambda: 0.0)  # 1 us, and no time passes: predictions decide
    static = AnytimeRunner(backend, cost_model=fixed_costs(backend, tiny))
    assert [e.exit for e in static.run_frame(image, frozen).exits] == [1, 2, 3, 4]
    assert static.slowdown == 1.0  # measured, but not applied without adapt
    adaptive = AnytimeRunner(backend, cost_model=fixed_costs(backend, tiny), adapt=True)
    result = adaptive.run_frame(image, frozen)
    assert [e.exit for e in result.exits] == [1] and "deadline" in result.stop_reason
    assert adaptive.slowdown > 1e3
    generous = AnytimeRunner(backend, cost_model=fixed_costs(backend, dict.fromkeys(tiny, 1e6)),
                             adapt=True)
    generous.run_frame(image)
    assert generous.slowdown == 1.0  # faster than predicted never lowers a prediction
