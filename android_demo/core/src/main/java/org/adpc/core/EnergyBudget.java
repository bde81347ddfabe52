package org.adpc.core;

/** Per-frame energy allowance in mJ: refuses a stage whose predicted energy does not fit. */
public final class EnergyBudget extends Budget {
    public final double mj;
    private double spentMj;

    public EnergyBudget(double mj) {
        this.mj = positive(mj, "energy budget", "give the per-frame energy in mJ, e.g. 200");
    }

    public double spentMj() {
        return spentMj;
    }

    @Override
    public void startFrame() {
        super.startFrame();
        spentMj = 0.0;
    }

    @Override
    protected void record(double actualMs, double actualMj) {
        spentMj += actualMj;
    }

    @Override
    public boolean allows(StageCost cost) {
        double left = mj - spentMj;
        if (cost.energyMj <= left + SLACK * mj) {
            return grant();
        }
        return refuse("energy: " + Py.fixed(Math.max(left, 0.0), 1) + " mJ left of "
                + Py.g(mj) + " mJ this frame, next stage needs ~" + Py.fixed(cost.energyMj, 1)
                + " mJ");
    }
}
