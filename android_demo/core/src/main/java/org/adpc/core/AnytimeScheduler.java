package org.adpc.core;

import java.util.ArrayList;
import java.util.List;

/**
 * Drives a bundle's stages on one frame until the budget says stop: the Java twin of
 * edge.runtime.AnytimeRunner, decision for decision.
 *
 * <p>Stage 1 runs on the image; before every later stage the host step computes the mask from
 * the carried logits, the frame stops if no pixel is left to compute, and the cost model's
 * prediction for the computed fraction is put to the budget. A refused stage is never started,
 * so the latest finished exit is always the answer. {@code minExits} exits run whatever the
 * budget says (default 1: an anytime model must always have an answer; the stop reason then
 * says "(ran anyway: min_exits=1)"); 0 makes the budget strict and a frame may end with no
 * exit at all.
 */
public final class AnytimeScheduler {
    /** Receives each exit as soon as it is ready (the app draws it at once). */
    public interface Listener {
        void onExit(ExitResult exit);
    }

    private final Manifest manifest;
    private final StageRunner runner;
    private final Double threshold;
    private final CostModel costModel;
    private final int minExits;
    private final Clock clock;
    private EnergyMeter meter;

    public AnytimeScheduler(Manifest manifest, StageRunner runner, Double threshold,
            CostModel costModel, int minExits, Clock clock) {
        if (minExits < 0) {
            throw new IllegalArgumentException("min_exits must be >= 0, got " + minExits);
        }
        this.manifest = manifest;
        this.runner = runner;
        this.threshold = threshold;
        this.costModel = costModel;
        this.minExits = minExits;
        this.clock = clock;
    }

    /** The manifest's threshold, its calibrated cost table for {@code costKey} (or FLOPs). */
    public static AnytimeScheduler forBundle(Manifest manifest, StageRunner runner,
            String costKey) {
        return new AnytimeScheduler(manifest, runner, manifest.threshold,
                CostModel.forManifest(manifest, costKey), 1, Clock.SYSTEM);
    }

    /** Measure every stage's energy with this meter (else the cost model's estimate). */
    public AnytimeScheduler withMeter(EnergyMeter energyMeter) {
        this.meter = energyMeter;
        return this;
    }

    public Double threshold() {
        return threshold;
    }

    public CostModel costModel() {
        return costModel;
    }

    public FrameResult run(Tensor image, Budget budget) throws Exception {
        return run(image, budget, null);
    }

    public FrameResult run(Tensor image, Budget budget, Listener listener) throws Exception {
        double start = clock.seconds();
        List<ExitResult> exits = new ArrayList<ExitResult>();
        String stopReason = "";
        if (budget != null) {
            budget.startFrame();
        }
        Tensor[] state = {image};
        Tensor carried = null;
        int exitIndex = 0;
        try {
            double hostMs = 0.0; // accumulates over stages without an exit
            for (Manifest.StageSpec spec : manifest.stages) {
                double tHost = clock.seconds();
                int k = spec.index;
                Tensor mask = null;
                Tensor[] inputs = state;
                double computed = 1.0;
                if (k > 1) {
                    mask = HostStep.computeMask(carried, threshold);
                    computed = HostStep.computedFraction(mask);
                    if (computed == 0.0) {
                        stopReason = "every pixel is confident after exit " + exitIndex;
                        return new FrameResult(exits, stopReason);
                    }
                    inputs = new Tensor[state.length + 1];
                    System.arraycopy(state, 0, inputs, 0, state.length);
                    inputs[state.length] = mask;
                }
                StageCost predicted = costModel.predict(k, computed);
                if (budget != null && !budget.allows(predicted)) {
                    if (exitIndex >= minExits) {
                        stopReason = budget.reason();
                        return new FrameResult(exits, stopReason);
                    }
                    stopReason = budget.reason() + " (ran anyway: min_exits=" + minExits + ")";
                }
                EnergyMeter.Span span = meter != null ? meter.start() : null;
                double t0 = clock.seconds();
                Tensor[] outputs = runner.runStage(k, inputs);
                double stageMs = (clock.seconds() - t0) * 1e3;
                double energy = span != null ? span.stopMj() : costModel.energyMj(stageMs);
                if (budget != null) {
                    budget.charge(stageMs, energy);
                }
                if (spec.exit == null) {
                    state = outputs;
                    hostMs += (clock.seconds() - tHost) * 1e3 - stageMs;
                    continue;
                }
                Tensor raw = outputs[outputs.length - 1];
                state = new Tensor[outputs.length - 1];
                System.arraycopy(outputs, 0, state, 0, state.length);
                carried = carried == null ? raw : HostStep.carryOver(carried, raw, mask);
                exitIndex++;
                double now = clock.seconds();
                hostMs += (now - tHost) * 1e3 - stageMs;
                ExitResult result = new ExitResult(exitIndex, k, carried, mask, 1.0 - computed,
                        stageMs, (now - start) * 1e3, energy, predicted, Math.max(hostMs, 0.0));
                hostMs = 0.0;
                exits.add(result);
                if (listener != null) {
                    listener.onExit(result);
                }
            }
            return new FrameResult(exits, stopReason);
        } finally {
            if (budget != null) {
                budget.endFrame();
            }
        }
    }
}
