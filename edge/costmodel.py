"""Predicted latency and energy of stage k, given the fraction of pixels it will compute.

Before calibration the prediction comes from the manifest's FLOPs terms (`edge.flops`) and a
deliberately slow assumed throughput, so an uncalibrated runner errs towards stopping early.
`adpc bench --calibrate` measures every stage at several masked fractions on the device and
stores a per-stage fit `ms = overhead + ms_per_gflop * gflops(p)`, raised by the largest
residual seen, in the bundle's `cost_tables[device]`.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .budget import StageCost
from .bundle import StageSpec

DEFAULT_GFLOPS_PER_S = 10.0
"""Assumed throughput before calibration (a slow phone core; W18-Small-v2 at 256x512 ~0.46 s)."""
DEFAULT_OVERHEAD_MS = 1.0
DEFAULT_POWER_W = 2.5
"""Active power for energy predictions without a measured profile (edge.power.GENERIC_PHONE)."""


@dataclass(frozen=True)
class StageFit:
    """Latency of one stage as a line in its GFLOPs: overhead + slope * gflops."""

    overhead_ms: float
    ms_per_gflop: float
    samples: int = 0

    def ms(self, gflops: float) -> float:
        return max(0.0, self.overhead_ms + self.ms_per_gflop * gflops)


def device_name() -> str:
    """A key for cost tables: the machine, as Python sees it."""
    return f"{platform.system().lower()}-{platform.machine().lower()}-{platform.node()}"


class CostModel:
    """predict(k, computed_fraction) -> StageCost(latency_ms, energy_mj)."""

    def __init__(
        self,
        stages: Sequence[StageSpec],
        fits: Mapping[int, StageFit],
        power_w: float = DEFAULT_POWER_W,
        source: str = "flops",
    ) -> None:
        missing = [s.index for s in stages if s.index not in fits]
        if missing:
            raise ValueError(f"cost model lacks stages {missing}: re-run `adpc bench --calibrate`")
        self.stages = {s.index: s for s in stages}
        self.fits = dict(fits)
        self.power_w = power_w
        self.source = source

    @classmethod
    def from_flops(
        cls,
        stages: Sequence[StageSpec],
        gflops_per_s: float = DEFAULT_GFLOPS_PER_S,
        power_w: float = DEFAULT_POWER_W,
    ) -> CostModel:
        """The safe default before any measurement on the device."""
        fit = StageFit(DEFAULT_OVERHEAD_MS, 1000.0 / gflops_per_s)
        return cls(stages, {s.index: fit for s in stages}, power_w,
                   f"flops at an assumed {gflops_per_s:g} GFLOP/s (not calibrated)")

    @classmethod
    def from_table(cls, stages: Sequence[StageSpec], table: Mapping) -> CostModel:
        """From a stored cost table (`to_table`), e.g. the bundle's `cost_tables[device]`."""
        try:
            fits = {int(k): StageFit(float(v["overhead_ms"]), float(v["ms_per_gflop"]),
                                     int(v.get("samples", 0)))
                    for k, v in table["stages"].items()}
            power = float(table.get("power_w", DEFAULT_POWER_W))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"cost table is malformed ({exc!r}): re-run "
                             "`adpc bench --calibrate`") from None
        return cls(stages, fits, power, f"calibrated ({table.get('backend', '?')}, "
                   f"{table.get('threads', '?')} threads)")

    def gflops(self, k: int, computed: float) -> float:
        return self.stages[k].flops.gflops(1.0 if k == 1 else computed)

    def predict(self, k: int, computed: float = 1.0) -> StageCost:
        ms = self.fits[k].ms(self.gflops(k, computed))
        return StageCost(ms, self.energy_mj(ms))

    def energy_mj(self, ms: float) -> float:
        return self.power_w * ms  # W x ms = mJ

    def to_table(self, **extra) -> dict:
        return {"stages": {str(k): asdict(f) for k, f in self.fits.items()},
                "power_w": self.power_w, **extra}


def fit_stage(gflops: Sequence[float], ms: Sequence[float]) -> StageFit:
    """A line through (gflops, ms) raised by its largest under-prediction, so the model is an
    upper envelope of what was measured (a budget must not be blown by a typical run)."""
    g, t = np.asarray(gflops, float), np.asarray(ms, float)
    if len(g) == 0:
        raise ValueError("no measurements to fit")
    if np.ptp(g) < 1e-9:  # one workload size (stage 1): a constant
        return StageFit(float(t.max()), 0.0, len(t))
    slope, intercept = np.polyfit(g, t, 1)
    slope = max(float(slope), 0.0)
    intercept = float(np.mean(t - slope * g))
    worst = float(np.max(t - (intercept + slope * g)))
    return StageFit(intercept + max(worst, 0.0), slope, len(t))
