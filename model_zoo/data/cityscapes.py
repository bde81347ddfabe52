"""Reader for real Cityscapes data from a local folder in the official layout.

Layout (as unzipped from leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip)::

    ROOT/leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png
    ROOT/gtFine/{split}/{city}/{stem}_gtFine_labelIds.png

Labels are stored as labelIds on disk and converted to the 19 trainIds here, so no
preprocessing step (createTrainIdLabelImgs) is needed before training or evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch.utils.data
from PIL import Image

from model_zoo.data.cityscapes_classes import LABELID_TO_TRAINID

SPLITS: tuple[str, ...] = ("train", "val", "test")
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"

Transform = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class DatasetError(ValueError):
    """A dataset folder is missing or malformed; the message names the problem and the fix."""


def _label_path_for(image_path: Path, root: Path, split: str) -> Path:
    """Map ROOT/leftImg8bit/split/city/X_leftImg8bit.png to its gtFine labelIds file."""
    city = image_path.parent.name
    stem = image_path.name[: -len(IMAGE_SUFFIX)]
    return root / "gtFine" / split / city / f"{stem}{LABEL_SUFFIX}"


def _check_split_dir(root: Path, split: str) -> Path:
    """Return ROOT/leftImg8bit/split, or raise a DatasetError that says how to fix the root."""
    if split not in SPLITS:
        raise DatasetError(
            f"unknown Cityscapes split {split!r}; use one of {', '.join(SPLITS)} "
            "(gtFine labels exist only for these)"
        )
    if not root.exists():
        raise DatasetError(
            f"Cityscapes root {root} does not exist; pass the folder that contains "
            "leftImg8bit/ and gtFine/"
        )
    if not root.is_dir():
        raise DatasetError(
            f"Cityscapes root {root} is not a directory; pass the folder that contains "
            "leftImg8bit/ and gtFine/"
        )
    image_root = root / "leftImg8bit"
    split_dir = image_root / split
    if not split_dir.is_dir():
        existing = (
            sorted(p.name for p in image_root.iterdir() if p.is_dir())
            if image_root.is_dir()
            else []
        )
        found = ", ".join(existing) if existing else "none"
        hint = (
            f"; root looks like the leftImg8bit folder itself, pass its parent {root.parent}"
            if (root / split).is_dir()
            else "; unzip leftImg8bit_trainvaltest.zip into the root"
        )
        raise DatasetError(f"missing {split_dir} (splits found under {image_root}: {found}){hint}")
    return split_dir


def find_pairs(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """List (image, labelIds) path pairs of a split, sorted by city then file name.

    Sorting makes the order independent of the filesystem, so indices, subsets and
    evaluation logs are reproducible across machines. Every image must have its label:
    a partial gtFine download would otherwise silently shrink the split.
    """
    root = Path(root).expanduser()
    split_dir = _check_split_dir(root, split)
    images = sorted(
        (p for p in split_dir.glob(f"*/*{IMAGE_SUFFIX}") if p.is_file()),
        key=lambda p: (p.parent.name, p.name),
    )
    if not images:
        raise DatasetError(
            f"no images found matching {split_dir}/<city>/*{IMAGE_SUFFIX}; "
            "check that the city folders were unzipped under the split folder"
        )
    pairs = [(img, _label_path_for(img, root, split)) for img in images]
    missing = [label for _, label in pairs if not label.is_file()]
    if missing:
        raise DatasetError(
            f"{len(missing)} of {len(pairs)} {split} images have no label, first missing: "
            f"{missing[0]}; unzip gtFine_trainvaltest.zip into {root}"
        )
    return pairs


def load_labelids(path: Path) -> np.ndarray:
    """Read a labelIds PNG as uint8 HxW, refusing colour or out-of-range label images."""
    with Image.open(path) as im:
        arr = np.asarray(im)
    if arr.ndim != 2:
        raise DatasetError(
            f"label {path} has shape {arr.shape}, expected a single-channel labelIds image; "
            f"use the *{LABEL_SUFFIX} files, not *_gtFine_color.png"
        )
    if arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise DatasetError(
                f"label {path} has values outside 0..255; expected Cityscapes labelIds (0..33)"
            )
        arr = arr.astype(np.uint8)
    return arr


class CityscapesDataset(torch.utils.data.Dataset):
    """Cityscapes fine annotations as (RGB uint8 HxWx3, trainId uint8 HxW) pairs.

    Files are listed and checked once at construction, so a broken download fails
    immediately with a clear message instead of inside a DataLoader worker. Images are
    read lazily, which keeps the dataset cheap to pickle into workers.
    ``transform(image, label) -> (image, label)`` is applied after the trainId mapping.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "val",
        transform: Transform | None = None,
    ) -> None:
        self.root = Path(root).expanduser()
        self.split = split
        self.transform = transform
        self.pairs: list[tuple[Path, Path]] = find_pairs(self.root, split)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, label_path = self.pairs[index]
        with Image.open(image_path) as im:
            # np.array copies: arrays backed by PIL buffers may be read-only for torch.
            image = np.array(im.convert("RGB"), dtype=np.uint8)
        label = LABELID_TO_TRAINID[load_labelids(label_path)]
        if image.shape[:2] != label.shape:
            raise DatasetError(
                f"image {image_path} is {image.shape[1]}x{image.shape[0]} but its label "
                f"{label_path} is {label.shape[1]}x{label.shape[0]}; re-extract both archives"
            )
        if self.transform is not None:
            return self.transform(image, label)
        return image, label

    def __repr__(self) -> str:
        return f"CityscapesDataset(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"
