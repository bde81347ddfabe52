package org.adpc.core;

/**
 * Spreads a battery allowance over a stream of frames: a token bucket with a soft release, the
 * Java twin of edge.budget.BatteryGovernor (see its docstring for the reasoning).
 *
 * <p>Every frame earns {@code shareMj}; what it leaves unspent goes to a bank capped at
 * {@code carryFrames} shares, an overspend is a debt floored at the same cap; a frame may spend
 * {@code share + bank / carryFrames}. With a session allowance the total is a hard ceiling.
 */
public final class BatteryGovernor extends Budget {
    public static final double MJ_PER_WH = 3.6e6;
    public static final double MJ_PER_MWH = 3.6e3;

    public final double shareMj;
    public final double carryFrames;
    public final double capMj;
    /** NaN when there is no session ceiling. */
    public final double sessionMj;
    public final String label;
    private double bankMj;
    private double spentMj;
    private double totalSpentMj;
    private int frames;
    private double allowanceMj;
    private boolean open;

    public BatteryGovernor(double shareMj, double carryFrames, double sessionMj,
            double initialBankMj, String label) {
        this.shareMj = positive(shareMj, "per-frame share", "give a share in mJ per frame");
        if (!(carryFrames >= 0) || Double.isInfinite(carryFrames)) {
            throw new IllegalArgumentException("carry_frames must be >= 0, got " + carryFrames
                    + ": give how many frames' worth may be banked, e.g. 30");
        }
        this.carryFrames = carryFrames;
        this.capMj = carryFrames * shareMj;
        this.sessionMj = Double.isNaN(sessionMj) ? Double.NaN
                : positive(sessionMj, "session allowance", "give the session energy in mJ");
        if (!(initialBankMj >= 0)) {
            throw new IllegalArgumentException("initial bank must be >= 0, got " + initialBankMj);
        }
        if (initialBankMj > capMj) {
            throw new IllegalArgumentException("initial bank " + Py.g(initialBankMj)
                    + " mJ exceeds the cap of " + Py.g(capMj) + " mJ (" + Py.g(carryFrames)
                    + " frames' worth): lower it or raise carry_frames");
        }
        this.bankMj = initialBankMj;
        this.label = label == null || label.isEmpty() ? Py.g(this.shareMj) + " mJ per frame"
                : label;
        this.allowanceMj = allowance();
    }

    /** A share of the battery per hour at an expected frame rate (0.01 of 15 Wh at 10 fps). */
    public static BatteryGovernor perHour(double fraction, double batteryWh, double fps,
            double carryFrames) {
        if (!(fraction > 0 && fraction <= 1)) {
            throw new IllegalArgumentException("battery fraction must lie in (0, 1], got "
                    + Py.g(fraction) + ": 1% per hour is 0.01");
        }
        double wh = positive(batteryWh, "battery capacity", "give the capacity in Wh, e.g. 15");
        double rate = positive(fps, "fps", "give the expected frames per second, e.g. 10");
        double share = fraction * wh * MJ_PER_WH / (3600.0 * rate);
        return new BatteryGovernor(share, carryFrames, Double.NaN, 0.0,
                Py.g(fraction * 100) + "% of " + Py.g(wh) + " Wh per hour at " + Py.g(rate)
                        + " fps");
    }

    /** An energy allowance for a session of about {@code frames} frames; a hard cap. */
    public static BatteryGovernor perSession(double mwh, double frames, double carryFrames) {
        double total = positive(mwh, "session allowance", "give the session energy in mWh");
        double count = positive(frames, "expected frames", "give how many frames the session runs");
        return new BatteryGovernor(total * MJ_PER_MWH / count, carryFrames, total * MJ_PER_MWH,
                0.0, Py.g(total) + " mWh over " + Py.g(count) + " frames");
    }

    private double allowance() {
        double release = carryFrames > 0 ? bankMj / carryFrames : 0.0;
        return Math.max(0.0, shareMj + release);
    }

    public double remainingMj() {
        if (Double.isNaN(sessionMj)) {
            return Double.POSITIVE_INFINITY;
        }
        return sessionMj - totalSpentMj - spentMj;
    }

    public double bankMj() {
        return bankMj;
    }

    public double allowanceMj() {
        return allowanceMj;
    }

    public double totalSpentMj() {
        return totalSpentMj;
    }

    public int frames() {
        return frames;
    }

    @Override
    public void startFrame() {
        if (open) {
            endFrame();
        }
        super.startFrame();
        spentMj = 0.0;
        allowanceMj = allowance();
        open = true;
    }

    @Override
    protected void record(double actualMs, double actualMj) {
        spentMj += actualMj;
    }

    @Override
    public boolean allows(StageCost cost) {
        double session = Double.isNaN(sessionMj) ? 0.0 : sessionMj;
        if (remainingMj() + SLACK * session < cost.energyMj) {
            return refuse("battery: " + Py.fixed(Math.max(remainingMj(), 0.0), 1)
                    + " mJ left of the session's " + Py.g(sessionMj) + " mJ (" + label
                    + "), next stage needs ~" + Py.fixed(cost.energyMj, 1) + " mJ");
        }
        double left = allowanceMj - spentMj;
        if (cost.energyMj <= left + SLACK * allowanceMj) {
            return grant();
        }
        return refuse("battery: " + Py.fixed(Math.max(left, 0.0), 1) + " mJ left of this frame's "
                + Py.fixed(allowanceMj, 1) + " mJ (bank " + Py.fixed(bankMj, 1) + " mJ, " + label
                + "), next stage needs ~" + Py.fixed(cost.energyMj, 1) + " mJ");
    }

    /** Bank what the frame left of its share (or book the overspend as debt), within the cap. */
    @Override
    public void endFrame() {
        if (!open) {
            return;
        }
        double bank = bankMj + shareMj - spentMj;
        bankMj = Math.min(capMj, Math.max(-capMj, bank));
        totalSpentMj += spentMj;
        frames++;
        spentMj = 0.0;
        open = false;
    }
}
