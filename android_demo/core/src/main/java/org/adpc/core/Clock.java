package org.adpc.core;

/** Monotonic seconds (as a double, like Python's perf_counter); a fake in tests. */
public interface Clock {
    double seconds();

    /** System.nanoTime in seconds: the production clock. */
    Clock SYSTEM = new Clock() {
        @Override
        public double seconds() {
            return System.nanoTime() / 1e9;
        }
    };
}
