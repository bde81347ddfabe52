package org.adpc.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The scheduler's decisions against edge.runtime.AnytimeRunner on recorded stage timings:
 * which exits each frame reached, why it stopped (word for word), every timing, energy and
 * prediction (to the bit), the carried logits and the budgets' state across frames.
 */
class SchedulerTest {
    static final class FakeClock implements Clock {
        double t;

        FakeClock(double start) {
            t = start;
        }

        @Override
        public double seconds() {
            return t;
        }
    }

    /** Replays the recorded stage times and exit logits; may press cancel mid-stage. */
    static final class ScriptedRunner extends FakeRunner {
        final FakeClock clock;
        final Golden golden;
        List<Object> frames;
        int frame;
        Cancel cancel;
        Map<String, Object> cancelAt;

        ScriptedRunner(FakeClock clock, Golden golden) {
            this.clock = clock;
            this.golden = golden;
        }

        @Override
        public Tensor[] runStage(int k, Tensor[] inputs) throws Exception {
            Map<String, Object> script = Golden.asMap(frames.get(frame));
            clock.t += Golden.num(Golden.asList(script.get("stage_ms")).get(k - 1)) / 1000.0;
            if (cancelAt != null && Golden.integer(cancelAt.get("frame")) == frame
                    && Golden.integer(cancelAt.get("stage")) == k) {
                cancel.cancel((String) cancelAt.get("reason"));
            }
            String logits = (String) Golden.asList(script.get("logits")).get(k - 1);
            return new Tensor[] {Tensor.zeros(1, 2, 2, 2), golden.tensor(logits)};
        }

    }

    static Budget budget(List<Object> specs, Clock clock, ScriptedRunner runner) {
        List<Budget> parts = new ArrayList<Budget>();
        for (Object o : specs) {
            Map<String, Object> s = Golden.asMap(o);
            String type = (String) s.get("type");
            if (type.equals("deadline")) {
                parts.add(new Deadline(Golden.num(s.get("ms")), clock));
            } else if (type.equals("energy")) {
                parts.add(new EnergyBudget(Golden.num(s.get("mj"))));
            } else if (type.equals("battery_per_hour")) {
                parts.add(BatteryGovernor.perHour(Golden.num(s.get("fraction")),
                        Golden.num(s.get("battery_wh")), Golden.num(s.get("fps")),
                        Golden.num(s.get("carry_frames"))));
            } else if (type.equals("battery_per_session")) {
                parts.add(BatteryGovernor.perSession(Golden.num(s.get("mwh")),
                        Golden.num(s.get("frames")), Golden.num(s.get("carry_frames"))));
            } else if (type.equals("cancel")) {
                runner.cancel = new Cancel();
                parts.add(runner.cancel);
            } else {
                throw new IllegalArgumentException(type);
            }
        }
        if (parts.isEmpty()) {
            return null;
        }
        return parts.size() == 1 ? parts.get(0) : new CompositeBudget(parts);
    }

    static void checkBudget(Map<String, Object> expected, Budget budget, String where) {
        List<Budget> parts = new ArrayList<Budget>();
        if (budget instanceof CompositeBudget) {
            parts.addAll(((CompositeBudget) budget).budgets);
        } else if (budget != null) {
            parts.add(budget);
        }
        for (Budget b : parts) {
            if (b instanceof BatteryGovernor) {
                BatteryGovernor bg = (BatteryGovernor) b;
                Map<String, Object> e = Golden.asMap(expected.get("battery"));
                assertEquals(Golden.num(e.get("bank_mj")), bg.bankMj(), 0.0, where + " bank");
                assertEquals(Golden.num(e.get("allowance_mj")), bg.allowanceMj(), 0.0,
                        where + " allowance");
                assertEquals(Golden.num(e.get("total_spent_mj")), bg.totalSpentMj(), 0.0,
                        where + " total spent");
                assertEquals(Golden.integer(e.get("frames")), bg.frames(), where + " frames");
            }
            if (b instanceof EnergyBudget) {
                assertEquals(Golden.num(expected.get("energy_spent_mj")),
                        ((EnergyBudget) b).spentMj(), 0.0, where + " energy spent");
            }
        }
    }

