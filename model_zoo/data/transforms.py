"""Training augmentation (random scale, crop, flip) and evaluation preprocessing.

Every random draw comes from a generator the caller passes in, derived from (seed, sample
index), so a resumed or distributed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .cityscapes_classes import IGNORE_INDEX
from .normalize import normalize


@dataclass(frozen=True)
class TrainTransform:
    """HRNet's recipe: random scale in [lo, hi], random crop (pad with ignore), random flip."""

    crop: tuple[int, int]
    scale: tuple[float, float] = (0.5, 2.0)
    flip: bool = True

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        factor = float(rng.uniform(*self.scale))
        h, w = label.shape
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        if factor != 1.0:
            image = np.array(Image.fromarray(image).resize(size, Image.BILINEAR))
            label = np.array(Image.fromarray(label).resize(size, Image.NEAREST))
        image, label = random_crop(image, label, self.crop, rng)
        if self.flip and rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        return normalize(np.ascontiguousarray(image)), to_label_tensor(label)


def random_crop(
    image: np.ndarray, label: np.ndarray, crop: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    ch, cw = crop
    h, w = label.shape
    pad_h, pad_w = max(ch - h, 0), max(cw - w, 0)
    if pad_h or pad_w:  # image padded with 0 (mean-ish after normalisation), labels ignored
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)))
        label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=IGNORE_INDEX)
        h, w = label.shape
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    return image[top : top + ch, left : left + cw], label[top : top + ch, left : left + cw]


def to_label_tensor(label: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(label).astype(np.int64))


def eval_transform(image: np.ndarray, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return normalize(image), to_label_tensor(label)
