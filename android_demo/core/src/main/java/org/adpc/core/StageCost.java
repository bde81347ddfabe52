package org.adpc.core;

/** Predicted (or measured) cost of one stage: wall-clock latency and energy. */
public final class StageCost {
    public final double latencyMs;
    public final double energyMj;

    public StageCost(double latencyMs, double energyMj) {
        if (!(latencyMs >= 0) || Double.isInfinite(latencyMs) || !(energyMj >= 0)
                || Double.isInfinite(energyMj)) {
            throw new IllegalArgumentException("the cost model must predict a finite, "
                    + "non-negative cost, got " + latencyMs + " ms, " + energyMj + " mJ");
        }
        this.latencyMs = latencyMs;
        this.energyMj = energyMj;
    }
}
