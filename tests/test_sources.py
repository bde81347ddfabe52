"""Frame sources: folder order and labels, video/camera through OpenCV, fit geometry, live mode,
and the --source dispatch with its one-line errors."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.sources import (
    SAMPLE_DRIVE,
    Frame,
    FrameSource,
    ImageFolderSource,
    LatestFrame,
    MissingExtra,
    Paced,
    SourceError,
    SourceNotFound,
    SyntheticDriveSource,
    VideoSource,
    fit_to,
    open_source,
)

try:
    import cv2
except ImportError:  # the folder, geometry and live-mode tests still run
    cv2 = None
needs_cv2 = pytest.mark.skipif(cv2 is None, reason="OpenCV not installed: pip install adpc[video]")

RGB_COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40)]


def write_mp4_with_cv2(path: Path, colours: list[tuple[int, int, int]], fps: float = 10.0) -> None:
    """Written with OpenCV directly (BGR in), so the reader is checked against an independent
    writer, including the BGR -> RGB swap."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    assert writer.isOpened()
    for r, g, b in colours:
        writer.write(np.full((48, 64, 3), (b, g, r), np.uint8))
    writer.release()


def save_rgb(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (8, 12)) -> None:
    Image.fromarray(np.full((*size, 3), colour, np.uint8)).save(path)


# ---- image folders ---------------------------------------------------------------------------


def test_sample_drive_order_and_label_pairing() -> None:
    names = sorted(p for p in SAMPLE_DRIVE.iterdir() if p.name.startswith("frame_"))
    assert len(names) >= 2
    frames = list(SyntheticDriveSource())
    assert [f.name for f in frames] == [p.name for p in names]
    assert [f.index for f in frames] == list(range(len(names)))
    for frame, path in zip(frames, names, strict=True):
        assert frame.image.dtype == np.uint8 and frame.image.shape[2] == 3
        np.testing.assert_array_equal(frame.image, np.array(Image.open(path).convert("RGB")))
        label_path = path.with_name(path.name.replace("frame_", "label_"))
        assert frame.label is not None
        np.testing.assert_array_equal(frame.label, np.array(Image.open(label_path)))
    stamps = [f.timestamp_s for f in frames]
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))


def test_folder_natural_order_partial_labels_and_loop(tmp_path: Path) -> None:
    for k, colour in zip((10, 2, 1), RGB_COLOURS, strict=False):
        save_rgb(tmp_path / f"frame_{k}.png", colour)
    Image.fromarray(np.full((8, 12), 7, np.uint8)).save(tmp_path / "label_2.png")
    source = ImageFolderSource(tmp_path)
    frames = list(source)
    assert [f.name for f in frames] == ["frame_1.png", "frame_2.png", "frame_10.png"]
    assert [f.label is not None for f in frames] == [False, True, False]
    assert int(frames[1].label[0, 0]) == 7
    assert frames[2].image[0, 0].tolist() == list(RGB_COLOURS[0])

    looped = ImageFolderSource(tmp_path, loop=True)
    first7 = [f for _, f in zip(range(7), looped, strict=False)]
    assert [f.index for f in first7] == list(range(7))
    assert [f.name for f in first7][3:6] == ["frame_1.png", "frame_2.png", "frame_10.png"]


def test_plain_image_folder_has_no_labels(tmp_path: Path) -> None:
    save_rgb(tmp_path / "b.jpg", (10, 20, 30))
    save_rgb(tmp_path / "a.png", (200, 100, 50))
    (tmp_path / "notes.txt").write_text("not an image")
    frames = list(ImageFolderSource(tmp_path))
    assert [f.name for f in frames] == ["a.png", "b.jpg"]
    assert all(f.label is None for f in frames)
    assert frames[0].image[0, 0].tolist() == [200, 100, 50]


def test_folder_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no .png"):
        ImageFolderSource(tmp_path)
    (tmp_path / "frame_0.png").write_bytes(b"not a png")
    with pytest.raises(SourceError, match="frame_0.png") as info:
        list(ImageFolderSource(tmp_path))
    assert "\n" not in str(info.value)
    with pytest.raises(SourceNotFound):
        ImageFolderSource(tmp_path / "absent")


# ---- video files and cameras -------------------------------------------------------------------


@needs_cv2
def test_video_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    write_mp4_with_cv2(path, RGB_COLOURS, fps=10.0)
    with VideoSource(path) as source:
        assert source.fps == pytest.approx(10.0)
        frames = list(source)
    assert len(frames) == len(RGB_COLOURS)
    for frame, colour in zip(frames, RGB_COLOURS, strict=True):
        assert frame.image.shape == (48, 64, 3) and frame.image.dtype == np.uint8
        mean = frame.image.reshape(-1, 3).mean(0)
        assert np.abs(mean - np.array(colour)).max() < 12, (mean, colour)
    assert [f.timestamp_s for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3], abs=0.02)


