package org.adpc.demo.runtime;

import java.io.File;
import java.util.List;
import org.adpc.core.Manifest;
import org.adpc.core.ManifestError;
import org.adpc.core.StageRunner;
import org.adpc.core.Tensor;
import org.adpc.core.TensorCodec;
import org.pytorch.executorch.EValue;
import org.pytorch.executorch.Module;

/**
 * The bundle's ExecuTorch program (one .pte, methods stage1..N, XNNPACK) through
 * org.pytorch.executorch.Module, converting at the boundary from the manifest's io like
 * edge.backends.executorch: int8 tensors with their scale / zero point, NHWC.
 * Threads: the AAR sizes its own thread pool; the report says 0 (runtime default).
 */
public final class ExecuTorchStageRunner implements StageRunner {
    private final Manifest manifest;
    private final Manifest.FileEntry entry;
    private final String precision;
    private Module module;

    public ExecuTorchStageRunner(File bundle, Manifest manifest, String precision, int threads)
            throws ManifestError {
        this.manifest = manifest;
        this.precision = precision;
        this.entry = BundleFiles.entry(manifest, "executorch", precision);
        this.module = Module.load(new File(bundle, entry.path).getPath());
    }

    @Override
    public String name() {
        return "executorch";
    }

    @Override
    public String precision() {
        return precision;
    }

    @Override
    public int threads() {
        return 0;
    }

    @Override
    public Tensor[] runStage(int k, Tensor[] inputs) throws Exception {
        Manifest.MethodIO io = BundleFiles.io(manifest, entry, k);
        EValue[] args = new EValue[inputs.length];
        for (int i = 0; i < inputs.length; i++) {
            args[i] = EValue.from(toFile(inputs[i], io.inputs.get(i)));
        }
        EValue[] raw = module.execute("stage" + k, args);
        List<Manifest.TensorSpec> outs = io.outputs;
        Tensor[] result = new Tensor[outs.size()];
        for (int i = 0; i < result.length; i++) {
            result[i] = fromFile(raw[i].toTensor(), outs.get(i), manifest.stage(k).outputs
                    .get(i).shape);
        }
        return result;
    }

    private static long[] longs(int[] shape) {
        long[] out = new long[shape.length];
        for (int i = 0; i < shape.length; i++) {
            out[i] = shape[i];
        }
        return out;
    }

    static org.pytorch.executorch.Tensor toFile(Tensor x, Manifest.TensorSpec spec) {
        float[] data = "NHWC".equals(spec.layout) ? TensorCodec.toNhwc(x.data, x.shape) : x.data;
        if (spec.quantization != null) {
            return org.pytorch.executorch.Tensor.fromBlob(
                    TensorCodec.quantize(data, spec.quantization), longs(spec.shape));
        }
        return org.pytorch.executorch.Tensor.fromBlob(data, longs(spec.shape));
    }

    static Tensor fromFile(org.pytorch.executorch.Tensor t, Manifest.TensorSpec spec,
            int[] contractShape) {
        float[] data = spec.quantization != null
                ? TensorCodec.dequantize(t.getDataAsByteArray(), spec.quantization)
                : t.getDataAsFloatArray();
        if ("NHWC".equals(spec.layout)) {
            data = TensorCodec.toNchw(data, contractShape);
        }
        return new Tensor(data, contractShape);
    }

    @Override
    public void close() {
        if (module != null) {
            module.destroy();
            module = null;
        }
    }
}
