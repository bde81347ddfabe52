package org.adpc.core;

/** A bundle that cannot be used; the one-line message names the first problem and the fix. */
public final class ManifestError extends Exception {
    private static final long serialVersionUID = 1L;

    public ManifestError(String message) {
        super(message);
    }
}
