"""Budgets: each alone, composed, the battery governor's carry-over, cancellation, bad inputs."""

from __future__ import annotations

import math
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import imported_top_level

from edge.budget import (
    BatteryGovernor,
    Budget,
    BudgetError,
    Cancel,
    Composite,
    Deadline,
    EnergyBudget,
    StageCost,
    compose,
    parse_battery_allowance,
)


class FakeClock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def advance_ms(self, ms: float) -> None:
        self.t += ms / 1000.0


def run_frame(budget: Budget, cost: StageCost, stages: int = 4, clock: FakeClock | None = None):
    """A runner stand-in: start stages while the budget allows; each costs exactly `cost`."""
    budget.start_frame()
    done = 0
    while done < stages and budget.allows(cost):
        if clock is not None:
            clock.advance_ms(cost.latency_ms)
        budget.charge(cost.latency_ms, cost.energy_mj)
        done += 1
    budget.end_frame()
    return done


# ------------------------------------------------------------------------------ deadline
def test_deadline_refuses_a_stage_that_does_not_fit_and_says_how_much_is_left():
    clock = FakeClock()
    d = Deadline(50, clock=clock)
    d.start_frame()
    assert d.allows(StageCost(20.0))
    clock.advance_ms(38.0)
    assert d.allows(StageCost(12.0))  # exactly fits: 12 ms left
    assert d.reason == ""
    assert not d.allows(StageCost(18.5))
    assert d.reason.startswith("deadline:")
    assert "12.0 ms left" in d.reason and "18.5 ms" in d.reason


def test_deadline_is_per_frame_and_counts_from_start_frame():
    clock = FakeClock()
    d = Deadline(30, clock=clock)
    assert run_frame(d, StageCost(10.0), clock=clock) == 3
    clock.advance_ms(1000.0)  # time between frames does not count
    assert run_frame(d, StageCost(10.0), clock=clock) == 3
    assert run_frame(d, StageCost(16.0), clock=clock) == 1


def test_deadline_past_refuses_even_a_free_stage():
    clock = FakeClock()
    d = Deadline(10, clock=clock)
    d.start_frame()
    clock.advance_ms(13.0)
    assert not d.allows(StageCost(0.0))
    assert "3.0 ms over" in d.reason


def test_deadline_default_clock_is_perf_counter():
    d = Deadline(1.0)
    d.start_frame()
    assert d.remaining_ms() > 0.5
    time.sleep(0.002)
    assert not d.allows(StageCost(0.0))


def test_deadline_before_start_frame_is_a_clear_error():
    with pytest.raises(RuntimeError, match="start_frame"):
        Deadline(10).allows(StageCost(1.0))


# ------------------------------------------------------------------------------ energy
def test_energy_budget_charges_actual_cost_and_resets_per_frame():
    e = EnergyBudget(100)
    e.start_frame()
    assert e.allows(StageCost(1.0, 60.0))
    e.charge(1.0, 70.0)  # the stage cost more than predicted
    assert e.allows(StageCost(1.0, 30.0))
    assert not e.allows(StageCost(1.0, 30.5))
    assert e.reason.startswith("energy:") and "30.0 mJ left" in e.reason
    e.end_frame()
    e.start_frame()
    assert e.allows(StageCost(1.0, 100.0))
    assert run_frame(e, StageCost(1.0, 25.0), stages=10) == 4


# ------------------------------------------------------------------------------ governor
def test_per_hour_share_is_the_battery_fraction_spread_over_the_frames():
    # 1% of 15 Wh = 0.15 Wh = 540 J per hour; 36000 frames per hour at 10 fps -> 15 mJ each.
    g = BatteryGovernor.per_hour(fraction=0.01, battery_wh=15.0, fps=10.0)
    assert g.share_mj == pytest.approx(15.0)
    assert "1% of 15 Wh" in g.label


def test_per_session_share_and_hard_total():
    # 1 mWh = 3.6 J = 3600 mJ over 100 frames -> 36 mJ per frame.
    g = BatteryGovernor.per_session(mwh=1.0, frames=100, carry_frames=10)
    assert g.share_mj == pytest.approx(36.0)
    cost = StageCost(1.0, 10.0)
    for _ in range(300):  # three times the expected frames
        run_frame(g, cost)
    assert g.total_spent_mj <= 3600.0 + 1e-9
    assert 3600.0 - g.total_spent_mj < cost.energy_mj  # spent down to the last stage that fits
    g.start_frame()
    assert not g.allows(cost)
    assert g.reason.startswith("battery:") and "session" in g.reason


