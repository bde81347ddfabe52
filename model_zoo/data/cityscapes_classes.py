"""Cityscapes class table: the 19 training classes and the labelId -> trainId lookup.

The table is written out here because ``cityscapesscripts`` is only an optional
dependency; when that package is importable the lookup table is built from its
``labels`` list instead, and ``tests/test_cityscapes.py`` checks that both agree.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

IGNORE_INDEX: int = 255
NUM_CLASSES: int = 19

CLASS_NAMES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)

# Official colours (cityscapesscripts.helpers.labels), indexed by trainId.
CLASS_COLORS: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128),
    (244, 35, 232),
    (70, 70, 70),
    (102, 102, 156),
    (190, 153, 153),
    (153, 153, 153),
    (250, 170, 30),
    (220, 220, 0),
    (107, 142, 35),
    (152, 251, 152),
    (70, 130, 180),
    (220, 20, 60),
    (255, 0, 0),
    (0, 0, 142),
    (0, 0, 70),
    (0, 60, 100),
    (0, 80, 100),
    (0, 0, 230),
    (119, 11, 32),
)


class CityscapesLabel(NamedTuple):
    """One row of the official Cityscapes label table (subset of its fields)."""

    name: str
    id: int
    train_id: int
    ignore_in_eval: bool
    color: tuple[int, int, int]


# Hard-written copy of cityscapesscripts.helpers.labels.labels (name, id, trainId,
# ignoreInEval, color), so the reader works without the optional package.
LABELS: tuple[CityscapesLabel, ...] = (
    CityscapesLabel("unlabeled", 0, 255, True, (0, 0, 0)),
    CityscapesLabel("ego vehicle", 1, 255, True, (0, 0, 0)),
    CityscapesLabel("rectification border", 2, 255, True, (0, 0, 0)),
    CityscapesLabel("out of roi", 3, 255, True, (0, 0, 0)),
    CityscapesLabel("static", 4, 255, True, (0, 0, 0)),
    CityscapesLabel("dynamic", 5, 255, True, (111, 74, 0)),
    CityscapesLabel("ground", 6, 255, True, (81, 0, 81)),
    CityscapesLabel("road", 7, 0, False, (128, 64, 128)),
    CityscapesLabel("sidewalk", 8, 1, False, (244, 35, 232)),
    CityscapesLabel("parking", 9, 255, True, (250, 170, 160)),
    CityscapesLabel("rail track", 10, 255, True, (230, 150, 140)),
    CityscapesLabel("building", 11, 2, False, (70, 70, 70)),
    CityscapesLabel("wall", 12, 3, False, (102, 102, 156)),
    CityscapesLabel("fence", 13, 4, False, (190, 153, 153)),
    CityscapesLabel("guard rail", 14, 255, True, (180, 165, 180)),
    CityscapesLabel("bridge", 15, 255, True, (150, 100, 100)),
    CityscapesLabel("tunnel", 16, 255, True, (150, 120, 90)),
    CityscapesLabel("pole", 17, 5, False, (153, 153, 153)),
    CityscapesLabel("polegroup", 18, 255, True, (153, 153, 153)),
    CityscapesLabel("traffic light", 19, 6, False, (250, 170, 30)),
    CityscapesLabel("traffic sign", 20, 7, False, (220, 220, 0)),
    CityscapesLabel("vegetation", 21, 8, False, (107, 142, 35)),
    CityscapesLabel("terrain", 22, 9, False, (152, 251, 152)),
    CityscapesLabel("sky", 23, 10, False, (70, 130, 180)),
    CityscapesLabel("person", 24, 11, False, (220, 20, 60)),
    CityscapesLabel("rider", 25, 12, False, (255, 0, 0)),
    CityscapesLabel("car", 26, 13, False, (0, 0, 142)),
    CityscapesLabel("truck", 27, 14, False, (0, 0, 70)),
    CityscapesLabel("bus", 28, 15, False, (0, 60, 100)),
    CityscapesLabel("caravan", 29, 255, True, (0, 0, 90)),
    CityscapesLabel("trailer", 30, 255, True, (0, 0, 110)),
    CityscapesLabel("train", 31, 16, False, (0, 80, 100)),
    CityscapesLabel("motorcycle", 32, 17, False, (0, 0, 230)),
    CityscapesLabel("bicycle", 33, 18, False, (119, 11, 32)),
    # id -1: never appears in labelId images (license plates are drawn as "car").
    CityscapesLabel("license plate", -1, -1, True, (0, 0, 142)),
)


def build_lut(labels: tuple[CityscapesLabel, ...] | list[CityscapesLabel]) -> np.ndarray:
    """Build a 256-entry uint8 labelId -> trainId table; unmapped ids go to IGNORE_INDEX.

    Labels with a negative id (license plate) have no pixel value and are skipped;
    labels with trainId 255/-1 or ignoreInEval stay IGNORE_INDEX so they never count
    as a class in training or evaluation.
    """
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label in labels:
        if not 0 <= label.id < 256:
            continue
        if label.ignore_in_eval or not 0 <= label.train_id < NUM_CLASSES:
            continue
        lut[label.id] = label.train_id
    return lut


def labels_from_cityscapesscripts() -> tuple[CityscapesLabel, ...] | None:
    """The official table from ``cityscapesscripts`` if it is installed, else None."""
    try:
        from cityscapesscripts.helpers.labels import labels as official
    except ImportError:
        return None
    return tuple(
        CityscapesLabel(
            name=lab.name,
            id=int(lab.id),
            train_id=int(lab.trainId),
            ignore_in_eval=bool(lab.ignoreInEval),
            color=tuple(int(c) for c in lab.color),
        )
        for lab in official
    )


def _make_labelid_to_trainid() -> np.ndarray:
    """Prefer the official package's table; fall back to the copy written above."""
    official = labels_from_cityscapesscripts()
    lut = build_lut(official if official is not None else LABELS)
    lut.setflags(write=False)  # shared module constant: keep it immutable
    return lut


LABELID_TO_TRAINID: np.ndarray = _make_labelid_to_trainid()
