package org.adpc.core;

import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;

/**
 * Checks every file the manifest lists: present, the recorded size, the recorded sha256
 * (edge.bundle.read_bundle with verify_files). A truncated adb push is the usual culprit.
 */
public final class BundleVerifier {
    private BundleVerifier() {
    }

    public static void verify(File folder, Manifest manifest) throws ManifestError {
        for (Manifest.FileEntry entry : manifest.files) {
            verify(folder, entry);
        }
    }

    public static void verify(File folder, Manifest.FileEntry entry) throws ManifestError {
        File file = new File(folder, entry.path);
        if (!file.isFile()) {
            throw new ManifestError("bundle " + folder + ": file " + entry.path
                    + " listed in the manifest is missing: copy the whole bundle folder");
        }
        long size = file.length();
        if (size != entry.bytes) {
            throw new ManifestError("bundle " + folder + ": " + entry.path + " has " + size
                    + " bytes, the manifest says " + entry.bytes
                    + " (truncated copy?): copy it again");
        }
        if (!sha256(file).equals(entry.sha256)) {
            throw new ManifestError("bundle " + folder + ": " + entry.path
                    + " fails its sha256 check (corrupt or modified): re-run `adpc convert`");
        }
    }

    public static String sha256(File file) throws ManifestError {
        MessageDigest digest;
        try {
            digest = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException ex) {
            throw new IllegalStateException("SHA-256 is missing from this JVM", ex);
        }
        byte[] buffer = new byte[1 << 20];
        InputStream in = null;
        try {
            in = new FileInputStream(file);
            int n;
            while ((n = in.read(buffer)) > 0) {
                digest.update(buffer, 0, n);
            }
        } catch (IOException ex) {
            throw new ManifestError(file + " cannot be read (" + ex.getMessage() + ")");
        } finally {
            if (in != null) {
                try {
                    in.close();
                } catch (IOException ignored) {
                    // nothing to do: the digest is complete or the error was reported
                }
            }
        }
        StringBuilder hex = new StringBuilder();
        for (byte b : digest.digest()) {
            hex.append(String.format("%02x", b & 0xff));
        }
        return hex.toString();
    }
}
