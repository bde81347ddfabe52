"""Energy meters on fixture sysfs trees written in the kernel's formats (one value per line)."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import imported_top_level

from edge.power import (
    GENERIC_PHONE,
    BatteryChargeMeter,
    BatteryEnergyMeter,
    CurrentVoltageMeter,
    DeviceProfile,
    MeterError,
    ModelMeter,
    RaplMeter,
    battery_capacity_wh,
    battery_supplies,
    find_meter,
    read_sysfs,
)


class FakeClock:
    """Seconds that move when told to, or by `step` on every call (thread-safe enough here)."""

    def __init__(self, step: float = 0.0) -> None:
        self.t = 50.0
        self.step = step
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.t += self.step
            return self.t

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.t += seconds


def put(path: Path, value: object) -> None:
    """Write one sysfs attribute the way the kernel shows it: the value and a newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{value}\n")


def rapl(root: Path, domain: str, name: str, energy_uj: int, max_uj: int = 262143328850) -> Path:
    d = root / "sys/class/powercap" / domain
    put(d / "name", name)
    put(d / "energy_uj", energy_uj)
    put(d / "max_energy_range_uj", max_uj)
    put(d / "enabled", 1)
    return d


def supply(root: Path, name: str, kind: str, **attrs: object) -> Path:
    d = root / "sys/class/power_supply" / name
    put(d / "type", kind)
    for key, value in attrs.items():
        put(d / key, value)
    return d


def laptop_battery(root: Path, **extra: object) -> Path:
    attrs = dict(
        status="Discharging",
        present=1,
        technology="Li-ion",
        energy_now=40_000_000,
        energy_full=57_000_000,
        power_now=9_500_000,
        voltage_now=12_100_000,
    )
    attrs.update(extra)
    return supply(root, "BAT0", "Battery", **attrs)


def android_battery(root: Path, current_now: int = -500_000, voltage_now: int = 4_000_000) -> Path:
    """Android: the supply is called `battery`, with current and voltage but no energy."""
    return supply(
        root,
        "battery",
        "Battery",
        status="Discharging",
        capacity=77,
        current_now=current_now,
        voltage_now=voltage_now,
    )


def mains(root: Path) -> Path:
    return supply(root, "AC", "Mains", online=1)


# ------------------------------------------------------------------------------ RAPL
def test_rapl_reads_package_energy_in_mj(tmp_path):
    pkg = rapl(tmp_path, "intel-rapl:0", "package-0", 1_000_000)
    meter = RaplMeter.discover(tmp_path)
    assert meter.source == f"rapl:{pkg}"
    put(pkg / "energy_uj", 3_500_000)
    assert meter.read_mj() == pytest.approx(2500.0)  # 2.5e6 uJ


def test_rapl_undoes_a_wrap_around(tmp_path):
    pkg = rapl(tmp_path, "intel-rapl:0", "package-0", 9_000_000, max_uj=10_000_000)
    meter = RaplMeter.discover(tmp_path)
    with meter.measure() as span:
        put(pkg / "energy_uj", 500_000)  # wrapped: 1e6 to the top, then 0.5e6
    assert span.result.energy_mj == pytest.approx(1500.0)
    put(pkg / "energy_uj", 700_000)
    assert meter.read_mj() == pytest.approx(1700.0)


def test_rapl_sums_packages_and_ignores_subdomains_and_psys(tmp_path):
    p0 = rapl(tmp_path, "intel-rapl:0", "package-0", 0)
    core = rapl(tmp_path, "intel-rapl:0:0", "core", 0)
    p1 = rapl(tmp_path, "intel-rapl:1", "package-1", 0)
    psys = rapl(tmp_path, "intel-rapl:2", "psys", 0)
    meter = RaplMeter.discover(tmp_path)
    assert meter.source == f"rapl:{p0}+{p1}"
    put(p0 / "energy_uj", 2_000)
    put(p1 / "energy_uj", 3_000)
    put(core / "energy_uj", 1_000_000)  # part of package-0: counting it would double count
    put(psys / "energy_uj", 9_000_000)
    assert meter.read_mj() == pytest.approx(5.0)
    only_psys = RaplMeter.discover(tmp_path, domains=("psys",))
    assert only_psys.source == f"rapl:{psys}"


