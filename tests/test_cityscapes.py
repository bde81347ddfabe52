"""Tests for the Cityscapes reader and class table, on a tiny tree in the official layout."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model_zoo.data.cityscapes import CityscapesDataset, DatasetError, find_pairs
from model_zoo.data.cityscapes_classes import (
    CLASS_COLORS,
    CLASS_NAMES,
    IGNORE_INDEX,
    LABELID_TO_TRAINID,
    LABELS,
    NUM_CLASSES,
    CityscapesLabel,
    build_lut,
)

# Independent expectation, copied by hand from the Cityscapes label table
# (Cordts et al. 2016 / cityscapesscripts labels.py), not from the module under test.
EXPECTED_TRAINID = {
    0: 255,  # unlabeled
    1: 255,  # ego vehicle
    4: 255,  # static
    6: 255,  # ground
    7: 0,  # road
    8: 1,  # sidewalk
    9: 255,  # parking (ignoreInEval)
    11: 2,  # building
    14: 255,  # guard rail (ignoreInEval)
    21: 8,  # vegetation
    23: 10,  # sky
    24: 11,  # person
    26: 13,  # car
    29: 255,  # caravan (ignoreInEval)
    31: 16,  # train
    33: 18,  # bicycle
    34: 255,  # not a Cityscapes id
    255: 255,  # not a Cityscapes id (also where id -1 would wrap to)
}
LABEL_IDS = np.array(sorted(EXPECTED_TRAINID), dtype=np.uint8)

H, W = 6, 8
# Deliberately not in sorted order, to check that the reader sorts.
STEMS = [
    ("bochum", "bochum_000000_000313"),
    ("aachen", "aachen_000001_000019"),
    ("aachen", "aachen_000000_000019"),
]
SORTED_STEMS = [
    ("aachen", "aachen_000000_000019"),
    ("aachen", "aachen_000001_000019"),
    ("bochum", "bochum_000000_000313"),
]


def _image_path(root: Path, split: str, city: str, stem: str) -> Path:
    return root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"


def _label_path(root: Path, split: str, city: str, stem: str) -> Path:
    return root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _make_tree(root: Path, split: str = "train") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write 3 images in 2 cities; return {stem: (rgb, labelIds)} as written."""
    rng = np.random.default_rng(0)
    written = {}
    for i, (city, stem) in enumerate(STEMS):
        rgb = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
        # Every image holds every id of interest, in a different arrangement.
        ids = np.resize(np.roll(LABEL_IDS, i * 5), H * W).reshape(H, W)
        _write_png(_image_path(root, split, city, stem), rgb)
        _write_png(_label_path(root, split, city, stem), ids)
        written[stem] = (rgb, ids)
    return written


@pytest.fixture()
def tree(tmp_path: Path) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    root = tmp_path / "cityscapes"
    return root, _make_tree(root)


