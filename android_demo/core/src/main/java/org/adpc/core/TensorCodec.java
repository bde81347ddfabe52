package org.adpc.core;

/**
 * Contract tensors (float32 NCHW) to a file's own I/O and back (edge.backends.base): int8 with
 * the recorded scale / zero point (round half to even, saturated), NHWC layout. Runtimes call
 * it at their boundary so the host step stays one float32 code path.
 */
public final class TensorCodec {
    private TensorCodec() {
    }

    /** real -> int8: round(x / scale) + zero_point in float32, saturated to [-128, 127]. */
    public static byte[] quantize(float[] x, Manifest.Quantization q) {
        float scale = (float) q.scale;
        float zp = (float) q.zeroPoint;
        byte[] out = new byte[x.length];
        for (int i = 0; i < x.length; i++) {
            float v = (float) Math.rint(x[i] / scale) + zp;
            out[i] = (byte) Math.max(-128f, Math.min(127f, v));
        }
        return out;
    }

    /** int8 -> real: scale * (q - zero_point) in float32. */
    public static float[] dequantize(byte[] x, Manifest.Quantization q) {
        float scale = (float) q.scale;
        float zp = (float) q.zeroPoint;
        float[] out = new float[x.length];
        for (int i = 0; i < x.length; i++) {
            out[i] = scale * ((float) x[i] - zp);
        }
        return out;
    }

    /** N x C x H x W -> N x H x W x C. */
    public static float[] toNhwc(float[] x, int[] nchw) {
        int n = nchw[0];
        int c = nchw[1];
        int hw = nchw[2] * nchw[3];
        float[] out = new float[x.length];
        for (int b = 0; b < n; b++) {
            for (int ch = 0; ch < c; ch++) {
                for (int p = 0; p < hw; p++) {
                    out[(b * hw + p) * c + ch] = x[(b * c + ch) * hw + p];
                }
            }
        }
        return out;
    }

    /** N x H x W x C -> N x C x H x W (nchw is the contract shape). */
    public static float[] toNchw(float[] x, int[] nchw) {
        int n = nchw[0];
        int c = nchw[1];
        int hw = nchw[2] * nchw[3];
        float[] out = new float[x.length];
        for (int b = 0; b < n; b++) {
            for (int ch = 0; ch < c; ch++) {
                for (int p = 0; p < hw; p++) {
                    out[(b * c + ch) * hw + p] = x[(b * hw + p) * c + ch];
                }
            }
        }
        return out;
    }

    /** True when the file's tensor is the contract's float32 NCHW (no conversion needed). */
    public static boolean isContract(Manifest.TensorSpec spec) {
        return spec.quantization == null && "float32".equals(spec.dtype)
                && "NCHW".equals(spec.layout);
    }
}