    @Test
    void everyScenarioDecidesLikePython() throws Exception {
        Golden g = Golden.load();
        Manifest manifest = ManifestReader.fromJson(g.caseValue("scheduler_manifest"),
                "scheduler manifest");
        int checked = 0;
        for (Object o : g.list("scheduler")) {
            Map<String, Object> sc = Golden.asMap(o);
            String name = (String) sc.get("name");
            FakeClock clock = new FakeClock(Golden.num(sc.get("start_seconds")));
            ScriptedRunner runner = new ScriptedRunner(clock, g);
            runner.frames = Golden.asList(sc.get("frames"));
            runner.cancelAt = sc.get("cancel_at") == null ? null
                    : Golden.asMap(sc.get("cancel_at"));
            Budget budget = budget(Golden.asList(sc.get("budgets")), clock, runner);
            CostModel model = "table".equals(sc.get("cost_model"))
                    ? CostModel.forManifest(manifest, "fake-device/fake/fp32")
                    : CostModel.fromFlops(manifest.stages);
            assertEquals(sc.get("cost_source"), model.source, name + " cost model source");
            Double threshold = "manifest".equals(sc.get("threshold")) ? manifest.threshold : null;
            AnytimeScheduler scheduler = new AnytimeScheduler(manifest, runner, threshold, model,
                    Golden.integer(sc.get("min_exits")), clock);
            List<Object> expected = Golden.asList(sc.get("expected"));
            for (int f = 0; f < expected.size(); f++) {
                runner.frame = f;
                String where = name + " frame " + f;
                FrameResult result = scheduler.run(Tensor.zeros(1, 3, 32, 64), budget);
                Map<String, Object> e = Golden.asMap(expected.get(f));
                assertEquals(e.get("stop_reason"), result.stopReason, where + " stop reason");
                List<Object> exits = Golden.asList(e.get("exits"));
                assertEquals(exits.size(), result.exits.size(), where + " exits reached");
                for (int i = 0; i < exits.size(); i++) {
                    Map<String, Object> x = Golden.asMap(exits.get(i));
                    ExitResult r = result.exits.get(i);
                    String at = where + " exit " + (i + 1);
                    assertEquals(Golden.integer(x.get("exit")), r.exit, at);
                    assertEquals(Golden.integer(x.get("stage")), r.stage, at);
                    assertEquals(Golden.num(x.get("masked_fraction")), r.maskedFraction, 0.0,
                            at + " masked fraction");
                    assertEquals(Golden.num(x.get("stage_ms")), r.stageMs, 0.0, at + " ms");
                    assertEquals(Golden.num(x.get("elapsed_ms")), r.elapsedMs, 0.0,
                            at + " elapsed");
                    assertEquals(Golden.num(x.get("energy_mj")), r.energyMj, 0.0, at + " mJ");
                    assertEquals(Golden.num(x.get("predicted_ms")), r.predicted.latencyMs, 0.0,
                            at + " predicted ms");
                    assertEquals(Golden.num(x.get("predicted_mj")), r.predicted.energyMj, 0.0,
                            at + " predicted mJ");
                }
                if (e.get("final_logits") == null) {
                    assertNull(result.last(), where);
                } else {
                    float[] want = g.floats((String) e.get("final_logits"));
                    assertEquals(-1, Golden.firstDifference(want, result.last().logits.data),
                            where + " final carried logits");
                }
                checkBudget(Golden.asMap(e.get("budget")), budget, where);
                checked++;
            }
        }
        assertEquals(true, checked >= 20, "only " + checked + " frames checked");
    }
}
