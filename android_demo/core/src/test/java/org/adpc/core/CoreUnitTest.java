package org.adpc.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Behaviour with no Python twin to compare against: threads, the frame slot, JSON text. */
class CoreUnitTest {
    @Test
    void cancelFromAnotherThreadStopsTheNextStage() throws Exception {
        final Cancel cancel = new Cancel();
        Thread t = new Thread(new Runnable() {
            @Override
            public void run() {
                cancel.cancel("stop button");
            }
        });
        assertTrue(cancel.allows(new StageCost(1, 1)));
        t.start();
        t.join();
        assertFalse(cancel.allows(new StageCost(1, 1)));
        assertEquals("cancel: stop button", cancel.reason());
        cancel.clear();
        assertTrue(cancel.allows(new StageCost(1, 1)));
    }

    @Test
    void latestFrameKeepsOnlyTheNewest() throws Exception {
        LatestFrame<String> slot = new LatestFrame<String>();
        assertNull(slot.offer("a"));
        assertEquals("a", slot.offer("b"));
        assertEquals("b", slot.offer("c"));
        assertEquals(2, slot.dropped());
        assertEquals("c", slot.take());
        slot.offer("d");
        assertEquals("d", slot.close());
        assertNull(slot.take());
    }

    @Test
    void jsonRoundTripKeepsIntegersAndFloatsApart() {
        String text = "{\"a\": 1, \"b\": 1.0, \"c\": [true, null, \"x\\n\\u00e9\"], "
                + "\"d\": NaN, \"e\": -2.5e-3}";
        Map<String, Object> m = Golden.asMap(Json.parse(text));
        assertEquals(Long.valueOf(1), m.get("a"));
        assertEquals(Double.valueOf(1.0), m.get("b"));
        List<Object> c = Golden.asList(m.get("c"));
        assertEquals(Arrays.asList(true, null, "x\n\u00e9"), c);
        assertTrue(Double.isNaN((Double) m.get("d")));
        Map<String, Object> back = Golden.asMap(Json.parse(JsonWriter.write(m)));
        assertEquals(m.get("a"), back.get("a"));
        assertEquals(m.get("b"), back.get("b"));
        assertEquals(m.get("c"), back.get("c"));
        assertEquals(m.get("e"), back.get("e"));
    }

    @Test
    void minExitsZeroMayEndWithNoAnswer() throws Exception {
        Golden g = Golden.load();
        Manifest manifest = ManifestReader.fromJson(g.caseValue("scheduler_manifest"), "m");
        SchedulerTest.FakeClock clock = new SchedulerTest.FakeClock(0);
        StageRunner never = new StageRunner() {
            @Override
            public String name() {
                return "none";
            }

            @Override
            public String precision() {
                return "fp32";
            }

            @Override
            public int threads() {
                return 0;
            }

            @Override
            public Tensor[] runStage(int k, Tensor[] inputs) {
                throw new AssertionError("a refused stage must never start");
            }

            @Override
            public void close() {
            }
        };
        Cancel cancel = new Cancel();
        cancel.cancel();
        AnytimeScheduler s = new AnytimeScheduler(manifest, never, 0.9,
                CostModel.fromFlops(manifest.stages), 0, clock);
        FrameResult r = s.run(Tensor.zeros(1, 3, 32, 64), cancel);
        assertNull(r.last());
        assertEquals("cancel: cancelled by the user", r.stopReason);
    }
}
