package org.adpc.demo;

import android.content.Context;
import android.content.res.AssetManager;
import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;

/**
 * Where the bundle is: the bundle_dir extra (a pushed folder), else a bundle packed into the
 * APK's assets (build_apk.sh --bundle), copied once to app storage because runtimes load files
 * by path.
 */
final class BundleLocator {
    static final String ASSET_DIR = "bundle";

    private BundleLocator() {
    }

    static File find(Context context, String bundleDir) throws IOException {
        if (bundleDir != null) {
            return new File(bundleDir);
        }
        AssetManager assets = context.getAssets();
        String[] names = assets.list(ASSET_DIR);
        if (names == null || names.length == 0) {
            return null;
        }
        File target = new File(context.getFilesDir(), ASSET_DIR);
        copy(assets, ASSET_DIR, target);
        return target;
    }

    private static void copy(AssetManager assets, String path, File target) throws IOException {
        String[] children = assets.list(path);
        if (children != null && children.length > 0) {
            if (!target.isDirectory() && !target.mkdirs()) {
                throw new IOException("cannot create " + target);
            }
            for (String child : children) {
                copy(assets, path + "/" + child, new File(target, child));
            }
            return;
        }
        InputStream in = assets.open(path);
        try {
            long size = in.available();
            if (target.isFile() && target.length() == size && size > 0) {
                return; // copied on an earlier start
            }
            OutputStream out = new FileOutputStream(target);
            try {
                byte[] buffer = new byte[1 << 16];
                int n;
                while ((n = in.read(buffer)) > 0) {
                    out.write(buffer, 0, n);
                }
            } finally {
                out.close();
            }
        } finally {
            in.close();
        }
    }
}
