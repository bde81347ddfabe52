"""Energy meters: Linux RAPL, battery sysfs (laptops and Android) or a power model.

Every `Measurement` carries the `source` that produced it, so a report never passes a model
guess off as a RAPL reading. `find_meter(root)` picks the best readable meter
(RAPL > battery energy_now > charge_now x voltage_now > current_now x voltage_now sampling >
model); meters that cannot be read (RAPL's energy_uj is root-only on most kernels) are skipped
with the reason kept in `meter.skipped`, never a traceback. The sysfs root and the file reader
are parameters so tests run the readers on fixture trees. Standard library only.
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

Clock = Callable[[], float]
"""Monotonic seconds; `time.perf_counter` in production, a fake in tests."""
Reader = Callable[[Path], str]
"""Reads one sysfs attribute; injectable so tests can simulate unreadable files."""

UWH_TO_MJ = 3.6  # 1 uWh = 3.6e-3 J
UAH_UV_TO_MJ = 3.6e-6  # 1 uAh x 1 uV = 1e-12 Wh
UA_UV_TO_W = 1e-12
NOT_DISCHARGING = ("Charging", "Full", "Not charging")
"""Battery states in which the counters do not measure what the device consumes."""
MA_BELOW = 20_000
"""current_now under this (20 mA as uA, implausible under load) is read as mA in "auto" mode."""
MV_BELOW = 100_000
"""voltage_now under this (0.1 V as uV, impossible for a live cell) is read as mV."""


class MeterError(RuntimeError):
    """A meter that cannot be read: one line naming the file and why."""


def read_sysfs(path: Path) -> str:
    """The default reader: sysfs attributes are short ASCII text ending in a newline."""
    return path.read_text(encoding="ascii", errors="replace")


def _text(reader: Reader, path: Path) -> str:
    try:
        return reader(path).strip()
    except OSError as exc:
        raise MeterError(f"{path}: {exc.strerror or exc}") from None


def _optional_text(reader: Reader, path: Path) -> str:
    """An attribute some drivers lack (status, scope): empty when missing or unreadable."""
    try:
        return reader(path).strip()
    except OSError:
        return ""


def _int(reader: Reader, path: Path) -> int:
    text = _text(reader, path)
    try:
        return int(text)
    except ValueError:
        raise MeterError(f"{path}: expected an integer, got {text[:40]!r}") from None


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


# ------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class Measurement:
    """Energy over one measured span, and which meter produced it."""

    energy_mj: float
    elapsed_s: float
    source: str
    note: str = ""

    @property
    def power_w(self) -> float:
        return self.energy_mj / 1000.0 / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True)
class DeviceProfile:
    """What the model meter assumes when nothing can be measured: watts busy and idle."""

    name: str
    active_w: float
    idle_w: float = 0.0

    def __post_init__(self) -> None:
        for what, value in (("active_w", self.active_w), ("idle_w", self.idle_w)):
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"device profile {self.name!r}: {what} must be finite watts >= 0, got {value!r}"
                )
        if self.active_w <= 0:
            raise ValueError(f"device profile {self.name!r}: active_w must be > 0 watts")

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> DeviceProfile:
        """From a small dict such as {"name": "pixel-7", "active_w": 3.1, "idle_w": 0.4}."""
        missing = [k for k in ("name", "active_w") if k not in data]
        if missing:
            raise ValueError(
                f"device profile lacks {', '.join(missing)}: give name, active_w and idle_w"
            )
        return cls(str(data["name"]), data["active_w"], data.get("idle_w", 0.0))  # type: ignore[arg-type]


GENERIC_PHONE = DeviceProfile("generic-phone", active_w=2.5, idle_w=0.3)
"""A mid-range phone's big cores under load; replace with a measured profile when you have one."""


# ------------------------------------------------------------------------------ interface
class Span:
    """One start/stop measurement on a meter; `stop()` returns (and keeps) the Measurement."""

    def __init__(self, meter: EnergyMeter) -> None:
        self._meter = meter
        self._e0 = meter.read_mj()
        self._t0 = meter.clock()
        self.result: Measurement | None = None

    def stop(self) -> Measurement:
        if self.result is None:
            energy = self._meter.read_mj() - self._e0
            elapsed = self._meter.clock() - self._t0
            note = self._meter.note()
            if energy < 0:  # a battery that charged during the span
                note = _join(note, f"counter rose by {-energy:.1f} mJ (charging?): reported 0")
                energy = 0.0
            self.result = Measurement(energy, elapsed, self._meter.source, note)
        return self.result


