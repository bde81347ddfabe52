package org.adpc.core;

/**
 * An energy counter measured around each stage (edge.power.EnergyMeter): {@link #readMj} is
 * cumulative; a span is the difference of two readings, floored at 0 (a battery that charged
 * during the span). {@link #source} names the meter in every report.
 */
public abstract class EnergyMeter {
    public abstract String source();

    /** Energy consumed since the meter was opened, in mJ. */
    public abstract double readMj();

    /** False for estimates (power x time), true for real measurements. */
    public abstract boolean measured();

    /** Starts a span; call {@link Span#stopMj()} after the work. */
    public Span start() {
        return new Span(this);
    }

    public static final class Span {
        private final EnergyMeter meter;
        private final double e0;

        Span(EnergyMeter meter) {
            this.meter = meter;
            this.e0 = meter.readMj();
        }

        public double stopMj() {
            double energy = meter.readMj() - e0;
            return energy < 0 ? 0.0 : energy;
        }
    }
}
