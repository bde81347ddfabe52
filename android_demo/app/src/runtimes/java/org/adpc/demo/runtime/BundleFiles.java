package org.adpc.demo.runtime;

import java.util.List;
import org.adpc.core.Manifest;
import org.adpc.core.ManifestError;

/** The file of one backend and precision holding every stage method, as Backend does it. */
final class BundleFiles {
    private BundleFiles() {
    }

    static Manifest.FileEntry entry(Manifest manifest, String backend, String precision)
            throws ManifestError {
        List<Manifest.FileEntry> files = manifest.filesFor(backend, precision);
        if (files.isEmpty()) {
            throw new ManifestError("the bundle has no " + backend + " " + precision
                    + " files: run `adpc convert --backend " + backend + " --precision "
                    + precision + "`");
        }
        Manifest.FileEntry entry = files.get(0);
        for (int k = 1; k <= manifest.stages.size(); k++) {
            if (!entry.methods.contains("stage" + k)) {
                throw new ManifestError(entry.path + " lacks method stage" + k
                        + ": re-run `adpc convert --backend " + backend + "`");
            }
        }
        return entry;
    }

    /** The file's own I/O of stage k where it differs from the contract. */
    static Manifest.MethodIO io(Manifest manifest, Manifest.FileEntry entry, int k) {
        Manifest.MethodIO own = entry.io.get("stage" + k);
        if (own != null) {
            return own;
        }
        Manifest.StageSpec spec = manifest.stage(k);
        return new Manifest.MethodIO(spec.inputs, spec.outputs);
    }
}
