package org.adpc.core;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Validates a parsed manifest.json and builds the typed {@link Manifest}: the Java twin of
 * edge.bundle.manifest_from_dict. It checks the same fields in the same order and reports the
 * first problem as "{source}: {field path} {problem}", so a phone and the host refuse the same
 * bundle for the same reason (the golden tests compare the field path of every refusal).
 */
public final class ManifestReader {
    static final List<String> DTYPES =
            Arrays.asList("float32", "float16", "int8", "uint8", "int32", "int64");
    static final List<String> BACKENDS = Arrays.asList("executorch", "tflite", "coreml", "torch");
    static final List<String> PRECISIONS = Arrays.asList("fp32", "fp16", "int8");
    static final List<String> LAYOUTS = Arrays.asList("NCHW", "NHWC");

    private final String source;

    private ManifestReader(String source) {
        this.source = source;
    }

    /** Reads and validates {@code folder/manifest.json} (files are checked by BundleVerifier). */
    public static Manifest read(File folder) throws ManifestError {
        File path = new File(folder, Manifest.FILE_NAME);
        if (!folder.isDirectory()) {
            throw new ManifestError("bundle " + folder
                    + " is not a folder: pass the folder `adpc convert` wrote");
        }
        if (!path.isFile()) {
            throw new ManifestError("bundle " + folder + " has no " + Manifest.FILE_NAME
                    + ": re-run `adpc convert`");
        }
        String text;
        try {
            text = readText(path);
        } catch (IOException ex) {
            throw new ManifestError(path + " cannot be read (" + ex.getMessage() + ")");
        }
        return parse(text, path.toString());
    }

    /** The whole file as UTF-8 (java.nio.file is not on API 23). */
    static String readText(File file) throws IOException {
        InputStream in = new FileInputStream(file);
        try {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            byte[] buffer = new byte[1 << 16];
            int n;
            while ((n = in.read(buffer)) > 0) {
                out.write(buffer, 0, n);
            }
            return new String(out.toByteArray(), StandardCharsets.UTF_8);
        } finally {
            in.close();
        }
    }

    /** Parses and validates manifest text; {@code source} names it in error messages. */
    public static Manifest parse(String text, String source) throws ManifestError {
        Object data;
        try {
            data = Json.parse(text);
        } catch (IllegalArgumentException ex) {
            throw new ManifestError(source + " is not valid JSON (" + ex.getMessage()
                    + "): re-run `adpc convert`");
        }
        return new ManifestReader(source).manifest(data);
    }

    /** Validates an already parsed JSON value (Json.parse output). */
    public static Manifest fromJson(Object data, String source) throws ManifestError {
        return new ManifestReader(source).manifest(data);
    }

    private ManifestError fail(String where, String problem) {
        return new ManifestError(source + ": " + where + " " + problem);
    }

    // ------------------------------------------------------------------- typed access
    @SuppressWarnings("unchecked")
    private Map<String, Object> object(Object obj, String where) throws ManifestError {
        if (!(obj instanceof Map)) {
            throw fail(where, "must be an object");
        }
        return (Map<String, Object>) obj;
    }

    private Object get(Object obj, String key, String where) throws ManifestError {
        Map<String, Object> map = object(obj, where);
        if (!map.containsKey(key)) {
            String path = where.isEmpty() ? key : where + "." + key;
            throw fail(path, "is missing");
        }
        return map.get(key);
    }

    private static Object opt(Object obj, String key, Object fallback) {
        if (obj instanceof Map && ((Map<?, ?>) obj).containsKey(key)) {
            return ((Map<?, ?>) obj).get(key);
        }
        return fallback;
    }

    private long integer(Object value, String where, Long minimum) throws ManifestError {
        if (!(value instanceof Long)) {
            throw fail(where, "must be an integer, got " + Py.repr(value));
        }
        long v = (Long) value;
        if (minimum != null && v < minimum) {
            throw fail(where, "must be >= " + minimum + ", got " + v);
        }
        return v;
    }

    private double number(Object value, String where) throws ManifestError {
        if (!(value instanceof Long) && !(value instanceof Double)) {
            throw fail(where, "must be a number, got " + Py.repr(value));
        }
        return ((Number) value).doubleValue();
    }

    private String string(Object value, String where, List<String> choices)
            throws ManifestError {
        if (!(value instanceof String) || ((String) value).isEmpty()) {
            throw fail(where, "must be a non-empty string, got " + Py.repr(value));
        }
        String s = (String) value;
        if (choices != null && !choices.contains(s)) {
            throw fail(where, "must be one of " + join(choices) + ", got " + Py.repr(s));
        }
        return s;
    }

    private List<?> array(Object value, String where, int length) throws ManifestError {
        if (!(value instanceof List)) {
            throw fail(where, "must be a list, got " + Py.typeName(value));
        }
        List<?> list = (List<?>) value;
        if (length >= 0 && list.size() != length) {
            throw fail(where, "must have " + length + " entries, got " + list.size());
        }
        return list;
    }