def _expect_one_line(excinfo: pytest.ExceptionInfo[DatasetError], *parts: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"
    return msg


# --------------------------------------------------------------------------- reading


def test_items_are_uint8_images_and_trainid_labels_pixel_by_pixel(tree) -> None:
    root, written = tree
    ds = CityscapesDataset(root, split="train")
    assert len(ds) == 3
    for idx, (_, stem) in enumerate(SORTED_STEMS):
        image, label = ds[idx]
        rgb, ids = written[stem]
        assert image.dtype == np.uint8 and image.shape == (H, W, 3)
        assert label.dtype == np.uint8 and label.shape == (H, W)
        np.testing.assert_array_equal(image, rgb)
        for y in range(H):
            for x in range(W):
                assert label[y, x] == EXPECTED_TRAINID[int(ids[y, x])], (stem, y, x, ids[y, x])


def test_specific_ids_road_car_unlabeled_static(tree) -> None:
    root, _ = tree
    city, stem = SORTED_STEMS[0]
    ids = np.array([[7, 26, 0, 4]], dtype=np.uint8)
    _write_png(_label_path(root, "train", city, stem), ids)
    _write_png(_image_path(root, "train", city, stem), np.zeros((1, 4, 3), np.uint8))
    _, label = CityscapesDataset(root, "train")[0]
    np.testing.assert_array_equal(label, [[0, 13, 255, 255]])


def test_order_is_sorted_by_city_then_name(tree) -> None:
    root, _ = tree
    pairs = find_pairs(root, "train")
    assert [(p.parent.name, p.name) for p, _ in pairs] == [
        (city, f"{stem}_leftImg8bit.png") for city, stem in SORTED_STEMS
    ]
    assert [lab for _, lab in pairs] == [
        _label_path(root, "train", city, stem) for city, stem in SORTED_STEMS
    ]
    assert find_pairs(str(root), "train") == pairs
    assert CityscapesDataset(root, "train").pairs == pairs


def test_transform_receives_and_returns_pair(tree) -> None:
    root, written = tree
    seen = []

    def transform(image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seen.append((image.shape, label.shape))
        return image[:2], label[:2]

    image, label = CityscapesDataset(root, "train", transform=transform)[1]
    assert seen == [((H, W, 3), (H, W))]
    assert image.shape == (2, W, 3) and label.shape == (2, W)
    np.testing.assert_array_equal(image, written[SORTED_STEMS[1][1]][0][:2])


def test_works_with_dataloader(tree) -> None:
    root, _ = tree
    loader = torch.utils.data.DataLoader(CityscapesDataset(root, "train"), batch_size=3)
    images, labels = next(iter(loader))
    assert images.shape == (3, H, W, 3) and images.dtype == torch.uint8
    assert labels.shape == (3, H, W) and labels.dtype == torch.uint8


# --------------------------------------------------------------------------- errors


def test_error_unknown_split(tree) -> None:
    root, _ = tree
    with pytest.raises(DatasetError) as excinfo:
        find_pairs(root, "training")
    _expect_one_line(excinfo, "unknown Cityscapes split 'training'", "train", "val", "test")


def test_error_root_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as excinfo:
        CityscapesDataset(missing, "val")
    _expect_one_line(excinfo, str(missing), "does not exist", "leftImg8bit/ and gtFine/")


def test_error_split_missing_lists_existing_splits(tree) -> None:
    root, _ = tree
    with pytest.raises(DatasetError) as excinfo:
        CityscapesDataset(root, "val")
    _expect_one_line(excinfo, f"missing {root / 'leftImg8bit' / 'val'}", "splits found", "train")


def test_error_root_is_leftimg8bit_folder_suggests_parent(tree) -> None:
    root, _ = tree
    with pytest.raises(DatasetError) as excinfo:
        find_pairs(root / "leftImg8bit", "train")
    _expect_one_line(excinfo, "pass its parent", str(root))


def test_error_no_images(tmp_path: Path) -> None:
    root = tmp_path / "cs"
    (root / "leftImg8bit" / "val" / "frankfurt").mkdir(parents=True)
    with pytest.raises(DatasetError) as excinfo:
        find_pairs(root, "val")
    _expect_one_line(excinfo, "no images found", "_leftImg8bit.png")


def test_error_image_without_label_names_first_and_count(tree) -> None:
    root, _ = tree
    first = _label_path(root, "train", *SORTED_STEMS[1])
    first.unlink()
    _label_path(root, "train", *SORTED_STEMS[2]).unlink()
    with pytest.raises(DatasetError) as excinfo:
        CityscapesDataset(root, "train")
    _expect_one_line(excinfo, "2 of 3 train images have no label", str(first), "gtFine")


def test_error_colour_label_rejected(tree) -> None:
    root, _ = tree
    _write_png(_label_path(root, "train", *SORTED_STEMS[0]), np.zeros((H, W, 3), np.uint8))
    with pytest.raises(DatasetError) as excinfo:
        CityscapesDataset(root, "train")[0]
    _expect_one_line(excinfo, "single-channel labelIds")


def test_error_size_mismatch(tree) -> None:
    root, _ = tree
    _write_png(_label_path(root, "train", *SORTED_STEMS[0]), np.zeros((H + 1, W), np.uint8))
    with pytest.raises(DatasetError) as excinfo:
        CityscapesDataset(root, "train")[0]
    _expect_one_line(excinfo, f"is {W}x{H} but its label")


def test_dataset_error_is_value_error() -> None:
    assert issubclass(DatasetError, ValueError)


# --------------------------------------------------------------------------- class table


def test_class_table_constants() -> None:
    assert NUM_CLASSES == 19 and IGNORE_INDEX == 255
    assert CLASS_NAMES[:3] == ("road", "sidewalk", "building")
    assert CLASS_NAMES[13] == "car" and CLASS_NAMES[-1] == "bicycle"
    assert len(CLASS_NAMES) == len(CLASS_COLORS) == NUM_CLASSES
    assert CLASS_COLORS[0] == (128, 64, 128) and CLASS_COLORS[13] == (0, 0, 142)
    assert LABELID_TO_TRAINID.shape == (256,) and LABELID_TO_TRAINID.dtype == np.uint8
    assert not LABELID_TO_TRAINID.flags.writeable
    for label_id, train_id in EXPECTED_TRAINID.items():
        assert LABELID_TO_TRAINID[label_id] == train_id, label_id
    # Each trainId comes from exactly one labelId; everything else is ignored.
    assert sorted(LABELID_TO_TRAINID[LABELID_TO_TRAINID != 255].tolist()) == list(range(19))


def test_hard_written_table_matches_active_lut() -> None:
    np.testing.assert_array_equal(build_lut(LABELS), LABELID_TO_TRAINID)
    by_train = {lab.train_id: lab for lab in LABELS if 0 <= lab.train_id < NUM_CLASSES}
    assert tuple(by_train[t].name for t in range(NUM_CLASSES)) == CLASS_NAMES
    assert tuple(by_train[t].color for t in range(NUM_CLASSES)) == CLASS_COLORS


def test_build_lut_skips_negative_ids() -> None:
    # A naive lut[-1] = -1 would write index 255; the license plate row must be skipped.
    lut = build_lut([CityscapesLabel("license plate", -1, -1, True, (0, 0, 142))])
    assert (lut == IGNORE_INDEX).all()


def test_hard_written_table_equals_cityscapesscripts() -> None:
    labels_mod = pytest.importorskip(
        "cityscapesscripts.helpers.labels",
        reason="cityscapesscripts not installed (optional): pip install cityscapesscripts",
    )
    official = labels_mod.labels
    assert [
        (lab.name, lab.id, lab.trainId, lab.ignoreInEval, tuple(lab.color)) for lab in official
    ] == [tuple(lab) for lab in LABELS]
    expected = np.full(256, 255, dtype=np.uint8)
    for lab in official:
        if lab.id >= 0 and lab.trainId not in (255, -1) and not lab.ignoreInEval:
            expected[lab.id] = lab.trainId
    np.testing.assert_array_equal(build_lut(LABELS), expected)
    np.testing.assert_array_equal(LABELID_TO_TRAINID, expected)
    train_labels = [labels_mod.trainId2label[t] for t in range(NUM_CLASSES)]
    assert tuple(lab.name for lab in train_labels) == CLASS_NAMES
    assert tuple(tuple(lab.color) for lab in train_labels) == CLASS_COLORS


def test_fallback_when_cityscapesscripts_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    from model_zoo.data import cityscapes_classes

    # A None entry in sys.modules makes the import raise ImportError, as if not installed.
    monkeypatch.setitem(sys.modules, "cityscapesscripts.helpers.labels", None)
    assert cityscapes_classes.labels_from_cityscapesscripts() is None
    lut = cityscapes_classes._make_labelid_to_trainid()
    np.testing.assert_array_equal(lut, build_lut(LABELS))
