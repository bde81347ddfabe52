package org.adpc.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The benchmark loop and report against edge.bench.bench on the same recorded stage times:
 * the same stage calls in the same order, the same per-exit numbers, the same JSON keys.
 * With -Dadpc.out=DIR it also writes the report there for edge.bench.check_report.
 */
class BenchTest {
    /** Replays the stage times edge.bench consumed, checking the call order as it goes. */
    static final class ReplayRunner extends FakeRunner {
        final SchedulerTest.FakeClock clock;
        final List<Object> calls;
        final Golden golden;
        int next;

        ReplayRunner(SchedulerTest.FakeClock clock, List<Object> calls, Golden golden) {
            this.clock = clock;
            this.calls = calls;
            this.golden = golden;
        }

        @Override
        public Tensor[] runStage(int k, Tensor[] inputs) throws Exception {
            List<Object> call = Golden.asList(calls.get(next));
            assertEquals(Golden.integer(call.get(0)), k, "stage of call " + next);
            next++;
            clock.t += Golden.num(call.get(1)) / 1000.0;
            return new Tensor[] {Tensor.zeros(1, 2, 2, 2), golden.tensor("sched_logits_" + k)};
        }

    }

    static void near(Object expected, Object actual, String what) {
        if (expected == null || actual == null) {
            assertEquals(expected, actual, what);
            return;
        }
        double e = Golden.num(expected);
        double a = ((Number) actual).doubleValue();
        assertEquals(e, a, 1e-9 * Math.max(1.0, Math.abs(e)), what);
    }

    @Test
    void reportMatchesAdpcBench() throws Exception {
        Golden g = Golden.load();
        Map<String, Object> c = g.map("bench");
        Manifest manifest = ManifestReader.fromJson(g.caseValue("scheduler_manifest"), "m");
        SchedulerTest.FakeClock clock = new SchedulerTest.FakeClock(100.0);
        List<Object> calls = Golden.asList(c.get("stage_ms"));
        ReplayRunner runner = new ReplayRunner(clock, calls, g);
        List<Tensor> frames = new ArrayList<Tensor>();
        for (int i = 0; i < Golden.integer(c.get("frames")); i++) {
            frames.add(Tensor.zeros(1, 3, 32, 64));
        }
        Benchmark.Setup setup = new Benchmark.Setup();
        setup.clock = clock;
        setup.repeats = Golden.integer(c.get("repeats"));
        setup.warmup = Golden.integer(c.get("warmup"));
        setup.device = "test";
        setup.bundle = "scripted";
        setup.meter = new ModelMeter(clock);
        BenchReport report = Benchmark.run(manifest, runner,
                CostModel.forManifest(manifest, "fake-device/fake/fp32"), frames, setup);
        assertEquals(calls.size(), runner.next, "stage calls made");

        Map<String, Object> want = Golden.asMap(c.get("report"));
        Map<String, Object> got = report.toMap();
        for (String key : Arrays.asList("backend", "precision", "threads", "frames", "repeats",
                "cost_model", "format", "schema_version", "model", "input_size", "bundle",
                "energy_meter", "energy_measured", "energy_meter_skipped")) {
            Object w = want.get(key);
            Object a = got.get(key);
            if (w instanceof Number) {
                near(w, a, key);
            } else {
                assertEquals(String.valueOf(w), String.valueOf(a), key);
            }
        }
        near(want.get("threshold"), got.get("threshold"), "threshold");
        near(want.get("host_ms"), got.get("host_ms"), "host_ms");
        near(want.get("host_share"), got.get("host_share"), "host_share");
        Map<String, Object> wb = Golden.asMap(want.get("baseline"));
        Map<String, Object> gb = Golden.asMap(got.get("baseline"));
        for (String key : wb.keySet()) {
            if (wb.get(key) instanceof Number) {
                near(wb.get(key), gb.get(key), "baseline." + key);
            } else {
                assertEquals(wb.get(key), gb.get(key), "baseline." + key);
            }
        }
        List<Object> we = Golden.asList(want.get("exits"));
        List<Object> ge = Golden.asList(got.get("exits"));
        assertEquals(we.size(), ge.size(), "exits");
        for (int i = 0; i < we.size(); i++) {
            Map<String, Object> w = Golden.asMap(we.get(i));
            Map<String, Object> a = Golden.asMap(ge.get(i));
            for (String key : w.keySet()) {
                near(w.get(key), a.get(key), "exits[" + i + "]." + key);
            }
        }
        String out = System.getProperty("adpc.out");
        if (out != null) {
            File dir = new File(out);
            dir.mkdirs();
            Files.write(new File(dir, "benchmark_results.json").toPath(),
                    report.toJson().getBytes(StandardCharsets.UTF_8));
        }
    }

    @Test
    void jsonKeysAreThePythonReportKeysInOrder() throws Exception {
        Golden g = Golden.load();
        Map<String, Object> schema = g.map("bench_schema");
        BenchReport report = new BenchReport();
        report.exits.add(new BenchReport.ExitTiming());
        report.baseline = new BenchReport.Baseline();
        Map<String, Object> parsed = Golden.asMap(Json.parse(report.toJson()));
        assertEquals(schema.get("report"), new ArrayList<Object>(parsed.keySet()),
                "top-level keys (a field was added to edge.bench.BenchReport: add it to "
                        + "BenchReport.java)");
        Map<String, Object> exit = Golden.asMap(Golden.asList(parsed.get("exits")).get(0));
        assertEquals(schema.get("exit"), new ArrayList<Object>(exit.keySet()),
                "exit keys (a field was added to edge.bench.ExitTiming)");
        assertNotNull(parsed.get("created"));
    }
}
