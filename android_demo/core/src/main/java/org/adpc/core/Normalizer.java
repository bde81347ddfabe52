package org.adpc.core;

/**
 * A fitted RGB image -> the bundle's input tensor, float32 1 x 3 x H x W (edge.preprocess):
 * optional BGR order, times pixel_scale, minus mean, over std, each step in float32 exactly
 * as numpy does it, so the network input is bit-identical to the host's.
 */
public final class Normalizer {
    private final float scale;
    private final float[] mean = new float[3];
    private final float[] std = new float[3];
    private final boolean bgr;

    public Normalizer(Manifest.InputSpec spec) {
        scale = (float) spec.pixelScale;
        for (int c = 0; c < 3; c++) {
            mean[c] = (float) spec.mean[c];
            std[c] = (float) spec.std[c];
        }
        bgr = "BGR".equals(spec.colorOrder);
    }

    public Tensor toTensor(RgbImage image) {
        int hw = image.height * image.width;
        float[] out = new float[3 * hw];
        for (int c = 0; c < 3; c++) {
            int src = bgr ? 2 - c : c;
            for (int i = 0; i < hw; i++) {
                float x = (float) (image.pixels[3 * i + src] & 0xff) * scale;
                out[c * hw + i] = (x - mean[c]) / std[c];
            }
        }
        return new Tensor(out, new int[] {1, 3, image.height, image.width});
    }
}
