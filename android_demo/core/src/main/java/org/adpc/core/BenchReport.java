package org.adpc.core;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The benchmark report in the bench JSON schema (docs/formats.md, "Benchmark report";
 * edge.bench.BenchReport.to_dict), so benchmark_results.json from a phone reads like
 * {@code adpc bench --json} on the host and passes edge.bench.check_report.
 *
 * <p>Fields are only ever added to that schema. To follow a new one: add it here, or put it in
 * an {@code extra} map (written after the known fields); the golden test compares this
 * report's keys with the Python report's and fails until they agree.
 */
public final class BenchReport {
    public static final String FORMAT = "adpc-bench";
    public static final int SCHEMA_VERSION = 1;

    /** One exit's timings (edge.bench.ExitTiming); latencies cumulative unless named stage. */
    public static final class ExitTiming {
        public int exit;
        public double ms;
        public double p90Ms;
        public double p99Ms;
        /** null when the cold frame stopped before this exit. */
        public Double coldMs;
        public double denseMs;
        public double ratio;
        public double masked;
        public double predictedMs;
        public int stage;
        public double stageMs;
        public double elapsedMs;
        public double stageEnergyMj;
        public double energyMj;
        public double denseEnergyMj;
        public double baselineRatio;
        public final Map<String, Object> extra = new LinkedHashMap<String, Object>();

        public Map<String, Object> toMap() {
            Map<String, Object> m = new LinkedHashMap<String, Object>();
            m.put("exit", exit);
            m.put("ms", ms);
            m.put("p90_ms", p90Ms);
            m.put("p99_ms", p99Ms);
            m.put("cold_ms", coldMs);
            m.put("dense_ms", denseMs);
            m.put("ratio", ratio);
            m.put("masked", masked);
            m.put("predicted_ms", predictedMs);
            m.put("stage", stage);
            m.put("stage_ms", stageMs);
            m.put("elapsed_ms", elapsedMs);
            m.put("stage_energy_mj", stageEnergyMj);
            m.put("energy_mj", energyMj);
            m.put("dense_energy_mj", denseEnergyMj);
            m.put("baseline_ratio", baselineRatio);
            m.putAll(extra);
            return m;
        }
    }

    /** The dense network run to completion on the same runtime, timed in the same run. */
    public static final class Baseline {
        public static final String KIND = "run-to-completion";
        public static final String DESCRIPTION = "the bundle's stages 1..N back to back on one "
                + "frame with an all-ones mask (every pixel computed), no confidence, mask, "
                + "carry-over, cost prediction or budget check between them; the stage graphs "
                + "still compute the exit heads 1..N-1 and the masked convs' fill";
        public double ms;
        public double p90Ms;
        public double p99Ms;
        public double energyMj;

        public Map<String, Object> toMap() {
            Map<String, Object> m = new LinkedHashMap<String, Object>();
            m.put("kind", KIND);
            m.put("description", DESCRIPTION);
            m.put("ms", ms);
            m.put("p90_ms", p90Ms);
            m.put("p99_ms", p99Ms);
            m.put("energy_mj", energyMj);
            return m;
        }
    }

    public String backend = "";
    public String precision = "";
    /** null = the runtime's default. */
    public Integer threads;
    public String device = "";
    public int frames;
    public int repeats;
    public Double threshold;
    public String costModel = "";
    public double peakRssMb;
    public final List<ExitTiming> exits = new ArrayList<ExitTiming>();
    /** {key, table} of a calibration; null when not calibrated. */
    public Map<String, Object> calibration;
    public String writer = "adpc-android 0.1.0";
    /** UTC, ISO 8601. */
    public String created = "";
    public String model = "";
    public int[] inputSize = new int[0];
    public String bundle;
    public String energyMeter = "";
    public boolean energyMeasured;
    public final List<String> energyMeterSkipped = new ArrayList<String>();
    public double hostMs;
    public double hostShare;
    public Baseline baseline;
    public final Map<String, Object> extra = new LinkedHashMap<String, Object>();

    public Map<String, Object> toMap() {
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        m.put("backend", backend);
        m.put("precision", precision);
        m.put("threads", threads);
        m.put("device", device);
        m.put("frames", frames);
        m.put("repeats", repeats);
        m.put("threshold", threshold);
        m.put("cost_model", costModel);
        m.put("peak_rss_mb", peakRssMb);
        List<Object> list = new ArrayList<Object>();
        for (ExitTiming e : exits) {
            list.add(e.toMap());
        }
        m.put("exits", list);
        m.put("calibration", calibration);
        m.put("format", FORMAT);
        m.put("schema_version", SCHEMA_VERSION);
        m.put("writer", writer);
        m.put("created", created);
        m.put("model", model);
        List<Object> size = new ArrayList<Object>();
        for (int v : inputSize) {
            size.add(v);
        }
        m.put("input_size", size);
        m.put("bundle", bundle);
        m.put("energy_meter", energyMeter);
        m.put("energy_measured", energyMeasured);
        m.put("energy_meter_skipped", new ArrayList<Object>(energyMeterSkipped));
        m.put("host_ms", hostMs);
        m.put("host_share", hostShare);
        m.put("baseline", baseline == null ? null : baseline.toMap());
        m.putAll(extra);
        return m;
    }

    public String toJson() {
        return JsonWriter.write(toMap());
    }
}
