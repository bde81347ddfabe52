package org.adpc.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/** Several budgets at once: a stage runs only if all allow it; the first refusal is named. */
public final class CompositeBudget extends Budget {
    public final List<Budget> budgets;
    private Budget refusedBy;

    public CompositeBudget(List<Budget> parts) {
        List<Budget> flat = new ArrayList<Budget>();
        for (Budget b : parts) {
            if (b == null) {
                continue;
            }
            List<Budget> inner = b instanceof CompositeBudget
                    ? ((CompositeBudget) b).budgets : Collections.singletonList(b);
            for (Budget part : inner) {
                boolean seen = false;
                for (Budget f : flat) {
                    seen |= f == part;
                }
                if (!seen) {
                    flat.add(part);
                }
            }
        }
        if (flat.isEmpty()) {
            throw new IllegalArgumentException(
                    "compose() needs at least one budget: pass e.g. new Deadline(50)");
        }
        this.budgets = Collections.unmodifiableList(flat);
    }

    public Budget refusedBy() {
        return refusedBy;
    }

    @Override
    public void startFrame() {
        super.startFrame();
        refusedBy = null;
        for (Budget b : budgets) {
            b.startFrame();
        }
    }

    @Override
    public boolean allows(StageCost cost) {
        for (Budget b : budgets) {
            if (!b.allows(cost)) {
                refusedBy = b;
                return refuse(b.reason());
            }
        }
        refusedBy = null;
        return grant();
    }

    @Override
    protected void record(double actualMs, double actualMj) {
        for (Budget b : budgets) {
            b.charge(actualMs, actualMj);
        }
    }

    @Override
    public void endFrame() {
        for (Budget b : budgets) {
            b.endFrame();
        }
    }
}
