"""Colour overlays, per-exit panels, HUD text, videos and anytime plots: what a user looks at
to judge an anytime answer.

numpy + Pillow (no torch, no training code); OpenCV only for MP4 (imported when one is written,
GIF through Pillow otherwise) and matplotlib (Agg, no pyplot state) only for plots. The palette
comes from the caller (the bundle manifest on a device, the class table on a workstation).
Every file is written atomically: a crash never leaves half a video under the final name.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .atomic import atomic_path
from .sources import VIDEO_EXTRA, MissingExtra, require_cv2

IGNORE_COLOR = (0, 0, 0)


def palette_lut(colors: Sequence[Sequence[int]]) -> np.ndarray:
    """256 x 3 uint8 lookup: class i -> colors[i], everything else (255 = ignore) black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(colors)] = np.asarray(colors, dtype=np.uint8)
    return lut


def colorize(labels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    return lut[np.asarray(labels, dtype=np.uint8)]


def overlay(
    image: np.ndarray, labels: np.ndarray, lut: np.ndarray, alpha: float = 0.55
) -> np.ndarray:
    """Blend class colours over the RGB frame (labels at any resolution are resized nearest)."""
    if labels.shape != image.shape[:2]:
        labels = np.asarray(
            Image.fromarray(labels.astype(np.uint8)).resize(
                (image.shape[1], image.shape[0]), Image.NEAREST
            )
        )
    blend = image.astype(np.float32) * (1 - alpha) + colorize(labels, lut) * alpha
    return blend.clip(0, 255).astype(np.uint8)


def mask_view(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Computed pixels white, skipped pixels dark blue, resized nearest to (H, W)."""
    rgb = np.where(mask[..., None] > 0, np.uint8(235), np.array([20, 30, 90], np.uint8))
    rgb = rgb.astype(np.uint8)
    return np.asarray(Image.fromarray(rgb).resize((size[1], size[0]), Image.NEAREST))


def panel(tiles: Sequence[tuple[str, np.ndarray]], columns: int = 2) -> np.ndarray:
    """Grid of captioned RGB tiles of equal size."""
    h, w = tiles[0][1].shape[:2]
    caption = 16
    rows = -(-len(tiles) // columns)
    canvas = Image.new("RGB", (columns * w, rows * (h + caption)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (title, tile) in enumerate(tiles):
        x, y = (i % columns) * w, (i // columns) * (h + caption)
        canvas.paste(Image.fromarray(tile), (x, y + caption))
        draw.text((x + 4, y + 2), title, fill=(0, 0, 0))
    return np.asarray(canvas)


def save_png(array: np.ndarray, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return Path(path)


Corner = Literal["top-left", "top-right", "bottom-left", "bottom-right"]

VIDEO_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}
"""Codecs every opencv-python wheel can encode (H.264 is not bundled for licence reasons)."""


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # scalable where Pillow has FreeType
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def hud_lines(
    exit_index: int,
    exits: int,
    ms: float,
    mj: float | None = None,
    deadline_ms: float | None = None,
    skipped: float | None = None,
) -> list[str]:
    """The runtime's per-frame facts as short ASCII lines (the default bitmap font has no
    unicode): which exit answered, what it cost, against which budget."""
    lines = [f"exit {exit_index}/{exits}"]
    lines.append(f"{ms:.1f} ms" + (f" / {deadline_ms:g} ms deadline" if deadline_ms else ""))
    if mj is not None:
        lines.append(f"{mj:.1f} mJ")
    if skipped is not None:
        lines.append(f"skipped {100 * skipped:.0f}% px")
    return lines


def hud_box(
    frame_size: tuple[int, int],
    lines: Sequence[str],
    corner: Corner = "top-left",
    font_size: int | None = None,
) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the HUD's backing box, clipped to the frame."""
    box, _, _ = _hud_layout(frame_size, lines, corner, font_size)
    return box


def _hud_layout(
    frame_size: tuple[int, int],
    lines: Sequence[str],
    corner: Corner,
    font_size: int | None,
) -> tuple[tuple[int, int, int, int], ImageFont.ImageFont | ImageFont.FreeTypeFont, int]:
    if corner not in ("top-left", "top-right", "bottom-left", "bottom-right"):
        raise ValueError(f"corner must be top-left/top-right/bottom-left/bottom-right: {corner!r}")
    h, w = frame_size
    size = font_size or min(32, max(10, h // 30))
    font = _font(size)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    line_h = probe.textbbox((0, 0), "Ag|", font=font)[3] + 2
    text_w = max((probe.textbbox((0, 0), line, font=font)[2] for line in lines), default=0)
    pad, margin = max(2, size // 3), max(2, size // 3)
    box_h, box_w = len(lines) * line_h + 2 * pad, text_w + 2 * pad
    top = margin if corner.startswith("top") else h - margin - box_h
    left = margin if corner.endswith("left") else w - margin - box_w
    box = (max(0, top), min(h, top + box_h), max(0, left), min(w, left + box_w))
    return box, font, line_h


def hud(
    frame: np.ndarray,
    lines: Sequence[str],
    corner: Corner = "top-left",
    font_size: int | None = None,
    darken: float = 0.3,
) -> np.ndarray:
    """Small white text on a darkened box in one corner (readable over any scene, the rest of
    the frame untouched); returns a new frame."""
    out = np.array(frame, dtype=np.uint8, copy=True)
    if out.ndim != 3 or out.shape[2] != 3:
        raise ValueError(f"HUD needs an RGB H x W x 3 frame, got shape {out.shape}")
    if not lines:
        return out
    (top, bottom, left, right), font, line_h = _hud_layout(out.shape[:2], lines, corner, font_size)
    if bottom <= top or right <= left:
        return out
    region = out[top:bottom, left:right].astype(np.float32) * darken
    out[top:bottom, left:right] = region.astype(np.uint8)
    image = Image.fromarray(out[top:bottom, left:right])  # draw inside the box only
    draw = ImageDraw.Draw(image)
    pad = (bottom - top - len(lines) * line_h) // 2
    for i, line in enumerate(lines):
        draw.text((pad, pad + i * line_h), line, fill=(255, 255, 255), font=font)
    out[top:bottom, left:right] = np.asarray(image)
    return out


def _checked_frames(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """Every frame RGB uint8 and the size of the first: a video cannot change size midway."""
    shape = None
    for i, frame in enumerate(_chain(first, rest)):
        array = np.asarray(frame)
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise ValueError(
                f"video frame {i} must be RGB uint8 H x W x 3, got {array.dtype} {array.shape}"
            )
        if shape is None:
            shape = array.shape
        elif array.shape != shape:
            raise ValueError(f"video frame {i} is {array.shape}, the first frame was {shape}")
        yield array


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def write_video(frames: Iterable[np.ndarray], path: str | Path, fps: float = 10.0) -> Path:
    """Write RGB frames (a list or a generator) as MP4/AVI through OpenCV, or GIF through
    Pillow for a .gif path or when OpenCV is missing (then next to `path` with a .gif suffix and
    a warning naming the extra). Returns the path actually written. MP4 streams frame by frame;
    Pillow keeps a GIF's frames in memory, so keep GIFs short.

    MP4 uses MPEG-4 Part 2 ('mp4v'), odd sizes padded by one edge pixel (the codec needs even
    sizes); GIF merges identical consecutive frames (Pillow), keeping the total duration.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix != ".gif" and suffix not in VIDEO_FOURCC:
        raise ValueError(
            f"cannot write video {path}: use one of .gif, {', '.join(sorted(VIDEO_FOURCC))}"
        )
    if not (isinstance(fps, numbers.Real) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
        raise ValueError(f"no frames to write to {path}")
    checked = _checked_frames(first, iterator)
    if suffix != ".gif":
        try:
            cv2 = require_cv2()
        except MissingExtra:
            gif = path.with_suffix(".gif")
            warnings.warn(
                f"OpenCV is missing, writing {gif} instead of {path.name}: {VIDEO_EXTRA}",
                stacklevel=2,
            )
            return _write_gif(checked, gif, fps)
        return _write_cv2(cv2, checked, path, fps, VIDEO_FOURCC[suffix])
    return _write_gif(checked, path, fps)


def _write_gif(frames: Iterator[np.ndarray], path: Path, fps: float) -> Path:
    images = (Image.fromarray(frame) for frame in frames)
    first = next(images)
    with atomic_path(path) as tmp:
        first.save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=images,
            duration=max(10, round(1000 / fps)),
            loop=0,
        )
    return path


def _write_cv2(
    cv2: ModuleType, frames: Iterator[np.ndarray], path: Path, fps: float, fourcc: str
) -> Path:
    first = next(frames)
    h, w = first.shape[:2]
    pad_h, pad_w = h % 2, w % 2
    with atomic_path(path) as tmp:
        size = (w + pad_w, h + pad_h)
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), float(fps), size)
        if not writer.isOpened():
            writer.release()
            raise RuntimeError(f"OpenCV cannot write {path} with codec {fourcc}: try a .gif path")
        try:
            for frame in _chain(first, frames):
                if pad_h or pad_w:
                    frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
    return path


def plot_anytime_latency(
    points: Mapping[str, Sequence[tuple[float, float]]],
    path: str | Path,
    *,
    xlabel: str = "latency (ms)",
    ylabel: str = "mIoU",
    title: str = "Anytime quality vs latency",
    deadlines: Sequence[float] = (),
) -> Path:
    """One line per series of (ms, quality) points (exits of a model, a dense baseline), with
    optional vertical deadline markers, as a PNG: the anytime trade-off in one picture."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: a phone needs no plots
    from matplotlib.figure import Figure

    if not points:
        raise ValueError("no series to plot")
    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, series in points.items():
        xy = np.asarray(series, dtype=np.float64).reshape(-1, 2) if len(series) else None
        if xy is None or not np.isfinite(xy).all():
            raise ValueError(f"series {name!r} needs finite (ms, quality) points, got {series!r}")
        xy = xy[np.argsort(xy[:, 0], kind="stable")]
        axes.plot(xy[:, 0], xy[:, 1], marker="o", label=str(name))
    for ms in deadlines:
        axes.axvline(float(ms), color="0.5", linestyle="--", linewidth=1)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path
