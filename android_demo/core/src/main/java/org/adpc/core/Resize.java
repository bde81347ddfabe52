package org.adpc.core;

/**
 * Pillow's 8-bit resampling, reproduced so a phone feeds the network the same pixels the host
 * does (edge.sources.fit_to resizes with PIL BILINEAR; edge.viz.overlay scales labels with PIL
 * NEAREST).
 *
 * <p>Bilinear: Pillow's separable convolution with a triangle filter widened by the downscale
 * factor, coefficients in 22-bit fixed point, horizontal pass first, each pass rounded and
 * clipped to 8 bits (Resample.c). Nearest: Pillow's affine scale with cumulative double
 * stepping (Geometry.c, ImagingScaleAffine).
 */
public final class Resize {
    private static final int PRECISION_BITS = 32 - 8 - 2;

    private Resize() {
    }

    /** Per output pixel: first input index, tap count, fixed-point weights. */
    private static final class Coeffs {
        final int[] xmin;
        final int[] count;
        final int[][] k;

        Coeffs(int out) {
            xmin = new int[out];
            count = new int[out];
            k = new int[out][];
        }
    }

    private static Coeffs coeffs(int inSize, int outSize) {
        double scale = (double) inSize / outSize;
        double filterscale = scale < 1.0 ? 1.0 : scale;
        double support = 1.0 * filterscale;
        double ss = 1.0 / filterscale;
        Coeffs c = new Coeffs(outSize);
        for (int xx = 0; xx < outSize; xx++) {
            double center = (xx + 0.5) * scale;
            int xmin = (int) (center - support + 0.5);
            if (xmin < 0) {
                xmin = 0;
            }
            int xmax = (int) (center + support + 0.5);
            if (xmax > inSize) {
                xmax = inSize;
            }
            xmax -= xmin;
            double[] w = new double[xmax];
            double ww = 0.0;
            for (int x = 0; x < xmax; x++) {
                double t = Math.abs((x + xmin - center + 0.5) * ss);
                w[x] = t < 1.0 ? 1.0 - t : 0.0;
                ww += w[x];
            }
            int[] kk = new int[xmax];
            for (int x = 0; x < xmax; x++) {
                double v = ww != 0.0 ? w[x] / ww : w[x];
                double scaled = v * (1 << PRECISION_BITS);
                kk[x] = (int) (v < 0 ? -0.5 + scaled : 0.5 + scaled);
            }
            c.xmin[xx] = xmin;
            c.count[xx] = xmax;
            c.k[xx] = kk;
        }
        return c;
    }

    private static int clip8(int acc) {
        int v = acc >> PRECISION_BITS;
        return v < 0 ? 0 : (v > 255 ? 255 : v);
    }

    /** PIL Image.resize((width, height), BILINEAR) of an RGB image. */
    public static RgbImage bilinear(RgbImage in, int height, int width) {
        if (in.height == height && in.width == width) {
            return new RgbImage(height, width, in.pixels.clone());
        }
        RgbImage cur = in;
        if (width != in.width) {
            Coeffs c = coeffs(in.width, width);
            byte[] out = new byte[in.height * width * 3];
            for (int y = 0; y < in.height; y++) {
                for (int x = 0; x < width; x++) {
                    for (int ch = 0; ch < 3; ch++) {
                        int acc = 1 << (PRECISION_BITS - 1);
                        for (int t = 0; t < c.count[x]; t++) {
                            acc += cur.get(y, c.xmin[x] + t, ch) * c.k[x][t];
                        }
                        out[(y * width + x) * 3 + ch] = (byte) clip8(acc);
                    }
                }
            }
            cur = new RgbImage(in.height, width, out);
        }
        if (height != in.height) {
            Coeffs c = coeffs(in.height, height);
            byte[] out = new byte[height * width * 3];
            for (int y = 0; y < height; y++) {
                for (int x = 0; x < width; x++) {
                    for (int ch = 0; ch < 3; ch++) {
                        int acc = 1 << (PRECISION_BITS - 1);
                        for (int t = 0; t < c.count[y]; t++) {
                            acc += cur.get(c.xmin[y] + t, x, ch) * c.k[y][t];
                        }
                        out[(y * width + x) * 3 + ch] = (byte) clip8(acc);
                    }
                }
            }
            cur = new RgbImage(height, width, out);
        }
        return cur;
    }

    /** Source index of every output pixel along one axis, as PIL NEAREST picks it. */
    public static int[] nearestIndex(int inSize, int outSize) {
        double a = (double) inSize / outSize;
        double xo = a * 0.5;
        int[] out = new int[outSize];
        for (int x = 0; x < outSize; x++) {
            int xin = xo < 0.0 ? -1 : (int) xo;
            out[x] = Math.min(Math.max(xin, 0), inSize - 1);
            xo += a;
        }
        return out;
    }

    /** PIL Image.resize((width, height), NEAREST) of a label map (row-major ints). */
    public static int[] nearestLabels(int[] labels, int inH, int inW, int height, int width) {
        if (inH == height && inW == width) {
            return labels.clone();
        }
        int[] rows = nearestIndex(inH, height);
        int[] cols = nearestIndex(inW, width);
        int[] out = new int[height * width];
        for (int y = 0; y < height; y++) {
            for (int x = 0; x < width; x++) {
                out[y * width + x] = labels[rows[y] * inW + cols[x]];
            }
        }
        return out;
    }
}
