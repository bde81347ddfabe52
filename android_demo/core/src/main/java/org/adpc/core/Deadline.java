package org.adpc.core;

/**
 * Per-frame wall-clock deadline from startFrame(): refuses a stage that would overrun.
 * The clock is the truth (not the charged latencies), so host work between stages counts too.
 */
public final class Deadline extends Budget {
    public final double ms;
    private final Clock clock;
    private double t0 = Double.NaN;

    public Deadline(double ms, Clock clock) {
        this.ms = positive(ms, "deadline", "give the per-frame deadline in ms, e.g. 50");
        this.clock = clock;
    }

    public Deadline(double ms) {
        this(ms, Clock.SYSTEM);
    }

    @Override
    public void startFrame() {
        super.startFrame();
        t0 = clock.seconds();
    }

    public double elapsedMs() {
        if (Double.isNaN(t0)) {
            throw new IllegalStateException(
                    "Deadline used before startFrame(): the scheduler must start frames");
        }
        return (clock.seconds() - t0) * 1000.0;
    }

    public double remainingMs() {
        return ms - elapsedMs();
    }

    @Override
    public boolean allows(StageCost cost) {
        double left = remainingMs();
        if (cost.latencyMs <= left + SLACK * ms) {
            return grant();
        }
        if (left <= 0) {
            return refuse("deadline: " + Py.g(ms) + " ms passed (" + Py.fixed(-left, 1)
                    + " ms over), no time for another stage");
        }
        return refuse("deadline: " + Py.fixed(left, 1) + " ms left of " + Py.g(ms)
                + " ms, next stage needs ~" + Py.fixed(cost.latencyMs, 1) + " ms");
    }
}