class EnergyMeter(ABC):
    """A cumulative energy counter (`read_mj`) with start/stop measurements on top.

    `source` names the meter in every Measurement; `skipped` lists why better meters were
    not used (set by `find_meter`).
    """

    source = ""

    def __init__(self, clock: Clock = time.perf_counter) -> None:
        self.clock = clock
        self.skipped: tuple[str, ...] = ()
        self._lock = threading.Lock()

    @abstractmethod
    def read_mj(self) -> float:
        """Energy consumed since the meter was opened, in mJ (may fall while a battery charges)."""

    def note(self) -> str:
        """Caveats that apply to the latest reading (unit guesses, charging)."""
        return ""

    def start(self) -> Span:
        return Span(self)

    @contextmanager
    def measure(self) -> Iterator[Span]:
        """`with meter.measure() as span: work()` then `span.result.energy_mj`."""
        span = self.start()
        yield span
        span.stop()

    def close(self) -> None:  # noqa: B027 (an optional hook, a no-op by default)
        """Release resources (the sampling thread); reading after close is not supported."""

    def __enter__(self) -> EnergyMeter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------ RAPL
@dataclass
class _RaplDomain:
    path: Path
    name: str
    max_range_uj: int
    last_uj: int
    total_uj: int = 0


class RaplMeter(EnergyMeter):
    """Intel/AMD RAPL counters under /sys/class/powercap, summed over the chosen domains.

    energy_uj wraps at max_energy_range_uj; one wrap between two reads is undone, so read at
    least once per wrap period (tens of minutes at full load on a typical package).
    """

    def __init__(
        self,
        domain_dirs: Sequence[Path],
        *,
        reader: Reader = read_sysfs,
        clock: Clock = time.perf_counter,
    ) -> None:
        super().__init__(clock)
        if not domain_dirs:
            raise MeterError("no RAPL domain to read")
        self._reader = reader
        self._domains: list[_RaplDomain] = []
        for d in map(Path, domain_dirs):
            max_range = _int(reader, d / "max_energy_range_uj")
            if max_range <= 0:
                raise MeterError(f"{d / 'max_energy_range_uj'}: must be > 0, got {max_range}")
            name = _text(reader, d / "name")
            self._domains.append(_RaplDomain(d, name, max_range, _int(reader, d / "energy_uj")))
        self.source = "rapl:" + "+".join(str(d.path) for d in self._domains)

    @classmethod
    def discover(
        cls,
        root: str | Path = "/",
        *,
        domains: Sequence[str] = ("package",),
        reader: Reader = read_sysfs,
        clock: Clock = time.perf_counter,
    ) -> RaplMeter:
        """The domains whose `name` starts with one of `domains` (packages by default: cores,
        uncore and dram are parts of a package and would count twice; psys is the platform)."""
        base = Path(root) / "sys" / "class" / "powercap"
        try:
            candidates = sorted(base.glob("intel-rapl:*"))
        except OSError as exc:
            raise MeterError(f"{base}: {exc.strerror or exc}") from None
        if not candidates:
            raise MeterError(f"{base}: no intel-rapl domains (not Linux, or no RAPL driver)")
        chosen: list[Path] = []
        problems: list[str] = []
        for d in candidates:
            try:
                name = _text(reader, d / "name")
            except MeterError as exc:
                problems.append(str(exc))
                continue
            if name.startswith(tuple(domains)):
                chosen.append(d)
        if not chosen:
            detail = f" ({problems[0]})" if problems else ""
            raise MeterError(f"{base}: no RAPL domain named {'|'.join(domains)}*{detail}")
        return cls(chosen, reader=reader, clock=clock)

    def read_mj(self) -> float:
        with self._lock:
            for d in self._domains:
                raw = _int(self._reader, d.path / "energy_uj")
                delta = raw - d.last_uj
                if delta < 0:
                    delta += d.max_range_uj
                d.total_uj += max(delta, 0)
                d.last_uj = raw
            return sum(d.total_uj for d in self._domains) / 1000.0


# ------------------------------------------------------------------------------ batteries
def battery_supplies(
    root: str | Path = "/", *, reader: Reader = read_sysfs, require_discharging: bool = True
) -> tuple[list[Path], list[str]]:
    """This device's batteries under power_supply, and why others were passed over.

    Mains/USB/Wireless supplies are chargers, not batteries, and are ignored silently; a
    peripheral's battery (scope Device, e.g. a mouse) and a battery that is charging or full
    (its counters do not measure consumption) are skipped with a reason.
    """
    base = Path(root) / "sys" / "class" / "power_supply"
    try:
        entries = sorted(base.iterdir())
    except OSError as exc:
        return [], [f"battery: {base}: {exc.strerror or exc}"]
    found: list[Path] = []
    skipped: list[str] = []
    for d in entries:
        try:
            kind = _text(reader, d / "type")
        except MeterError as exc:
            skipped.append(f"battery: {exc}")
            continue
        if kind != "Battery":
            continue
        if _optional_text(reader, d / "scope") == "Device":
            skipped.append(f"battery: {d}: a peripheral's battery (scope Device), not this one's")
            continue
        status = _optional_text(reader, d / "status")
        if require_discharging and status in NOT_DISCHARGING:
            skipped.append(
                f"battery: {d}: status {status}: on mains power its counters do not measure "
                "consumption (unplug the charger)"
            )
            continue
        found.append(d)
    if not found and not skipped:
        skipped.append(f"battery: no supply of type Battery in {base}")
    return found, skipped