    private static String join(List<String> items) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < items.size(); i++) {
            sb.append(i == 0 ? "" : ", ").append(items.get(i));
        }
        return sb.toString();
    }

    // ------------------------------------------------------------------- the schema
    private Manifest manifest(Object data) throws ManifestError {
        if (!(data instanceof Map)) {
            throw fail("the top level", "must be a JSON object");
        }
        Object fmt = get(data, "format", "");
        if (!Manifest.FORMAT.equals(fmt)) {
            throw fail("format", "must be 'adpc-bundle', got " + Py.repr(fmt)
                    + ": this is not an adpc bundle");
        }
        long version = integer(get(data, "schema_version", ""), "schema_version", null);
        if (version != Manifest.SCHEMA_VERSION) {
            throw fail("schema_version", version + " is not supported (this adpc reads "
                    + Manifest.SCHEMA_VERSION
                    + "): re-convert the model with this adpc version");
        }
        String model = string(get(data, "model", ""), "model", null);
        Object config = get(data, "model_config", "");
        if (!(config instanceof Map)) {
            throw fail("model_config", "must be an object");
        }
        List<?> rawClasses = array(get(data, "classes", ""), "classes", -1);
        List<Manifest.ClassInfo> classes = new ArrayList<Manifest.ClassInfo>();
        for (int i = 0; i < rawClasses.size(); i++) {
            classes.add(classInfo(rawClasses.get(i), "classes[" + i + "]"));
        }
        boolean ordered = !classes.isEmpty();
        for (int i = 0; i < classes.size(); i++) {
            ordered &= classes.get(i).id == i;
        }
        if (!ordered) {
            throw fail("classes", "must list ids 0..K-1 in order");
        }
        Manifest.InputSpec input = input(get(data, "input", ""));
        Double threshold = null;
        Object rawThreshold = opt(data, "threshold", null);
        if (rawThreshold != null) {
            threshold = number(rawThreshold, "threshold");
            if (!(threshold >= 0.0 && threshold <= 1.0)) {
                throw fail("threshold", "must lie in [0, 1], got " + Py.repr(threshold));
            }
        }
        List<?> rawStages = array(get(data, "stages", ""), "stages", -1);
        List<Manifest.StageSpec> stages = new ArrayList<Manifest.StageSpec>();
        for (int i = 0; i < rawStages.size(); i++) {
            stages.add(stage(rawStages.get(i), "stages[" + i + "]"));
        }
        boolean numbered = !stages.isEmpty();
        for (int i = 0; i < stages.size(); i++) {
            numbered &= stages.get(i).index == i + 1;
        }
        if (!numbered) {
            throw fail("stages", "must be numbered 1..N in order");
        }
        List<?> rawFiles = array(opt(data, "files", new ArrayList<Object>()), "files", -1);
        List<Manifest.FileEntry> files = new ArrayList<Manifest.FileEntry>();
        for (int i = 0; i < rawFiles.size(); i++) {
            files.add(file(rawFiles.get(i), "files[" + i + "]"));
        }
        Object costs = opt(data, "cost_tables", new LinkedHashMap<String, Object>());
        if (!(costs instanceof Map)) {
            throw fail("cost_tables", "must be an object");
        }
        Object provenance = opt(data, "provenance", new LinkedHashMap<String, Object>());
        if (!(provenance instanceof Map)) {
            throw fail("provenance", "must be an object");
        }
        return new Manifest(model, object(config, "model_config"), classes, input, threshold,
                stages, files, object(costs, "cost_tables"), object(provenance, "provenance"));
    }

    private Manifest.ClassInfo classInfo(Object c, String where) throws ManifestError {
        List<?> color = array(get(c, "color", where), where + ".color", 3);
        int[] rgb = new int[3];
        for (int i = 0; i < 3; i++) {
            rgb[i] = (int) integer(color.get(i), where + ".color", 0L);
        }
        if (rgb[0] > 255 || rgb[1] > 255 || rgb[2] > 255) {
            throw fail(where + ".color", "must be 0..255, got [" + rgb[0] + ", " + rgb[1] + ", "
                    + rgb[2] + "]");
        }
        int id = (int) integer(get(c, "id", where), where + ".id", 0L);
        String name = string(get(c, "name", where), where + ".name", null);
        return new Manifest.ClassInfo(id, name, rgb);
    }

    private double[] triple(Object i, String key) throws ManifestError {
        String where = "input." + key;
        List<?> raw = array(get(i, key, "input"), where, 3);
        double[] out = new double[3];
        for (int k = 0; k < 3; k++) {
            out[k] = number(raw.get(k), where);
        }
        return out;
    }

    private Manifest.InputSpec input(Object i) throws ManifestError {
        int h = (int) integer(get(i, "height", "input"), "input.height", 32L);
        int w = (int) integer(get(i, "width", "input"), "input.width", 32L);
        if (h % 32 != 0 || w % 32 != 0) {
            throw fail("input", "size " + h + "x" + w + " must be multiples of 32");
        }
        double[] mean = triple(i, "mean");
        double[] std = triple(i, "std");
        for (double s : std) {
            if (s <= 0) {
                throw fail("input.std", "must be > 0");
            }
        }
        String order = string(opt(i, "color_order", "RGB"), "input.color_order",
                Arrays.asList("RGB", "BGR"));
        double scale = number(opt(i, "pixel_scale", 1.0 / 255.0), "input.pixel_scale");
        return new Manifest.InputSpec(h, w, mean, std, order, scale);
    }

    private Manifest.TensorSpec tensor(Object t, String where) throws ManifestError {
        List<?> rawShape = array(get(t, "shape", where), where + ".shape", -1);
        int[] shape = new int[rawShape.size()];
        for (int i = 0; i < shape.length; i++) {
            shape[i] = (int) integer(rawShape.get(i), where + ".shape", 1L);
        }
        if (shape.length == 0) {
            throw fail(where + ".shape", "must not be empty");
        }
        Object q = opt(t, "quantization", null);
        Manifest.Quantization quant = null;
        if (q != null) {
            String at = where + ".quantization";
            double scale = number(get(q, "scale", at), at);
            if (scale <= 0) {
                throw fail(at + ".scale", "must be > 0, got " + Py.repr(scale));
            }
            int zp = (int) integer(get(q, "zero_point", at), at + ".zero_point", null);
            quant = new Manifest.Quantization(scale, zp);
        }
        String name = string(get(t, "name", where), where + ".name", null);
        String dtype = string(opt(t, "dtype", "float32"), where + ".dtype", DTYPES);
        String layout = string(opt(t, "layout", "NCHW"), where + ".layout", LAYOUTS);
        return new Manifest.TensorSpec(name, shape, dtype, layout, quant);
    }

    private List<Manifest.TensorSpec> tensors(Object owner, String key, String where)
            throws ManifestError {
        List<?> raw = array(get(owner, key, where), where + "." + key, -1);
        List<Manifest.TensorSpec> out = new ArrayList<Manifest.TensorSpec>();
        for (int i = 0; i < raw.size(); i++) {
            out.add(tensor(raw.get(i), where + "." + key + "[" + i + "]"));
        }
        return out;
    }

    private Manifest.StageSpec stage(Object s, String where) throws ManifestError {
        Object rawExit = opt(s, "exit", null);
        List<Manifest.TensorSpec> inputs = tensors(s, "inputs", where);
        List<Manifest.TensorSpec> outputs = tensors(s, "outputs", where);
        if (inputs.isEmpty() || outputs.isEmpty()) {
            throw fail(where, "needs at least one input and one output");
        }
        Object f = get(s, "flops", where);
        String at = where + ".flops";
        double fixed = number(get(f, "fixed", at), at + ".fixed");
        double masked = number(get(f, "masked", at), at + ".masked");
        double fill = number(get(f, "fill", at), at + ".fill");
        int index = (int) integer(get(s, "index", where), where + ".index", 1L);
        Integer exit = rawExit == null ? null : (int) integer(rawExit, where + ".exit", 1L);
        return new Manifest.StageSpec(index, exit, inputs, outputs,
                new StageFlops(fixed, masked, fill));
    }

    private Manifest.FileEntry file(Object f, String where) throws ManifestError {
        String path = string(get(f, "path", where), where + ".path", null);
        boolean escapes = path.startsWith("/");
        for (String part : path.split("/")) {
            escapes |= part.equals("..");
        }
        if (escapes) {
            throw fail(where + ".path", "must be relative inside the bundle, got "
                    + Py.repr(path));
        }
        String digest = string(get(f, "sha256", where), where + ".sha256", null);
        if (!digest.matches("[0-9a-f]{64}")) {
            throw fail(where + ".sha256", "must be 64 lowercase hex digits");
        }
        List<?> rawMethods = array(opt(f, "methods", new ArrayList<Object>()),
                where + ".methods", -1);
        List<String> methods = new ArrayList<String>();
        for (Object m : rawMethods) {
            methods.add(string(m, where + ".methods", null));
        }
        Object rawIo = opt(f, "io", new LinkedHashMap<String, Object>());
        if (!(rawIo instanceof Map)) {
            throw fail(where + ".io", "must be an object");
        }
        Map<String, Manifest.MethodIO> io = new LinkedHashMap<String, Manifest.MethodIO>();
        for (Map.Entry<String, Object> e : object(rawIo, where + ".io").entrySet()) {
            String at = where + ".io." + e.getKey();
            io.put(e.getKey(), new Manifest.MethodIO(tensors(e.getValue(), "inputs", at),
                    tensors(e.getValue(), "outputs", at)));
        }
        long bytes = integer(get(f, "bytes", where), where + ".bytes", 0L);
        String backend = string(get(f, "backend", where), where + ".backend", BACKENDS);
        String precision = string(get(f, "precision", where), where + ".precision", PRECISIONS);
        return new Manifest.FileEntry(path, digest, bytes, backend, precision, methods, io);
    }
}
