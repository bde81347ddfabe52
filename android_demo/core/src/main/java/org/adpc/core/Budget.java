package org.adpc.core;

/**
 * What every budget offers the scheduler (edge/budget.py): {@code allows(cost)} before a stage
 * with the cost model's prediction, {@code charge} with what it really cost afterwards.
 * A refusal leaves a one-line {@link #reason()} that ends up in the frame's stop reason.
 * Per frame: startFrame, allows/charge around each stage, endFrame.
 */
public abstract class Budget {
    /** Relative tolerance in fit checks, so float rounding never refuses an exact fit. */
    static final double SLACK = 1e-9;

    private String reason = "";

    public String reason() {
        return reason;
    }

    public void startFrame() {
        reason = "";
    }

    public abstract boolean allows(StageCost cost);

    public final void charge(double actualMs, double actualMj) {
        if (!(actualMs >= 0) || !(actualMj >= 0)) {
            throw new IllegalArgumentException("charge the measured stage cost (a meter never "
                    + "reports NaN or negative energy), got " + actualMs + " ms, " + actualMj
                    + " mJ");
        }
        record(actualMs, actualMj);
    }

    public void endFrame() {
    }

    /** Hook for budgets that track spending; the values are validated. */
    protected void record(double actualMs, double actualMj) {
    }

    protected final boolean grant() {
        reason = "";
        return true;
    }

    protected final boolean refuse(String why) {
        reason = why;
        return false;
    }

    static double positive(double value, String what, String fix) {
        if (Double.isNaN(value) || Double.isInfinite(value)) {
            throw new IllegalArgumentException(what + " must be finite, got " + value + ": "
                    + fix);
        }
        if (value <= 0) {
            throw new IllegalArgumentException(what + " must be > 0, got " + Py.g(value) + ": "
                    + fix);
        }
        return value;
    }
}
