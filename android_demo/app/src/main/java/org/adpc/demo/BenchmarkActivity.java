package org.adpc.demo;

import android.app.Activity;
import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import android.os.Bundle;
import android.util.Log;
import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.adpc.core.BenchReport;
import org.adpc.core.Benchmark;
import org.adpc.core.BundleVerifier;
import org.adpc.core.CostModel;
import org.adpc.core.JsonWriter;
import org.adpc.core.Letterbox;
import org.adpc.core.Manifest;
import org.adpc.core.ManifestReader;
import org.adpc.core.Normalizer;
import org.adpc.core.RgbImage;
import org.adpc.core.StageRunner;
import org.adpc.core.Tensor;

/**
 * Headless benchmark, the phone's {@code adpc bench}:
 * {@code adb shell am start -W -n org.adpc.demo/.BenchmarkActivity --es bundle_dir DIR}.
 * Frames: frame_*.png from frames_dir, else the sample drive frames packed as assets. Writes
 * benchmark_results.json (the bench JSON schema) to getExternalFilesDir(null); a build without
 * a runtime writes {"error": ...} there instead, so a script never mistakes it for a result.
 */
public class BenchmarkActivity extends Activity {
    static final String TAG = "adpc-bench";

    @Override
    protected void onCreate(Bundle state) {
        super.onCreate(state);
        final DemoConfig config = DemoConfig.from(getIntent());
        new Thread(new Runnable() {
            @Override
            public void run() {
                runBenchmark(config);
                finish();
            }
        }, "benchmark").start();
    }

    private void runBenchmark(DemoConfig config) {
        File out = new File(getExternalFilesDir(null), config.out);
        StageRunner runner = null;
        try {
            File bundle = BundleLocator.find(this, config.bundleDir);
            if (bundle == null) {
                throw new IllegalStateException(getString(R.string.no_bundle));
            }
            Manifest manifest = ManifestReader.read(bundle);
            BundleVerifier.verify(bundle, manifest);
            runner = RuntimeFactory.open(config.backend, bundle, manifest, config.precision,
                    config.threads);
            if (runner == null) {
                throw new IllegalStateException(getString(R.string.no_runtime));
            }
            List<Tensor> frames = frames(config, manifest);
            Benchmark.Setup setup = new Benchmark.Setup();
            setup.device = MainActivity.deviceName();
            setup.bundle = bundle.getPath();
            setup.repeats = config.repeats;
            setup.warmup = config.warmup;
            setup.progress = new Benchmark.Progress() {
                @Override
                public void say(String message) {
                    Log.i(TAG, message);
                }
            };
            CostModel model = CostModel.forManifest(manifest,
                    MainActivity.costKey(config.backend, config.precision));
            BenchReport report = Benchmark.run(manifest, runner, model, frames, setup);
            write(out, report.toJson());
            Log.i(TAG, "wrote " + out);
        } catch (Exception ex) {
            Map<String, Object> error = new LinkedHashMap<String, Object>();
            error.put("error", String.valueOf(ex.getMessage()));
            error.put("writer", new BenchReport().writer);
            try {
                write(out, JsonWriter.write(error));
            } catch (IOException io) {
                Log.e(TAG, "cannot write " + out, io);
            }
            Log.e(TAG, "benchmark failed: " + ex.getMessage());
        } finally {
            if (runner != null) {
                runner.close();
            }
        }
    }

    private List<Tensor> frames(DemoConfig config, Manifest manifest) throws IOException {
        List<Bitmap> bitmaps = new ArrayList<Bitmap>();
        if (config.framesDir != null) {
            File[] files = new File(config.framesDir).listFiles();
            if (files != null) {
                Arrays.sort(files);
                for (File f : files) {
                    if (f.getName().startsWith("frame_") && bitmaps.size() < config.maxFrames) {
                        bitmaps.add(BitmapFactory.decodeFile(f.getPath()));
                    }
                }
            }
        } else {
            String[] names = getAssets().list("frames");
            if (names != null) {
                Arrays.sort(names);
                for (String name : names) {
                    if (bitmaps.size() < config.maxFrames) {
                        InputStream in = getAssets().open("frames/" + name);
                        try {
                            bitmaps.add(BitmapFactory.decodeStream(in));
                        } finally {
                            in.close();
                        }
                    }
                }
            }
        }
        if (bitmaps.isEmpty()) {
            throw new IOException("no frames: give --es frames_dir DIR with frame_*.png");
        }
        Normalizer normalizer = new Normalizer(manifest.input);
        List<Tensor> out = new ArrayList<Tensor>();
        for (Bitmap b : bitmaps) {
            RgbImage rgb = AndroidImages.fromBitmap(b);
            out.add(normalizer.toTensor(Letterbox.fit(rgb, manifest.input.height,
                    manifest.input.width).image));
        }
        return out;
    }

    private static void write(File file, String text) throws IOException {
        File tmp = new File(file.getPath() + ".tmp");
        OutputStream out = new FileOutputStream(tmp);
        try {
            out.write(text.getBytes("UTF-8"));
        } finally {
            out.close();
        }
        if (!tmp.renameTo(file)) {
            throw new IOException("cannot rename " + tmp + " to " + file);
        }
    }
}
