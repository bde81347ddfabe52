"""Frame sources: where the runtime's RGB frames come from, and how they meet the bundle's size.

Every source yields `Frame`s (RGB uint8 H x W x 3, an optional label map, an index and a
timestamp) so the runner, the demo and the benchmarks never care whether frames come from a
camera, a video file, a folder or the shipped sample drive. `fit_to` brings a frame to the
bundle's input size and returns the geometry that maps predictions back onto the original
frame; `LatestFrame` is the live mode that keeps only the newest frame so latency never piles up
when inference is slower than the camera.

numpy, Pillow and the standard library; OpenCV (`opencv-python-headless`, the `video` extra)
only for video files and cameras, imported when one is opened. Never imports model_zoo,
converters or torch (a phone has no training code).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import operator
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

SAMPLE_DRIVE = Path(__file__).resolve().parent / "samples" / "drive"
"""The shipped synthetic drive: frame_NNNN.png with label_NNNN.png (train ids, 255 = ignore)."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
VIDEO_EXTRA = "pip install adpc[video]"
LETTERBOX_FILL = (124, 116, 104)
"""ImageNet mean in uint8: after the bundle's normalisation the padding is ~0, the least
surprising input for a network trained on normalised images."""

FitMode = Literal["letterbox", "resize", "crop"]


class SourceError(RuntimeError):
    """A source that cannot produce frames; the one-line message names the fix."""


class SourceNotFound(SourceError, FileNotFoundError):
    """The path given as a source does not exist."""


class MissingExtra(ImportError):
    """An optional dependency is absent; the message names the extra that installs it."""


def require_cv2() -> ModuleType:
    """Import OpenCV on first use, so image folders and the sample drive work without it."""
    try:
        return importlib.import_module("cv2")
    except ImportError:
        raise MissingExtra(
            f"OpenCV is needed for video files and cameras: {VIDEO_EXTRA} "
            "(installs opencv-python-headless)"
        ) from None


@dataclass(frozen=True)
class Frame:
    """One RGB frame; `read_at` (perf_counter seconds) is when the source produced it, the
    reference for end-to-end latency; `timestamp_s` is stream time (video position, capture
    time for cameras, index / fps for folders)."""

    image: np.ndarray
    index: int
    timestamp_s: float
    label: np.ndarray | None = None
    name: str = ""
    read_at: float = dataclasses.field(default_factory=time.perf_counter)


def check_frame(image: object, what: str = "frame") -> np.ndarray:
    """Refuse anything but RGB uint8 H x W x 3 with one clear line (bad frames never crash
    deeper inside the runtime with a shape error)."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{what} must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"{what} must be RGB uint8 H x W x 3, got {image.dtype} {tuple(image.shape)}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{what} is empty: {tuple(image.shape)}")
    return image


class FrameSource(ABC):
    """An iterable of `Frame`s that holds resources (files, a camera): use it with `with`."""

    name: str = ""

    @abstractmethod
    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None:
        """Release the underlying resource; call it from the thread that iterates."""
        return None  # nothing held by default (image folders open files one frame at a time)

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def _natural_key(path: Path) -> list[Any]:
    """frame_2 before frame_10: numbers compare as numbers, so unpadded names keep time order."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise SourceError(f"cannot read frame {path}: {exc}") from None


