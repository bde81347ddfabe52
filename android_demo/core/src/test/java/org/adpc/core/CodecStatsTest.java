package org.adpc.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** int8 boundary conversion (edge.backends.base) and the bench statistics (numpy). */
class CodecStatsTest {
    @Test
    void quantisationMatchesTheBackendBoundary() throws Exception {
        Golden g = Golden.load();
        Map<String, Object> c = g.map("codec");
        Tensor x = g.tensor((String) c.get("x"));
        Manifest.Quantization q = new Manifest.Quantization(Golden.num(c.get("scale")),
                Golden.integer(c.get("zero_point")));
        byte[] nchw = TensorCodec.quantize(x.data, q);
        assertArrayEquals(g.int8((String) c.get("q_nchw")), nchw, "quantised NCHW");
        byte[] nhwc = TensorCodec.quantize(TensorCodec.toNhwc(x.data, x.shape), q);
        assertArrayEquals(g.int8((String) c.get("q_nhwc")), nhwc, "quantised NHWC");
        float[] back = TensorCodec.toNchw(TensorCodec.dequantize(nhwc, q), x.shape);
        assertEquals(-1, Golden.firstDifference(g.floats((String) c.get("back")), back));
        assertEquals(-1, Golden.firstDifference(g.floats((String) c.get("deq")),
                TensorCodec.dequantize(nchw, q)));
    }

    static double[] values(Object o) {
        List<Object> l = Golden.asList(o);
        double[] out = new double[l.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = Golden.num(l.get(i));
        }
        return out;
    }

    @Test
    void medianAndPercentilesMatchPythonExactly() throws Exception {
        Golden g = Golden.load();
        for (Object o : g.list("stats")) {
            Map<String, Object> c = Golden.asMap(o);
            double[] v = values(c.get("values"));
            String n = "n=" + v.length;
            assertEquals(Golden.num(c.get("median")), LatencyStats.median(v), 0.0, n);
            assertEquals(Golden.num(c.get("p50")), LatencyStats.percentile(v, 50), 0.0, n);
            assertEquals(Golden.num(c.get("p90")), LatencyStats.percentile(v, 90), 0.0, n);
            assertEquals(Golden.num(c.get("p99")), LatencyStats.percentile(v, 99), 0.0, n);
            double mean = Golden.num(c.get("mean"));
            assertEquals(mean, LatencyStats.mean(v), 1e-12 * Math.abs(mean), n);
        }
    }

    @Test
    void numbersAreSpelledLikePython() throws Exception {
        Golden g = Golden.load();
        for (Object o : g.list("formats")) {
            Map<String, Object> c = Golden.asMap(o);
            double v = Golden.num(c.get("value"));
            assertEquals(c.get("f1"), Py.fixed(v, 1), "f\"{" + v + ":.1f}\"");
            assertEquals(c.get("g"), Py.g(v), "f\"{" + v + ":g}\"");
            assertEquals(c.get("repr"), Py.floatRepr(v), "repr(" + v + ")");
        }
    }
}
