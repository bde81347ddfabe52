package org.adpc.demo;

import android.graphics.Bitmap;
import android.media.Image;
import java.util.ArrayList;
import java.util.List;
import org.adpc.core.AnytimeScheduler;
import org.adpc.core.Budget;
import org.adpc.core.Cancel;
import org.adpc.core.CompositeBudget;
import org.adpc.core.Deadline;
import org.adpc.core.ExitResult;
import org.adpc.core.FrameResult;
import org.adpc.core.LatestFrame;
import org.adpc.core.Letterbox;
import org.adpc.core.Manifest;
import org.adpc.core.Normalizer;
import org.adpc.core.Py;
import org.adpc.core.RgbImage;
import org.adpc.core.Segmentation;

/**
 * The inference thread: takes the newest camera frame, converts and fits it, runs the stages
 * under the per-frame deadline (plus the stop button), and hands the latest exit's overlay and
 * HUD to the view. Without a scheduler (no runtime in this build) it only shows the frame.
 */
final class FrameLoop implements Runnable {
    private final LatestFrame<Image> latest;
    private final OverlayView view;
    private final Manifest manifest;
    private final AnytimeScheduler scheduler;
    private final double deadlineMs;
    private final Cancel cancel = new Cancel();
    private final int rotation;
    private volatile boolean running = true;

    FrameLoop(LatestFrame<Image> latest, OverlayView view, Manifest manifest,
            AnytimeScheduler scheduler, double deadlineMs, int rotation) {
        this.latest = latest;
        this.view = view;
        this.manifest = manifest;
        this.scheduler = scheduler;
        this.deadlineMs = deadlineMs;
        this.rotation = rotation;
    }

    void stop() {
        running = false;
        cancel.cancel("the app is closing");
        Image left = latest.close();
        if (left != null) {
            left.close();
        }
    }

    @Override
    public void run() {
        int height = manifest != null ? manifest.input.height : 256;
        int width = manifest != null ? manifest.input.width : 512;
        Normalizer normalizer = manifest != null ? new Normalizer(manifest.input) : null;
        int[][] lut = manifest != null ? Segmentation.lut(manifest.palette()) : null;
        List<Budget> parts = new ArrayList<Budget>();
        parts.add(new Deadline(deadlineMs));
        parts.add(cancel);
        Budget budget = new CompositeBudget(parts);
        while (running) {
            Image image;
            try {
                image = latest.take();
            } catch (InterruptedException ex) {
                return;
            }
            if (image == null) {
                return;
            }
            RgbImage frame;
            try {
                frame = AndroidImages.fromYuv(image, rotation);
            } finally {
                image.close();
            }
            Letterbox box = Letterbox.fit(frame, height, width);
            if (scheduler == null) {
                List<String> hud = new ArrayList<String>();
                hud.add("no inference runtime in this build");
                view.show(AndroidImages.toBitmap(box.image), hud);
                continue;
            }
            try {
                FrameResult result = scheduler.run(normalizer.toTensor(box.image), budget);
                show(box, result, lut);
            } catch (Exception ex) {
                List<String> hud = new ArrayList<String>();
                hud.add("error: " + ex.getMessage());
                view.show(AndroidImages.toBitmap(box.image), hud);
            }
        }
    }

    private void show(Letterbox box, FrameResult result, int[][] lut) {
        List<String> hud = new ArrayList<String>();
        ExitResult last = result.last();
        Bitmap bitmap;
        if (last == null) {
            bitmap = AndroidImages.toBitmap(box.image);
            hud.add("no exit reached");
        } else {
            int[] labels = last.labels();
            RgbImage over = Segmentation.overlay(box.image, labels, last.logits.dim(2),
                    last.logits.dim(3), lut, 0.55);
            bitmap = AndroidImages.toBitmap(over);
            hud.add("exit " + last.exit + "/" + manifest.numExits() + "  "
                    + Py.fixed(last.elapsedMs, 1) + " ms / " + Py.g(deadlineMs)
                    + " ms deadline");
            StringBuilder stages = new StringBuilder("stages ms:");
            for (ExitResult e : result.exits) {
                stages.append(' ').append(Py.fixed(e.stageMs, 1));
            }
            hud.add(stages.toString());
            hud.add("skipped " + Math.round(100 * last.maskedFraction) + "% px");
        }
        if (!result.stopReason.isEmpty()) {
            hud.add(result.stopReason);
        }
        view.show(bitmap, hud);
    }
}