def _voltage_uv(raw: int) -> tuple[float, str]:
    if 0 < raw < MV_BELOW:
        return raw * 1000.0, "voltage_now read as mV"
    return float(raw), ""


class _BatteryMeter(EnergyMeter):
    def __init__(self, supply: Path, reader: Reader, clock: Clock) -> None:
        super().__init__(clock)
        self.path = Path(supply)
        self._reader = reader
        self._unit_note = ""

    def note(self) -> str:
        status = _optional_text(self._reader, self.path / "status")
        charging = (
            f"battery status {status}: counters do not measure consumption"
            if status in NOT_DISCHARGING
            else ""
        )
        return _join(self._unit_note, charging)


class BatteryEnergyMeter(_BatteryMeter):
    """energy_now (uWh), the fuel gauge's remaining energy.

    Coarse: gauges update every few seconds in mWh-sized steps, so measure many frames.
    """

    def __init__(
        self, supply: Path, *, reader: Reader = read_sysfs, clock: Clock = time.perf_counter
    ) -> None:
        super().__init__(supply, reader, clock)
        self._file = self.path / "energy_now"
        self._first = _int(reader, self._file)
        self.source = f"battery:{self.path} energy_now"

    def read_mj(self) -> float:
        return (self._first - _int(self._reader, self._file)) * UWH_TO_MJ


class BatteryChargeMeter(_BatteryMeter):
    """charge_now (uAh) x voltage_now (uV): charge drawn times the mean voltage over each step."""

    def __init__(
        self, supply: Path, *, reader: Reader = read_sysfs, clock: Clock = time.perf_counter
    ) -> None:
        super().__init__(supply, reader, clock)
        self._q, self._v = self._read()
        self._total_mj = 0.0
        self.source = f"battery:{self.path} charge_now x voltage_now"

    def _read(self) -> tuple[int, float]:
        charge = _int(self._reader, self.path / "charge_now")
        voltage, self._unit_note = _voltage_uv(_int(self._reader, self.path / "voltage_now"))
        return charge, voltage

    def read_mj(self) -> float:
        with self._lock:
            q, v = self._read()
            self._total_mj += (self._q - q) * (self._v + v) / 2.0 * UAH_UV_TO_MJ
            self._q, self._v = q, v
            return self._total_mj


class CurrentVoltageMeter(_BatteryMeter):
    """Integrates |current_now| x voltage_now over time (trapezoids between samples).

    Samples at every read (the start and stop of a measurement) and, with `period_s`, on a
    background thread too, which catches load changes inside a span. Drivers disagree on the
    sign (Android reports discharge as negative) so the magnitude is used, and a sample taken
    while the status says Charging/Full counts zero. Some drivers report mA instead of the
    documented uA: `current_unit="auto"` reads values under 20000 as mA (and says so).
    """

    def __init__(
        self,
        supply: Path,
        *,
        period_s: float | None = None,
        current_unit: str = "auto",
        reader: Reader = read_sysfs,
        clock: Clock = time.perf_counter,
    ) -> None:
        super().__init__(supply, reader, clock)
        if current_unit not in ("auto", "uA", "mA"):
            raise ValueError(f"current_unit must be auto, uA or mA, got {current_unit!r}")
        if period_s is not None and not (math.isfinite(period_s) and period_s > 0):
            raise ValueError(f"period_s must be > 0 seconds or None, got {period_s!r}")
        self._ua_per_unit: float | None = {"uA": 1.0, "mA": 1000.0}.get(current_unit)
        self._guessed_ma = False
        self._charging_seen = False
        self._t: float | None = None
        self._p = 0.0
        self._energy_j = 0.0
        self.samples = 0
        self._error: str = ""
        self.sample()  # raises MeterError when the files cannot be read
        how = f"every {period_s * 1000:g} ms" if period_s else "at each read"
        self.source = f"battery:{self.path} current_now x voltage_now sampling {how}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if period_s:
            self._thread = threading.Thread(
                target=self._run, args=(period_s,), name="adpc-battery-sampler", daemon=True
            )
            self._thread.start()

    def _power_w(self) -> float:
        current = abs(_int(self._reader, self.path / "current_now"))
        voltage, self._unit_note = _voltage_uv(_int(self._reader, self.path / "voltage_now"))
        if _optional_text(self._reader, self.path / "status") in NOT_DISCHARGING:
            self._charging_seen = True  # current flows into the battery: not consumption
            return 0.0
        if self._ua_per_unit is None and current:
            self._guessed_ma = current < MA_BELOW
            self._ua_per_unit = 1000.0 if self._guessed_ma else 1.0
        return current * (self._ua_per_unit or 1.0) * voltage * UA_UV_TO_W

    def sample(self) -> None:
        """Take one sample and add the trapezoid since the previous one."""
        with self._lock:
            power = self._power_w()
            now = self.clock()
            if self._t is not None:
                self._energy_j += (self._p + power) / 2.0 * (now - self._t)
            self._t, self._p = now, power
            self.samples += 1

    def _run(self, period_s: float) -> None:
        while not self._stop.wait(period_s):
            try:
                self.sample()
            except MeterError as exc:  # reported by the next read, never a thread traceback
                self._error = str(exc)
                return

    def read_mj(self) -> float:
        if self._error:
            raise MeterError(f"background sampling stopped: {self._error}")
        self.sample()
        return self._energy_j * 1000.0

    def note(self) -> str:
        return _join(
            "current_now read as mA (values under 20000 look like mA)" if self._guessed_ma else "",
            "samples while charging counted as zero" if self._charging_seen else "",
            super().note(),
        )

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)


