package org.adpc.core;

/**
 * No readable meter: active watts x elapsed time from a device profile, an estimate named as
 * such (edge.power.ModelMeter with the generic-phone profile by default).
 */
public final class ModelMeter extends EnergyMeter {
    public static final double GENERIC_PHONE_ACTIVE_W = 2.5;

    private final double activeW;
    private final String profile;
    private final Clock clock;
    private final double t0;

    public ModelMeter(double activeW, String profile, Clock clock) {
        this.activeW = activeW;
        this.profile = profile;
        this.clock = clock;
        this.t0 = clock.seconds();
    }

    public ModelMeter(Clock clock) {
        this(GENERIC_PHONE_ACTIVE_W, "generic-phone", clock);
    }

    @Override
    public String source() {
        return "model: " + Py.g(activeW) + " W x time (profile " + profile + ")";
    }

    @Override
    public double readMj() {
        return activeW * (clock.seconds() - t0) * 1000.0;
    }

    @Override
    public boolean measured() {
        return false;
    }
}
