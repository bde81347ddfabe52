package org.adpc.demo;

import android.Manifest.permission;
import android.app.Activity;
import android.content.pm.PackageManager;
import android.graphics.Color;
import android.graphics.SurfaceTexture;
import android.media.Image;
import android.os.Build;
import android.os.Bundle;
import android.view.Gravity;
import android.view.TextureView;
import android.widget.FrameLayout;
import android.widget.TextView;
import java.io.File;
import org.adpc.core.AnytimeScheduler;
import org.adpc.core.BundleVerifier;
import org.adpc.core.LatestFrame;
import org.adpc.core.Manifest;
import org.adpc.core.ManifestReader;
import org.adpc.core.StageRunner;

/**
 * The live demo: camera preview, the latest exit's overlay and a HUD. Extras: bundle_dir,
 * backend, precision, threads, deadline_ms (DemoConfig). A build without a runtime says so in
 * a banner that stays on screen, and never draws anything that looks like a segmentation.
 */
public class MainActivity extends Activity {
    private final LatestFrame<Image> latest = new LatestFrame<Image>();
    private CameraSource camera;
    private FrameLoop loop;
    private StageRunner runner;
    private TextureView preview;
    private OverlayView overlay;
    private TextView banner;

    @Override
    protected void onCreate(Bundle state) {
        super.onCreate(state);
        FrameLayout root = new FrameLayout(this);
        preview = new TextureView(this);
        overlay = new OverlayView(this);
        banner = new TextView(this);
        banner.setTextColor(Color.WHITE);
        banner.setBackgroundColor(Color.argb(200, 120, 0, 0));
        banner.setPadding(24, 24, 24, 24);
        root.addView(preview);
        root.addView(overlay);
        root.addView(banner, new FrameLayout.LayoutParams(FrameLayout.LayoutParams.MATCH_PARENT,
                FrameLayout.LayoutParams.WRAP_CONTENT, Gravity.BOTTOM));
        setContentView(root);
    }

    @Override
    protected void onResume() {
        super.onResume();
        if (checkSelfPermission(permission.CAMERA) != PackageManager.PERMISSION_GRANTED) {
            requestPermissions(new String[] {permission.CAMERA}, 1);
            return;
        }
        startPipeline();
    }

    @Override
    public void onRequestPermissionsResult(int code, String[] perms, int[] results) {
        if (results.length > 0 && results[0] == PackageManager.PERMISSION_GRANTED) {
            startPipeline();
        } else {
            banner.setText(R.string.no_camera);
        }
    }

    private void startPipeline() {
        if (loop != null) {
            return;
        }
        DemoConfig config = DemoConfig.from(getIntent());
        Manifest manifest = null;
        AnytimeScheduler scheduler = null;
        StringBuilder message = new StringBuilder();
        if (!RuntimeFactory.anyAvailable()) {
            message.append(getString(R.string.no_runtime));
        }
        try {
            File bundle = BundleLocator.find(this, config.bundleDir);
            if (bundle == null) {
                message.append(message.length() > 0 ? "\n" : "").append(getString(R.string.no_bundle));
            } else {
                manifest = ManifestReader.read(bundle);
                BundleVerifier.verify(bundle, manifest);
                runner = RuntimeFactory.open(config.backend, bundle, manifest, config.precision,
                        config.threads);
                if (runner != null) {
                    scheduler = AnytimeScheduler.forBundle(manifest, runner,
                            costKey(config.backend, config.precision));
                } else if (RuntimeFactory.anyAvailable()) {
                    message.append("This build has no ").append(config.backend)
                            .append(" runtime: start with --es backend executorch or tflite.");
                }
            }
        } catch (Exception ex) {
            message.append(message.length() > 0 ? "\n" : "").append(ex.getMessage());
        }
        banner.setText(message.toString());
        banner.setVisibility(message.length() > 0 ? TextView.VISIBLE : TextView.GONE);
        camera = new CameraSource(this, latest);
        try {
            SurfaceTexture texture = preview.isAvailable() ? preview.getSurfaceTexture() : null;
            camera.start(scheduler == null ? texture : null);
        } catch (Exception ex) {
            banner.setText(message + "\ncamera: " + ex.getMessage());
            return;
        }
        loop = new FrameLoop(latest, overlay, manifest, scheduler, config.deadlineMs,
                camera.rotation());
        new Thread(loop, "inference").start();
    }

    /** The cost-table key of this phone: the device part of docs/formats.md. */
    static String costKey(String backend, String precision) {
        return deviceName() + "/" + backend + "/" + precision;
    }

    static String deviceName() {
        String abi = Build.SUPPORTED_ABIS.length > 0 ? Build.SUPPORTED_ABIS[0] : "unknown";
        return "android-" + abi + "-" + Build.MODEL;
    }

    @Override
    protected void onPause() {
        if (loop != null) {
            loop.stop();
            loop = null;
        }
        if (camera != null) {
            camera.stop();
            camera = null;
        }
        if (runner != null) {
            runner.close();
            runner = null;
        }
        super.onPause();
    }
}
