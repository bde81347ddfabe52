package org.adpc.core;

import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Predicted latency and energy of stage k for the fraction of pixels it will compute
 * (edge/costmodel.py). Before calibration: the manifest's FLOPs at a deliberately slow assumed
 * rate, so an uncalibrated phone errs towards stopping early; after {@code adpc bench
 * --calibrate}: the per-stage fit stored in the manifest's cost_tables.
 */
public final class CostModel {
    public static final double DEFAULT_GFLOPS_PER_S = 10.0;
    public static final double DEFAULT_OVERHEAD_MS = 1.0;
    public static final double DEFAULT_POWER_W = 2.5;

    /** Latency of one stage as a line in its GFLOPs. */
    public static final class StageFit {
        public final double overheadMs;
        public final double msPerGflop;

        public StageFit(double overheadMs, double msPerGflop) {
            this.overheadMs = overheadMs;
            this.msPerGflop = msPerGflop;
        }

        public double ms(double gflops) {
            return Math.max(0.0, overheadMs + msPerGflop * gflops);
        }
    }

    private final Map<Integer, Manifest.StageSpec> stages = new HashMap<Integer, Manifest.StageSpec>();
    private final Map<Integer, StageFit> fits;
    public final double powerW;
    public final String source;

    public CostModel(List<Manifest.StageSpec> specs, Map<Integer, StageFit> fits, double powerW,
            String source) {
        StringBuilder missing = new StringBuilder();
        for (Manifest.StageSpec s : specs) {
            stages.put(s.index, s);
            if (!fits.containsKey(s.index)) {
                missing.append(missing.length() == 0 ? "" : ", ").append(s.index);
            }
        }
        if (missing.length() > 0) {
            throw new IllegalArgumentException("cost model lacks stages [" + missing
                    + "]: re-run `adpc bench --calibrate`");
        }
        this.fits = new HashMap<Integer, StageFit>(fits);
        this.powerW = powerW;
        this.source = source;
    }

    /** The safe default before any measurement on the device. */
    public static CostModel fromFlops(List<Manifest.StageSpec> specs, double gflopsPerS,
            double powerW) {
        StageFit fit = new StageFit(DEFAULT_OVERHEAD_MS, 1000.0 / gflopsPerS);
        Map<Integer, StageFit> fits = new HashMap<Integer, StageFit>();
        for (Manifest.StageSpec s : specs) {
            fits.put(s.index, fit);
        }
        return new CostModel(specs, fits, powerW, "flops at an assumed " + Py.g(gflopsPerS)
                + " GFLOP/s (not calibrated)");
    }

    public static CostModel fromFlops(List<Manifest.StageSpec> specs) {
        return fromFlops(specs, DEFAULT_GFLOPS_PER_S, DEFAULT_POWER_W);
    }

    /** From a stored cost table: {stages: {"1": {overhead_ms, ms_per_gflop}}, power_w, ...}. */
    public static CostModel fromTable(List<Manifest.StageSpec> specs, Map<?, ?> table) {
        Map<Integer, StageFit> fits = new HashMap<Integer, StageFit>();
        double power;
        try {
            Map<?, ?> raw = (Map<?, ?>) table.get("stages");
            for (Map.Entry<?, ?> e : raw.entrySet()) {
                Map<?, ?> v = (Map<?, ?>) e.getValue();
                fits.put(Integer.valueOf(String.valueOf(e.getKey())), new StageFit(
                        ((Number) v.get("overhead_ms")).doubleValue(),
                        ((Number) v.get("ms_per_gflop")).doubleValue()));
            }
            Object p = table.get("power_w");
            power = p == null ? DEFAULT_POWER_W : ((Number) p).doubleValue();
        } catch (RuntimeException ex) {
            throw new IllegalArgumentException("cost table is malformed (" + ex
                    + "): re-run `adpc bench --calibrate`");
        }
        Object backend = table.get("backend");
        Object threads = table.get("threads");
        return new CostModel(specs, fits, power, "calibrated ("
                + (backend == null ? "?" : backend) + ", " + (threads == null ? "?" : threads)
                + " threads)");
    }

    /** The manifest's table for this device key (device/backend/precision) if any, else FLOPs. */
    public static CostModel forManifest(Manifest manifest, String key) {
        Object table = key == null ? null : manifest.costTables.get(key);
        if (table instanceof Map && !((Map<?, ?>) table).isEmpty()) {
            return fromTable(manifest.stages, (Map<?, ?>) table);
        }
        return fromFlops(manifest.stages);
    }

    public double gflops(int k, double computed) {
        return stages.get(k).flops.gflops(k == 1 ? 1.0 : computed);
    }

    public StageCost predict(int k, double computed) {
        double ms = fits.get(k).ms(gflops(k, computed));
        return new StageCost(ms, energyMj(ms));
    }

    public double energyMj(double ms) {
        return powerW * ms;
    }
}
