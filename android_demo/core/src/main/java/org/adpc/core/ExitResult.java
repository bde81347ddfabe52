package org.adpc.core;

/** One finished exit of one frame (edge.runtime.ExitResult). */
public final class ExitResult {
    public final int exit;
    public final int stage;
    /** Carried-over logits, N x K x H/4 x W/4. */
    public final Tensor logits;
    /** The mask this stage ran under (1 = computed); null for stage 1. */
    public final Tensor mask;
    /** Share of pixels this stage skipped (0 for stage 1). */
    public final double maskedFraction;
    public final double stageMs;
    /** Since the frame started, host work included. */
    public final double elapsedMs;
    /** This stage's energy: the cost model's estimate from the measured latency. */
    public final double energyMj;
    public final StageCost predicted;
    /** Scheduler work for this exit outside the stage call: mask, prediction, carry-over. */
    public final double hostMs;

    public ExitResult(int exit, int stage, Tensor logits, Tensor mask, double maskedFraction,
            double stageMs, double elapsedMs, double energyMj, StageCost predicted,
            double hostMs) {
        this.exit = exit;
        this.stage = stage;
        this.logits = logits;
        this.mask = mask;
        this.maskedFraction = maskedFraction;
        this.stageMs = stageMs;
        this.elapsedMs = elapsedMs;
        this.energyMj = energyMj;
        this.predicted = predicted;
        this.hostMs = hostMs;
    }

    /** Class per pixel at 1/4 resolution (first maximum on ties, like numpy's argmax). */
    public int[] labels() {
        return Segmentation.argmax(logits);
    }
}
