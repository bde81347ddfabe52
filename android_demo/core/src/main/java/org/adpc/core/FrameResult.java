package org.adpc.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/** Every exit a frame reached, and why it stopped where it did ("" = the last exit). */
public final class FrameResult {
    public final List<ExitResult> exits;
    public final String stopReason;

    public FrameResult(List<ExitResult> exits, String stopReason) {
        this.exits = Collections.unmodifiableList(new ArrayList<ExitResult>(exits));
        this.stopReason = stopReason;
    }

    /** The latest finished exit, or null when the budget refused even the first stage. */
    public ExitResult last() {
        return exits.isEmpty() ? null : exits.get(exits.size() - 1);
    }

    public double energyMj() {
        double sum = 0;
        for (ExitResult e : exits) {
            sum += e.energyMj;
        }
        return sum;
    }
}
