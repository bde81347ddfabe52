"""Budgets the runtime consults before starting each stage: time, energy, battery, cancellation.

The runner asks `allows(cost)` with the cost model's prediction for the next stage, starts the
stage only on True, then `charge`s what the stage really cost. A refusal leaves a one-line
`reason` ("deadline: 12.0 ms left of 50 ms, next stage needs ~18.5 ms") that the runner puts
in its result, so a user always learns why a frame stopped at an early exit.

Per frame the runner calls `start_frame()`, then `allows`/`charge` around each stage, then
`end_frame()`. Budgets are used by one runner thread; only `Cancel` is meant to be touched from
another thread. Standard library only (a phone has no training code and no torch).
"""

from __future__ import annotations

import math
import numbers
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]
"""Monotonic seconds; `time.perf_counter` in production, a fake in tests."""

MJ_PER_WH = 3.6e6
MJ_PER_MWH = 3.6e3
_SLACK = 1e-9
"""Relative tolerance in fit checks, so float rounding never refuses a stage that fits exactly."""


class BudgetError(ValueError):
    """A budget that cannot mean anything; the one-line message names the problem and the fix."""


def _number(value: object, what: str, fix: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise BudgetError(f"{what} must be a number, got {value!r}: {fix}")
    value = float(value)
    if not math.isfinite(value):
        raise BudgetError(f"{what} must be finite, got {value}: {fix}")
    return value


def _positive(value: object, what: str, fix: str) -> float:
    value = _number(value, what, fix)
    if value <= 0:
        raise BudgetError(f"{what} must be > 0, got {value:g}: {fix}")
    return value


def _non_negative(value: object, what: str, fix: str) -> float:
    value = _number(value, what, fix)
    if value < 0:
        raise BudgetError(f"{what} must be >= 0, got {value:g}: {fix}")
    return value


@dataclass(frozen=True)
class StageCost:
    """Predicted (or measured) cost of one stage: wall-clock latency and energy."""

    latency_ms: float
    energy_mj: float = 0.0

    def __post_init__(self) -> None:
        fix = "the cost model must predict a finite, non-negative cost"
        object.__setattr__(self, "latency_ms", _non_negative(self.latency_ms, "latency_ms", fix))
        object.__setattr__(self, "energy_mj", _non_negative(self.energy_mj, "energy_mj", fix))


class Budget(ABC):
    """What every budget offers the runner; subclasses implement `allows` and the hooks they need.

    `reason` is empty after a grant and holds one line after a refusal.
    """

    name = "budget"

    def __init__(self) -> None:
        self.reason = ""

    def start_frame(self) -> None:
        """A new frame begins: per-frame budgets reset here."""
        self.reason = ""

    @abstractmethod
    def allows(self, cost: StageCost) -> bool:
        """True when the next stage, predicted to cost `cost`, fits what is left."""

    def charge(self, actual_ms: float, actual_mj: float = 0.0) -> None:
        """Record what a stage really cost (measured, not predicted)."""
        fix = "charge the measured stage cost (a meter never reports NaN or negative energy)"
        self._record(
            _non_negative(actual_ms, "actual_ms", fix), _non_negative(actual_mj, "actual_mj", fix)
        )

    def end_frame(self) -> None:  # noqa: B027 (an optional hook, a no-op by default)
        """The frame is finished: budgets that span frames settle their accounts here."""

    def _record(self, actual_ms: float, actual_mj: float) -> None:  # noqa: B027 (optional hook)
        """Hook for budgets that track spending; the values are validated."""

    def _grant(self) -> bool:
        self.reason = ""
        return True

    def _refuse(self, reason: str) -> bool:
        self.reason = reason
        return False


# ------------------------------------------------------------------------------ per frame
class Deadline(Budget):
    """Per-frame wall-clock deadline from `start_frame()`: refuses a stage that would overrun.

    The clock is the truth (not the charged latencies), so host work between stages counts too.
    """

    name = "deadline"

    def __init__(self, ms: float, clock: Clock = time.perf_counter) -> None:
        super().__init__()
        self.ms = _positive(ms, "deadline", "give the per-frame deadline in ms, e.g. Deadline(50)")
        self._clock = clock
        self._t0: float | None = None

    def start_frame(self) -> None:
        super().start_frame()
        self._t0 = self._clock()

    def elapsed_ms(self) -> float:
        if self._t0 is None:
            raise RuntimeError("Deadline used before start_frame(): the runner must start frames")
        return (self._clock() - self._t0) * 1000.0

    def remaining_ms(self) -> float:
        return self.ms - self.elapsed_ms()

    def allows(self, cost: StageCost) -> bool:
        left = self.remaining_ms()
        if cost.latency_ms <= left + _SLACK * self.ms:
            return self._grant()
        if left <= 0:
            return self._refuse(
                f"deadline: {self.ms:g} ms passed ({-left:.1f} ms over), no time for another stage"
            )
        return self._refuse(
            f"deadline: {left:.1f} ms left of {self.ms:g} ms, "
            f"next stage needs ~{cost.latency_ms:.1f} ms"
        )


class EnergyBudget(Budget):
    """Per-frame energy allowance in mJ: refuses a stage whose predicted energy does not fit."""

    name = "energy"

    def __init__(self, mj: float) -> None:
        super().__init__()
        self.mj = _positive(mj, "energy budget", "give the per-frame energy in mJ, e.g. 200")
        self.spent_mj = 0.0

    def start_frame(self) -> None:
        super().start_frame()
        self.spent_mj = 0.0

    def _record(self, actual_ms: float, actual_mj: float) -> None:
        self.spent_mj += actual_mj

    def allows(self, cost: StageCost) -> bool:
        left = self.mj - self.spent_mj
        if cost.energy_mj <= left + _SLACK * self.mj:
            return self._grant()
        return self._refuse(
            f"energy: {max(left, 0.0):.1f} mJ left of {self.mj:g} mJ this frame, "
            f"next stage needs ~{cost.energy_mj:.1f} mJ"
        )


# ------------------------------------------------------------------------------ battery
@dataclass(frozen=True)
class BatteryAllowance:
    """A parsed CLI allowance: a share of the battery per hour, or an energy per session."""

    kind: str  # "fraction_per_hour" | "energy_per_session"
    value: float  # fraction in (0, 1] or mWh

    def describe(self) -> str:
        if self.kind == "fraction_per_hour":
            return f"{self.value * 100:g}% of battery per hour"
        return f"{self.value:g} mWh per session"


_ALLOWANCE = re.compile(
    r"^\s*(?P<num>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>%|[a-zA-Z]+)\s*(?P<per>/\s*(?:h|hr|hour))?\s*$"
)


def parse_battery_allowance(text: str) -> BatteryAllowance:
    """Read "1%" (of battery per hour, "/h" optional), "50mWh" or "0.2Wh" (per session)."""
    fix = "use a share of battery per hour like '1%' or an energy per session like '50mWh'"
    match = _ALLOWANCE.match(text) if isinstance(text, str) else None
    if match is None:
        raise BudgetError(f"cannot read battery allowance {text!r}: {fix}")
    number, unit = float(match["num"]), match["unit"]
    if unit == "%":
        if not 0 < number <= 100:
            raise BudgetError(f"battery share {text!r} must lie in (0, 100] %: {fix}")
        return BatteryAllowance("fraction_per_hour", number / 100.0)
    if match["per"]:
        raise BudgetError(f"{text!r}: an energy allowance is per session, not per hour: {fix}")
    scale = {"mwh": 1.0, "wh": 1000.0}.get(unit.lower())
    if scale is None:
        raise BudgetError(f"unknown unit {unit!r} in {text!r}: {fix}")
    if number <= 0:
        raise BudgetError(f"battery allowance {text!r} must be > 0: {fix}")
    return BatteryAllowance("energy_per_session", number * scale)


class BatteryGovernor(Budget):
    """Spreads a battery allowance over a stream of frames (a token bucket with a soft release).

    Every frame earns `share_mj`. What a frame leaves unspent goes to a bank capped at
    `carry_frames` shares (beyond that it is forfeited: a rate is not a savings account), and an
    overspend (measured cost above the prediction) is a debt the bank repays, floored at the
    same cap so one bad meter reading cannot starve the stream. A frame may spend

        allowance = share + bank / carry_frames

    so a full bank gives up to two shares per frame and the allowance shrinks smoothly as the
    bank drains (or falls below one share while in debt): frames then afford fewer stages and
    the runner degrades to earlier exits instead of alternating between full and empty frames.
    Over any run, spending stays within frames x share + the initial bank + one cap.
    With `session_mj` the total is also a hard ceiling: once it is spent every stage is refused.
    """

    name = "battery"

    def __init__(
        self,
        share_mj: float,
        *,
        carry_frames: float = 30.0,
        session_mj: float | None = None,
        initial_bank_mj: float = 0.0,
        label: str = "",
    ) -> None:
        super().__init__()
        self.share_mj = _positive(share_mj, "per-frame share", "give a share in mJ per frame")
        self.carry_frames = _non_negative(
            carry_frames, "carry_frames", "give how many frames' worth may be banked, e.g. 30"
        )
        self.cap_mj = self.carry_frames * self.share_mj
        self.session_mj = (
            None
            if session_mj is None
            else _positive(session_mj, "session allowance", "give the session energy in mJ")
        )
        bank = _non_negative(initial_bank_mj, "initial bank", "give a bank in mJ, 0 for empty")
        if bank > self.cap_mj:
            raise BudgetError(
                f"initial bank {bank:g} mJ exceeds the cap of {self.cap_mj:g} mJ "
                f"({self.carry_frames:g} frames' worth): lower it or raise carry_frames"
            )
        self.bank_mj = bank
        self.label = label or f"{self.share_mj:g} mJ per frame"
        self.spent_mj = 0.0
        self.total_spent_mj = 0.0
        self.frames = 0
        self.allowance_mj = self._allowance()
        self._open = False

    # ---- constructors
    @classmethod
    def per_hour(
        cls, fraction: float, battery_wh: float, fps: float, *, carry_frames: float = 30.0
    ) -> BatteryGovernor:
        """A share of the battery per hour at an expected frame rate (e.g. 0.01 of 15 Wh at 10 fps).

        Pacing is per frame: processing fewer frames than `fps` (dropped frames) spends less.
        """
        fraction = _number(fraction, "battery fraction", "give a fraction in (0, 1], e.g. 0.01")
        if not 0 < fraction <= 1:
            raise BudgetError(
                f"battery fraction must lie in (0, 1], got {fraction:g}: 1% per hour is 0.01"
            )
        wh = _positive(battery_wh, "battery capacity", "give the capacity in Wh, e.g. 15")
        fps = _positive(fps, "fps", "give the expected frames per second, e.g. 10")
        share = fraction * wh * MJ_PER_WH / (3600.0 * fps)
        return cls(
            share,
            carry_frames=carry_frames,
            label=f"{fraction * 100:g}% of {wh:g} Wh per hour at {fps:g} fps",
        )

    @classmethod
    def per_session(cls, mwh: float, frames: int, *, carry_frames: float = 30.0) -> BatteryGovernor:
        """An energy allowance for a session of about `frames` frames; the total is a hard cap."""
        total = _positive(mwh, "session allowance", "give the session energy in mWh, e.g. 50")
        count = _positive(frames, "expected frames", "give how many frames the session runs")
        return cls(
            total * MJ_PER_MWH / count,
            carry_frames=carry_frames,
            session_mj=total * MJ_PER_MWH,
            label=f"{total:g} mWh over {count:g} frames",
        )

    @classmethod
    def from_cli(
        cls,
        text: str,
        *,
        fps: float,
        battery_wh: float | None = None,
        frames: int | None = None,
        carry_frames: float = 30.0,
    ) -> BatteryGovernor:
        """Build from a CLI string: "1%" needs `battery_wh`, "50mWh" needs `frames`."""
        allowance = parse_battery_allowance(text)
        if allowance.kind == "fraction_per_hour":
            if battery_wh is None:
                raise BudgetError(
                    f"{text!r} is a share of the battery: give the battery capacity in Wh "
                    "(no battery meter reported it)"
                )
            return cls.per_hour(allowance.value, battery_wh, fps, carry_frames=carry_frames)
        if frames is None:
            raise BudgetError(
                f"{text!r} is an energy per session: give the expected frame count to spread it"
            )
        return cls.per_session(allowance.value, frames, carry_frames=carry_frames)

    # ---- accounting
    def _allowance(self) -> float:
        release = self.bank_mj / self.carry_frames if self.carry_frames > 0 else 0.0
        return max(0.0, self.share_mj + release)

    @property
    def remaining_mj(self) -> float:
        """What is left of the session allowance (inf without one)."""
        if self.session_mj is None:
            return math.inf
        return self.session_mj - self.total_spent_mj - self.spent_mj

    def start_frame(self) -> None:
        if self._open:
            self.end_frame()
        super().start_frame()
        self.spent_mj = 0.0
        self.allowance_mj = self._allowance()
        self._open = True

    def _record(self, actual_ms: float, actual_mj: float) -> None:
        self.spent_mj += actual_mj

    def allows(self, cost: StageCost) -> bool:
        if self.remaining_mj + _SLACK * (self.session_mj or 0.0) < cost.energy_mj:
            return self._refuse(
                f"battery: {max(self.remaining_mj, 0.0):.1f} mJ left of the session's "
                f"{self.session_mj:g} mJ ({self.label}), next stage needs ~{cost.energy_mj:.1f} mJ"
            )
        left = self.allowance_mj - self.spent_mj
        if cost.energy_mj <= left + _SLACK * self.allowance_mj:
            return self._grant()
        return self._refuse(
            f"battery: {max(left, 0.0):.1f} mJ left of this frame's {self.allowance_mj:.1f} mJ "
            f"(bank {self.bank_mj:.1f} mJ, {self.label}), next stage needs ~{cost.energy_mj:.1f} mJ"
        )

    def end_frame(self) -> None:
        """Bank what the frame left of its share (or book the overspend as debt), within the cap."""
        if not self._open:
            return
        bank = self.bank_mj + self.share_mj - self.spent_mj
        self.bank_mj = min(self.cap_mj, max(-self.cap_mj, bank))
        self.total_spent_mj += self.spent_mj
        self.frames += 1
        self.spent_mj = 0.0
        self._open = False

    def snapshot(self) -> dict[str, float | int | str | None]:
        """Plain numbers for reports and the live progress line."""
        return {
            "label": self.label,
            "share_mj": self.share_mj,
            "allowance_mj": self.allowance_mj,
            "bank_mj": self.bank_mj,
            "cap_mj": self.cap_mj,
            "spent_mj": self.spent_mj,
            "total_spent_mj": self.total_spent_mj,
            "frames": self.frames,
            "session_mj": self.session_mj,
        }


# ------------------------------------------------------------------------------ cancel
class Cancel(Budget):
    """A cancellation token another thread sets (a stop button); refuses every stage once set.

    Sticky across frames until `clear()`: stopping means stopping the stream, not one frame.
    """

    name = "cancel"

    def __init__(self) -> None:
        super().__init__()
        self._event = threading.Event()
        self._why = ""

    def cancel(self, why: str = "cancelled by the user") -> None:
        """Safe from any thread; the runner sees it at its next `allows`."""
        self._why = why
        self._event.set()

    set = cancel

    def clear(self) -> None:
        self._event.clear()
        self._why = ""

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def allows(self, cost: StageCost) -> bool:
        if self._event.is_set():
            return self._refuse(f"cancel: {self._why or 'cancelled'}")
        return self._grant()


# ------------------------------------------------------------------------------ composition
class Composite(Budget):
    """Several budgets at once: a stage runs only if all allow it; the first refusal is named."""

    name = "composite"

    def __init__(self, budgets: list[Budget]) -> None:
        super().__init__()
        flat: list[Budget] = []
        for budget in budgets:
            for part in budget.budgets if isinstance(budget, Composite) else (budget,):
                if not isinstance(part, Budget):
                    raise BudgetError(
                        f"compose() takes budgets, got {part!r}: pass Deadline, EnergyBudget, ..."
                    )
                if all(part is not seen for seen in flat):  # the same object counts once
                    flat.append(part)
        if not flat:
            raise BudgetError("compose() needs at least one budget: pass e.g. Deadline(50)")
        self.budgets: tuple[Budget, ...] = tuple(flat)
        self.refused_by: Budget | None = None

    def start_frame(self) -> None:
        super().start_frame()
        self.refused_by = None
        for budget in self.budgets:
            budget.start_frame()

    def allows(self, cost: StageCost) -> bool:
        for budget in self.budgets:
            if not budget.allows(cost):
                self.refused_by = budget
                return self._refuse(budget.reason)
        self.refused_by = None
        return self._grant()

    def _record(self, actual_ms: float, actual_mj: float) -> None:
        for budget in self.budgets:
            budget.charge(actual_ms, actual_mj)

    def end_frame(self) -> None:
        for budget in self.budgets:
            budget.end_frame()


def compose(*budgets: Budget | None) -> Composite:
    """Combine budgets (None entries are skipped, so optional CLI flags compose directly)."""
    return Composite([b for b in budgets if b is not None])