def test_rapl_without_package_domains_is_a_meter_error(tmp_path):
    rapl(tmp_path, "intel-rapl:0:0", "core", 0)
    with pytest.raises(MeterError, match="package"):
        RaplMeter.discover(tmp_path)
    with pytest.raises(MeterError, match="no intel-rapl"):
        RaplMeter.discover(tmp_path / "elsewhere")


# ------------------------------------------------------------------------------ batteries
def test_battery_energy_now_in_uwh(tmp_path):
    bat = laptop_battery(tmp_path)
    meter = BatteryEnergyMeter(bat)
    assert meter.source == f"battery:{bat} energy_now"
    with meter.measure() as span:
        put(bat / "energy_now", 39_999_000)  # 1000 uWh = 1 mWh = 3.6 J
    assert span.result.energy_mj == pytest.approx(3600.0)
    assert span.result.source == meter.source
    assert span.result.note == ""


def test_battery_charge_times_voltage(tmp_path):
    bat = supply(
        tmp_path,
        "BAT1",
        "Battery",
        status="Discharging",
        charge_now=3_000_000,
        voltage_now=12_000_000,
    )
    meter = BatteryChargeMeter(bat)
    assert meter.source == f"battery:{bat} charge_now x voltage_now"
    put(bat / "charge_now", 2_999_000)  # 1 mAh at 12 V = 12 mWh = 43.2 J
    assert meter.read_mj() == pytest.approx(43_200.0)
    put(bat / "charge_now", 2_998_000)
    put(bat / "voltage_now", 11_000_000)  # the step at the mean voltage, 11.5 V
    assert meter.read_mj() == pytest.approx(43_200.0 + 1e-3 * 11.5 * 3.6e6)


def test_current_times_voltage_on_android_handles_the_negative_sign(tmp_path):
    bat = android_battery(tmp_path, current_now=-500_000, voltage_now=4_000_000)  # 2 W
    clock = FakeClock()
    meter = CurrentVoltageMeter(bat, clock=clock)
    assert meter.source.startswith(f"battery:{bat} current_now x voltage_now sampling")
    with meter.measure() as span:
        clock.advance(0.5)
    assert span.result.energy_mj == pytest.approx(1000.0)
    assert span.result.elapsed_s == pytest.approx(0.5)
    assert span.result.power_w == pytest.approx(2.0)
    assert span.result.source == meter.source


def test_current_integrates_trapezoids_between_samples(tmp_path):
    bat = android_battery(tmp_path, current_now=250_000, voltage_now=4_000_000)  # 1 W
    clock = FakeClock()
    meter = CurrentVoltageMeter(bat, clock=clock, current_unit="uA")
    start = meter.read_mj()
    clock.advance(1.0)
    put(bat / "current_now", 750_000)  # 3 W
    assert meter.read_mj() - start == pytest.approx(2000.0)  # mean 2 W over 1 s


@pytest.mark.parametrize(("unit", "watts"), [("auto", 2.0), ("mA", 2.0), ("uA", 0.002)])
def test_current_reported_in_ma(tmp_path, unit, watts):
    bat = android_battery(tmp_path, current_now=-500, voltage_now=4_000_000)
    clock = FakeClock()
    meter = CurrentVoltageMeter(bat, clock=clock, current_unit=unit)
    with meter.measure() as span:
        clock.advance(1.0)
    assert span.result.power_w == pytest.approx(watts)
    assert ("mA" in span.result.note) == (unit == "auto")


def test_charging_samples_count_zero_and_say_so(tmp_path):
    bat = android_battery(tmp_path)
    clock = FakeClock()
    meter = CurrentVoltageMeter(bat, clock=clock)
    put(bat / "status", "Charging")
    put(bat / "current_now", 900_000)
    with meter.measure() as span:
        clock.advance(1.0)
    assert span.result.energy_mj == 0.0  # 3.6 W flowing in is not consumption
    assert "charging" in span.result.note.lower()


def test_a_battery_that_gained_energy_reports_zero_with_a_note(tmp_path):
    bat = laptop_battery(tmp_path)
    meter = BatteryEnergyMeter(bat)
    with meter.measure() as span:
        put(bat / "energy_now", 40_010_000)
    assert span.result.energy_mj == 0.0
    assert "charging" in span.result.note


