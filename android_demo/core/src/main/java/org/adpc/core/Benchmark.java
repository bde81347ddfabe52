package org.adpc.core;

import java.io.BufferedReader;
import java.io.FileReader;
import java.io.IOException;
import java.text.SimpleDateFormat;
import java.util.ArrayList;
import java.util.Date;
import java.util.List;
import java.util.Locale;
import java.util.TimeZone;

/**
 * The measurement of edge.bench.bench, call for call: one cold CA frame; a warm-up of CA,
 * dense (CA off) and the run-to-completion baseline per frame; then per repeat and frame the
 * three again, interleaved so they see the same machine. Statistics as docs/formats.md defines
 * them: exact medians, numpy's linear percentiles, energy means.
 */
public final class Benchmark {
    /** Progress lines for a log or a notification. */
    public interface Progress {
        void say(String message);
    }

    /** What the report says about the run beyond the numbers. */
    public static final class Setup {
        public String device = "";
        public String bundle;
        public int repeats = 5;
        public int warmup = 1;
        public Clock clock = Clock.SYSTEM;
        public EnergyMeter meter;
        public Progress progress;
    }

    private Benchmark() {
    }

    private static double[] array(List<Double> values) {
        double[] out = new double[values.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = values.get(i);
        }
        return out;
    }

    private static List<List<Double>> lists(int n) {
        List<List<Double>> out = new ArrayList<List<Double>>();
        for (int i = 0; i < n; i++) {
            out.add(new ArrayList<Double>());
        }
        return out;
    }

    /** The dense baseline: every stage on every pixel, nothing between them. */
    public static Tensor runToCompletion(Manifest manifest, StageRunner runner, Tensor image)
            throws Exception {
        Tensor[] state = {image};
        Tensor[] outputs = state;
        Tensor ones = null;
        for (Manifest.StageSpec spec : manifest.stages) {
            Tensor[] inputs = state;
            if (spec.index > 1) {
                if (ones == null) {
                    Manifest.TensorSpec m = spec.inputs.get(spec.inputs.size() - 1);
                    float[] data = new float[m.numel()];
                    java.util.Arrays.fill(data, 1f);
                    ones = new Tensor(data, m.shape);
                }
                inputs = new Tensor[state.length + 1];
                System.arraycopy(state, 0, inputs, 0, state.length);
                inputs[state.length] = ones;
            }
            outputs = runner.runStage(spec.index, inputs);
            if (spec.exit == null) {
                state = outputs;
            } else {
                state = new Tensor[outputs.length - 1];
                System.arraycopy(outputs, 0, state, 0, state.length);
            }
        }
        return outputs[outputs.length - 1];
    }

