"""Per-exit mIoU, masked fractions and GFLOPs: the anytime curve of a model on a dataset.

The same weights are evaluated with CA off (the EE+RH model) and at each threshold asked
for, so the curve shows what confidence adaptivity saves and what it costs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edge.atomic import atomic_path, write_text

from .adpc import ADPCNet
from .data.cityscapes_classes import CLASS_NAMES, IGNORE_INDEX
from .flops import exit_gflops, stage_costs


def confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """num_classes x num_classes counts (rows: truth, columns: prediction), 255 ignored."""
    keep = target != IGNORE_INDEX
    index = target[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_per_class(matrix: torch.Tensor) -> list[float | None]:
    """IoU per class; None for classes absent from the ground truth of the whole set."""
    m = matrix.double()
    tp = m.diag()
    truth, predicted = m.sum(1), m.sum(0)
    out: list[float | None] = []
    for c in range(m.shape[0]):
        if truth[c] == 0:
            out.append(None)
        else:
            out.append(float(tp[c] / (truth[c] + predicted[c] - tp[c])))
    return out


def mean_iou(ious: Sequence[float | None]) -> float:
    present = [v for v in ious if v is not None]
    return float(np.mean(present)) if present else math.nan


@dataclass
class ModeResult:
    """One evaluation mode (CA off, or one threshold)."""

    threshold: float | None
    miou: list[float] = field(default_factory=list)  # per exit, in [0, 100]
    iou: list[list[float | None]] = field(default_factory=list)
    masked: list[float] = field(default_factory=list)  # per exit but the last, mean
    gflops: list[float] = field(default_factory=list)  # per exit, per-image average


def evaluate(
    model: ADPCNet,
    batches,
    thresholds: Sequence[float | None],
    size: tuple[int, int],
    progress: bool = False,
) -> list[ModeResult]:
    """Evaluate `model` on (image, label) batches for every threshold (None = CA off)."""
    model.eval()
    costs = stage_costs(model.config, *size)
    n_exits, k = model.num_exits, model.config.num_classes
    matrices = {t: [torch.zeros(k, k, dtype=torch.long) for _ in range(n_exits)]
                for t in thresholds}
    fractions: dict = {t: [] for t in thresholds}
    flops: dict = {t: [] for t in thresholds}
    iterator = batches
    if progress:
        from tqdm import tqdm

        iterator = tqdm(batches, desc="eval", unit="batch", dynamic_ncols=True)
    with torch.no_grad():
        for images, labels in iterator:
            for t in thresholds:
                out = model(images, threshold=t)
                for e, logits in enumerate(out.logits):
                    up = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear",
                                       align_corners=False)
                    matrices[t][e] += confusion(up.argmax(1), labels, k)
                per_image = torch.stack(out.masked_fractions, 1) if out.masked_fractions else None
                for i in range(images.shape[0]):
                    f = [] if per_image is None or t is None else per_image[i].tolist()
                    fractions[t].append(f)
                    flops[t].append(exit_gflops(costs, model.config.exit_stages, f))
    results = []
    for t in thresholds:
        ious = [iou_per_class(m) for m in matrices[t]]
        frac = np.array(fractions[t]) if fractions[t] and fractions[t][0] else None
        results.append(ModeResult(
            threshold=t,
            miou=[round(100 * mean_iou(i), 3) for i in ious],
            iou=[[None if v is None else round(100 * v, 3) for v in i] for i in ious],
            masked=[] if frac is None else [round(float(v), 4) for v in frac.mean(0)],
            gflops=[round(float(v), 4) for v in np.mean(flops[t], axis=0)],
        ))
    return results


def report(results: Sequence[ModeResult], model: ADPCNet, size: tuple[int, int],
           dataset: str, images: int) -> dict:
    absent = {CLASS_NAMES[c] if c < len(CLASS_NAMES) else str(c)
              for r in results for i in r.iou for c, v in enumerate(i) if v is None}
    return {
        "model": model.config.backbone,
        "size": list(size),
        "dataset": dataset,
        "images": images,
        "classes_absent": sorted(absent),
        "modes": [r.__dict__ for r in results],
    }


def format_report(data: dict) -> str:
    lines = [f"{data['model']} on {data['dataset']} ({data['images']} images at "
             f"{data['size'][0]}x{data['size'][1]})"]
    if data["classes_absent"]:
        lines.append("classes absent from the set (not in the mean): "
                     + ", ".join(data["classes_absent"]))
    lines.append(f"{'mode':>12} {'exit':>4} {'mIoU':>7} {'GFLOPs':>8} {'masked after':>12}")
    for mode in data["modes"]:
        name = "CA off" if mode["threshold"] is None else f"thr {mode['threshold']:g}"
        for e, (miou, g) in enumerate(zip(mode["miou"], mode["gflops"], strict=True)):
            masked = f"{mode['masked'][e]:.1%}" if e < len(mode["masked"]) else "-"
            lines.append(f"{name:>12} {e + 1:>4} {miou:>7.2f} {g:>8.3f} {masked:>12}")
    return "\n".join(lines)


def plot_anytime(data: dict, path: Path) -> Path:
    """mIoU vs cumulative GFLOPs, one point per exit, one line per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for mode in data["modes"]:
        thr = mode["threshold"]
        label = "EE+RH (CA off)" if thr is None else f"ADP-C, thr {thr:g}"
        ax.plot(mode["gflops"], mode["miou"], marker="o", label=label)
        for e, (x, y) in enumerate(zip(mode["gflops"], mode["miou"], strict=True)):
            ax.annotate(str(e + 1), (x, y), textcoords="offset points", xytext=(4, -10),
                        fontsize=7)
    ax.set_xlabel(f"cumulative GFLOPs at {data['size'][0]}x{data['size'][1]}")
    ax.set_ylabel("mIoU (%)")
    ax.set_title(f"Anytime curve: {data['model']} on {data['dataset']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return Path(path)


def write_json(data: dict, path: Path) -> Path:
    return write_text(path, json.dumps(data, indent=1))
