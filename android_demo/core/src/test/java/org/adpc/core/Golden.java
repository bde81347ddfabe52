package org.adpc.core;

import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.List;
import java.util.Map;

/**
 * The golden files written by android_demo/tools/golden.py from the Python implementation:
 * index.json (cases and array metadata) and raw little-endian arrays. The folder comes from the
 * system property adpc.golden; without it every golden test fails (never skips), so a run that
 * forgot the files cannot pass.
 */
final class Golden {
    private static Golden instance;

    final File root;
    private final Map<String, Object> arrays;
    private final Map<String, Object> cases;

    @SuppressWarnings("unchecked")
    private Golden(File root) throws IOException {
        this.root = root;
        String text = new String(Files.readAllBytes(new File(root, "index.json").toPath()),
                StandardCharsets.UTF_8);
        Map<String, Object> index = (Map<String, Object>) Json.parse(text);
        arrays = (Map<String, Object>) index.get("arrays");
        cases = (Map<String, Object>) index.get("cases");
    }

    static synchronized Golden load() throws IOException {
        if (instance == null) {
            String dir = System.getProperty("adpc.golden");
            if (dir == null) {
                throw new IllegalStateException("set -Dadpc.golden=DIR to the folder written by "
                        + "android_demo/tools/golden.py");
            }
            instance = new Golden(new File(dir));
        }
        return instance;
    }

    Object caseValue(String name) {
        if (!cases.containsKey(name)) {
            throw new IllegalArgumentException("no golden case " + name);
        }
        return cases.get(name);
    }

    @SuppressWarnings("unchecked")
    Map<String, Object> map(String name) {
        return (Map<String, Object>) caseValue(name);
    }

    @SuppressWarnings("unchecked")
    List<Object> list(String name) {
        return (List<Object>) caseValue(name);
    }

    @SuppressWarnings("unchecked")
    private ByteBuffer raw(String name, String dtype) throws IOException {
        Map<String, Object> meta = (Map<String, Object>) arrays.get(name);
        if (meta == null) {
            throw new IllegalArgumentException("no golden array " + name);
        }
        if (!dtype.equals(meta.get("dtype"))) {
            throw new IllegalArgumentException(name + " is " + meta.get("dtype") + ", not "
                    + dtype);
        }
        byte[] bytes = Files.readAllBytes(new File(root, (String) meta.get("file")).toPath());
        return ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
    }

    @SuppressWarnings("unchecked")
    int[] shape(String name) {
        List<Object> s = (List<Object>) ((Map<String, Object>) arrays.get(name)).get("shape");
        int[] out = new int[s.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = ((Number) s.get(i)).intValue();
        }
        return out;
    }

    float[] floats(String name) throws IOException {
        ByteBuffer b = raw(name, "float32");
        float[] out = new float[b.remaining() / 4];
        b.asFloatBuffer().get(out);
        return out;
    }

    Tensor tensor(String name) throws IOException {
        return new Tensor(floats(name), shape(name));
    }

    byte[] bytes(String name) throws IOException {
        ByteBuffer b = raw(name, "uint8");
        byte[] out = new byte[b.remaining()];
        b.get(out);
        return out;
    }

    byte[] int8(String name) throws IOException {
        ByteBuffer b = raw(name, "int8");
        byte[] out = new byte[b.remaining()];
        b.get(out);
        return out;
    }

    int[] ints(String name) throws IOException {
        ByteBuffer b = raw(name, "int32");
        int[] out = new int[b.remaining() / 4];
        b.asIntBuffer().get(out);
        return out;
    }

    static double num(Object o) {
        return ((Number) o).doubleValue();
    }

    static int integer(Object o) {
        return ((Number) o).intValue();
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> asMap(Object o) {
        return (Map<String, Object>) o;
    }

    @SuppressWarnings("unchecked")
    static List<Object> asList(Object o) {
        return (List<Object>) o;
    }

    /** Bitwise float comparison: the index of the first difference, or -1. */
    static int firstDifference(float[] a, float[] b) {
        if (a.length != b.length) {
            return 0;
        }
        for (int i = 0; i < a.length; i++) {
            if (Float.floatToIntBits(a[i]) != Float.floatToIntBits(b[i])) {
                return i;
            }
        }
        return -1;
    }
}
