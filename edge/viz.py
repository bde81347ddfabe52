"""Colour overlays and per-exit panels: what a user looks at to judge an anytime answer.

numpy + Pillow only (no torch, no training code); the palette comes from the caller (the
bundle manifest on a device, the class table on a workstation).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .atomic import atomic_path

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
