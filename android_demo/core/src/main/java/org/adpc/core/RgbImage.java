package org.adpc.core;

/** An 8-bit RGB image, interleaved H x W x 3 in a byte array (values read as unsigned). */
public final class RgbImage {
    public final int height;
    public final int width;
    public final byte[] pixels;

    public RgbImage(int height, int width, byte[] pixels) {
        if (height <= 0 || width <= 0 || pixels.length != height * width * 3) {
            throw new IllegalArgumentException("an RGB image of " + height + "x" + width
                    + " needs " + (height * width * 3) + " bytes, got " + pixels.length);
        }
        this.height = height;
        this.width = width;
        this.pixels = pixels;
    }

    public RgbImage(int height, int width) {
        this(height, width, new byte[height * width * 3]);
    }

    public int get(int y, int x, int c) {
        return pixels[(y * width + x) * 3 + c] & 0xff;
    }

    /** Packed 0xAARRGGBB with full alpha, for android.graphics.Bitmap.setPixels. */
    public int[] toArgb() {
        int[] out = new int[height * width];
        for (int i = 0; i < out.length; i++) {
            out[i] = 0xff000000 | (pixels[3 * i] & 0xff) << 16 | (pixels[3 * i + 1] & 0xff) << 8
                    | (pixels[3 * i + 2] & 0xff);
        }
        return out;
    }
}
