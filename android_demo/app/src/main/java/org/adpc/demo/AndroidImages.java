package org.adpc.demo;

import android.graphics.Bitmap;
import android.media.Image;
import org.adpc.core.RgbImage;
import org.adpc.core.YuvToRgb;

/** android.media.Image and Bitmap to and from the core's RgbImage. */
final class AndroidImages {
    private AndroidImages() {
    }

    /** A YUV_420_888 camera image, turned upright by the sensor orientation. */
    static RgbImage fromYuv(Image image, int rotation) {
        Image.Plane[] p = image.getPlanes();
        return YuvToRgb.convert(image.getWidth(), image.getHeight(),
                new YuvToRgb.Plane(p[0].getBuffer(), p[0].getRowStride(), p[0].getPixelStride()),
                new YuvToRgb.Plane(p[1].getBuffer(), p[1].getRowStride(), p[1].getPixelStride()),
                new YuvToRgb.Plane(p[2].getBuffer(), p[2].getRowStride(), p[2].getPixelStride()),
                rotation);
    }

    static RgbImage fromBitmap(Bitmap bitmap) {
        int w = bitmap.getWidth();
        int h = bitmap.getHeight();
        int[] argb = new int[w * h];
        bitmap.getPixels(argb, 0, w, 0, 0, w, h);
        byte[] rgb = new byte[w * h * 3];
        for (int i = 0; i < argb.length; i++) {
            rgb[3 * i] = (byte) (argb[i] >> 16);
            rgb[3 * i + 1] = (byte) (argb[i] >> 8);
            rgb[3 * i + 2] = (byte) argb[i];
        }
        return new RgbImage(h, w, rgb);
    }

    static Bitmap toBitmap(RgbImage image) {
        return Bitmap.createBitmap(image.toArgb(), image.width, image.height,
                Bitmap.Config.ARGB_8888);
    }
}
