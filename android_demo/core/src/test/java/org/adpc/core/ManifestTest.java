package org.adpc.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.File;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The manifest reader against edge.bundle on a bundle written by edge.bundle.write_bundle. */
class ManifestTest {
    static int[] ints(Object list) {
        List<Object> l = Golden.asList(list);
        int[] out = new int[l.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = Golden.integer(l.get(i));
        }
        return out;
    }

    static void checkTensors(List<Object> expected, List<Manifest.TensorSpec> actual,
            String where) {
        assertEquals(expected.size(), actual.size(), where);
        for (int i = 0; i < actual.size(); i++) {
            List<Object> e = Golden.asList(expected.get(i));
            Manifest.TensorSpec t = actual.get(i);
            assertEquals(e.get(0), t.name, where);
            assertArrayEquals(ints(e.get(1)), t.shape, where + " " + t.name);
            assertEquals(e.get(2), t.dtype, where);
            assertEquals(e.get(3), t.layout, where);
            if (e.size() > 4) {
                if (e.get(4) == null) {
                    assertEquals(null, t.quantization, where);
                } else {
                    List<Object> q = Golden.asList(e.get(4));
                    assertEquals(Golden.num(q.get(0)), t.quantization.scale, 0.0, where);
                    assertEquals(Golden.integer(q.get(1)), t.quantization.zeroPoint, where);
                }
            }
        }
    }

    @Test
    void realBundleParsesLikePython() throws Exception {
        Golden g = Golden.load();
        Map<String, Object> c = g.map("manifest");
        File dir = new File(g.root, (String) c.get("dir"));
        Manifest m = ManifestReader.read(dir);
        BundleVerifier.verify(dir, m);
        assertEquals(c.get("model"), m.model);
        assertEquals(Golden.num(c.get("threshold")), m.threshold, 0.0);
        assertEquals(Golden.integer(c.get("num_exits")), m.numExits());
        Map<String, Object> in = Golden.asMap(c.get("input"));
        assertEquals(Golden.integer(in.get("height")), m.input.height);
        assertEquals(Golden.integer(in.get("width")), m.input.width);
        assertEquals(in.get("color_order"), m.input.colorOrder);
        assertEquals(Golden.num(in.get("pixel_scale")), m.input.pixelScale, 0.0);
        for (int i = 0; i < 3; i++) {
            assertEquals(Golden.num(Golden.asList(in.get("mean")).get(i)), m.input.mean[i], 0.0);
            assertEquals(Golden.num(Golden.asList(in.get("std")).get(i)), m.input.std[i], 0.0);
        }
        List<Object> classes = Golden.asList(c.get("classes"));
        assertEquals(classes.size(), m.classes.size());
        for (int i = 0; i < classes.size(); i++) {
            List<Object> e = Golden.asList(classes.get(i));
            assertEquals(Golden.integer(e.get(0)), m.classes.get(i).id);
            assertEquals(e.get(1), m.classes.get(i).name);
            assertArrayEquals(ints(e.get(2)), m.classes.get(i).color);
        }
        List<Object> stages = Golden.asList(c.get("stages"));
        assertEquals(stages.size(), m.stages.size());
        double[] fractions = {0.0, 0.25, 0.5, 1.0};
        for (int i = 0; i < stages.size(); i++) {
            Map<String, Object> e = Golden.asMap(stages.get(i));
            Manifest.StageSpec s = m.stages.get(i);
            assertEquals(Golden.integer(e.get("index")), s.index);
            assertEquals(e.get("exit") == null ? null : Golden.integer(e.get("exit")), s.exit);
            checkTensors(Golden.asList(e.get("inputs")), s.inputs, "stage " + s.index + " in");
            checkTensors(Golden.asList(e.get("outputs")), s.outputs, "stage " + s.index + " out");
            List<Object> gflops = Golden.asList(e.get("gflops"));
            for (int p = 0; p < fractions.length; p++) {
                assertEquals(Golden.num(gflops.get(p)), s.flops.gflops(fractions[p]), 0.0,
                        "stage " + s.index + " gflops at " + fractions[p]);
            }
        }
        List<Object> files = Golden.asList(c.get("files"));
        assertEquals(files.size(), m.files.size());
        for (int i = 0; i < files.size(); i++) {
            Map<String, Object> e = Golden.asMap(files.get(i));
            Manifest.FileEntry f = m.files.get(i);
            assertEquals(e.get("path"), f.path);
            assertEquals(e.get("sha256"), f.sha256);
            assertEquals(Golden.num(e.get("bytes")), (double) f.bytes, 0.0);
            assertEquals(e.get("backend"), f.backend);
            assertEquals(e.get("precision"), f.precision);
            assertEquals(e.get("methods"), f.methods);
            Map<String, Object> io = Golden.asMap(e.get("io"));
            assertEquals(io.keySet(), f.io.keySet());
            for (String method : io.keySet()) {
                checkTensors(Golden.asList(io.get(method)), f.io.get(method).inputs,
                        f.path + " " + method);
            }
        }
    }

    @Test
    void costPredictionsMatchToTheBit() throws Exception {
        Golden g = Golden.load();
        Map<String, Object> c = g.map("manifest");
        Manifest m = ManifestReader.read(new File(g.root, (String) c.get("dir")));
        CostModel table = CostModel.forManifest(m, (String) c.get("cost_key"));
        CostModel flops = CostModel.forManifest(m, "no-such-device/x/fp32");
        String[] keys = {"predict", "flops_predict"};
        CostModel[] models = {table, flops};
        for (int j = 0; j < 2; j++) {
            for (Object o : Golden.asList(c.get(keys[j]))) {
                List<Object> row = Golden.asList(o);
                int k = Golden.integer(row.get(0));
                double p = Golden.num(row.get(1));
                StageCost cost = models[j].predict(k, p);
                String at = keys[j] + " stage " + k + " at " + p;
                assertEquals(Golden.num(row.get(2)), cost.latencyMs, 0.0, at + " ms");
                assertEquals(Golden.num(row.get(3)), cost.energyMj, 0.0, at + " mJ");
                assertEquals(Golden.num(row.get(4)), models[j].gflops(k, p), 0.0, at);
            }
        }
    }

    @Test
    void damagedManifestsAreRefusedWithPythonsMessage() throws Exception {
        Golden g = Golden.load();
        int n = 0;
        for (Object o : g.list("bad_manifests")) {
            Map<String, Object> c = Golden.asMap(o);
            String message = null;
            try {
                ManifestReader.fromJson(c.get("manifest"), "bad.json");
            } catch (ManifestError error) {
                message = error.getMessage();
            }
            assertEquals(c.get("message"), message, (String) c.get("what"));
            n++;
        }
        assertEquals(true, n >= 30);
    }

    @Test
    void truncatedOrAlteredFilesAreRefused() throws Exception {
        Golden g = Golden.load();
        for (Object o : g.list("bundle_refusals")) {
            Map<String, Object> c = Golden.asMap(o);
            File dir = new File(g.root, (String) c.get("dir"));
            Manifest m = ManifestReader.read(dir);
            String message = null;
            try {
                BundleVerifier.verify(dir, m);
            } catch (ManifestError error) {
                message = error.getMessage();
            }
            String expected = ((String) c.get("message")).replace("{dir}", dir.toString());
            assertEquals(expected, message);
        }
    }
}