def test_unused_energy_carries_over_up_to_the_cap():
    g = BatteryGovernor(10.0, carry_frames=5)
    assert g.cap_mj == pytest.approx(50.0)
    banks, allowances = [], []
    for _ in range(8):  # idle frames: nothing spent
        g.start_frame()
        allowances.append(g.allowance_mj)
        g.end_frame()
        banks.append(g.bank_mj)
    assert banks == pytest.approx([10, 20, 30, 40, 50, 50, 50, 50])
    # allowance = share + bank / carry_frames, from the bank before each frame
    assert allowances == pytest.approx([10 + b / 5 for b in [0, 10, 20, 30, 40, 50, 50, 50]])
    g.start_frame()
    assert g.allowance_mj == pytest.approx(20.0)  # a full bank gives two shares
    assert g.allows(StageCost(1.0, 20.0))
    assert not g.allows(StageCost(1.0, 20.5))


def test_no_carry_over_means_exactly_one_share_per_frame():
    g = BatteryGovernor(10.0, carry_frames=0)
    for _ in range(3):
        assert run_frame(g, StageCost(1.0, 3.0), stages=10) == 3
        assert g.bank_mj == 0.0


def test_overspend_is_a_debt_that_lowers_the_next_allowances_within_the_floor():
    g = BatteryGovernor(10.0, carry_frames=4)
    g.start_frame()
    assert g.allows(StageCost(1.0, 10.0))
    g.charge(1.0, 30.0)  # the meter says it cost three times the prediction
    g.end_frame()
    assert g.bank_mj == pytest.approx(-20.0)
    g.start_frame()
    assert g.allowance_mj == pytest.approx(10.0 - 20.0 / 4)
    g.charge(1.0, 1000.0)  # a wild reading cannot starve the stream for long
    g.end_frame()
    assert g.bank_mj == pytest.approx(-g.cap_mj)


def test_long_run_spending_matches_the_share():
    share, cost, frames = 12.0, StageCost(2.0, 5.0), 400
    g = BatteryGovernor(share, carry_frames=10)
    stages = [run_frame(g, cost) for _ in range(frames)]
    assert g.total_spent_mj == pytest.approx(sum(stages) * cost.energy_mj)
    assert g.total_spent_mj <= frames * share
    assert g.total_spent_mj >= frames * share - g.cap_mj - cost.energy_mj
    assert set(stages) == {2, 3}  # 12 mJ per frame buys 2.4 stages of 5 mJ on average


def test_frames_degrade_to_earlier_exits_as_the_allowance_runs_low():
    """A full bank lets early frames run more stages; as it drains they get fewer."""
    cost = StageCost(5.0, 5.0)
    g = BatteryGovernor(10.0, carry_frames=10, initial_bank_mj=100.0)
    stages, allowances = [], []
    for _ in range(40):
        g.start_frame()
        allowances.append(g.allowance_mj)
        done = 0
        while done < 4 and g.allows(cost):
            g.charge(cost.latency_ms, cost.energy_mj)
            done += 1
        g.end_frame()
        stages.append(done)
    assert stages[0] == 4
    assert all(a >= b for a, b in zip(stages, stages[1:], strict=False))  # never recovers
    assert all(a >= b for a, b in zip(allowances, allowances[1:], strict=False))
    assert stages[-10:] == [2] * 10  # settles at what one share (10 mJ) buys
    assert 3 in stages  # and passes through an intermediate exit on the way


def test_start_frame_twice_settles_the_open_frame():
    g = BatteryGovernor(10.0, carry_frames=3)
    g.start_frame()
    g.charge(1.0, 4.0)
    g.start_frame()  # the runner forgot end_frame
    assert g.frames == 1 and g.bank_mj == pytest.approx(6.0) and g.spent_mj == 0.0
    snap = g.snapshot()
    assert snap["bank_mj"] == pytest.approx(6.0) and snap["share_mj"] == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("1%", "fraction_per_hour", 0.01),
        (" 0.5 %/h ", "fraction_per_hour", 0.005),
        ("2%/hour", "fraction_per_hour", 0.02),
        ("100%", "fraction_per_hour", 1.0),
        ("50mWh", "energy_per_session", 50.0),
        ("50 mwh", "energy_per_session", 50.0),
        ("0.2Wh", "energy_per_session", 200.0),
    ],
)
def test_parse_battery_allowance(text, kind, value):
    parsed = parse_battery_allowance(text)
    assert parsed.kind == kind
    assert parsed.value == pytest.approx(value)


def test_from_cli_builds_either_kind():
    hourly = BatteryGovernor.from_cli("1%", fps=10.0, battery_wh=15.0)
    assert hourly.share_mj == pytest.approx(15.0) and hourly.session_mj is None
    session = BatteryGovernor.from_cli("50mWh", fps=10.0, frames=1000)
    assert session.session_mj == pytest.approx(50 * 3600.0)
    assert session.share_mj == pytest.approx(180.0)
    with pytest.raises(BudgetError, match="Wh"):
        BatteryGovernor.from_cli("1%", fps=10.0)
    with pytest.raises(BudgetError, match="frame count"):
        BatteryGovernor.from_cli("50mWh", fps=10.0)


