"""`adpc demo`: the shipped model on the shipped sample frames, exit by exit.

Runs in eager PyTorch for now (the on-device runtime drives converted stages the same way):
per exit, the cumulative latency, the masked fraction, GFLOPs with the measured fractions and
mIoU against the frames' labels; writes a panel PNG of every exit and a JSON report.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from edge.atomic import write_text
from edge.sources import SAMPLE_DRIVE
from edge.viz import mask_view, overlay, palette_lut, panel, save_png
from model_zoo.adpc import ADPCNet, check_input_size
from model_zoo.data.cityscapes_classes import CLASS_COLORS
from model_zoo.data.normalize import normalize
from model_zoo.evaluate import confusion, iou_per_class, mean_iou
from model_zoo.flops import exit_gflops, stage_costs

SAMPLES = SAMPLE_DRIVE


@dataclass
class FrameRun:
    exit_ms: list[float] = field(default_factory=list)  # cumulative, per exit
    masked: list[float] = field(default_factory=list)  # after each exit but the last
    labels: list[np.ndarray] = field(default_factory=list)  # per exit, frame resolution
    masks: list[np.ndarray] = field(default_factory=list)


def load_frames(folder: Path) -> list[tuple[Path, np.ndarray, np.ndarray | None]]:
    """frame_*.png (and label_*.png when present) from a folder, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"frames folder {folder} does not exist: pass --frames DIR")
    frames = sorted(folder.glob("frame_*.png")) or sorted(
        p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")
    )
    if not frames:
        raise FileNotFoundError(f"no .png/.jpg frames in {folder}")
    out = []
    for path in frames:
        try:
            with Image.open(path) as im:
                image = np.array(im.convert("RGB"))
        except OSError as exc:
            raise ValueError(f"cannot read frame {path}: {exc}") from None
        label_path = path.with_name(path.name.replace("frame_", "label_"))
        label = None
        if label_path != path and label_path.is_file():
            with Image.open(label_path) as im:
                label = np.array(im)
        out.append((path, image, label))
    return out


def run_frame(model: ADPCNet, image: np.ndarray, threshold: float | None) -> FrameRun:
    height, width = image.shape[:2]
    check_input_size(height, width)
    x = normalize(image)[None]
    run = FrameRun()
    start = time.perf_counter()
    with torch.no_grad():
        for step in model.iter_exits(x, threshold):
            run.exit_ms.append((time.perf_counter() - start) * 1e3)
            if step.mask is not None:
                run.masked.append(float(1 - step.mask.mean()))
                run.masks.append(step.mask[0, 0].numpy())
            up = F.interpolate(step.logits, size=(height, width), mode="bilinear",
                               align_corners=False)
            run.labels.append(up.argmax(1)[0].numpy().astype(np.uint8))
    return run


def demo(
    model: ADPCNet,
    frames: list[tuple[Path, np.ndarray, np.ndarray | None]],
    threshold: float | None,
    out: Path,
    warmup: int = 1,
) -> dict:
    model.eval()
    if warmup:
        run_frame(model, frames[0][1], threshold)
    height, width = frames[0][1].shape[:2]
    costs = stage_costs(model.config, height, width)
    k = model.config.num_classes
    runs, matrices = [], [torch.zeros(k, k, dtype=torch.long) for _ in range(model.num_exits)]
    gflops = []
    for _, image, label in frames:
        if image.shape[:2] != (height, width):
            raise ValueError(f"all frames must share one size; got {image.shape[:2]} and "
                             f"{(height, width)}: resize them first")
        run = run_frame(model, image, threshold)
        runs.append(run)
        gflops.append(exit_gflops(costs, model.config.exit_stages, run.masked))
        if label is not None:
            for e, pred in enumerate(run.labels):
                matrices[e] += confusion(torch.from_numpy(pred), torch.from_numpy(label), k)
    labelled = any(label is not None for _, _, label in frames)
    report = {
        "model": model.config.backbone,
        "threshold": threshold,
        "frames": len(frames),
        "size": [height, width],
        "threads": torch.get_num_threads(),
        "exit_ms_median": np.median([r.exit_ms for r in runs], axis=0).round(2).tolist(),
        "masked": np.mean([r.masked for r in runs], axis=0).round(4).tolist()
        if runs[0].masked else [],
        "gflops": np.mean(gflops, axis=0).round(4).tolist(),
        "miou": [round(100 * mean_iou(iou_per_class(m)), 2) for m in matrices]
        if labelled else None,
    }
    lut = palette_lut(CLASS_COLORS)
    _, image, label = frames[0]
    first = runs[0]
    tiles = [("frame", image)]
    tiles.append(("ground truth", overlay(image, label, lut) if label is not None else image))
    for e, pred in enumerate(first.labels):
        tiles.append((f"exit {e + 1}: {first.exit_ms[e]:.0f} ms", overlay(image, pred, lut)))
        if e < len(first.masks):
            tiles.append((f"mask after exit {e + 1}: {first.masked[e]:.0%} skipped",
                          mask_view(first.masks[e], (height, width))))
    save_png(panel(tiles), out / "exits.png")
    write_text(out / "demo.json", json.dumps(report, indent=1))
    return report


def format_demo(report: dict) -> str:
    thr = report["threshold"]
    lines = [
        f"{report['model']} on {report['frames']} frames at {report['size'][0]}x"
        f"{report['size'][1]}, CA threshold {thr if thr is not None else 'off'}, "
        f"{report['threads']} threads (eager PyTorch)",
        f"{'exit':>4} {'ms (cumulative)':>16} {'GFLOPs':>8} {'masked after':>13} {'mIoU':>6}",
    ]
    for e, ms in enumerate(report["exit_ms_median"]):
        masked = f"{report['masked'][e]:.1%}" if e < len(report["masked"]) else "-"
        miou = f"{report['miou'][e]:.1f}" if report["miou"] else "-"
        lines.append(f"{e + 1:>4} {ms:>16.1f} {report['gflops'][e]:>8.3f} {masked:>13} {miou:>6}")
    return "\n".join(lines)
