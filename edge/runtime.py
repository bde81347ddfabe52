"""AnytimeRunner: drive a bundle's stages on a frame until the budget says stop.

The loop is the numpy twin of `model_zoo.adpc.AnytimeChain.iter_exits`: stage 1 on the image,
then per stage the mask from the carried logits (edge.host), the stage on the previous branch
features and that mask, and carry-over. Before each stage the cost model predicts its latency
and energy for the fraction of pixels still to compute and the budget decides; a refused stage
is never started, so the latest finished exit is always the answer. Every backend, parity
check and benchmark goes through this one loop.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from .backends.base import Backend
from .budget import Budget, StageCost
from .costmodel import CostModel
from .host import carry_over, compute_mask, confidence
from .power import EnergyMeter

ADAPT_WEIGHT = 0.5
"""Weight of the latest stage in the slowdown estimate: a 3x slowdown is 2x after one stage."""


@dataclass
class ExitResult:
    """One finished exit of one frame."""

    exit: int
    stage: int
    logits: np.ndarray  # carried-over logits, N x K x H/4 x W/4
    mask: np.ndarray | None  # the mask this stage ran under (1 = computed); None for stage 1
    masked_fraction: float  # share of pixels this stage skipped (0 for stage 1)
    stage_ms: float
    elapsed_ms: float  # since the frame started, host work included
    energy_mj: float  # this stage: measured when a meter is given, else the cost model's
    predicted: StageCost | None = None
    host_ms: float = 0.0  # runner work for this exit outside the stage call: mask, masked
    # fraction, cost prediction, budget check, energy reading, carry-over

    @property
    def labels(self) -> np.ndarray:
        """Class per pixel at 1/4 resolution (N x H/4 x W/4)."""
        return self.logits.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        return confidence(self.logits)


@dataclass
class FrameResult:
    """Every exit a frame reached, and why it stopped where it did."""

    exits: list[ExitResult] = field(default_factory=list)
    stop_reason: str = ""  # "" when the last exit was reached

    @property
    def final(self) -> ExitResult:
        return self.exits[-1]

    @property
    def energy_mj(self) -> float:
        return sum(e.energy_mj for e in self.exits)


class AnytimeRunner:
    """Runs a backend's stages under a budget; `run` yields exits, `run_frame` collects them.

    threshold: "manifest" (the bundle's), None (CA off), or a float. cost_model: defaults to
    the bundle's calibrated table for this device when present, else FLOPs (conservative).
    meter: an energy meter measured around every stage (edge.power.find_meter); without one
    the energy is the cost model's estimate. min_exits: exits that run whatever the budget
    says (default 1: an anytime model must always have an answer; 0 makes the budget strict).
    adapt: scale latency predictions by how much slower than predicted recent stages ran
    (`slowdown`, never below 1), so a device that got slower after calibration (thermal
    throttling, a co-tenant on a shared core) stops earlier instead of overrunning; off by
    default so decisions depend only on the cost model (tests, golden files).
    """

    def __init__(
        self,
        backend: Backend,
        threshold: float | None | str = "manifest",
        cost_model: CostModel | None = None,
        meter: EnergyMeter | None = None,
        min_exits: int = 1,
        adapt: bool = False,
    ) -> None:
        if min_exits < 0:
            raise ValueError(f"min_exits must be >= 0, got {min_exits}")
        self.min_exits = min_exits
        self.backend = backend
        manifest = backend.manifest
        self.threshold = manifest.threshold if threshold == "manifest" else threshold
        self.cost_model = cost_model or default_cost_model(backend)
        self.meter = meter
        self.stop_reason = ""
        self.adapt = adapt
        self.ratio: float | None = None  # EWMA of measured / predicted stage latency

    @property
    def slowdown(self) -> float:
        """The factor applied to latency predictions (1.0 unless adapt and stages ran slow)."""
        return max(1.0, self.ratio) if self.adapt and self.ratio is not None else 1.0

    def run(self, image: np.ndarray, budget: Budget | None = None) -> Iterator[ExitResult]:
        """Yield each exit as soon as it is ready; stop when the budget refuses the next stage
        or every pixel is confident. `stop_reason` says why afterwards."""
        start = time.perf_counter()
        self.stop_reason = ""
        if budget is not None:
            budget.start_frame()
        state: list[np.ndarray] = [np.ascontiguousarray(image, dtype=np.float32)]
        carried: np.ndarray | None = None
        exit_index = 0
        try:
            host_ms = 0.0  # accumulates over stages without an exit
            for spec in self.backend.manifest.stages:
                t_host = time.perf_counter()
                k = spec.index
                mask, inputs, computed = None, state, 1.0
                if k > 1:
                    assert carried is not None
                    mask = (np.ones_like(carried[:, :1]) if self.threshold is None
                            else compute_mask(carried, self.threshold))
                    computed = float(mask.mean())
                    if computed == 0.0:
                        self.stop_reason = f"every pixel is confident after exit {exit_index}"
                        return
                    inputs = [*state, mask]
                predicted = self.cost_model.predict(k, computed)
                model_ms = predicted.latency_ms
                if self.slowdown > 1.0:
                    predicted = StageCost(model_ms * self.slowdown, predicted.energy_mj)
                if budget is not None and not budget.allows(predicted):
                    if exit_index >= self.min_exits:
                        self.stop_reason = budget.reason
                        return
                    self.stop_reason = f"{budget.reason} (ran anyway: min_exits={self.min_exits})"
                span = self.meter.start() if self.meter is not None else None
                t0 = time.perf_counter()
                outputs = self.backend.run_stage(k, inputs)
                stage_ms = (time.perf_counter() - t0) * 1e3
                if model_ms > 0:
                    ratio = stage_ms / model_ms
                    self.ratio = ratio if self.ratio is None else (
                        (1 - ADAPT_WEIGHT) * self.ratio + ADAPT_WEIGHT * ratio)
                energy = (span.stop().energy_mj if span is not None
                          else self.cost_model.energy_mj(stage_ms))
                if budget is not None:
                    budget.charge(stage_ms, energy)
                if spec.exit is None:
                    state = outputs
                    host_ms += (time.perf_counter() - t_host) * 1e3 - stage_ms
                    continue
                raw, state = outputs[-1], outputs[:-1]
                carried = raw if carried is None else carry_over(carried, raw, mask)
                exit_index += 1
                now = time.perf_counter()
                host_ms += (now - t_host) * 1e3 - stage_ms
                yield ExitResult(exit_index, k, carried, mask, 1.0 - computed, stage_ms,
                                 (now - start) * 1e3, energy, predicted, max(host_ms, 0.0))
                host_ms = 0.0
        finally:
            if budget is not None:
                budget.end_frame()

    def run_frame(self, image: np.ndarray, budget: Budget | None = None) -> FrameResult:
        exits = list(self.run(image, budget))
        return FrameResult(exits, self.stop_reason)


def default_cost_model(backend: Backend) -> CostModel:
    """The bundle's calibrated table for this device and backend if any, else FLOPs."""
    from .costmodel import device_name

    stages = backend.manifest.stages
    table = backend.manifest.cost_tables.get(f"{device_name()}/{backend.name}/{backend.precision}")
    return CostModel.from_table(stages, table) if table else CostModel.from_flops(stages)


def iter_exits(
    backend: Backend, image: np.ndarray, threshold: float | None
) -> Iterator[ExitResult]:
    """Every exit of one frame with no budget (parity checks, evaluation)."""
    return AnytimeRunner(backend, threshold).run(image)
