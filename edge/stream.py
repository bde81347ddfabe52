"""`adpc run`: anytime segmentation on a stream of frames under a budget, with overlays.

Per frame: fit and normalise (edge.preprocess), `AnytimeRunner.run_frame` under the budget,
draw the latest exit's labels over the frame with a HUD (exit reached, ms, mJ, deadline,
skipped pixels), and record what happened. The budget is built once and spans the stream, so a
BatteryGovernor carries unused energy from frame to frame.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from .budget import Budget
from .preprocess import to_input
from .runtime import AnytimeRunner, FrameResult
from .sources import FitGeometry, FrameSource
from .viz import hud, hud_lines, overlay, palette_lut


@dataclass
class FrameRecord:
    index: int
    exit: int  # the exit that answered (0: none)
    exit_ms: list[float]  # cumulative per finished exit
    masked: list[float]
    energy_mj: float
    stop_reason: str


@dataclass
class StreamReport:
    backend: str
    precision: str
    frames: list[FrameRecord] = field(default_factory=list)
    deadline_ms: float | None = None

    def summary(self) -> dict:
        totals = [f.exit_ms[-1] for f in self.frames if f.exit_ms]
        exits = Counter(f.exit for f in self.frames)
        late = sum(1 for t in totals if self.deadline_ms and t > self.deadline_ms)
        return {
            "frames": len(self.frames),
            "exit_histogram": {str(k): exits[k] for k in sorted(exits)},
            "median_ms": statistics.median(totals) if totals else None,
            "max_ms": max(totals) if totals else None,
            "over_deadline": late,
            "energy_mj": round(sum(f.energy_mj for f in self.frames), 3),
        }

    def to_dict(self) -> dict:
        return {"backend": self.backend, "precision": self.precision,
                "deadline_ms": self.deadline_ms, "summary": self.summary(),
                "frames": [asdict(f) for f in self.frames]}


def labels_on_frame(labels: np.ndarray, geometry: FitGeometry) -> np.ndarray:
    """1/4-resolution labels of the network input, cropped to the part that shows the frame."""
    top, bottom, left, right = geometry.content_box()
    ih, iw = geometry.input_size
    lh, lw = labels.shape
    return labels[top * lh // ih: max(top * lh // ih + 1, bottom * lh // ih),
                  left * lw // iw: max(left * lw // iw + 1, right * lw // iw)]


def draw(frame: np.ndarray, result: FrameResult, geometry: FitGeometry, lut: np.ndarray,
         exits: int, deadline_ms: float | None) -> np.ndarray:
    """The latest exit's colours over the frame, and the HUD."""
    if not result.exits:
        return hud(frame, ["no exit", result.stop_reason[:40]])
    final = result.final
    image = overlay(frame, labels_on_frame(final.labels[0], geometry), lut)
    lines = hud_lines(final.exit, exits, final.elapsed_ms, result.energy_mj, deadline_ms,
                      final.masked_fraction)
    return hud(image, lines)


def run_stream(
    runner: AnytimeRunner,
    source: FrameSource,
    budget: Budget | None = None,
    max_frames: int | None = None,
    deadline_ms: float | None = None,
    on_frame: Callable[[FrameRecord], None] | None = None,
) -> tuple[StreamReport, Iterator[np.ndarray]]:
    """Run the stream; returns the report (filled as the iterator is consumed) and the
    iterator of drawn frames (consume it, e.g. with edge.viz.write_video)."""
    manifest = runner.backend.manifest
    lut = palette_lut([c.color for c in manifest.classes])
    report = StreamReport(runner.backend.name, runner.backend.precision, deadline_ms=deadline_ms)

    def frames() -> Iterator[np.ndarray]:
        for n, frame in enumerate(source):
            if max_frames is not None and n >= max_frames:
                break
            x, geometry = to_input(frame.image, manifest.input)
            result = runner.run_frame(x, budget)
            record = FrameRecord(
                frame.index, result.final.exit if result.exits else 0,
                [round(e.elapsed_ms, 3) for e in result.exits],
                [round(e.masked_fraction, 4) for e in result.exits],
                round(result.energy_mj, 3), result.stop_reason)
            report.frames.append(record)
            if on_frame is not None:
                on_frame(record)
            yield draw(frame.image, result, geometry, lut, manifest.num_exits, deadline_ms)

    return report, frames()
