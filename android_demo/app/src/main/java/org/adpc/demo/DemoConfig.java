package org.adpc.demo;

import android.content.Intent;

/**
 * What a run is asked to do, from intent extras (adb shell am start ... --es / --ei / --ef):
 * bundle_dir, backend (executorch | tflite), precision, threads, deadline_ms, and for the
 * benchmark frames_dir, max_frames, repeats, warmup, out.
 */
final class DemoConfig {
    String bundleDir;
    String backend = "executorch";
    String precision = "fp32";
    int threads;
    float deadlineMs = 100f;
    String framesDir;
    int maxFrames = 4;
    int repeats = 5;
    int warmup = 1;
    String out = "benchmark_results.json";

    static DemoConfig from(Intent intent) {
        DemoConfig c = new DemoConfig();
        if (intent == null) {
            return c;
        }
        c.bundleDir = intent.getStringExtra("bundle_dir");
        c.backend = orDefault(intent.getStringExtra("backend"), c.backend);
        c.precision = orDefault(intent.getStringExtra("precision"), c.precision);
        c.threads = intent.getIntExtra("threads", c.threads);
        c.deadlineMs = intent.getFloatExtra("deadline_ms", c.deadlineMs);
        c.framesDir = intent.getStringExtra("frames_dir");
        c.maxFrames = intent.getIntExtra("max_frames", c.maxFrames);
        c.repeats = intent.getIntExtra("repeats", c.repeats);
        c.warmup = intent.getIntExtra("warmup", c.warmup);
        c.out = orDefault(intent.getStringExtra("out"), c.out);
        return c;
    }

    private static String orDefault(String value, String fallback) {
        return value == null || value.isEmpty() ? fallback : value;
    }
}
