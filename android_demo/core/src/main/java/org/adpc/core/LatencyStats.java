package org.adpc.core;

import java.util.Arrays;

/**
 * The statistics {@code adpc bench} reports: the median (Python's statistics.median) and
 * percentiles with numpy's default linear method, reproduced operation by operation so the
 * phone's report and the host's agree to the last bit on the same samples.
 */
public final class LatencyStats {
    private LatencyStats() {
    }

    public static double median(double[] values) {
        if (values.length == 0) {
            throw new IllegalArgumentException("no median for no data");
        }
        double[] s = values.clone();
        Arrays.sort(s);
        int n = s.length;
        int i = n / 2;
        if (n % 2 == 1) {
            return s[i];
        }
        return (s[i - 1] + s[i]) / 2;
    }

    /** numpy.percentile(values, q), method "linear". */
    public static double percentile(double[] values, double q) {
        if (values.length == 0) {
            throw new IllegalArgumentException("no percentile for no data");
        }
        double[] s = values.clone();
        Arrays.sort(s);
        int n = s.length;
        double quantile = q / 100;
        double virtual = (n - 1) * quantile;
        int previous;
        int next;
        if (virtual >= n - 1) {
            previous = n - 1;
            next = n - 1;
        } else if (virtual < 0) {
            previous = 0;
            next = 0;
        } else {
            previous = (int) Math.floor(virtual);
            next = previous + 1;
        }
        double gamma = virtual - Math.floor(virtual);
        double a = s[previous];
        double b = s[next];
        double diff = b - a;
        if (gamma >= 0.5) {
            return b - diff * (1 - gamma);
        }
        return a + diff * gamma;
    }

    public static double mean(double[] values) {
        double sum = 0;
        for (double v : values) {
            sum += v;
        }
        return sum / values.length;
    }
}
