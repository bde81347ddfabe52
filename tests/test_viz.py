"""HUD text, video writing (MP4 through OpenCV, GIF through Pillow, atomically) and the anytime
plot: the files a user opens to judge an anytime run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.viz import hud, hud_box, hud_lines, plot_anytime_latency, write_video

try:
    import cv2
except ImportError:
    cv2 = None
needs_cv2 = pytest.mark.skipif(cv2 is None, reason="OpenCV not installed: pip install adpc[video]")

COLOURS = [(220, 40, 40), (40, 220, 40), (40, 40, 220), (230, 230, 50), (240, 240, 240)]


def bright_noise(height: int = 120, width: int = 200, seed: int = 0) -> np.ndarray:
    """Every pixel >= 60 so a darkened box changes every pixel it covers."""
    rng = np.random.default_rng(seed)
    return rng.integers(60, 256, size=(height, width, 3), dtype=np.uint8)


def solid_frames(height: int = 48, width: int = 64) -> list[np.ndarray]:
    return [np.full((height, width, 3), c, np.uint8) for c in COLOURS]


def changed_box(before: np.ndarray, after: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero((before != after).any(axis=2))
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


# ---- HUD ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("corner", ["top-left", "bottom-right"])
def test_hud_changes_pixels_only_in_its_box(corner: str) -> None:
    frame = bright_noise()
    original = frame.copy()
    lines = hud_lines(2, 4, 31.25, mj=4.5, deadline_ms=50)
    out = hud(frame, lines, corner=corner)
    np.testing.assert_array_equal(frame, original)  # input untouched
    top, bottom, left, right = changed_box(frame, out)
    # a solid backing rectangle: every pixel inside the changed bounding box changed
    assert (out[top:bottom, left:right] != frame[top:bottom, left:right]).any(axis=2).all()
    assert (top, bottom, left, right) == hud_box(frame.shape[:2], lines, corner)
    assert (bottom - top) * (right - left) < 0.5 * frame.shape[0] * frame.shape[1]
    h, w = frame.shape[:2]
    if corner == "top-left":
        assert top < h // 4 and left < w // 4
    else:
        assert bottom > 3 * h // 4 and right > 3 * w // 4
    box = out[top:bottom, left:right].astype(int)
    assert (box.max(axis=2) >= 200).any()  # white text
    assert np.median(box) < np.median(frame[top:bottom, left:right]) * 0.6  # dark backing


def test_hud_lines_and_empty_hud() -> None:
    lines = hud_lines(3, 4, 27.04, mj=12.0, deadline_ms=33, skipped=0.42)
    text = " | ".join(lines)
    for part in ("exit 3/4", "27.0 ms", "33 ms deadline", "12.0 mJ", "42%"):
        assert part in text
    assert all(line.isascii() for line in lines)
    frame = bright_noise()
    np.testing.assert_array_equal(hud(frame, []), frame)
    more = hud_box(frame.shape[:2], lines + ["one more line"])
    fewer = hud_box(frame.shape[:2], lines)
    assert more[1] - more[0] > fewer[1] - fewer[0]


# ---- video -------------------------------------------------------------------------------------


def test_write_gif_is_readable_and_atomic(tmp_path: Path) -> None:
    frames = solid_frames()
    path = write_video(iter(frames), tmp_path / "anytime.gif", fps=5)
    assert path == tmp_path / "anytime.gif"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anytime.gif"]  # no temp left over
    with Image.open(path) as gif:
        assert gif.n_frames == len(frames)
        assert gif.info.get("duration") == 200
        for i, colour in enumerate(COLOURS):
            gif.seek(i)
            rgb = np.asarray(gif.convert("RGB")).reshape(-1, 3).mean(0)
            assert np.abs(rgb - np.array(colour)).max() < 8, (i, rgb, colour)


@needs_cv2
@pytest.mark.parametrize("size", [(48, 64), (47, 63)])
def test_write_mp4_is_readable(tmp_path: Path, size: tuple[int, int]) -> None:
    frames = solid_frames(*size)
    path = write_video(frames, tmp_path / "anytime.mp4", fps=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anytime.mp4"]
    capture = cv2.VideoCapture(str(path))
    read = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        read.append(bgr)
    capture.release()
    assert len(read) == len(frames)
    assert read[0].shape[0] >= size[0] and read[0].shape[1] >= size[1]  # padded, never cropped
    for bgr, colour in zip(read, COLOURS, strict=True):
        rgb = bgr[..., ::-1].reshape(-1, 3).mean(0)
        assert np.abs(rgb - np.array(colour)).max() < 12, (rgb, colour)


def test_mp4_without_opencv_falls_back_to_gif(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.warns(UserWarning, match=r"adpc\[video\]"):
        path = write_video(solid_frames(), tmp_path / "run.mp4", fps=10)
    assert path == tmp_path / "run.gif" and not (tmp_path / "run.mp4").exists()
    with Image.open(path) as gif:
        assert gif.n_frames == len(COLOURS)


def test_write_video_refuses_bad_input_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "bad.gif"
    with pytest.raises(ValueError, match="no frames"):
        write_video([], target)
    frames = solid_frames() + [np.zeros((10, 10, 3), np.uint8)]
    with pytest.raises(ValueError, match="video frame 5"):
        write_video(frames, target)
    with pytest.raises(ValueError, match="RGB uint8"):
        write_video([np.zeros((8, 8), np.uint8)], target)
    with pytest.raises(ValueError, match=r"\.gif"):
        write_video(solid_frames(), tmp_path / "bad.webp")
    assert list(tmp_path.iterdir()) == []  # a failed write leaves neither file nor temp


# ---- anytime plot ------------------------------------------------------------------------------


def test_anytime_plot_png(tmp_path: Path) -> None:
    one = {"ADP-C": [(30.0, 0.52), (12.0, 0.31), (21.0, 0.45)]}
    two = {**one, "dense": [(41.0, 0.55)]}
    path_one = plot_anytime_latency(one, tmp_path / "one.png")
    path_two = plot_anytime_latency(two, tmp_path / "two.png", deadlines=[25.0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.png", "two.png"]
    with Image.open(path_one) as im_one, Image.open(path_two) as im_two:
        assert im_one.format == "PNG" and im_one.size[0] >= 300 and im_one.size[1] >= 200
        a = np.asarray(im_one.convert("RGB")).astype(int)
        b = np.asarray(im_two.convert("RGB")).astype(int)
    assert len(np.unique(a.reshape(-1, 3), axis=0)) > 50  # axes, text, line: not blank
    # matplotlib's first two default colours: series one blue, series two orange
    blue = (np.abs(a - (31, 119, 180)).max(axis=2) < 20).sum()
    assert blue > 200
    assert (np.abs(a - (255, 127, 14)).max(axis=2) < 20).sum() == 0
    assert (np.abs(b - (255, 127, 14)).max(axis=2) < 20).sum() > 20


def test_anytime_plot_refuses_bad_points(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no series"):
        plot_anytime_latency({}, tmp_path / "p.png")
    with pytest.raises(ValueError, match="'bad'"):
        plot_anytime_latency({"bad": [(1.0, float("nan"))]}, tmp_path / "p.png")
    assert list(tmp_path.iterdir()) == []
