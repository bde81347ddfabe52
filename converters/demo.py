"""`adpc demo`: the shipped model on the shipped sample frames, exit by exit.

By default the model is converted once to an ExecuTorch bundle at the frames' size (cached:
`cached_bundle`, keyed by the checkpoint's sha256, precision and size) and the runtime drives
it (`edge.runtime.AnytimeRunner`, the path a phone takes); `--eager` runs the PyTorch model
instead. Per exit: the cumulative latency, the masked fraction, GFLOPs with the measured
fractions and mIoU against the frames' labels; writes a panel PNG of every exit, an overlay
video of the latest exit per frame (bundle path) and a JSON report.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from edge.atomic import write_text
from edge.bundle import BundleError, read_bundle, sha256_of
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
    report = _report(runs, frames, matrices, gflops, model.config.backbone, threshold,
                     "eager PyTorch", torch.get_num_threads())
    _write_panel(runs[0], frames[0], lut=palette_lut(CLASS_COLORS), out=out)
    write_text(out / "demo.json", json.dumps(report, indent=1))
    return report


def _report(runs: list[FrameRun], frames, matrices, gflops, model: str,
            threshold: float | None, runtime: str, threads: int | None) -> dict:
    height, width = frames[0][1].shape[:2]
    labelled = any(label is not None for _, _, label in frames)
    return {
        "model": model,
        "runtime": runtime,
        "threshold": threshold,
        "frames": len(frames),
        "size": [height, width],
        "threads": threads,
        "exit_ms_median": np.median([r.exit_ms for r in runs], axis=0).round(2).tolist(),
        "masked": np.mean([r.masked for r in runs], axis=0).round(4).tolist()
        if runs[0].masked else [],
        "gflops": np.mean(gflops, axis=0).round(4).tolist(),
        "miou": [round(100 * mean_iou(iou_per_class(m)), 2) for m in matrices]
        if labelled else None,
    }


def _write_panel(first: FrameRun, frame, lut: np.ndarray, out: Path) -> None:
    _, image, label = frame
    height, width = image.shape[:2]
    tiles = [("frame", image)]
    tiles.append(("ground truth", overlay(image, label, lut) if label is not None else image))
    for e, pred in enumerate(first.labels):
        tiles.append((f"exit {e + 1}: {first.exit_ms[e]:.0f} ms", overlay(image, pred, lut)))
        if e < len(first.masks):
            tiles.append((f"mask after exit {e + 1}: {first.masked[e]:.0%} skipped",
                          mask_view(first.masks[e], (height, width))))
    save_png(panel(tiles), out / "exits.png")


# ------------------------------------------------------------------ the converted bundle
DEMO_BACKEND = "executorch"


def cache_dir() -> Path:
    """Where demo bundles are kept: $ADPC_CACHE, else $XDG_CACHE_HOME/adpc, else ~/.cache/adpc."""
    if os.environ.get("ADPC_CACHE"):
        return Path(os.environ["ADPC_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "adpc"


def bundle_name(checkpoint: Path, backend: str, precision: str, height: int, width: int,
                sparse: bool = False) -> str:
    return (f"{checkpoint.stem}_{backend}_{precision}{'_sparse' if sparse else ''}_"
            f"{height}x{width}_{sha256_of(checkpoint)[:12]}")


def fastest_path(backend: str = DEMO_BACKEND) -> tuple[str, bool, str]:
    """(precision, sparse, why): int8 sparse ExecuTorch when the native kernel builds here (the
    fastest path, docs/benchmarks.md), else int8 dense-masked, saying why."""
    if backend != "executorch":
        return "int8", False, f"int8 {backend} (sparse kernels run in ExecuTorch only)"
    from edge.kernels.build import KernelUnavailable
    from edge.kernels.executorch_op import load_executorch_kernels

    try:
        load_executorch_kernels()
    except KernelUnavailable as err:
        return "int8", False, f"int8 ExecuTorch, dense-masked (no sparse kernel: {err})"
    return "int8", True, "int8 sparse ExecuTorch (the native int8 kernel builds here)"


def cached_bundle(
    checkpoint: str | Path | None,
    precision: str,
    height: int,
    width: int,
    cache: str | Path | None = None,
    backend: str = DEMO_BACKEND,
    progress: Callable[[str], None] | None = None,
    sparse: bool = False,
) -> tuple[Path, bool]:
    """A bundle of `checkpoint` (None: the shipped model) for one backend, precision and size
    (sparse: masked convs on the native kernel), converted on first use and reused after (a
    bundle that no longer validates is rebuilt). Returns (folder, whether it was converted
    now)."""
    from converters.convert import convert_bundle
    from model_zoo.registry import DEFAULT_WEIGHTS, WEIGHTS_DIR

    source = Path(checkpoint) if checkpoint else WEIGHTS_DIR / DEFAULT_WEIGHTS["w18_small_v2"]
    if not source.is_file():
        raise FileNotFoundError(f"checkpoint {source} does not exist: pass an adpc train "
                                "checkpoint or leave --checkpoint out for the shipped model")
    folder = Path(cache or cache_dir()) / "bundles" / bundle_name(
        source, backend, precision, height, width, sparse)
    try:
        manifest = read_bundle(folder)
        if (manifest.files_for(backend, precision)
                and (manifest.input.height, manifest.input.width) == (height, width)):
            return folder, False
    except BundleError:
        pass
    convert_bundle(folder, [backend], precision, height, width, checkpoint=checkpoint,
                   progress=progress, sparse=sparse)
    return folder, True


def demo_bundle(
    backend,
    frames: list[tuple[Path, np.ndarray, np.ndarray | None]],
    threshold: float | None | str,
    out: Path,
    deadline_ms: float | None = None,
    warmup: int = 1,
) -> dict:
    """The demo on a converted bundle through the runtime (what a phone runs)."""
    from edge.budget import Deadline
    from edge.preprocess import to_input
    from edge.runtime import AnytimeRunner
    from edge.stream import draw
    from edge.viz import write_video

    manifest = backend.manifest
    height, width = frames[0][1].shape[:2]
    if (height, width) != (manifest.input.height, manifest.input.width):
        raise ValueError(f"frames are {height}x{width} but the bundle takes "
                         f"{manifest.input.height}x{manifest.input.width}: convert one at the "
                         "frames' size")
    runner = AnytimeRunner(backend, threshold)
    lut = palette_lut([c.color for c in manifest.classes])
    k = len(manifest.classes)
    inputs = [to_input(image, manifest.input) for _, image, _ in frames]
    for x, _ in inputs[:warmup]:
        runner.run_frame(x)
    runs, drawn, gflops = [], [], []
    matrices = [torch.zeros(k, k, dtype=torch.long) for _ in range(manifest.num_exits)]
    for (_, image, label), (x, geometry) in zip(frames, inputs, strict=True):
        if image.shape[:2] != (height, width):
            raise ValueError(f"all frames must share one size; got {image.shape[:2]} and "
                             f"{(height, width)}: resize them first")
        result = runner.run_frame(x, Deadline(deadline_ms) if deadline_ms else None)
        run = FrameRun()
        for e in result.exits:
            run.exit_ms.append(e.elapsed_ms)
            if e.mask is not None:
                run.masked.append(e.masked_fraction)
                run.masks.append(e.mask[0, 0])
            up = F.interpolate(torch.from_numpy(e.logits), size=(height, width),
                               mode="bilinear", align_corners=False)
            run.labels.append(up.argmax(1)[0].numpy().astype(np.uint8))
            if label is not None:
                matrices[e.exit - 1] += confusion(torch.from_numpy(run.labels[-1]),
                                                  torch.from_numpy(label), k)
        runs.append(run)
        gflops.append(np.cumsum([manifest.stages[e.stage - 1].flops.gflops(
            1.0 - e.masked_fraction) for e in result.exits]).tolist())
        drawn.append(draw(image, result, geometry, lut, manifest.num_exits, deadline_ms))
    reached = min(len(r.exit_ms) for r in runs)  # a deadline may stop frames early
    for r in runs:
        del r.exit_ms[reached:], r.masked[max(reached - 1, 0):], r.labels[reached:]
    gflops = [g[:reached] for g in gflops]
    report = _report(runs, frames, matrices[:reached], gflops, manifest.model,
                     runner.threshold, f"{backend.name} {backend.precision}", backend.threads)
    video = write_video(drawn, out / "overlay.gif", fps=4)
    report.update({"bundle": str(backend.folder),
                   "deadline_ms": deadline_ms, "video": str(video),
                   "cost_model": runner.cost_model.source})
    _write_panel(runs[0], frames[0], lut, out)
    write_text(out / "demo.json", json.dumps(report, indent=1))
    return report


def format_demo(report: dict) -> str:
    thr = report["threshold"]
    lines = [
        f"{report['model']} on {report['frames']} frames at {report['size'][0]}x"
        f"{report['size'][1]}, CA threshold {thr if thr is not None else 'off'}, "
        f"{report['threads'] or 'default'} threads ({report.get('runtime', 'eager PyTorch')})",
        f"{'exit':>4} {'ms (cumulative)':>16} {'GFLOPs':>8} {'masked after':>13} {'mIoU':>6}",
    ]
    for e, ms in enumerate(report["exit_ms_median"]):
        masked = f"{report['masked'][e]:.1%}" if e < len(report["masked"]) else "-"
        miou = f"{report['miou'][e]:.1f}" if report["miou"] else "-"
        lines.append(f"{e + 1:>4} {ms:>16.1f} {report['gflops'][e]:>8.3f} {masked:>13} {miou:>6}")
    return "\n".join(lines)
