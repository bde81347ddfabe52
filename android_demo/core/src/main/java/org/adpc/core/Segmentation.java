package org.adpc.core;

/**
 * What a user sees: the class per pixel (argmax of the carried logits) and the class colours
 * blended over the frame (edge.viz.colorize / overlay with the manifest's palette).
 */
public final class Segmentation {
    /** Colour of labels outside the palette (255 = ignore). */
    public static final int[] IGNORE_COLOR = {0, 0, 0};

    private Segmentation() {
    }

    /** Argmax over classes of 1 x K x H x W logits (first maximum wins, like numpy). */
    public static int[] argmax(Tensor logits) {
        int k = logits.dim(1);
        int hw = logits.dim(2) * logits.dim(3);
        float[] l = logits.data;
        int[] out = new int[hw];
        for (int p = 0; p < hw; p++) {
            float best = l[p];
            int arg = 0;
            for (int c = 1; c < k; c++) {
                float v = l[c * hw + p];
                if (v > best || (Float.isNaN(v) && !Float.isNaN(best))) {
                    best = v;
                    arg = c;
                }
            }
            out[p] = arg;
        }
        return out;
    }

    /** 256-entry RGB lookup: class i -> palette[i], everything else black (palette_lut). */
    public static int[][] lut(int[][] palette) {
        int[][] lut = new int[256][];
        for (int i = 0; i < 256; i++) {
            lut[i] = i < palette.length ? palette[i] : IGNORE_COLOR;
        }
        return lut;
    }

    /**
     * Class colours blended over the frame with weight alpha (edge.viz.overlay): labels at
     * any resolution are scaled to the image with PIL's nearest rule; the blend is computed as
     * numpy computes it (image in float32 times float32(1 - alpha), plus colour times alpha in
     * double) and truncated to 8 bits.
     */
    public static RgbImage overlay(RgbImage image, int[] labels, int labelH, int labelW,
            int[][] lut, double alpha) {
        int[] scaled = Resize.nearestLabels(labels, labelH, labelW, image.height, image.width);
        float keep = (float) (1 - alpha);
        byte[] out = new byte[image.pixels.length];
        for (int i = 0; i < scaled.length; i++) {
            int[] color = lut[scaled[i] & 0xff];
            for (int c = 0; c < 3; c++) {
                double v = (double) ((float) (image.pixels[3 * i + c] & 0xff) * keep)
                        + color[c] * alpha;
                out[3 * i + c] = (byte) (int) Math.min(255.0, Math.max(0.0, v));
            }
        }
        return new RgbImage(image.height, image.width, out);
    }
}