def test_background_sampling_thread(tmp_path):
    bat = android_battery(tmp_path, current_now=-500_000, voltage_now=4_000_000)  # 2 W
    clock = FakeClock(step=0.001)  # every clock read is 1 ms later
    meter = CurrentVoltageMeter(bat, period_s=0.001, clock=clock)
    assert "every 1 ms" in meter.source
    deadline = time.perf_counter() + 3.0
    while meter.samples < 6 and time.perf_counter() < deadline:
        time.sleep(0.001)
    meter.close()
    assert meter.samples >= 6
    assert meter._thread is not None and not meter._thread.is_alive()
    first = 50.001  # the clock value of the sample taken in the constructor
    energy = meter.read_mj()
    assert energy == pytest.approx(2.0 * (meter._t - first) * 1000.0)


def test_background_sampling_error_surfaces_at_the_next_read(tmp_path):
    bat = android_battery(tmp_path)
    meter = CurrentVoltageMeter(bat, period_s=0.001, clock=FakeClock(step=0.001))
    (bat / "voltage_now").unlink()
    deadline = time.perf_counter() + 3.0
    while not meter._error and time.perf_counter() < deadline:
        time.sleep(0.001)
    meter.close()
    with pytest.raises(MeterError, match="voltage_now"):
        meter.read_mj()


# ------------------------------------------------------------------------------ model
def test_model_meter_is_profile_watts_times_time():
    clock = FakeClock()
    meter = ModelMeter(DeviceProfile("test-phone", active_w=2.5, idle_w=0.5), clock=clock)
    assert meter.source.startswith("model:") and "2.5 W" in meter.source
    with meter.measure() as span:
        clock.advance(0.2)
    assert span.result.energy_mj == pytest.approx(500.0)
    assert span.result.source == meter.source
    assert meter.estimate_mj(busy_s=1.0, idle_s=2.0) == pytest.approx(3500.0)


def test_device_profile_validation():
    profile = DeviceProfile.from_dict({"name": "p", "active_w": 3.0, "idle_w": 0.4})
    assert profile == DeviceProfile("p", 3.0, 0.4)
    for bad in ({"name": "p"}, {"name": "p", "active_w": -1}, {"name": "p", "active_w": 0}):
        with pytest.raises(ValueError, match="profile"):
            DeviceProfile.from_dict(bad)


# ------------------------------------------------------------------------------ choice
def full_tree(root: Path) -> None:
    rapl(root, "intel-rapl:0", "package-0", 5_000)
    laptop_battery(root, charge_now=3_000_000, current_now=800_000)
    mains(root)


def test_find_meter_prefers_rapl(tmp_path):
    full_tree(tmp_path)
    meter = find_meter(tmp_path)
    assert isinstance(meter, RaplMeter)
    assert meter.source.startswith("rapl:")


def test_find_meter_fallback_order(tmp_path):
    full_tree(tmp_path)
    bat = tmp_path / "sys/class/power_supply/BAT0"
    chain = [
        (tmp_path / "sys/class/powercap/intel-rapl:0/energy_uj", BatteryEnergyMeter, "energy_now"),
        (bat / "energy_now", BatteryChargeMeter, "charge_now"),
        (bat / "charge_now", CurrentVoltageMeter, "current_now"),
        (bat / "current_now", ModelMeter, "model"),
    ]
    for removed, kind, word in chain:
        removed.unlink()
        meter = find_meter(tmp_path, clock=FakeClock())
        assert isinstance(meter, kind), f"after removing {removed.name}"
        assert word in meter.source
        assert any(removed.name in why for why in meter.skipped), meter.skipped
        meter.close()


def test_permission_denied_falls_through_with_the_reason(tmp_path):
    full_tree(tmp_path)
    denied = tmp_path / "sys/class/powercap/intel-rapl:0/energy_uj"

    def reader(path: Path) -> str:
        if path == denied:
            raise PermissionError(13, "Permission denied", str(path))
        return read_sysfs(path)

    meter = find_meter(tmp_path, reader=reader)
    assert isinstance(meter, BatteryEnergyMeter)
    assert any("Permission denied" in why and str(denied) in why for why in meter.skipped)


def test_a_directory_in_place_of_a_file_falls_through(tmp_path):
    full_tree(tmp_path)
    energy = tmp_path / "sys/class/powercap/intel-rapl:0/energy_uj"
    energy.unlink()
    energy.mkdir()  # unreadable even for root
    meter = find_meter(tmp_path)
    assert isinstance(meter, BatteryEnergyMeter)
    assert any(str(energy) in why and "rapl" in why for why in meter.skipped)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads mode-000 files")