# ------------------------------------------------------------------------------ model
class ModelMeter(EnergyMeter):
    """No readable meter: active watts x elapsed time from a device profile (an estimate)."""

    def __init__(self, profile: DeviceProfile = GENERIC_PHONE, *, clock: Clock = time.perf_counter):
        super().__init__(clock)
        self.profile = profile
        self._t0 = clock()
        self.source = f"model: {profile.active_w:g} W x time (profile {profile.name})"

    def read_mj(self) -> float:
        return self.profile.active_w * (self.clock() - self._t0) * 1000.0

    def estimate_mj(self, busy_s: float, idle_s: float = 0.0) -> float:
        """Energy of `busy_s` seconds computing and `idle_s` waiting (e.g. for the camera)."""
        return (self.profile.active_w * busy_s + self.profile.idle_w * idle_s) * 1000.0


# ------------------------------------------------------------------------------ choice
def find_meter(
    root: str | Path = "/",
    *,
    profile: DeviceProfile = GENERIC_PHONE,
    rapl_domains: Sequence[str] = ("package",),
    sample_period_s: float | None = None,
    current_unit: str = "auto",
    require_discharging: bool = True,
    reader: Reader = read_sysfs,
    clock: Clock = time.perf_counter,
) -> EnergyMeter:
    """The best readable meter; `meter.skipped` says why each better one was passed over.

    Close the result when done (a sampling meter may own a thread).
    """
    skipped: list[str] = []
    try:
        rapl = RaplMeter.discover(root, domains=rapl_domains, reader=reader, clock=clock)
    except MeterError as exc:
        skipped.append(f"rapl: {exc}")
    else:
        return rapl
    supplies, notes = battery_supplies(root, reader=reader, require_discharging=require_discharging)
    skipped.extend(notes)
    attempts: list[tuple[str, Callable[[Path], EnergyMeter]]] = [
        ("energy_now", lambda s: BatteryEnergyMeter(s, reader=reader, clock=clock)),
        ("charge_now x voltage_now", lambda s: BatteryChargeMeter(s, reader=reader, clock=clock)),
        (
            "current_now x voltage_now",
            lambda s: CurrentVoltageMeter(
                s, period_s=sample_period_s, current_unit=current_unit, reader=reader, clock=clock
            ),
        ),
    ]
    for label, make in attempts:
        for supply in supplies:
            try:
                meter = make(supply)
            except MeterError as exc:
                skipped.append(f"battery {label}: {exc}")
            else:
                meter.skipped = tuple(skipped)
                return meter
    model = ModelMeter(profile, clock=clock)
    model.skipped = tuple(skipped)
    return model


def battery_capacity_wh(root: str | Path = "/", *, reader: Reader = read_sysfs) -> float | None:
    """The battery's full capacity in Wh (for "1% per hour"), or None when no battery says."""
    supplies, _ = battery_supplies(root, reader=reader, require_discharging=False)
    for d in supplies:
        try:
            return _int(reader, d / "energy_full") * 1e-6
        except MeterError:
            pass
        try:
            voltage, _ = _voltage_uv(_int(reader, d / "voltage_min_design"))
            return _int(reader, d / "charge_full") * voltage * 1e-12
        except MeterError:
            pass
    return None
