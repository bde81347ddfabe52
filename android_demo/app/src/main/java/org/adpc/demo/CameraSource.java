package org.adpc.demo;

import android.content.Context;
import android.graphics.ImageFormat;
import android.graphics.SurfaceTexture;
import android.hardware.camera2.CameraAccessException;
import android.hardware.camera2.CameraCaptureSession;
import android.hardware.camera2.CameraCharacteristics;
import android.hardware.camera2.CameraDevice;
import android.hardware.camera2.CameraManager;
import android.hardware.camera2.CaptureRequest;
import android.media.Image;
import android.media.ImageReader;
import android.os.Handler;
import android.os.HandlerThread;
import android.view.Surface;
import java.util.Arrays;
import org.adpc.core.LatestFrame;

/**
 * The back camera through camera2: a preview surface plus an ImageReader in YUV_420_888 whose
 * frames go into a {@link LatestFrame} slot, so only the newest frame waits for inference and
 * a replaced one is closed at once (the reader has only two buffers).
 */
final class CameraSource {
    static final int WIDTH = 640;
    static final int HEIGHT = 480;

    private final CameraManager manager;
    private final LatestFrame<Image> latest;
    private HandlerThread thread;
    private Handler handler;
    private CameraDevice device;
    private CameraCaptureSession session;
    private ImageReader reader;
    private int sensorRotation;

    CameraSource(Context context, LatestFrame<Image> latest) {
        this.manager = (CameraManager) context.getSystemService(Context.CAMERA_SERVICE);
        this.latest = latest;
    }

    /** Clockwise degrees that turn the sensor image upright (portrait activity). */
    int rotation() {
        return sensorRotation;
    }

    private String backCamera() throws CameraAccessException {
        for (String id : manager.getCameraIdList()) {
            CameraCharacteristics c = manager.getCameraCharacteristics(id);
            Integer facing = c.get(CameraCharacteristics.LENS_FACING);
            if (facing != null && facing == CameraCharacteristics.LENS_FACING_BACK) {
                Integer orientation = c.get(CameraCharacteristics.SENSOR_ORIENTATION);
                sensorRotation = orientation == null ? 0 : orientation;
                return id;
            }
        }
        throw new IllegalStateException("this device has no back camera");
    }

    /** Opens the camera; preview may be null (frames only). Needs the CAMERA permission. */
    void start(final SurfaceTexture preview) throws CameraAccessException {
        thread = new HandlerThread("camera");
        thread.start();
        handler = new Handler(thread.getLooper());
        reader = ImageReader.newInstance(WIDTH, HEIGHT, ImageFormat.YUV_420_888, 2);
        reader.setOnImageAvailableListener(new ImageReader.OnImageAvailableListener() {
            @Override
            public void onImageAvailable(ImageReader r) {
                Image image = r.acquireLatestImage();
                if (image != null) {
                    Image replaced = latest.offer(image);
                    if (replaced != null) {
                        replaced.close();
                    }
                }
            }
        }, handler);
        manager.openCamera(backCamera(), new CameraDevice.StateCallback() {
            @Override
            public void onOpened(CameraDevice camera) {
                device = camera;
                createSession(preview);
            }

            @Override
            public void onDisconnected(CameraDevice camera) {
                camera.close();
            }

            @Override
            public void onError(CameraDevice camera, int error) {
                camera.close();
            }
        }, handler);
    }

    private void createSession(SurfaceTexture preview) {
        try {
            final CaptureRequest.Builder request =
                    device.createCaptureRequest(CameraDevice.TEMPLATE_PREVIEW);
            Surface frames = reader.getSurface();
            request.addTarget(frames);
            Surface view = null;
            if (preview != null) {
                preview.setDefaultBufferSize(WIDTH, HEIGHT);
                view = new Surface(preview);
                request.addTarget(view);
            }
            device.createCaptureSession(view == null ? Arrays.asList(frames)
                    : Arrays.asList(frames, view), new CameraCaptureSession.StateCallback() {
                        @Override
                        public void onConfigured(CameraCaptureSession s) {
                            session = s;
                            try {
                                s.setRepeatingRequest(request.build(), null, handler);
                            } catch (CameraAccessException ex) {
                                s.close();
                            }
                        }

                        @Override
                        public void onConfigureFailed(CameraCaptureSession s) {
                            s.close();
                        }
                    }, handler);
        } catch (CameraAccessException ex) {
            device.close();
        }
    }

    void stop() {
        if (session != null) {
            session.close();
            session = null;
        }
        if (device != null) {
            device.close();
            device = null;
        }
        if (reader != null) {
            reader.close();
            reader = null;
        }
        if (thread != null) {
            thread.quitSafely();
            thread = null;
        }
    }
}
