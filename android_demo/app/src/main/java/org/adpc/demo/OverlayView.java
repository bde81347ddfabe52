package org.adpc.demo;

import android.content.Context;
import android.graphics.Bitmap;
import android.graphics.Canvas;
import android.graphics.Color;
import android.graphics.Paint;
import android.graphics.Rect;
import android.view.View;
import java.util.ArrayList;
import java.util.List;

/**
 * Draws the latest overlay (class colours over the frame, scaled without filtering, as the
 * labels are nearest-sampled) and a HUD: exit reached, ms per stage, the deadline, why the
 * frame stopped. Set from any thread; drawn on the UI thread.
 */
final class OverlayView extends View {
    private final Paint text = new Paint(Paint.ANTI_ALIAS_FLAG);
    private final Paint box = new Paint();
    private final Paint pixels = new Paint();
    private Bitmap bitmap;
    private List<String> hud = new ArrayList<String>();

    OverlayView(Context context) {
        super(context);
        text.setColor(Color.WHITE);
        text.setTextSize(34f);
        box.setColor(Color.argb(160, 0, 0, 0));
        pixels.setFilterBitmap(false);
    }

    void show(final Bitmap frame, final List<String> lines) {
        post(new Runnable() {
            @Override
            public void run() {
                bitmap = frame;
                hud = lines;
                invalidate();
            }
        });
    }

    @Override
    protected void onDraw(Canvas canvas) {
        if (bitmap != null) {
            float scale = Math.min((float) getWidth() / bitmap.getWidth(),
                    (float) getHeight() / bitmap.getHeight());
            int w = Math.round(bitmap.getWidth() * scale);
            int h = Math.round(bitmap.getHeight() * scale);
            int left = (getWidth() - w) / 2;
            int top = (getHeight() - h) / 2;
            canvas.drawBitmap(bitmap, null, new Rect(left, top, left + w, top + h), pixels);
        }
        float line = text.getTextSize() * 1.25f;
        float width = 0;
        for (String s : hud) {
            width = Math.max(width, text.measureText(s));
        }
        if (!hud.isEmpty()) {
            canvas.drawRect(8, 8, 24 + width, 16 + line * hud.size(), box);
        }
        for (int i = 0; i < hud.size(); i++) {
            canvas.drawText(hud.get(i), 16, 8 + line * (i + 1), text);
        }
    }
}
