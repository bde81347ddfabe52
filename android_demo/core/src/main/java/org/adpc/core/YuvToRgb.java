package org.adpc.core;

import java.nio.ByteBuffer;

/**
 * YUV_420_888 planes (as android.media.Image hands them out) to an upright RGB image.
 *
 * <p>Camera2 YUV_420_888 is full-range BT.601 (JFIF). The conversion is fixed-point (16
 * fractional bits, rounded) so that it is exact and identical everywhere; the golden tests
 * compare it with the same integer formula in numpy and with the floating-point definition.
 * Planes are read through their row and pixel strides, which differ between phones (planar
 * I420 has pixel stride 1, the common NV21/NV12 layouts 2, rows are often padded).
 * {@code rotation} (0, 90, 180, 270, clockwise) turns the sensor image upright.
 */
public final class YuvToRgb {
    private YuvToRgb() {
    }

    /** One plane of an android.media.Image: its buffer and strides. */
    public static final class Plane {
        public final ByteBuffer buffer;
        public final int rowStride;
        public final int pixelStride;

        public Plane(ByteBuffer buffer, int rowStride, int pixelStride) {
            this.buffer = buffer;
            this.rowStride = rowStride;
            this.pixelStride = pixelStride;
        }

        int at(int row, int col) {
            return buffer.get(row * rowStride + col * pixelStride) & 0xff;
        }
    }

    static int clamp(int v) {
        return v < 0 ? 0 : (v > 255 ? 255 : v);
    }

    public static RgbImage convert(int width, int height, Plane y, Plane u, Plane v,
            int rotation) {
        if (rotation != 0 && rotation != 90 && rotation != 180 && rotation != 270) {
            throw new IllegalArgumentException("rotation must be 0, 90, 180 or 270, got "
                    + rotation);
        }
        boolean swap = rotation == 90 || rotation == 270;
        int outH = swap ? width : height;
        int outW = swap ? height : width;
        byte[] out = new byte[outH * outW * 3];
        for (int row = 0; row < height; row++) {
            for (int col = 0; col < width; col++) {
                int yy = y.at(row, col);
                int uu = u.at(row >> 1, col >> 1) - 128;
                int vv = v.at(row >> 1, col >> 1) - 128;
                int r = clamp(yy + ((91881 * vv + 32768) >> 16));
                int g = clamp(yy + ((-22554 * uu - 46802 * vv + 32768) >> 16));
                int b = clamp(yy + ((116130 * uu + 32768) >> 16));
                int oy;
                int ox;
                switch (rotation) {
                    case 90:
                        oy = col;
                        ox = height - 1 - row;
                        break;
                    case 180:
                        oy = height - 1 - row;
                        ox = width - 1 - col;
                        break;
                    case 270:
                        oy = width - 1 - col;
                        ox = row;
                        break;
                    default:
                        oy = row;
                        ox = col;
                }
                int o = (oy * outW + ox) * 3;
                out[o] = (byte) r;
                out[o + 1] = (byte) g;
                out[o + 2] = (byte) b;
            }
        }
        return new RgbImage(outH, outW, out);
    }
}