    public static BenchReport run(Manifest manifest, StageRunner runner, CostModel costModel,
            List<Tensor> frames, Setup setup) throws Exception {
        Clock clock = setup.clock;
        EnergyMeter meter = setup.meter != null ? setup.meter : new ModelMeter(clock);
        AnytimeScheduler ca = new AnytimeScheduler(manifest, runner, manifest.threshold,
                costModel, 1, clock).withMeter(meter);
        AnytimeScheduler dense = new AnytimeScheduler(manifest, runner, null, costModel, 1,
                clock).withMeter(meter);
        int n = manifest.numExits();
        List<List<Double>> caTimes = lists(n);
        List<List<Double>> denseTimes = lists(n);
        List<List<Double>> caEnergy = lists(n);
        List<List<Double>> denseEnergy = lists(n);
        List<List<Double>> stageMs = lists(n);
        List<List<Double>> elapsed = lists(n);
        List<List<Double>> masked = lists(n);
        List<List<Double>> predicted = lists(n);
        int[] stages = new int[n];
        List<Double> host = new ArrayList<Double>();
        List<Double> hostShare = new ArrayList<Double>();
        List<Double> baseMs = new ArrayList<Double>();
        List<Double> baseMj = new ArrayList<Double>();
        FrameResult coldFrame = ca.run(frames.get(0), null);
        double[] cold = new double[coldFrame.exits.size()];
        double sum = 0;
        for (int i = 0; i < cold.length; i++) {
            sum += coldFrame.exits.get(i).stageMs;
            cold[i] = sum;
        }
        for (Tensor frame : frames) {
            for (int w = 0; w < setup.warmup; w++) {
                ca.run(frame, null);
                dense.run(frame, null);
                runToCompletion(manifest, runner, frame);
            }
        }
        for (int r = 0; r < setup.repeats; r++) {
            if (setup.progress != null) {
                setup.progress.say("repeat " + (r + 1) + "/" + setup.repeats);
            }
            for (Tensor frame : frames) {
                for (int mode = 0; mode < 2; mode++) {
                    boolean isCa = mode == 0;
                    FrameResult result = (isCa ? ca : dense).run(frame, null);
                    double cumulative = 0;
                    for (ExitResult e : result.exits) {
                        int i = e.exit - 1;
                        cumulative += e.stageMs;
                        (isCa ? caTimes : denseTimes).get(i).add(cumulative);
                        (isCa ? caEnergy : denseEnergy).get(i).add(e.energyMj);
                        if (isCa) {
                            stages[i] = e.stage;
                            stageMs.get(i).add(e.stageMs);
                            elapsed.get(i).add(e.elapsedMs);
                            masked.get(i).add(e.maskedFraction);
                            predicted.get(i).add(e.predicted.latencyMs);
                        }
                    }
                    if (isCa && !result.exits.isEmpty()) {
                        double frameHost = 0;
                        for (ExitResult e : result.exits) {
                            frameHost += e.hostMs;
                        }
                        double wall = result.last().elapsedMs;
                        host.add(frameHost);
                        hostShare.add(wall > 0 ? frameHost / wall : 0.0);
                    }
                }
                EnergyMeter.Span span = meter.start();
                double t0 = clock.seconds();
                runToCompletion(manifest, runner, frame);
                baseMs.add((clock.seconds() - t0) * 1e3);
                baseMj.add(span.stopMj());
            }
        }
        BenchReport report = new BenchReport();
        report.backend = runner.name();
        report.precision = runner.precision();
        report.threads = runner.threads() > 0 ? Integer.valueOf(runner.threads()) : null;
        report.device = setup.device;
        report.frames = frames.size();
        report.repeats = setup.repeats;
        report.threshold = ca.threshold();
        report.costModel = costModel.source;
        report.peakRssMb = peakRssMb();
        report.created = utcNow();
        report.model = manifest.model;
        report.inputSize = new int[] {manifest.input.height, manifest.input.width};
        report.bundle = setup.bundle;
        report.energyMeter = meter.source();
        report.energyMeasured = meter.measured();
        report.hostMs = host.isEmpty() ? 0.0 : LatencyStats.median(array(host));
        report.hostShare = hostShare.isEmpty() ? 0.0 : LatencyStats.median(array(hostShare));
        BenchReport.Baseline b = new BenchReport.Baseline();
        double[] base = array(baseMs);
        b.ms = LatencyStats.median(base);
        b.p90Ms = LatencyStats.percentile(base, 90);
        b.p99Ms = LatencyStats.percentile(base, 99);
        b.energyMj = LatencyStats.mean(array(baseMj));
        report.baseline = b;
        for (int i = 0; i < n; i++) {
            if (caTimes.get(i).isEmpty()) {
                continue;
            }
            double[] times = array(caTimes.get(i));
            BenchReport.ExitTiming t = new BenchReport.ExitTiming();
            t.exit = i + 1;
            t.ms = LatencyStats.median(times);
            t.denseMs = LatencyStats.median(array(denseTimes.get(i)));
            t.p90Ms = LatencyStats.percentile(times, 90);
            t.p99Ms = LatencyStats.percentile(times, 99);
            t.coldMs = i < cold.length ? Double.valueOf(cold[i]) : null;
            t.ratio = t.ms != 0 ? t.denseMs / t.ms : 0.0;
            t.masked = LatencyStats.mean(array(masked.get(i)));
            double pred = 0;
            double energy = 0;
            double denseMj = 0;
            for (int j = 0; j <= i; j++) {
                if (!predicted.get(j).isEmpty()) {
                    pred += LatencyStats.median(array(predicted.get(j)));
                }
                if (!caEnergy.get(j).isEmpty()) {
                    energy += LatencyStats.mean(array(caEnergy.get(j)));
                }
                if (!denseEnergy.get(j).isEmpty()) {
                    denseMj += LatencyStats.mean(array(denseEnergy.get(j)));
                }
            }
            t.predictedMs = pred;
            t.stage = stages[i];
            t.stageMs = LatencyStats.median(array(stageMs.get(i)));
            t.elapsedMs = LatencyStats.median(array(elapsed.get(i)));
            t.stageEnergyMj = LatencyStats.mean(array(caEnergy.get(i)));
            t.energyMj = energy;
            t.denseEnergyMj = denseMj;
            t.baselineRatio = t.ms != 0 ? b.ms / t.ms : 0.0;
            report.exits.add(t);
        }
        return report;
    }

    static String utcNow() {
        SimpleDateFormat f = new SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ss'+00:00'", Locale.ROOT);
        f.setTimeZone(TimeZone.getTimeZone("UTC"));
        return f.format(new Date());
    }

    /** Peak resident memory of this process in MiB (VmHWM; Linux and Android), 0 if unknown. */
    public static double peakRssMb() {
        BufferedReader in = null;
        try {
            in = new BufferedReader(new FileReader("/proc/self/status"));
            String line;
            while ((line = in.readLine()) != null) {
                if (line.startsWith("VmHWM:")) {
                    String kb = line.substring(6).trim().split("\\s+")[0];
                    return Long.parseLong(kb) / 1024.0;
                }
            }
        } catch (IOException ex) {
            return 0.0;
        } catch (NumberFormatException ex) {
            return 0.0;
        } finally {
            if (in != null) {
                try {
                    in.close();
                } catch (IOException ignored) {
                    // reading is done
                }
            }
        }
        return 0.0;
    }
}
