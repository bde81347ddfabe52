package org.adpc.demo;

import java.io.File;
import java.lang.reflect.Constructor;
import java.lang.reflect.InvocationTargetException;
import org.adpc.core.Manifest;
import org.adpc.core.StageRunner;

/**
 * Finds a StageRunner for a backend by class name, so the same shell compiles with or without
 * the runtime bindings: the Gradle build adds src/runtimes (ExecuTorch, LiteRT AARs); the APK
 * built by build_apk.sh has none, and {@link #open} returns null, which the UI reports plainly.
 */
final class RuntimeFactory {
    static final String EXECUTORCH = "org.adpc.demo.runtime.ExecuTorchStageRunner";
    static final String LITERT = "org.adpc.demo.runtime.LiteRtStageRunner";

    private RuntimeFactory() {
    }

    static String className(String backend) {
        if ("executorch".equals(backend)) {
            return EXECUTORCH;
        }
        if ("tflite".equals(backend)) {
            return LITERT;
        }
        throw new IllegalArgumentException("unknown backend '" + backend
                + "': choose executorch or tflite");
    }

    /** True when this build carries the runtime for the backend. */
    static boolean available(String backend) {
        try {
            Class.forName(className(backend));
            return true;
        } catch (ClassNotFoundException ex) {
            return false;
        }
    }

    /** True when this build carries any inference runtime at all. */
    static boolean anyAvailable() {
        return available("executorch") || available("tflite");
    }

    /** The runner, or null when this build has no such runtime. */
    static StageRunner open(String backend, File bundle, Manifest manifest, String precision,
            int threads) throws Exception {
        Class<?> cls;
        try {
            cls = Class.forName(className(backend));
        } catch (ClassNotFoundException ex) {
            return null;
        }
        Constructor<?> make = cls.getConstructor(File.class, Manifest.class, String.class,
                int.class);
        try {
            return (StageRunner) make.newInstance(bundle, manifest, precision, threads);
        } catch (InvocationTargetException ex) {
            Throwable cause = ex.getCause();
            throw cause instanceof Exception ? (Exception) cause : ex;
        }
    }
}
