package org.adpc.core;

/**
 * The host step between stages (edge/host.py): confidence, mask, carry-over, computed fraction,
 * on N x K x H x W float32 logits.
 *
 * <p>Every operation is done in float32 in numpy's order (max, exp(l - max), a sequential sum
 * over classes, 1 / sum) and the threshold is compared as a float32, as numpy does when a
 * Python float meets a float32 array, so masks agree with the host bit for bit wherever the
 * confidence is not within an ulp of the threshold.
 */
public final class HostStep {
    private HostStep() {
    }

    /** Max softmax probability as 1 / sum(exp(l - max l)): N x 1 x H x W. */
    public static Tensor confidence(Tensor logits) {
        int n = logits.dim(0);
        int k = logits.dim(1);
        int hw = logits.dim(2) * logits.dim(3);
        float[] l = logits.data;
        float[] out = new float[n * hw];
        for (int b = 0; b < n; b++) {
            int base = b * k * hw;
            for (int p = 0; p < hw; p++) {
                float top = l[base + p];
                for (int c = 1; c < k; c++) {
                    float v = l[base + c * hw + p];
                    if (v > top) {
                        top = v;
                    }
                }
                float sum = 0f;
                for (int c = 0; c < k; c++) {
                    sum += (float) Math.exp(l[base + c * hw + p] - top);
                }
                out[b * hw + p] = 1f / sum;
            }
        }
        return new Tensor(out, new int[] {n, 1, logits.dim(2), logits.dim(3)});
    }

    /**
     * 1 where the pixel must still be computed (confidence <= threshold; equality computes);
     * a null threshold (CA off) computes everything.
     */
    public static Tensor computeMask(Tensor logits, Double threshold) {
        int[] shape = {logits.dim(0), 1, logits.dim(2), logits.dim(3)};
        float[] out = new float[shape[0] * shape[2] * shape[3]];
        if (threshold == null) {
            java.util.Arrays.fill(out, 1f);
            return new Tensor(out, shape);
        }
        float t = (float) threshold.doubleValue();
        float[] conf = confidence(logits).data;
        for (int i = 0; i < out.length; i++) {
            out[i] = conf[i] <= t ? 1f : 0f;
        }
        return new Tensor(out, shape);
    }

    /** Confident pixels (mask 0) keep the previous exit's logits bit-exactly. */
    public static Tensor carryOver(Tensor previous, Tensor fresh, Tensor mask) {
        if (!previous.sameShape(fresh.shape)) {
            throw new IllegalArgumentException("carry-over needs equal shapes, got " + previous
                    + " and " + fresh);
        }
        int n = previous.dim(0);
        int k = previous.dim(1);
        int hw = previous.dim(2) * previous.dim(3);
        float[] out = new float[previous.data.length];
        for (int b = 0; b < n; b++) {
            for (int c = 0; c < k; c++) {
                int base = (b * k + c) * hw;
                for (int p = 0; p < hw; p++) {
                    boolean compute = mask.data[b * hw + p] > 0;
                    out[base + p] = compute ? fresh.data[base + p] : previous.data[base + p];
                }
            }
        }
        return new Tensor(out, previous.shape);
    }

    /**
     * Share of computed pixels, as numpy's float32 mask.mean(): float32(count) / float32(n).
     * The scheduler uses it for the cost prediction and the "every pixel is confident" stop.
     */
    public static double computedFraction(Tensor mask) {
        int count = 0;
        for (float v : mask.data) {
            if (v != 0f) {
                count++;
            }
        }
        return (double) ((float) count / (float) mask.data.length);
    }

    /** Share of skipped pixels (edge.host.masked_fraction). */
    public static double maskedFraction(Tensor mask) {
        return 1.0 - computedFraction(mask);
    }
}
