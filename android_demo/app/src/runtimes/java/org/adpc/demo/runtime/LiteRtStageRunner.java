package org.adpc.demo.runtime;

import java.io.File;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.HashMap;
import java.util.Map;
import java.util.TreeMap;
import org.adpc.core.Manifest;
import org.adpc.core.ManifestError;
import org.adpc.core.StageRunner;
import org.adpc.core.Tensor;
import org.adpc.core.TensorCodec;
import org.tensorflow.lite.Interpreter;

/**
 * The bundle's .tflite (signatures stage1..N) through LiteRT's Interpreter signature runner,
 * like edge.backends.tflite: tensors bound by name in argument order (args_0.., output_0..,
 * ordered by their trailing index, not alphabetically), int8 quantised with the manifest's
 * scale / zero point, NHWC where the file says so.
 */
public final class LiteRtStageRunner implements StageRunner {
    private final Manifest manifest;
    private final Manifest.FileEntry entry;
    private final String precision;
    private final int threads;
    private Interpreter interpreter;

    public LiteRtStageRunner(File bundle, Manifest manifest, String precision, int threads)
            throws ManifestError {
        this.manifest = manifest;
        this.precision = precision;
        this.threads = threads;
        this.entry = BundleFiles.entry(manifest, "tflite", precision);
        Interpreter.Options options = new Interpreter.Options();
        if (threads > 0) {
            options.setNumThreads(threads);
        }
        this.interpreter = new Interpreter(new File(bundle, entry.path), options);
    }

    @Override
    public String name() {
        return "tflite";
    }

    @Override
    public String precision() {
        return precision;
    }

    @Override
    public int threads() {
        return threads;
    }

    /** Signature tensor names in argument order (by trailing index). */
    static String[] ordered(String[] names) {
        TreeMap<Integer, String> byIndex = new TreeMap<Integer, String>();
        for (String n : names) {
            int i = n.length();
            while (i > 0 && Character.isDigit(n.charAt(i - 1))) {
                i--;
            }
            if (i == n.length()) {
                throw new IllegalStateException("unexpected tensor name " + n
                        + " in the .tflite signature: convert with litert-torch");
            }
            byIndex.put(Integer.valueOf(n.substring(i)), n);
        }
        return byIndex.values().toArray(new String[0]);
    }

    @Override
    public Tensor[] runStage(int k, Tensor[] inputs) throws Exception {
        String key = "stage" + k;
        Manifest.MethodIO io = BundleFiles.io(manifest, entry, k);
        String[] inNames = ordered(interpreter.getSignatureInputs(key));
        String[] outNames = ordered(interpreter.getSignatureOutputs(key));
        Map<String, Object> feeds = new HashMap<String, Object>();
        for (int i = 0; i < inputs.length; i++) {
            feeds.put(inNames[i], toFile(inputs[i], io.inputs.get(i)));
        }
        Map<String, Object> fetches = new HashMap<String, Object>();
        ByteBuffer[] buffers = new ByteBuffer[outNames.length];
        for (int i = 0; i < outNames.length; i++) {
            Manifest.TensorSpec spec = io.outputs.get(i);
            int size = spec.numel() * (spec.quantization != null ? 1 : 4);
            buffers[i] = ByteBuffer.allocateDirect(size).order(ByteOrder.nativeOrder());
            fetches.put(outNames[i], buffers[i]);
        }
        interpreter.runSignature(feeds, fetches, key);
        Tensor[] result = new Tensor[outNames.length];
        for (int i = 0; i < outNames.length; i++) {
            result[i] = fromFile(buffers[i], io.outputs.get(i),
                    manifest.stage(k).outputs.get(i).shape);
        }
        return result;
    }

    static ByteBuffer toFile(Tensor x, Manifest.TensorSpec spec) {
        float[] data = "NHWC".equals(spec.layout) ? TensorCodec.toNhwc(x.data, x.shape) : x.data;
        if (spec.quantization != null) {
            byte[] q = TensorCodec.quantize(data, spec.quantization);
            ByteBuffer b = ByteBuffer.allocateDirect(q.length).order(ByteOrder.nativeOrder());
            b.put(q);
            b.rewind();
            return b;
        }
        ByteBuffer b = ByteBuffer.allocateDirect(4 * data.length).order(ByteOrder.nativeOrder());
        b.asFloatBuffer().put(data);
        return b;
    }

    static Tensor fromFile(ByteBuffer b, Manifest.TensorSpec spec, int[] contractShape) {
        b.rewind();
        float[] data;
        if (spec.quantization != null) {
            byte[] q = new byte[b.remaining()];
            b.get(q);
            data = TensorCodec.dequantize(q, spec.quantization);
        } else {
            data = new float[b.remaining() / 4];
            b.asFloatBuffer().get(data);
        }
        if ("NHWC".equals(spec.layout)) {
            data = TensorCodec.toNchw(data, contractShape);
        }
        return new Tensor(data, contractShape);
    }

    @Override
    public void close() {
        if (interpreter != null) {
            interpreter.close();
            interpreter = null;
        }
    }
}