def _read_label(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            label = np.array(im)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise SourceError(f"cannot read label {path}: {exc}") from None
    if label.ndim != 2:
        raise SourceError(
            f"label {path} must be a single-channel class-id image, got shape {label.shape}"
        )
    return label.astype(np.uint8, copy=False)


class ImageFolderSource(FrameSource):
    """Sorted *.png/*.jpg/*.jpeg of a folder (or one image file), read lazily one at a time.

    A folder with `frame_*` files yields only those and pairs each with the `label_*` file of
    the same suffix when it exists (the sample drive's layout); otherwise every image is a frame
    and none has a label. Re-iterable; `loop=True` repeats the folder forever (soak tests),
    indices and timestamps keep increasing.
    """

    def __init__(self, path: str | Path, *, fps: float = 10.0, loop: bool = False) -> None:
        path = Path(path)
        if not path.exists():
            raise SourceNotFound(
                f"image folder {path} does not exist: pass an existing folder of .png/.jpg frames"
            )
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps!r}")
        if path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise SourceError(f"{path} is not a .png/.jpg/.jpeg image")
            images = [path]
        else:
            images = sorted(
                (p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                key=_natural_key,
            )
            framed = [p for p in images if p.name.startswith("frame_")]
            images = framed or [p for p in images if not p.name.startswith("label_")]
        if not images:
            raise SourceError(
                f"no .png/.jpg/.jpeg frames in {path}: pass a folder of images "
                "(frame_NNNN.png with optional label_NNNN.png)"
            )
        self.path = path
        self.name = str(path)
        self.fps = float(fps)
        self.loop = loop
        self.paths: list[Path] = images
        self.label_paths: list[Path | None] = [self._label_for(p) for p in images]

    @staticmethod
    def _label_for(image: Path) -> Path | None:
        if not image.name.startswith("frame_"):
            return None
        label = image.with_name("label_" + image.name[len("frame_") :])
        if label.is_file():
            return label
        for suffix in IMAGE_SUFFIXES:  # labels are PNG even when frames are JPEG
            other = label.with_suffix(suffix)
            if other.is_file():
                return other
        return None

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while True:
            for path, label_path in zip(self.paths, self.label_paths, strict=True):
                image = _read_image(path)
                label = _read_label(label_path) if label_path is not None else None
                if label is not None and label.shape != image.shape[:2]:
                    raise SourceError(
                        f"label {label_path} is {label.shape[1]}x{label.shape[0]} but frame "
                        f"{path.name} is {image.shape[1]}x{image.shape[0]}"
                    )
                yield Frame(image, index, index / self.fps, label, path.name)
                index += 1
            if not self.loop:
                return


class SyntheticDriveSource(ImageFolderSource):
    """The shipped sample drive (labelled synthetic street frames), so a demo needs no data,
    no camera and no training code."""

    def __init__(self, *, fps: float = 10.0, loop: bool = False) -> None:
        if not SAMPLE_DRIVE.is_dir():
            raise SourceNotFound(
                f"the sample drive {SAMPLE_DRIVE} is missing: reinstall adpc "
                "(the wheel ships edge/samples/drive/*.png)"
            )
        super().__init__(SAMPLE_DRIVE, fps=fps, loop=loop)


class VideoSource(FrameSource):
    """A video file, a stream URL or a camera index through OpenCV; frames converted BGR->RGB.

    Opens in the constructor so a bad path or a missing camera fails at once with one line.
    Single pass. Timestamps are the stream position for files and capture time for cameras.
    """

    def __init__(self, path_or_index: str | Path | int) -> None:
        cv2 = require_cv2()
        self._cv2 = cv2
        self.is_camera = isinstance(path_or_index, int)
        if self.is_camera:
            index = int(path_or_index)
            if index < 0:
                raise SourceError(f"camera index must be >= 0, got {index}")
            target: str | int = index
            self.name = f"camera {index}"
        else:
            target = str(path_or_index)
            self.name = target
            if "://" not in target and not Path(target).exists():
                raise SourceNotFound(
                    f"video file {target} does not exist: pass an existing video file, "
                    "a folder of frames, a camera index (0) or 'samples'"
                )
        self._cap = self._open(target)
        if not self._cap.isOpened():
            self._cap.release()
            if self.is_camera:
                raise SourceError(
                    f"camera {target} cannot be opened (no such device, or busy): pass an "
                    "existing camera index (0, 1, ...), a video file or a folder of frames"
                )
            raise SourceError(
                f"cannot open video {target}: not a format OpenCV/FFmpeg can decode; "
                "convert it (ffmpeg -i IN out.mp4) or pass a folder of frames"
            )
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps: float | None = fps if math.isfinite(fps) and fps > 0 else None
        self._closed = False

    def _open(self, target: str | int) -> Any:
        """Open quietly: OpenCV's own multi-line warnings would bury our one-line error."""
        logging = getattr(getattr(self._cv2, "utils", None), "logging", None)
        if logging is None:
            return self._cv2.VideoCapture(target)
        level = logging.getLogLevel()
        logging.setLogLevel(logging.LOG_LEVEL_ERROR)
        try:
            return self._cv2.VideoCapture(target)
        finally:
            logging.setLogLevel(level)

    def __iter__(self) -> Iterator[Frame]:
        cv2 = self._cv2
        index = 0
        while not self._closed:
            ok, bgr = self._cap.read()
            if not ok or bgr is None:
                return
            read_at = time.perf_counter()
            if bgr.ndim == 2:
                rgb = cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
            elif bgr.shape[2] == 4:
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGRA2RGB)
            else:
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if rgb.dtype != np.uint8:  # 16-bit sources: keep the top byte
                rgb = (rgb >> 8).astype(np.uint8)
            if self.is_camera:
                stamp = time.monotonic()
            else:
                stamp = float(self._cap.get(cv2.CAP_PROP_POS_MSEC)) / 1e3
            yield Frame(np.ascontiguousarray(rgb), index, stamp, None, self.name, read_at)
            index += 1

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._cap.release()


