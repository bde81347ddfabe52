package org.adpc.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.ByteBuffer;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Camera planes to the network input, against numpy / PIL / edge.preprocess. */
class PreprocessTest {
    @Test
    void yuvPlanesWithStridesBecomeTheReferenceRgb() throws Exception {
        Golden g = Golden.load();
        int n = 0;
        for (Object o : g.list("yuv")) {
            Map<String, Object> c = Golden.asMap(o);
            int cRow = Golden.integer(c.get("c_row"));
            int cPixel = Golden.integer(c.get("c_pixel"));
            YuvToRgb.Plane y = new YuvToRgb.Plane(ByteBuffer.wrap(g.bytes((String) c.get("y"))),
                    Golden.integer(c.get("y_row")), 1);
            YuvToRgb.Plane u = new YuvToRgb.Plane(ByteBuffer.wrap(g.bytes((String) c.get("u"))),
                    cRow, cPixel);
            YuvToRgb.Plane v = new YuvToRgb.Plane(ByteBuffer.wrap(g.bytes((String) c.get("v"))),
                    cRow, cPixel);
            RgbImage rgb = YuvToRgb.convert(Golden.integer(c.get("width")),
                    Golden.integer(c.get("height")), y, u, v, Golden.integer(c.get("rotation")));
            int[] shape = g.shape((String) c.get("rgb"));
            assertEquals(shape[0], rgb.height, "rotated height");
            assertEquals(shape[1], rgb.width, "rotated width");
            assertArrayEquals(g.bytes((String) c.get("rgb")), rgb.pixels,
                    "rgb of case " + n + " (rotation " + c.get("rotation") + ")");
            n++;
        }
        assertEquals(4, n);
    }

    static Manifest.InputSpec spec(Map<String, Object> c, Map<String, Object> norm,
            String order) {
        double[] mean = new double[3];
        double[] std = new double[3];
        for (int i = 0; i < 3; i++) {
            mean[i] = Golden.num(Golden.asList(norm.get("mean")).get(i));
            std[i] = Golden.num(Golden.asList(norm.get("std")).get(i));
        }
        return new Manifest.InputSpec(Golden.integer(c.get("height")),
                Golden.integer(c.get("width")), mean, std, order,
                Golden.num(norm.get("pixel_scale")));
    }

    static RgbImage image(Golden g, String name) throws Exception {
        int[] shape = g.shape(name);
        return new RgbImage(shape[0], shape[1], g.bytes(name));
    }

    @Test
    void letterboxMatchesPillowBilinearPixelForPixel() throws Exception {
        Golden g = Golden.load();
        Map<String, Object> c = g.map("fit");
        for (Object o : Golden.asList(c.get("cases"))) {
            Map<String, Object> f = Golden.asMap(o);
            RgbImage frame = image(g, (String) f.get("frame"));
            Letterbox box = Letterbox.fit(frame, Golden.integer(c.get("height")),
                    Golden.integer(c.get("width")));
            String what = frame.height + "x" + frame.width;
            assertArrayEquals(g.bytes((String) f.get("fitted")), box.image.pixels, what);
            List<Object> content = Golden.asList(f.get("content_box"));
            assertEquals(Golden.integer(content.get(0)), box.top, what + " top");
            assertEquals(Golden.integer(content.get(1)), box.top + box.contentHeight, what);
            assertEquals(Golden.integer(content.get(2)), box.left, what + " left");
            assertEquals(Golden.integer(content.get(3)), box.left + box.contentWidth, what);
        }
    }

    @Test
    void normalisedTensorIsBitIdentical() throws Exception {
        Golden g = Golden.load();
        Map<String, Object> c = g.map("fit");
        Normalizer rgb = new Normalizer(spec(c, c, "RGB"));
        for (Object o : Golden.asList(c.get("cases"))) {
            Map<String, Object> f = Golden.asMap(o);
            Letterbox box = Letterbox.fit(image(g, (String) f.get("frame")),
                    Golden.integer(c.get("height")), Golden.integer(c.get("width")));
            Tensor t = rgb.toTensor(box.image);
            assertArrayEquals(g.shape((String) f.get("tensor")), t.shape);
            assertEquals(-1, Golden.firstDifference(g.floats((String) f.get("tensor")), t.data),
                    "tensor of " + f.get("frame"));
        }
        Map<String, Object> b = Golden.asMap(c.get("bgr"));
        Normalizer bgr = new Normalizer(spec(c, b, "BGR"));
        Letterbox box = Letterbox.fit(image(g, (String) b.get("frame")),
                Golden.integer(c.get("height")), Golden.integer(c.get("width")));
        assertEquals(-1, Golden.firstDifference(g.floats((String) b.get("tensor")),
                bgr.toTensor(box.image).data), "BGR tensor");
    }
}
