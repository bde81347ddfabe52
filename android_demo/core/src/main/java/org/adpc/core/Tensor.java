package org.adpc.core;

import java.util.Arrays;

/**
 * A float32 tensor in the stage contract's form: NCHW, row-major, batch 1 in practice.
 * Runtimes convert to their own dtype/layout at their boundary (see {@link TensorCodec}), so
 * the host step and the scheduler only ever see this one type.
 */
public final class Tensor {
    public final float[] data;
    public final int[] shape;

    public Tensor(float[] data, int[] shape) {
        long n = 1;
        for (int d : shape) {
            n *= d;
        }
        if (n != data.length) {
            throw new IllegalArgumentException("tensor of shape " + Arrays.toString(shape)
                    + " needs " + n + " values, got " + data.length);
        }
        this.data = data;
        this.shape = shape.clone();
    }

    public static Tensor zeros(int... shape) {
        int n = 1;
        for (int d : shape) {
            n *= d;
        }
        return new Tensor(new float[n], shape);
    }

    public int dim(int i) {
        return shape[i];
    }

    public boolean sameShape(int[] other) {
        return Arrays.equals(shape, other);
    }

    @Override
    public String toString() {
        return "Tensor" + Arrays.toString(shape);
    }
}