@needs_cv2
def test_video_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound, match="does not exist"):
        VideoSource(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"definitely not a video")
    with pytest.raises(SourceError, match="cannot open video") as info:
        VideoSource(junk)
    assert "\n" not in str(info.value)
    with pytest.raises(SourceError, match="camera 99 cannot be opened") as info:
        VideoSource(99)
    assert "\n" not in str(info.value)


def test_missing_opencv_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)  # makes `import cv2` raise ImportError
    with pytest.raises(MissingExtra, match=r"pip install adpc\[video\]"):
        VideoSource(tmp_path / "x.mp4")
    assert len(list(SyntheticDriveSource())) > 0  # folders never need OpenCV


# ---- fit_to geometry ---------------------------------------------------------------------------


def quadrant_frame() -> np.ndarray:
    """128 x 256 grey frame whose bottom-right quadrant is red."""
    frame = np.full((128, 256, 3), 90, np.uint8)
    frame[64:, 128:] = (250, 0, 0)
    return frame


def is_red(pixels: np.ndarray) -> np.ndarray:
    return (pixels[..., 0] > 200) & (pixels[..., 1] < 50)


def test_fit_letterbox_places_and_pads() -> None:
    out, geometry = fit_to(quadrant_frame(), 64, 64, "letterbox", fill=(1, 2, 3))
    # scale 0.25 -> content 32 x 64, centred vertically: rows 16..48; red quadrant rows 32..48,
    # cols 32..64 (computed by hand, not by the code under test)
    assert out.shape == (64, 64, 3)
    assert (out[:16] == (1, 2, 3)).all() and (out[48:] == (1, 2, 3)).all()
    assert is_red(out[34:46, 34:62]).all()
    assert not is_red(out[16:30]).any() and not is_red(out[16:48, :30]).any()
    assert geometry.frame_to_input(100, 200) == pytest.approx((41.0, 50.0))
    assert geometry.input_to_frame(41.0, 50.0) == pytest.approx((100, 200))
    assert geometry.content_box() == (16, 48, 0, 64)


def test_fit_resize_and_crop_place_the_quadrant() -> None:
    out, geometry = fit_to(quadrant_frame(), 64, 64, "resize")
    # stretch: rows x 0.5, cols x 0.25 -> red at rows 32.., cols 32..
    assert is_red(out[34:, 34:]).all() and not is_red(out[:30]).any()
    assert not is_red(out[:, :30]).any()
    assert geometry.frame_to_input(64, 128) == pytest.approx((32, 32))

    out, geometry = fit_to(quadrant_frame(), 64, 64, "crop")
    # cover: x 0.5 -> 64 x 128, centre crop cols 32..96 -> red at rows 32.., cols 32..64
    assert is_red(out[34:, 34:]).all() and not is_red(out[:30]).any()
    assert not is_red(out[:, :30]).any()
    assert geometry.frame_to_input(64, 128) == pytest.approx((32, 32))
    assert geometry.frame_to_input(0, 0) == pytest.approx((0, -32))


def test_predictions_map_back_onto_the_frame() -> None:
    _, letterbox = fit_to(quadrant_frame(), 64, 64, "letterbox")
    ids = np.arange(64 * 64).reshape(64, 64)
    back = letterbox.to_frame(ids)
    assert back.shape == (128, 256)
    # frame pixel (100, 200) has centre (100.5, 200.5) -> input (41.125, 50.125)
    assert back[100, 200] == 41 * 64 + 50
    quarter = np.arange(16 * 16).reshape(16, 16)  # 1/4-resolution exit logits/labels
    assert letterbox.to_frame(quarter)[100, 200] == 10 * 16 + 12

    _, crop = fit_to(quadrant_frame(), 64, 64, "crop")
    labels = crop.to_frame(np.zeros((64, 64), np.uint8), fill=255)
    # crop shows frame cols 64..192 only (input cols 0..64 / 0.5 + 64)
    assert (labels[:, :64] == 255).all() and (labels[:, 192:] == 255).all()
    assert (labels[:, 64:192] == 0).all()


def test_fit_rejects_bad_frames() -> None:
    with pytest.raises(ValueError, match="RGB uint8"):
        fit_to(np.zeros((8, 8), np.uint8), 4, 4)
    with pytest.raises(ValueError, match="RGB uint8"):
        fit_to(np.zeros((8, 8, 3), np.float32), 4, 4)
    with pytest.raises(ValueError, match="fit mode"):
        fit_to(np.zeros((8, 8, 3), np.uint8), 4, 4, "stretch")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="integers"):
        fit_to(np.zeros((8, 8, 3), np.uint8), 4.0, 4)  # type: ignore[arg-type]
    out, _ = fit_to(np.zeros((8, 8, 3), np.uint8), np.int64(4), np.int64(6))  # manifest ints
    assert out.shape == (4, 6, 3)