class Paced(FrameSource):
    """Deliver a source's frames no faster than `fps`: a file or folder played like a live
    camera, so the live mode can be exercised (and benchmarked) without one."""

    def __init__(
        self,
        source: FrameSource,
        fps: float,
        *,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps!r}")
        self.source = source
        self.name = source.name
        self.period = 1.0 / fps
        self._clock = clock
        self._sleep = sleep

    def __iter__(self) -> Iterator[Frame]:
        due = self._clock()
        for frame in self.source:
            wait = due - self._clock()
            if wait > 0:
                self._sleep(wait)
            due = max(due + self.period, self._clock() - self.period)  # no burst after a stall
            yield dataclasses.replace(frame, read_at=self._clock())

    def close(self) -> None:
        self.source.close()


class LatestFrame:
    """Live mode: a background thread reads the source and keeps only the newest frame.

    `get()` returns the newest frame not yet returned (blocking until one arrives); every frame
    overwritten before anyone took it counts in `dropped`. So when inference is slower than the
    camera the consumer always works on a fresh frame and latency never accumulates. The thread
    owns the source (it closes it); an error raised by the source is re-raised by `get()`.
    Use as a context manager or call `stop()`; both join the thread.
    """

    def __init__(self, source: FrameSource, *, start: bool = True) -> None:
        self.source = source
        self.produced = 0
        self.delivered = 0
        self.dropped = 0
        self._latest: Frame | None = None
        self._error: BaseException | None = None
        self._ended = False
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._thread = threading.Thread(
            target=self._read, name=f"LatestFrame({source.name})", daemon=True
        )
        if start:
            self.start()

    def start(self) -> None:
        self._thread.start()

    def _read(self) -> None:
        frames = iter(self.source)
        try:
            for frame in frames:
                with self._cond:
                    if self._latest is not None:
                        self.dropped += 1
                    self._latest = frame
                    self.produced += 1
                    self._cond.notify_all()
                if self._stop.is_set():
                    break
        except BaseException as exc:  # handed to the consumer, never lost in the thread
            self._error = exc
        finally:
            try:
                close = getattr(frames, "close", None)  # finish the generator on this thread
                if close is not None:
                    close()
                self.source.close()
            finally:
                with self._cond:
                    self._ended = True
                    self._cond.notify_all()

    def get(self, timeout: float | None = None) -> Frame | None:
        """The newest unseen frame; None when the source ended (or `stop()`ed) or on timeout."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._latest is not None or self._ended or self._error is not None,
                timeout,
            )
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            frame, self._latest = self._latest, None
            if frame is not None:
                self.delivered += 1
            return frame

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.get()) is not None:
            yield frame

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the reader to finish and join it; False if it is still blocked in the source
        after `timeout` (a stalled camera read), in which case it exits on its next frame."""
        self._stop.set()
        with self._cond:
            self._ended = True  # wake any consumer now, not after the source's next frame
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> LatestFrame:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class FitGeometry:
    """How `fit_to` placed a frame in the network input: input = frame * scale + offset
    (continuous pixel-edge coordinates, y then x), so predictions can be drawn on the frame."""

    mode: str
    frame_size: tuple[int, int]  # (H, W) of the original frame
    input_size: tuple[int, int]  # (H, W) given to the network
    scale: tuple[float, float]  # (sy, sx)
    offset: tuple[float, float]  # (oy, ox); negative for crop

    def frame_to_input(self, y: float, x: float) -> tuple[float, float]:
        return y * self.scale[0] + self.offset[0], x * self.scale[1] + self.offset[1]

    def input_to_frame(self, y: float, x: float) -> tuple[float, float]:
        return (y - self.offset[0]) / self.scale[0], (x - self.offset[1]) / self.scale[1]

    def content_box(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) of the input that shows the frame (letterbox excludes
        the padding); predictions outside it describe no real pixel."""
        h, w = self.frame_size
        top, left = self.frame_to_input(0, 0)
        bottom, right = self.frame_to_input(h, w)
        ih, iw = self.input_size
        return (
            max(0, round(top)),
            min(ih, round(bottom)),
            max(0, round(left)),
            min(iw, round(right)),
        )

    def to_frame(self, pred: np.ndarray, fill: int | float = 255) -> np.ndarray:
        """Map a map at input resolution, or any resolution proportional to it (1/4-res labels,
        confidences), onto the original frame, nearest; frame pixels the input does not show
        (crop mode) get `fill` (255 = ignore for labels)."""
        pred = np.asarray(pred)
        if pred.ndim < 2:
            raise ValueError(f"prediction must be at least 2-D, got shape {pred.shape}")
        ph, pw = pred.shape[:2]
        rows, row_ok = self._axis(0, ph)
        cols, col_ok = self._axis(1, pw)
        out = pred[np.ix_(rows, cols)]
        if not (row_ok.all() and col_ok.all()):
            out = out.copy()
            out[~(row_ok[:, None] & col_ok[None, :])] = fill
        return out

    def _axis(self, axis: int, pred_len: int) -> tuple[np.ndarray, np.ndarray]:
        centres = np.arange(self.frame_size[axis], dtype=np.float64) + 0.5
        in_input = centres * self.scale[axis] + self.offset[axis]
        index = np.floor(in_input * (pred_len / self.input_size[axis])).astype(np.int64)
        ok = (index >= 0) & (index < pred_len)
        return np.clip(index, 0, pred_len - 1), ok


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image.copy()
    resized = Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized)


def fit_to(
    frame: np.ndarray,
    height: int,
    width: int,
    mode: FitMode = "letterbox",
    fill: Sequence[int] = LETTERBOX_FILL,
) -> tuple[np.ndarray, FitGeometry]:
    """Bring a frame to the bundle's input size; returns (input image, geometry).

    letterbox: scale to fit inside, keep aspect, pad with `fill` (nothing lost, nothing
    distorted); resize: stretch to the size (full field of view, distorted); crop: scale to
    cover, centre-crop (no padding, edges lost; `FitGeometry.to_frame` marks them `fill`).
    """
    image = check_frame(frame)
    try:  # numpy integers from a manifest are fine, floats are not
        height, width = operator.index(height), operator.index(width)
    except TypeError:
        raise ValueError(f"target size must be integers, got {height!r} x {width!r}") from None
    if height <= 0 or width <= 0:
        raise ValueError(f"target size must be positive, got {height} x {width}")
    if len(fill) != 3 or not all(0 <= int(c) <= 255 for c in fill):
        raise ValueError(f"fill must be an RGB triple of 0..255, got {fill!r}")
    h, w = image.shape[:2]
    if mode == "resize":
        out = _resize(image, height, width)
        return out, FitGeometry(mode, (h, w), (height, width), (height / h, width / w), (0, 0))
    if mode == "letterbox":
        s = min(height / h, width / w)
        nh, nw = min(height, max(1, round(h * s))), min(width, max(1, round(w * s)))
        top, left = (height - nh) // 2, (width - nw) // 2
        out = np.empty((height, width, 3), np.uint8)
        out[...] = np.asarray(fill, dtype=np.uint8)
        out[top : top + nh, left : left + nw] = _resize(image, nh, nw)
        geometry = FitGeometry(mode, (h, w), (height, width), (nh / h, nw / w), (top, left))
        return out, geometry
    if mode == "crop":
        s = max(height / h, width / w)
        nh, nw = max(height, round(h * s)), max(width, round(w * s))
        top, left = (nh - height) // 2, (nw - width) // 2
        out = np.ascontiguousarray(_resize(image, nh, nw)[top : top + height, left : left + width])
        geometry = FitGeometry(mode, (h, w), (height, width), (nh / h, nw / w), (-top, -left))
        return out, geometry
    raise ValueError(f"fit mode must be 'letterbox', 'resize' or 'crop', got {mode!r}")


def open_source(spec: str, *, loop: bool = False) -> FrameSource:
    """The CLI's --source: 'samples' (the shipped drive), a camera index ('0'), a folder of
    frames, an image, a video file or a stream URL."""
    text = str(spec).strip()
    if text.lower() == "samples":
        return SyntheticDriveSource(loop=loop)
    if text.isdigit():
        return VideoSource(int(text))
    if "://" in text:
        return VideoSource(text)
    path = Path(text).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES):
        return ImageFolderSource(path, loop=loop)
    if path.is_file():
        return VideoSource(path)
    raise SourceNotFound(
        f"source {text!r} does not exist: pass 'samples', a camera index (0), "
        "a video file or a folder of frames"
    )
