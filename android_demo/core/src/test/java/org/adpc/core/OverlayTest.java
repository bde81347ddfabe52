package org.adpc.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Class colours over the frame against edge.viz.overlay with the bundle's palette. */
class OverlayTest {
    static int[][] palette(List<Object> rows) {
        int[][] out = new int[rows.size()][3];
        for (int i = 0; i < out.length; i++) {
            for (int c = 0; c < 3; c++) {
                out[i][c] = Golden.integer(Golden.asList(rows.get(i)).get(c));
            }
        }
        return out;
    }

    @Test
    void lookupTableMatchesPaletteLut() throws Exception {
        Golden g = Golden.load();
        Map<String, Object> c = g.map("overlay");
        int[][] lut = Segmentation.lut(palette(Golden.asList(c.get("palette"))));
        int[][] expected = palette(Golden.asList(c.get("lut")));
        assertEquals(256, lut.length);
        for (int i = 0; i < 256; i++) {
            assertArrayEquals(expected[i], lut[i], "colour of label " + i);
        }
    }

    @Test
    void overlayMatchesPythonByteForByte() throws Exception {
        Golden g = Golden.load();
        Map<String, Object> c = g.map("overlay");
        int[][] lut = Segmentation.lut(palette(Golden.asList(c.get("palette"))));
        for (Object o : Golden.asList(c.get("cases"))) {
            Map<String, Object> k = Golden.asMap(o);
            int[] shape = g.shape((String) k.get("image"));
            RgbImage image = new RgbImage(shape[0], shape[1], g.bytes((String) k.get("image")));
            int[] ls = g.shape((String) k.get("labels"));
            RgbImage out = Segmentation.overlay(image, g.ints((String) k.get("labels")), ls[0],
                    ls[1], lut, Golden.num(k.get("alpha")));
            assertArrayEquals(g.bytes((String) k.get("expected")), out.pixels,
                    "overlay of " + shape[0] + "x" + shape[1] + " with labels " + ls[0] + "x"
                            + ls[1]);
        }
    }
}