# ------------------------------------------------------------------------------ cancel
def test_cancel_set_from_another_thread_stops_a_running_loop():
    cancel = Cancel()
    budget = compose(Deadline(1e9), cancel)
    running = threading.Event()

    def press_stop() -> None:
        running.wait(2.0)
        cancel.cancel("stop button")

    stopper = threading.Thread(target=press_stop)
    stopper.start()
    budget.start_frame()
    started = time.perf_counter()
    stages = 0
    while budget.allows(StageCost(0.0)):
        stages += 1
        running.set()
        if time.perf_counter() - started > 5.0:
            break
        time.sleep(0.0005)
    stopper.join(2.0)
    assert cancel.is_set()
    assert stages >= 1
    assert budget.refused_by is cancel
    assert budget.reason == "cancel: stop button"
    budget.start_frame()  # sticky: the next frame is refused too
    assert not budget.allows(StageCost(0.0))
    cancel.clear()
    assert budget.allows(StageCost(0.0))


# ------------------------------------------------------------------------------ compose
def test_composition_stops_at_whichever_budget_is_spent_first():
    clock = FakeClock()
    deadline, energy = Deadline(100, clock=clock), EnergyBudget(30)
    both = compose(deadline, energy)
    # cheap in time, dear in energy: energy runs out first (3 stages of 10 mJ)
    assert run_frame(both, StageCost(5.0, 10.0), stages=10, clock=clock) == 3
    assert both.refused_by is energy and both.reason == energy.reason
    assert both.reason.startswith("energy:")
    # dear in time, cheap in energy: the deadline runs out first (2 stages of 40 ms)
    assert run_frame(both, StageCost(40.0, 1.0), stages=10, clock=clock) == 2
    assert both.refused_by is deadline and both.reason.startswith("deadline:")


def test_compose_forwards_charges_flattens_and_skips_none():
    energy, governor = EnergyBudget(100), BatteryGovernor(50.0, carry_frames=2)
    inner = compose(energy, None)
    outer = compose(inner, governor, energy)  # energy appears twice: counted once
    assert isinstance(outer, Composite) and outer.budgets == (energy, governor)
    outer.start_frame()
    outer.charge(3.0, 20.0)
    assert energy.spent_mj == pytest.approx(20.0)
    assert governor.spent_mj == pytest.approx(20.0)
    outer.end_frame()
    assert governor.bank_mj == pytest.approx(30.0)


# ------------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: Deadline(0), "deadline must be > 0"),
        (lambda: Deadline(-5), "deadline must be > 0"),
        (lambda: Deadline(math.nan), "finite"),
        (lambda: Deadline("50"), "number"),
        (lambda: EnergyBudget(-1), "energy budget"),
        (lambda: StageCost(math.nan, 1.0), "latency_ms"),
        (lambda: StageCost(1.0, -2.0), "energy_mj"),
        (lambda: BatteryGovernor.per_hour(fraction=1.5, battery_wh=15, fps=10), "(0, 1]"),
        (lambda: BatteryGovernor.per_hour(fraction=0.01, battery_wh=0, fps=10), "capacity"),
        (lambda: BatteryGovernor.per_hour(fraction=0.01, battery_wh=15, fps=0), "fps"),
        (lambda: BatteryGovernor(10.0, carry_frames=2, initial_bank_mj=50.0), "cap"),
        (lambda: parse_battery_allowance("150%"), "(0, 100]"),
        (lambda: parse_battery_allowance("0%"), "(0, 100]"),
        (lambda: parse_battery_allowance("-1%"), "cannot read"),
        (lambda: parse_battery_allowance("nan%"), "cannot read"),
        (lambda: parse_battery_allowance("50mAh"), "unknown unit 'mAh'"),
        (lambda: parse_battery_allowance("50mWh/h"), "per session"),
        (lambda: parse_battery_allowance(""), "cannot read"),
        (lambda: compose(), "at least one budget"),
        (lambda: compose(Deadline(5), 3), "takes budgets"),
    ],
)
def test_absurd_inputs_raise_one_line_budget_errors(build, words):
    with pytest.raises(BudgetError) as err:
        build()
    message = str(err.value)
    assert words in message
    assert "\n" not in message
    assert ":" in message  # problem, then the fix
    assert isinstance(err.value, ValueError)


def test_charging_nan_or_negative_is_refused():
    e = EnergyBudget(10)
    e.start_frame()
    with pytest.raises(BudgetError, match="actual_mj"):
        e.charge(1.0, math.nan)
    with pytest.raises(BudgetError, match="actual_ms"):
        e.charge(-1.0, 1.0)
    assert e.spent_mj == 0.0


def test_budget_module_imports_only_the_standard_library():
    names = imported_top_level(Path(__file__).parents[1] / "edge" / "budget.py")
    assert names, "the parser found no imports at all"
    assert names <= set(sys.stdlib_module_names) | {"__future__"}
