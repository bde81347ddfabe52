package org.adpc.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Map;
import org.junit.jupiter.api.Test;

/** The host step against edge.host on the same logits. */
class HostStepTest {
    @Test
    void confidenceMatchesNumpyToFloatRounding() throws Exception {
        Golden g = Golden.load();
        Map<String, Object> c = g.map("host");
        Tensor logits = g.tensor((String) c.get("logits"));
        float[] expected = g.floats((String) c.get("confidence"));
        float[] actual = HostStep.confidence(logits).data;
        assertEquals(expected.length, actual.length);
        double worst = 0;
        for (int i = 0; i < expected.length; i++) {
            worst = Math.max(worst, Math.abs(actual[i] - expected[i]) / expected[i]);
        }
        assertTrue(worst <= 4e-7, "confidence differs from numpy by a relative " + worst);
    }

    @Test
    void masksAreBitExactAtEveryThreshold() throws Exception {
        Golden g = Golden.load();
        Map<String, Object> c = g.map("host");
        Tensor logits = g.tensor((String) c.get("logits"));
        for (Object o : Golden.asList(c.get("thresholds"))) {
            Map<String, Object> t = Golden.asMap(o);
            double threshold = Golden.num(t.get("threshold"));
            Tensor mask = HostStep.computeMask(logits, threshold);
            float[] expected = g.floats((String) t.get("mask"));
            assertEquals(-1, Golden.firstDifference(expected, mask.data),
                    "mask at threshold " + threshold);
            assertEquals(Golden.num(t.get("computed")), HostStep.computedFraction(mask), 0.0,
                    "computed fraction at " + threshold);
            assertEquals(Golden.num(t.get("masked_fraction")), HostStep.maskedFraction(mask),
                    0.0, "masked fraction at " + threshold);
        }
    }

    @Test
    void carryOverKeepsConfidentLogitsBitExactly() throws Exception {
        Golden g = Golden.load();
        Map<String, Object> c = g.map("host");
        Tensor previous = g.tensor((String) c.get("logits"));
        Tensor fresh = g.tensor((String) c.get("fresh"));
        for (Object o : Golden.asList(c.get("thresholds"))) {
            Map<String, Object> t = Golden.asMap(o);
            Tensor mask = HostStep.computeMask(previous, Golden.num(t.get("threshold")));
            Tensor carried = HostStep.carryOver(previous, fresh, mask);
            float[] expected = g.floats((String) t.get("carried"));
            assertEquals(-1, Golden.firstDifference(expected, carried.data),
                    "carried logits at threshold " + t.get("threshold"));
        }
    }

    @Test
    void argmaxTakesTheFirstMaximumLikeNumpy() throws Exception {
        Golden g = Golden.load();
        Map<String, Object> c = g.map("host");
        int[] labels = Segmentation.argmax(g.tensor((String) c.get("logits")));
        assertArrayEquals(g.ints((String) c.get("labels")), labels);
    }

    @Test
    void thresholdOffComputesEveryPixel() throws Exception {
        Golden g = Golden.load();
        Tensor logits = g.tensor((String) g.map("host").get("logits"));
        Tensor mask = HostStep.computeMask(logits, null);
        assertEquals(1.0, HostStep.computedFraction(mask), 0.0);
    }
}
