package org.adpc.core;

/**
 * A one-slot mailbox between the camera and the inference thread: a new frame replaces the
 * one waiting (edge.sources.LatestFrame), so latency never piles up when inference is slower
 * than the camera; the replaced frame is handed back for recycling (Image.close on Android).
 */
public final class LatestFrame<T> {
    private T slot;
    private boolean closed;
    private long dropped;

    /** Offers a frame; returns the one it replaced (to be released), or null. */
    public synchronized T offer(T frame) {
        T old = slot;
        if (old != null) {
            dropped++;
        }
        slot = frame;
        notifyAll();
        return old;
    }

    /** Waits for the newest frame; null once closed. */
    public synchronized T take() throws InterruptedException {
        while (slot == null && !closed) {
            wait();
        }
        T frame = slot;
        slot = null;
        return frame;
    }

    /** Stops the consumer; returns a frame still waiting (to be released), or null. */
    public synchronized T close() {
        closed = true;
        T old = slot;
        slot = null;
        notifyAll();
        return old;
    }

    public synchronized long dropped() {
        return dropped;
    }
}