# ---- live mode ---------------------------------------------------------------------------------


class Counting(FrameSource):
    """A fake camera at a fixed rate that records whether it was closed."""

    def __init__(self, fps: float, count: int | None = None, fail_at: int | None = None) -> None:
        self.name = "counting"
        self.period, self.count, self.fail_at = 1 / fps, count, fail_at
        self.closed = False

    def __iter__(self) -> Iterator[Frame]:
        image = np.zeros((4, 4, 3), np.uint8)
        i = 0
        while self.count is None or i < self.count:
            time.sleep(self.period)
            if i == self.fail_at:
                raise SourceError("camera unplugged")
            yield Frame(image, i, i * self.period)
            i += 1

    def close(self) -> None:
        self.closed = True


def test_latest_frame_drops_stale_frames_for_a_slow_consumer() -> None:
    threads_before = threading.active_count()
    source = Counting(fps=200)
    consumer_s = 0.04
    ages, indices = [], []
    with LatestFrame(source) as live:
        for frame in live:
            ages.append(time.perf_counter() - frame.read_at)
            indices.append(frame.index)
            time.sleep(consumer_s)  # inference slower than the camera
            if len(indices) == 12:
                break
    assert live.dropped > 0
    assert live.delivered == 12
    assert live.produced >= live.delivered + live.dropped
    assert all(b > a for a, b in zip(indices, indices[1:], strict=False))
    assert max(b - a for a, b in zip(indices, indices[1:], strict=False)) > 1  # skipped frames
    # a FIFO would have fallen ~0.035 s further behind per frame (~0.4 s by the end)
    assert max(ages[3:]) < 0.2, ages
    assert not live.running and source.closed
    assert threading.active_count() == threads_before


def test_latest_frame_ends_with_the_source_and_reraises_errors() -> None:
    threads_before = threading.active_count()
    with LatestFrame(Counting(fps=500, count=5)) as live:
        got = [frame for _, frame in zip(range(50), live, strict=False)]  # bounded: never hangs
    assert 1 <= len(got) <= 5 and got[-1].index == 4  # the last frame is never dropped
    assert live.produced == 5 and live.delivered + live.dropped == 5

    failing = Counting(fps=500, fail_at=3)
    live = LatestFrame(failing)
    with pytest.raises(SourceError, match="unplugged"):
        for _ in zip(range(50), live, strict=False):
            pass
    assert live.stop() and failing.closed
    assert threading.active_count() == threads_before


def test_latest_frame_stop_from_consumer_side_wakes_a_waiting_get() -> None:
    threads_before = threading.active_count()
    live = LatestFrame(Counting(fps=20))
    assert live.get(timeout=2.0) is not None
    timer = threading.Timer(0.05, live.stop)
    timer.start()
    start = time.perf_counter()
    for _ in range(100):  # bounded: a get() that never reports the end fails, not hangs
        if live.get(timeout=2.0) is None:
            break
    else:
        pytest.fail("get() kept returning frames after stop()")
    assert time.perf_counter() - start < 1.0
    timer.join()
    assert live.stop(timeout=2.0)
    assert threading.active_count() == threads_before


def test_paced_source_limits_the_rate() -> None:
    start = time.perf_counter()
    frames = list(Paced(SyntheticDriveSource(), fps=100))
    elapsed = time.perf_counter() - start
    assert len(frames) == len(SyntheticDriveSource())
    assert elapsed >= (len(frames) - 1) / 100 * 0.9


# ---- --source dispatch -------------------------------------------------------------------------


@needs_cv2
def test_open_source_dispatch(tmp_path: Path) -> None:
    assert isinstance(open_source("samples"), SyntheticDriveSource)
    save_rgb(tmp_path / "a.png", (1, 2, 3))
    folder = open_source(str(tmp_path))
    assert type(folder) is ImageFolderSource and len(folder) == 1
    single = open_source(str(tmp_path / "a.png"))
    assert [f.name for f in single] == ["a.png"]
    clip = tmp_path / "clip.mp4"
    write_mp4_with_cv2(clip, RGB_COLOURS[:2])
    with open_source(str(clip)) as video:
        assert isinstance(video, VideoSource) and not video.is_camera
        assert len(list(video)) == 2


@needs_cv2
def test_open_source_errors_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.mp4"
    with pytest.raises(SourceNotFound, match="samples") as info:
        open_source(str(missing))
    assert str(missing) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(SourceError, match="camera 99") as info:
        open_source("99")
    assert "\n" not in str(info.value)


def test_edge_imports_no_training_code_and_opencv_lazily() -> None:
    """A phone has no torch; OpenCV and matplotlib load only when a video or plot is made."""
    code = (
        "import sys, edge.sources, edge.viz; "
        "print(','.join(m for m in ('torch', 'model_zoo', 'converters', 'cv2', 'matplotlib') "
        "if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
