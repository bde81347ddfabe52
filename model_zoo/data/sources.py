"""Where training and evaluation images come from: synthetic scenes or a Cityscapes folder.

A source maps an index to a raw (RGB uint8 HxWx3, trainId uint8 HxW) pair; augmentation and
normalisation happen downstream, identically for both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SYNTHETIC_TRAIN_SCENES = 1_000_000
SYNTHETIC_VAL_SEED = 2_000_000_000
"""Validation scenes use seeds no training run reaches (train seeds stay below 2e9)."""


class SyntheticScenes:
    """Procedural street scenes; index i of a split is always the same scene."""

    def __init__(self, split: str, size: tuple[int, int], seed: int = 0, length: int | None = None):
        if split not in ("train", "val"):
            raise ValueError(f"synthetic split must be train or val, got {split!r}")
        self.split, self.size, self.seed = split, size, seed
        self.length = length or (SYNTHETIC_TRAIN_SCENES if split == "train" else 500)

    def scene_seed(self, index: int) -> int:
        if self.split == "val":
            return SYNTHETIC_VAL_SEED + index
        return (self.seed * 1_000_003 + index) % SYNTHETIC_VAL_SEED

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        from .synthetic import render_scene

        if not 0 <= index < self.length:
            raise IndexError(index)
        return render_scene(self.scene_seed(index), *self.size)


def build_source(data: str, split: str, size: tuple[int, int], seed: int = 0,
                 length: int | None = None):
    """'synthetic' -> SyntheticScenes; anything else is a Cityscapes root folder."""
    if data == "synthetic":
        return SyntheticScenes(split, size, seed, length)
    from .cityscapes import CityscapesDataset

    source = CityscapesDataset(Path(data), split)
    if length is not None:
        source.pairs = source.pairs[:length]
    return source
