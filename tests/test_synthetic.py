"""Checks for the synthetic street-scene generator (model_zoo.data.synthetic).

The scenes train and demo the segmentation model, so these tests pin down what training relies
on: determinism per seed, valid trainIds, realistic class coverage, appearance that is not a
colour lookup of the label, correct normalisation, and coherent drive sequences.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from model_zoo.data.normalize import IMAGENET_MEAN, IMAGENET_STD, normalize
from model_zoo.data.synthetic import (
    IGNORE_ID,
    NUM_CLASSES,
    TRAIN_IDS,
    SyntheticStreetDataset,
    colorize,
    render_drive,
    render_scene,
    write_drive,
)

ROAD, SIDEWALK, BUILDING = TRAIN_IDS["road"], TRAIN_IDS["sidewalk"], TRAIN_IDS["building"]
VEGETATION, SKY, CAR = TRAIN_IDS["vegetation"], TRAIN_IDS["sky"], TRAIN_IDS["car"]
SURVEY_SEEDS = range(20)


@pytest.fixture(scope="module")
def survey() -> list[tuple[np.ndarray, np.ndarray]]:
    """Twenty typical scenes at the training size, rendered once for the content checks."""
    return [render_scene(seed, 256, 512) for seed in SURVEY_SEEDS]


def _classes(label: np.ndarray) -> set[int]:
    return set(np.unique(label).tolist())


def test_train_ids_are_the_cityscapes_table() -> None:
    assert len(TRAIN_IDS) == NUM_CLASSES == 19
    assert sorted(TRAIN_IDS.values()) == list(range(19))
    assert TRAIN_IDS["road"] == 0 and TRAIN_IDS["sky"] == 10 and TRAIN_IDS["bicycle"] == 18
    assert IGNORE_ID == 255


def test_same_seed_gives_identical_arrays() -> None:
    image_a, label_a = render_scene(7, 96, 192)
    image_b, label_b = render_scene(7, 96, 192)
    np.testing.assert_array_equal(image_a, image_b)
    np.testing.assert_array_equal(label_a, label_b)


def test_different_seeds_give_different_scenes() -> None:
    image_a, label_a = render_scene(1, 96, 192)
    image_b, label_b = render_scene(2, 96, 192)
    assert not np.array_equal(label_a, label_b)
    assert np.abs(image_a.astype(np.int16) - image_b.astype(np.int16)).mean() > 5.0


@pytest.mark.parametrize("size", [(64, 128), (256, 512), (513, 1000), (37, 91), (120, 120)])
def test_shapes_dtypes_and_label_values(size: tuple[int, int]) -> None:
    h, w = size
    for seed in (0, 3):
        image, label = render_scene(seed, h, w)
        assert image.shape == (h, w, 3) and image.dtype == np.uint8
        assert label.shape == (h, w) and label.dtype == np.uint8
        values = _classes(label)
        assert values <= set(range(NUM_CLASSES)) | {IGNORE_ID}, values
        assert ROAD in values and SKY in values


def test_labels_only_hold_train_ids_over_many_seeds(survey) -> None:
    for _, label in survey:
        assert _classes(label) <= set(range(NUM_CLASSES)) | {IGNORE_ID}


def test_typical_scene_has_the_big_classes_and_variety(survey) -> None:
    per_scene = [_classes(label) - {IGNORE_ID} for _, label in survey]
    for cls in (ROAD, SKY, BUILDING, VEGETATION, CAR):
        present = sum(cls in classes for classes in per_scene)
        assert present >= 18, f"class {cls} only in {present} of {len(per_scene)} scenes"
    counts = sorted(len(classes) for classes in per_scene)
    assert counts[len(counts) // 2] >= 10, counts  # the median scene has 10+ classes
    assert len(set().union(*per_scene)) >= 15


def test_small_and_large_objects_appear(survey) -> None:
    def seeds_with(*names: str) -> int:
        ids = {TRAIN_IDS[n] for n in names}
        return sum(bool(_classes(label) & ids) for _, label in survey)

    assert seeds_with("pole") >= 5
    assert seeds_with("traffic sign", "traffic light") >= 5
    assert seeds_with("person") >= 5
    assert seeds_with("truck", "bus") >= 15  # one large vehicle is placed in every scene


def test_road_dominates_the_bottom_and_sky_the_top(survey) -> None:
    # Perspective sanity: road pixels sit low in the image, sky pixels high.
    for _, label in survey:
        rows = np.arange(label.shape[0])[:, None]
        road_rows = np.broadcast_to(rows, label.shape)[label == ROAD]
        sky_rows = np.broadcast_to(rows, label.shape)[label == SKY]
        assert road_rows.mean() > 0.6 * label.shape[0]
        assert sky_rows.mean() < 0.35 * label.shape[0]


def test_appearance_is_not_a_function_of_the_label(survey) -> None:
    # The same class must look different across scenes (colour jitter, lighting) ...
    for cls in (ROAD, BUILDING, VEGETATION, CAR):
        means = np.array(
            [image[label == cls].mean(axis=0) for image, label in survey if (label == cls).any()]
        )
        assert np.ptp(means, axis=0).max() > 25.0, (cls, means)
    # ... and vary inside one scene (texture, windows, lane paint, instances).
    image, label = survey[0]
    for cls in (ROAD, BUILDING):
        assert image[label == cls].astype(np.float32).std(axis=0).max() > 8.0


def test_hood_is_ignored_and_optional() -> None:
    hoods = 0
    for seed in range(10):
        _, label = render_scene(seed, 128, 256)
        ignore_rows = np.nonzero((label == IGNORE_ID).any(axis=1))[0]
        if ignore_rows.size:
            hoods += 1
            assert ignore_rows.min() > 0.8 * label.shape[0]  # only a band at the bottom
        _, no_hood = render_scene(seed, 128, 256, hood=False)
        assert IGNORE_ID not in _classes(no_hood)
    assert hoods >= 5


def test_sensor_effects_touch_the_image_only() -> None:
    image, label = render_scene(4, 128, 256)
    clean, clean_label = render_scene(4, 128, 256, sensor=False)
    np.testing.assert_array_equal(label, clean_label)
    diff = np.abs(image.astype(np.int16) - clean.astype(np.int16))
    assert 0.5 < diff.mean() < 15.0


def test_colorize_uses_the_cityscapes_palette() -> None:
    label = np.array([[0, 10, 255]], dtype=np.uint8)
    rgb = colorize(label)
    assert rgb.shape == (1, 3, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [128, 64, 128]
    assert rgb[0, 1].tolist() == [70, 130, 180]
    assert rgb[0, 2].tolist() == [0, 0, 0]


def test_normalize_matches_imagenet_statistics() -> None:
    image = np.zeros((2, 3, 3), dtype=np.uint8)
    image[1] = 255
    out = normalize(image)
    assert out.shape == (3, 2, 3) and out.dtype == torch.float32
    mean = torch.tensor(IMAGENET_MEAN)
    std = torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(out[:, 0, 0], -mean / std)
    torch.testing.assert_close(out[:, 1, 2], (1 - mean) / std)
    with pytest.raises(ValueError):
        normalize(image.astype(np.float32))


def test_dataset_items_are_normalised_scenes() -> None:
    ds = SyntheticStreetDataset(length=3, height=64, width=128, seed=2)
    assert len(ds) == 3
    image, label = ds[1]
    assert image.shape == (3, 64, 128) and image.dtype == torch.float32
    assert label.shape == (64, 128) and label.dtype == torch.int64
    ref_image, ref_label = render_scene(2 * 1_000_003 + 1, 64, 128)
    np.testing.assert_array_equal(label.numpy(), ref_label.astype(np.int64))
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    back = ((image * std + mean) * 255.0).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(back, ref_image.astype(np.float32), atol=1e-3)
    with pytest.raises(IndexError):
        ds[3]


def test_dataset_is_deterministic_and_seeded() -> None:
    a = SyntheticStreetDataset(4, 48, 96, seed=5)
    b = SyntheticStreetDataset(4, 48, 96, seed=5)
    c = SyntheticStreetDataset(4, 48, 96, seed=6)
    torch.testing.assert_close(a[2][0], b[2][0], rtol=0, atol=0)
    assert torch.equal(a[2][1], b[2][1])
    assert not torch.equal(a[2][1], c[2][1])
    assert not torch.equal(a[2][1], a[3][1])


def test_dataset_does_not_depend_on_worker_count() -> None:
    ds = SyntheticStreetDataset(4, 48, 96, seed=1)
    serial = list(DataLoader(ds, batch_size=2, num_workers=0))
    parallel = list(DataLoader(ds, batch_size=2, num_workers=2))
    for (xa, ya), (xb, yb) in zip(serial, parallel, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_drive_frames_move_forward_through_one_scene() -> None:
    frames = render_drive(11, 5, 128, 256)
    assert len(frames) == 5
    first_image, first_label = render_scene(11, 128, 256)
    np.testing.assert_array_equal(frames[0][0], first_image)
    np.testing.assert_array_equal(frames[0][1], first_label)
    hood = frames[0][1] == IGNORE_ID
    for (img_a, lab_a), (img_b, lab_b) in zip(frames, frames[1:], strict=False):
        agreement = float((lab_a == lab_b).mean())
        assert 0.5 < agreement < 1.0, agreement
        assert not np.array_equal(img_a, img_b)
        np.testing.assert_array_equal(lab_b == IGNORE_ID, hood)  # the ego hood stays put


def _zoom_agreement(a: np.ndarray, b: np.ndarray, scale: float) -> float:
    """Agreement of label ``b`` with label ``a`` magnified by ``scale`` about the vanishing point.

    Driving forward magnifies the scene about the vanishing point (near things more than far
    ones), so the next frame should match a slightly zoomed-in previous frame better than the
    previous frame itself. The vanishing point is read off ``a``: the top of the road.
    """
    h, w = a.shape
    rows = np.nonzero((a == ROAD).any(axis=1))[0]
    r0 = rows.min()
    x0 = np.nonzero((a[r0 : r0 + 3] == ROAD).any(axis=0))[0].mean()
    yy, xx = np.mgrid[0:h, 0:w]
    ys = np.round(r0 + (yy - r0) / scale).astype(int)
    xs = np.round(x0 + (xx - x0) / scale).astype(int)
    ok = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w) & (b != IGNORE_ID)
    return float((a[ys.clip(0, h - 1), xs.clip(0, w - 1)] == b)[ok].mean())


@pytest.mark.parametrize("seed", [0, 3, 6])
def test_drive_objects_approach_and_grow(seed: int) -> None:
    frames = [label for _, label in render_drive(seed, 3, 128, 256)]
    for a, b in zip(frames, frames[1:], strict=False):
        still = _zoom_agreement(a, b, 1.0)
        zoomed = max(_zoom_agreement(a, b, s) for s in (1.03, 1.06))
        assert zoomed > still + 0.005, (still, zoomed)
        # Played backwards the scene shrinks instead, so zooming in must not help.
        assert max(_zoom_agreement(b, a, s) for s in (1.03, 1.06)) < _zoom_agreement(b, a, 1.0)


def test_longer_drive_starts_with_the_same_frames() -> None:
    short = render_drive(9, 2, 64, 128)
    long = render_drive(9, 4, 64, 128)
    for (a_img, a_lab), (b_img, b_lab) in zip(short, long, strict=False):
        np.testing.assert_array_equal(a_img, b_img)
        np.testing.assert_array_equal(a_lab, b_lab)


def test_write_drive_writes_readable_pngs(tmp_path) -> None:
    out = tmp_path / "drive"
    paths = write_drive(out, seed=3, num_frames=3, height=64, width=128)
    assert [(p.name, q.name) for p, q in paths] == [
        (f"frame_{k:04d}.png", f"label_{k:04d}.png") for k in range(3)
    ]
    frames = render_drive(3, 3, 64, 128)
    for (frame_path, label_path), (image, label) in zip(paths, frames, strict=True):
        with Image.open(frame_path) as im:
            assert im.mode == "RGB" and im.size == (128, 64)
            np.testing.assert_array_equal(np.asarray(im), image)
        with Image.open(label_path) as im:
            assert im.mode == "L"
            np.testing.assert_array_equal(np.asarray(im), label)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [p.name for p, _ in paths] + [q.name for _, q in paths]
    )  # no temporary files left behind


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        render_scene(-1, 64, 128)
    with pytest.raises(ValueError):
        render_scene(0, 4, 128)
    with pytest.raises(ValueError):
        render_drive(0, 0, 64, 128)
