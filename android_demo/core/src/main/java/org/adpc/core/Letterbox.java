package org.adpc.core;

/**
 * Brings a frame to the bundle's input size keeping its aspect, padding with the ImageNet mean
 * (edge.sources.fit_to, mode "letterbox"); remembers where the frame landed so predictions can
 * be drawn back on it.
 */
public final class Letterbox {
    /** ImageNet mean in uint8: after normalisation the padding is ~0. */
    public static final int[] FILL = {124, 116, 104};

    public final RgbImage image;
    /** Rows / columns of the input that show the frame: [top, top + contentHeight). */
    public final int top;
    public final int left;
    public final int contentHeight;
    public final int contentWidth;

    private Letterbox(RgbImage image, int top, int left, int contentHeight, int contentWidth) {
        this.image = image;
        this.top = top;
        this.left = left;
        this.contentHeight = contentHeight;
        this.contentWidth = contentWidth;
    }

    /** Python's round(): halves go to the even neighbour. */
    static int roundHalfEven(double v) {
        return (int) Math.rint(v);
    }

    public static Letterbox fit(RgbImage frame, int height, int width) {
        int h = frame.height;
        int w = frame.width;
        double s = Math.min((double) height / h, (double) width / w);
        int nh = Math.min(height, Math.max(1, roundHalfEven(h * s)));
        int nw = Math.min(width, Math.max(1, roundHalfEven(w * s)));
        int top = (height - nh) / 2;
        int left = (width - nw) / 2;
        byte[] out = new byte[height * width * 3];
        for (int i = 0; i < height * width; i++) {
            out[3 * i] = (byte) FILL[0];
            out[3 * i + 1] = (byte) FILL[1];
            out[3 * i + 2] = (byte) FILL[2];
        }
        RgbImage scaled = Resize.bilinear(frame, nh, nw);
        for (int y = 0; y < nh; y++) {
            System.arraycopy(scaled.pixels, y * nw * 3, out, ((top + y) * width + left) * 3,
                    nw * 3);
        }
        return new Letterbox(new RgbImage(height, width, out), top, left, nh, nw);
    }
}
