package org.adpc.core;

/**
 * A cancellation token another thread sets (a stop button); refuses every stage once set.
 * Sticky across frames until clear(): stopping means stopping the stream, not one frame.
 */
public final class Cancel extends Budget {
    private volatile boolean set;
    private volatile String why = "";

    /** Safe from any thread; the scheduler sees it at its next allows(). */
    public void cancel(String reason) {
        why = reason;
        set = true;
    }

    public void cancel() {
        cancel("cancelled by the user");
    }

    public void clear() {
        set = false;
        why = "";
    }

    public boolean isSet() {
        return set;
    }

    @Override
    public boolean allows(StageCost cost) {
        if (set) {
            return refuse("cancel: " + (why.isEmpty() ? "cancelled" : why));
        }
        return grant();
    }
}
