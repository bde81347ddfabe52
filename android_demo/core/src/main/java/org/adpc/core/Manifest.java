package org.adpc.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * The bundle manifest, typed (schema version 1; edge/bundle.py owns the schema, docs/formats.md
 * documents it). Built only by {@link ManifestReader}, which validates every field first.
 */
public final class Manifest {
    public static final int SCHEMA_VERSION = 1;
    public static final String FORMAT = "adpc-bundle";
    public static final String FILE_NAME = "manifest.json";

    public final String model;
    public final Map<String, Object> modelConfig;
    public final List<ClassInfo> classes;
    public final InputSpec input;
    /** CA threshold; null = confidence adaptivity off (every stage computes every pixel). */
    public final Double threshold;
    public final List<StageSpec> stages;
    public final List<FileEntry> files;
    /** device/backend/precision key -> cost table, as {@code adpc bench --calibrate} stored it. */
    public final Map<String, Object> costTables;
    public final Map<String, Object> provenance;

    Manifest(String model, Map<String, Object> modelConfig, List<ClassInfo> classes,
            InputSpec input, Double threshold, List<StageSpec> stages, List<FileEntry> files,
            Map<String, Object> costTables, Map<String, Object> provenance) {
        this.model = model;
        this.modelConfig = Collections.unmodifiableMap(modelConfig);
        this.classes = Collections.unmodifiableList(classes);
        this.input = input;
        this.threshold = threshold;
        this.stages = Collections.unmodifiableList(stages);
        this.files = Collections.unmodifiableList(files);
        this.costTables = Collections.unmodifiableMap(costTables);
        this.provenance = Collections.unmodifiableMap(provenance);
    }

    public int numExits() {
        int n = 0;
        for (StageSpec s : stages) {
            if (s.exit != null) {
                n++;
            }
        }
        return n;
    }

    public StageSpec stage(int index) {
        return stages.get(index - 1);
    }

    /** Files of one backend (and precision, unless null), in manifest order. */
    public List<FileEntry> filesFor(String backend, String precision) {
        List<FileEntry> out = new ArrayList<FileEntry>();
        for (FileEntry f : files) {
            if (f.backend.equals(backend) && (precision == null || f.precision.equals(precision))) {
                out.add(f);
            }
        }
        return out;
    }

    /** The packed RGB colour of every class id, for the overlay. */
    public int[][] palette() {
        int[][] out = new int[classes.size()][];
        for (int i = 0; i < out.length; i++) {
            out[i] = classes.get(i).color.clone();
        }
        return out;
    }

    public static final class ClassInfo {
        public final int id;
        public final String name;
        public final int[] color;

        ClassInfo(int id, String name, int[] color) {
            this.id = id;
            this.name = name;
            this.color = color;
        }
    }

    public static final class InputSpec {
        public final int height;
        public final int width;
        public final double[] mean;
        public final double[] std;
        public final String colorOrder;
        public final double pixelScale;

        InputSpec(int height, int width, double[] mean, double[] std, String colorOrder,
                double pixelScale) {
            this.height = height;
            this.width = width;
            this.mean = mean;
            this.std = std;
            this.colorOrder = colorOrder;
            this.pixelScale = pixelScale;
        }
    }

    /** Affine int8 parameters: real = scale * (q - zero_point). */
    public static final class Quantization {
        public final double scale;
        public final int zeroPoint;

        Quantization(double scale, int zeroPoint) {
            this.scale = scale;
            this.zeroPoint = zeroPoint;
        }
    }

    public static final class TensorSpec {
        public final String name;
        public final int[] shape;
        public final String dtype;
        public final String layout;
        public final Quantization quantization;

        TensorSpec(String name, int[] shape, String dtype, String layout,
                Quantization quantization) {
            this.name = name;
            this.shape = shape;
            this.dtype = dtype;
            this.layout = layout;
            this.quantization = quantization;
        }

        public int numel() {
            int n = 1;
            for (int d : shape) {
                n *= d;
            }
            return n;
        }
    }

    public static final class StageSpec {
        public final int index;
        /** The exit this stage ends in, or null. */
        public final Integer exit;
        public final List<TensorSpec> inputs;
        public final List<TensorSpec> outputs;
        public final StageFlops flops;

        StageSpec(int index, Integer exit, List<TensorSpec> inputs, List<TensorSpec> outputs,
                StageFlops flops) {
            this.index = index;
            this.exit = exit;
            this.inputs = Collections.unmodifiableList(inputs);
            this.outputs = Collections.unmodifiableList(outputs);
            this.flops = flops;
        }
    }

    /** A file's own I/O of one method where it differs from the stage contract. */
    public static final class MethodIO {
        public final List<TensorSpec> inputs;
        public final List<TensorSpec> outputs;

        public MethodIO(List<TensorSpec> inputs, List<TensorSpec> outputs) {
            this.inputs = Collections.unmodifiableList(inputs);
            this.outputs = Collections.unmodifiableList(outputs);
        }
    }

    public static final class FileEntry {
        public final String path;
        public final String sha256;
        public final long bytes;
        public final String backend;
        public final String precision;
        public final List<String> methods;
        public final Map<String, MethodIO> io;

        FileEntry(String path, String sha256, long bytes, String backend, String precision,
                List<String> methods, Map<String, MethodIO> io) {
            this.path = path;
            this.sha256 = sha256;
            this.bytes = bytes;
            this.backend = backend;
            this.precision = precision;
            this.methods = Collections.unmodifiableList(methods);
            this.io = Collections.unmodifiableMap(io);
        }
    }
}