def test_chmod_000_energy_uj_falls_through(tmp_path):
    full_tree(tmp_path)
    energy = tmp_path / "sys/class/powercap/intel-rapl:0/energy_uj"
    energy.chmod(0)
    try:
        meter = find_meter(tmp_path)
    finally:
        energy.chmod(0o644)
    assert isinstance(meter, BatteryEnergyMeter)
    assert any("Permission denied" in why for why in meter.skipped)


def test_garbage_in_a_file_falls_through(tmp_path):
    full_tree(tmp_path)
    put(tmp_path / "sys/class/power_supply/BAT0/energy_now", "n/a")
    (tmp_path / "sys/class/powercap/intel-rapl:0/name").unlink()
    meter = find_meter(tmp_path)
    assert isinstance(meter, BatteryChargeMeter)
    assert any("expected an integer" in why for why in meter.skipped)


def test_mains_supply_is_ignored_and_nothing_readable_gives_the_model(tmp_path):
    mains(tmp_path)
    supply(tmp_path, "ucsi-source-psy-USBC000:001", "USB", online=0, current_now=3_000_000)
    meter = find_meter(tmp_path, profile=GENERIC_PHONE)
    assert isinstance(meter, ModelMeter)
    assert meter.source.startswith("model:") and GENERIC_PHONE.name in meter.source
    assert not any("/AC" in why or "USBC" in why for why in meter.skipped)
    assert any("rapl" in why for why in meter.skipped)
    assert any("Battery" in why for why in meter.skipped)


def test_android_layout_is_found(tmp_path):
    mains(tmp_path)
    supply(tmp_path, "usb", "USB", online=1)
    bat = android_battery(tmp_path)
    meter = find_meter(tmp_path, clock=FakeClock())
    assert isinstance(meter, CurrentVoltageMeter)
    assert meter.source.startswith(f"battery:{bat}")


def test_charging_or_peripheral_batteries_are_skipped_with_reasons(tmp_path):
    laptop_battery(tmp_path, status="Charging")
    supply(
        tmp_path,
        "hid-mouse-battery",
        "Battery",
        scope="Device",
        status="Discharging",
        energy_now=100,
    )
    found, skipped = battery_supplies(tmp_path)
    assert found == []
    assert any("Charging" in why for why in skipped)
    assert any("scope Device" in why for why in skipped)
    found, _ = battery_supplies(tmp_path, require_discharging=False)
    assert [d.name for d in found] == ["BAT0"]
    assert isinstance(find_meter(tmp_path), ModelMeter)


def test_sampling_meter_from_find_meter_owns_a_thread_it_stops(tmp_path):
    android_battery(tmp_path)
    with find_meter(tmp_path, sample_period_s=0.001, clock=FakeClock(step=0.001)) as meter:
        assert isinstance(meter, CurrentVoltageMeter)
        thread = meter._thread
        assert thread is not None and thread.is_alive()
    assert not thread.is_alive()


def test_every_measurement_names_its_meter(tmp_path):
    full_tree(tmp_path)
    bat = tmp_path / "sys/class/power_supply/BAT0"
    meters = [
        RaplMeter.discover(tmp_path),
        BatteryEnergyMeter(bat),
        BatteryChargeMeter(bat),
        CurrentVoltageMeter(bat, clock=FakeClock()),
        ModelMeter(clock=FakeClock()),
    ]
    prefixes = ["rapl:", "battery:", "battery:", "battery:", "model:"]
    sources = set()
    for meter, prefix in zip(meters, prefixes, strict=True):
        with meter.measure() as span:
            pass
        assert span.result.source == meter.source and span.result.source.startswith(prefix)
        sources.add(span.result.source)
    assert len(sources) == len(meters)


def test_battery_capacity(tmp_path):
    assert battery_capacity_wh(tmp_path) is None
    laptop_battery(tmp_path)
    assert battery_capacity_wh(tmp_path) == pytest.approx(57.0)
    (tmp_path / "sys/class/power_supply/BAT0/energy_full").unlink()
    put(tmp_path / "sys/class/power_supply/BAT0/charge_full", 4_000_000)  # 4 Ah
    put(tmp_path / "sys/class/power_supply/BAT0/voltage_min_design", 3_850)  # mV on some phones
    assert battery_capacity_wh(tmp_path) == pytest.approx(15.4)


def test_power_module_imports_only_the_standard_library():
    names = imported_top_level(Path(__file__).parents[1] / "edge" / "power.py")
    assert names, "the parser found no imports at all"
    assert names <= set(sys.stdlib_module_names) | {"__future__"}
