package org.adpc.core;

/**
 * GFLOPs terms of one stage (the paper's accounting, edge/flops.py): a stage computing a
 * fraction p of the pixels costs {@code fixed + masked * p + (1 - p) * p * fill}.
 * The expression is evaluated in the same order as Python so predictions agree to the bit.
 */
public final class StageFlops {
    public final double fixed;
    public final double masked;
    public final double fill;

    public StageFlops(double fixed, double masked, double fill) {
        this.fixed = fixed;
        this.masked = masked;
        this.fill = fill;
    }

    public double gflops(double computed) {
        if (!(computed >= 0.0 && computed <= 1.0)) {
            throw new IllegalArgumentException(
                    "computed fraction must lie in [0, 1], got " + computed);
        }
        double p = computed;
        return fixed + masked * p + (1.0 - p) * p * fill;
    }
}
