package org.adpc.core;

/**
 * One inference runtime driving a bundle's stages (edge.backends.Backend): stage k on contract
 * tensors (float32 NCHW, the manifest's stage inputs) returns contract tensors (the stage's
 * outputs, exit logits last). ExecuTorch and LiteRT implement it in the Gradle build; the
 * scheduler, the benchmark and the tests only see this interface.
 */
public interface StageRunner {
    /** Runtime name as in the manifest's files: "executorch", "tflite". */
    String name();

    /** Precision of the files it runs: "fp32", "int8". */
    String precision();

    /** Threads the runtime was asked to use, or 0 for the runtime's default. */
    int threads();

    Tensor[] runStage(int k, Tensor[] inputs) throws Exception;

    void close();
}
