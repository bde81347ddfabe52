"""Procedural synthetic driving scenes with Cityscapes trainId labels.

Why this exists: training and demoing an anytime segmentation model needs many labelled street
images with the Cityscapes class layout, and the real dataset cannot ship with the repository.

How a scene is made: a pinhole camera sits above a straight road; every object (road surface,
sidewalks, buildings, fences, poles, signs, people, vehicles) lives in metres in one world and is
projected with one focal length, so size and height in the image follow distance. Objects are
rasterised far-to-near (painter's order) into an *instance-id* image with Pillow; labels are a
lookup of the id, and colours are computed per pixel from per-instance parameters (texture
coordinates on the instance's plane, noise, windows, lane paint, haze). Large regions (road, sky,
building fronts) are smooth and easy; boundaries, thin poles, signs and people are small and hard,
which is where an anytime model should spend its later exits.

Determinism: every random draw comes from ``numpy.random.Generator(PCG64(...))`` seeded with the
scene seed plus a fixed stream number per object family, so a scene is a pure function of
(seed, size) and a drive (:func:`render_drive`) is the same world seen from a camera moving
forward. Nothing here touches a global RNG or keeps module state.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Protocol, TypeVar, overload

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from .cityscapes_classes import CLASS_COLORS, CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES
from .normalize import normalize

__all__ = [
    "IGNORE_ID",
    "NUM_CLASSES",
    "TRAIN_IDS",
    "SyntheticStreetDataset",
    "colorize",
    "render_drive",
    "render_scene",
    "write_drive",
]

TRAIN_IDS: Mapping[str, int] = MappingProxyType({name: i for i, name in enumerate(CLASS_NAMES)})
"""Cityscapes trainIds by class name."""

IGNORE_ID = IGNORE_INDEX

_ROAD = TRAIN_IDS["road"]
_SIDEWALK = TRAIN_IDS["sidewalk"]
_BUILDING = TRAIN_IDS["building"]
_WALL = TRAIN_IDS["wall"]
_FENCE = TRAIN_IDS["fence"]
_POLE = TRAIN_IDS["pole"]
_LIGHT = TRAIN_IDS["traffic light"]
_SIGN = TRAIN_IDS["traffic sign"]
_VEGETATION = TRAIN_IDS["vegetation"]
_TERRAIN = TRAIN_IDS["terrain"]
_SKY = TRAIN_IDS["sky"]
_PERSON = TRAIN_IDS["person"]
_RIDER = TRAIN_IDS["rider"]
_CAR = TRAIN_IDS["car"]
_TRUCK = TRAIN_IDS["truck"]
_BUS = TRAIN_IDS["bus"]
_MOTORCYCLE = TRAIN_IDS["motorcycle"]
_BICYCLE = TRAIN_IDS["bicycle"]

_PALETTE = np.zeros((256, 3), dtype=np.uint8)
_PALETTE[:NUM_CLASSES] = CLASS_COLORS
_PALETTE.flags.writeable = False

# Random streams: one per object family, so adding objects of one kind never reshuffles another
# and a longer drive only appends to each stream (its first frames stay identical).
(
    _S_SCENE,
    _S_CROSSINGS,
    _S_SIDE,
    _S_BACK,
    _S_LIGHTS,
    _S_SIGNS,
    _S_TREES,
    _S_PEOPLE,
    _S_RIDERS,
    _S_VEHICLES,
    _S_FAR,
    _S_TEXTURE,
    _S_FRAME,
) = range(13)

# Materials: how a pixel's colour is computed from its instance.
(
    _M_FLAT,
    _M_SKY,
    _M_ROAD,
    _M_PAVING,
    _M_GRASS,
    _M_FOLIAGE,
    _M_FACADE,
    _M_WALL,
    _M_FENCE,
    _M_PAINT,
    _M_GLASS,
    _M_EMISSIVE,
    _M_HOOD,
) = range(13)
_NUM_MATERIALS = 13

# Plane types: which world plane an instance lies on (for texture coordinates and depth).
_P_SCREEN, _P_GROUND, _P_SIDE, _P_FRONT = range(4)

_Z_NEAR = 0.6  # near clipping distance of ground and wall planes (m)
_Z_FAR = 230.0  # distance of the far skyline, kept fixed relative to the camera (m)
_BB_MIN_Z = 1.2  # billboards (people, poles, trees) closer than this are dropped (m)

Rgb = tuple[float, float, float]
T = TypeVar("T")
_BLACK: Rgb = (0.0, 0.0, 0.0)
_NO_PARAMS = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """A generator for one object family of one scene (``PCG64`` over ``[seed, *stream]``)."""
    return np.random.Generator(np.random.PCG64([seed, *stream]))


class _Draws:
    """Scalar random draws served from blocks of one ``Generator(PCG64)``.

    Layout generation makes a few thousand scalar draws per scene; numpy's per-call overhead
    (about a microsecond) made that a quarter of the render time. Blocks keep the sequence
    deterministic and prefix-stable: the k-th draw never depends on how many follow.
    """

    __slots__ = ("_buf", "_rng")

    def __init__(self, seed: int, *stream: int) -> None:
        self._rng = _rng(seed, *stream)
        self._buf: list[float] = []

    def _refill(self) -> None:
        self._buf.extend(self._rng.random(256).tolist())

    def random(self) -> float:
        if not self._buf:
            self._refill()
        return self._buf.pop()

    def block(self, n: int) -> list[float]:
        """``n`` draws in [0, 1) at once (for colour jitter, the most frequent request)."""
        buf = self._buf
        if len(buf) < n:
            self._refill()
        out = buf[-n:]
        del buf[-n:]
        return out

    @overload
    def uniform(self, low: float, high: float) -> float: ...

    @overload
    def uniform(self, low: float, high: float, size: int) -> np.ndarray: ...

    def uniform(self, low: float, high: float, size: int | None = None) -> float | np.ndarray:
        if size is None:
            return low + (high - low) * self.random()
        return np.array([low + (high - low) * self.random() for _ in range(size)])

    def integers(self, low: int, high: int | None = None) -> int:
        """Uniform integer in [low, high) (or [0, low) with one argument), like numpy's."""
        if high is None:
            low, high = 0, low
        return min(high - 1, low + int((high - low) * self.random()))

    def choice(self, options: Sequence[T]) -> T:
        return options[self.integers(len(options))]

    def exponential(self, scale: float) -> float:
        return -scale * math.log1p(-self.random())

    def poisson(self, lam: float) -> int:
        """Knuth's multiplication method; fine for the small means used here."""
        limit, k, p = math.exp(-lam), 0, self.random()
        while p > limit:
            k += 1
            p *= self.random()
        return k


def _jit(rng: _Draws, base: Sequence[float], amount: float) -> Rgb:
    """``base`` with per-channel and brightness jitter, so instances of a class differ in colour."""
    u0, u1, u2, u3 = rng.block(4)
    a2 = 2.0 * amount
    b = (u3 - 0.5) * a2
    return (
        min(255.0, max(0.0, base[0] + (u0 - 0.5) * a2 + b)),
        min(255.0, max(0.0, base[1] + (u1 - 0.5) * a2 + b)),
        min(255.0, max(0.0, base[2] + (u2 - 0.5) * a2 + b)),
    )


def _pick(rng: _Draws, options: Sequence[Rgb], amount: float) -> Rgb:
    return _jit(rng, options[rng.integers(len(options))], amount)


def _scale(rgb: Rgb, k: float) -> Rgb:
    return (rgb[0] * k, rgb[1] * k, rgb[2] * k)


# Base colours; every use adds jitter.
_FACADES: tuple[Rgb, ...] = (
    (200, 185, 160), (225, 215, 190), (150, 150, 148), (220, 220, 212), (150, 82, 62),
    (222, 200, 140), (200, 160, 150), (100, 100, 106), (130, 140, 152), (180, 170, 150),
    (170, 120, 90), (235, 230, 220),
)  # fmt: skip
_WINDOWS: tuple[Rgb, ...] = ((45, 55, 70), (60, 70, 85), (35, 40, 45), (80, 95, 110))
_PAINTS: tuple[Rgb, ...] = (
    (25, 25, 28), (215, 215, 215), (170, 172, 175), (100, 102, 105), (30, 40, 80),
    (150, 25, 25), (40, 60, 130), (30, 70, 45), (190, 180, 150), (120, 20, 30),
    (230, 230, 235), (60, 60, 62),
)  # fmt: skip
_SKINS: tuple[Rgb, ...] = ((235, 200, 170), (200, 150, 115), (150, 100, 70), (95, 65, 45))
_HAIRS: tuple[Rgb, ...] = ((30, 25, 20), (80, 55, 35), (190, 160, 100), (150, 150, 150))
_CLOTHES: tuple[Rgb, ...] = (
    (30, 30, 35), (200, 40, 40), (40, 60, 150), (230, 230, 225), (100, 110, 60),
    (120, 90, 60), (160, 160, 170), (230, 180, 40), (90, 40, 110), (60, 60, 70),
)  # fmt: skip
_TROUSERS: tuple[Rgb, ...] = ((30, 35, 55), (40, 40, 42), (60, 80, 120), (150, 130, 100))
_FOLIAGE: tuple[Rgb, ...] = ((60, 100, 40), (45, 85, 35), (80, 110, 45), (110, 115, 45))


@dataclasses.dataclass(frozen=True)
class _Camera:
    height_m: float
    focal_rel: float  # focal length in image widths
    horizon_rel: float  # horizon row in image heights
    center_rel: float  # vanishing-point column in image widths
    speed: float  # metres per frame in a drive


@dataclasses.dataclass(frozen=True)
class _Look:
    """Per-scene lighting and camera response (the 'colour jitter per scene')."""

    sky_zenith: Rgb
    sky_horizon: Rgb
    cloud: Rgb
    cloud_cover: float
    haze: Rgb
    visibility: float
    shade_front: float  # faces looking at the camera (-Z)
    shade_pos_x: float  # faces looking right (+X), i.e. left-hand facades
    shade_neg_x: float
    shade_top: float
    gain: Rgb
    contrast: float
    vignette: float
    blur: float  # side weight of the 3-tap blur
    noise: float  # sensor noise std in grey levels


@dataclasses.dataclass(frozen=True)
class _Side:
    sign: int  # -1 left, +1 right
    curb: float  # |X| of the curb
    lawn: float  # grass strip between curb and sidewalk (m)
    walk: float  # sidewalk width (m)

    @property
    def outer(self) -> float:
        """|X| of the building line."""
        return self.curb + self.lawn + self.walk


@dataclasses.dataclass(frozen=True)
class _Road:
    x_left: float
    x_right: float
    lane_right: float  # right edge of the driving lanes (parking lane excluded)
    curb_h: float
    lines: tuple[tuple[float, float, float, float], ...]  # (x, width, dash period or 0, duty)
    crossings: tuple[tuple[float, float], ...]  # world z ranges of side streets
    cross_walk: float  # sidewalk width along side streets
    zebras: tuple[tuple[float, float], ...]  # world z ranges of pedestrian crossings
    asphalt: Rgb
    paint: Rgb
    paving: Rgb
    curb_rgb: Rgb
    grass: Rgb
    tile: float


class _Drawable(Protocol):
    def near(self, cam_z: float, t: int) -> float: ...

    def draw(self, cv: _Canvas) -> None: ...


@dataclasses.dataclass(frozen=True)
class _Layout:
    camera: _Camera
    look: _Look
    road: _Road
    sides: tuple[_Side, _Side]
    far: _Drawable
    roadside: tuple[_Drawable, ...]  # behind the building line; drawn before street objects
    back_row: tuple[_Drawable, ...]  # second row of buildings, drawn before everything else
    street: tuple[_Drawable, ...]
    hood: tuple[float, float, Rgb] | None  # (height fraction, curvature, colour)


# --------------------------------------------------------------------------------------------
# Rasterisation into an instance-id image
# --------------------------------------------------------------------------------------------


class _Canvas:
    """Projects world primitives for one frame and paints their instance ids, far to near.

    Every primitive first registers an instance (class, material, colours, plane, parameters);
    the per-pixel shading later reads those rows back through the id image.
    """

    def __init__(self, layout: _Layout, height: int, width: int, frame: int) -> None:
        cam = layout.camera
        self.w, self.h = width, height
        self.f = cam.focal_rel * width
        self.cx = cam.center_rel * width
        self.yh = cam.horizon_rel * height
        self.hc = cam.height_m
        self.t = frame
        self.cam_z = cam.speed * frame
        self.look = layout.look
        self.rows: list[tuple[float, ...]] = []
        self.image = Image.new("I", (width, height), 0)
        self._draw = ImageDraw.Draw(self.image)
        self.add(_SKY, _M_SKY, _BLACK)  # id 0: the background is sky

    # -- instances ---------------------------------------------------------------------------
    def add(
        self,
        cls: int,
        mat: int,
        rgb: Rgb,
        rgb2: Rgb = _BLACK,
        ptype: int = _P_SCREEN,
        pconst: float = 0.0,
        depth: float = 0.0,
        params: tuple[float, ...] = _NO_PARAMS,
    ) -> int:
        self.rows.append((cls, mat, ptype, pconst, depth, *rgb, *rgb2, *params))
        return len(self.rows) - 1

    def shade(self, rgb: Rgb, face: str) -> Rgb:
        """Colour of a face under the scene light ('front', '+x', '-x', 'top')."""
        lk = self.look
        k = {
            "front": lk.shade_front,
            "+x": lk.shade_pos_x,
            "-x": lk.shade_neg_x,
            "top": lk.shade_top,
        }[face]
        return _scale(rgb, k)

    # -- world primitives ----------------------------------------------------------------------
    def pt(self, x: float, y: float, z: float) -> tuple[float, float]:
        s = self.f / z
        return (self.cx + s * x, self.yh + s * (self.hc - y))

    def polygon(self, pts: list[tuple[float, float]], iid: int) -> None:
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        if max(xs) < 0 or min(xs) > self.w or max(ys) < 0 or min(ys) > self.h:
            return
        self._draw.polygon(pts, fill=iid)

    def ground_quad(self, x0: float, x1: float, y: float, z0: float, z1: float, iid: int) -> None:
        z0, z1 = max(z0, _Z_NEAR), min(z1, _Z_FAR)
        if z1 > z0:
            p = self.pt
            self.polygon([p(x0, y, z0), p(x1, y, z0), p(x1, y, z1), p(x0, y, z1)], iid)

    def side_quad(self, x: float, y0: float, y1: float, z0: float, z1: float, iid: int) -> None:
        z0, z1 = max(z0, _Z_NEAR), min(z1, _Z_FAR)
        if z1 > z0:
            p = self.pt
            self.polygon([p(x, y0, z0), p(x, y1, z0), p(x, y1, z1), p(x, y0, z1)], iid)

    def front_quad(self, x0: float, x1: float, y0: float, y1: float, z: float, iid: int) -> None:
        if _Z_NEAR <= z <= _Z_FAR:
            p = self.pt
            self.polygon([p(x0, y0, z), p(x1, y0, z), p(x1, y1, z), p(x0, y1, z)], iid)

    def box(
        self,
        cls: int,
        mat: int,
        rgb: Rgb,
        x0: float,
        x1: float,
        y0: float,
        y1: float,
        z0: float,
        z1: float,
        top_rgb: Rgb | None = None,
        top_mat: int | None = None,
    ) -> None:
        """The faces of an axis-aligned box that face the camera (they never overlap)."""
        z0c, z1c = max(z0, _Z_NEAR), min(z1, _Z_FAR)
        if z1c <= z0c:
            return
        if z0 >= _Z_NEAR:
            iid = self.add(cls, mat, self.shade(rgb, "front"), depth=z0)
            self.front_quad(x0, x1, y0, y1, z0, iid)
        if x1 < 0:
            iid = self.add(cls, mat, self.shade(rgb, "+x"), depth=z0c)
            self.side_quad(x1, y0, y1, z0c, z1c, iid)
        elif x0 > 0:
            iid = self.add(cls, mat, self.shade(rgb, "-x"), depth=z0c)
            self.side_quad(x0, y0, y1, z0c, z1c, iid)
        if y1 < self.hc:
            top = top_rgb if top_rgb is not None else rgb
            iid = self.add(
                cls, mat if top_mat is None else top_mat, self.shade(top, "top"), depth=z0c
            )
            self.ground_quad(x0, x1, y1, z0c, z1c, iid)

    # -- billboards: flat shapes on the plane Z = z, in metres around anchor column ax ---------
    def _bb(self, ax: float, z: float) -> tuple[float, float, float]:
        s = self.f / z
        return s, self.cx + s * ax, self.yh + s * self.hc

    def bb_scale(self, ax: float, z: float, half_w: float, height: float) -> float:
        """Pixels per metre of a billboard at depth ``z``, or 0 when it is off screen or too near.

        Callers use the scale to pick a level of detail: far objects are drawn with fewer parts,
        which keeps the number of Pillow calls (the cost of a scene) bounded.
        """
        if z < _BB_MIN_Z or z > _Z_FAR:
            return 0.0
        s, bx, by = self._bb(ax, z)
        if bx + s * half_w < 0 or bx - s * half_w > self.w or by < 0 or by - s * height > self.h:
            return 0.0
        return s

    def bb_poly(self, ax: float, z: float, pts: Sequence[tuple[float, float]], iid: int) -> None:
        s, bx, by = self._bb(ax, z)
        self.polygon([(bx + s * dx, by - s * y) for dx, y in pts], iid)

    def bb_ellipse(
        self, ax: float, z: float, cx: float, cy: float, rx: float, ry: float, iid: int
    ) -> None:
        s, bx, by = self._bb(ax, z)
        x0, x1 = bx + s * (cx - rx), bx + s * (cx + rx)
        y0, y1 = by - s * (cy + ry), by - s * (cy - ry)
        if x1 < 0 or x0 > self.w or y1 < 0 or y0 > self.h:
            return
        self._draw.ellipse((x0, y0, max(x0, x1), max(y0, y1)), fill=iid)

    def bb_ring(
        self, ax: float, z: float, cx: float, cy: float, r: float, width: float, iid: int
    ) -> None:
        s, bx, by = self._bb(ax, z)
        x0, x1 = bx + s * (cx - r), bx + s * (cx + r)
        y0, y1 = by - s * (cy + r), by - s * (cy - r)
        if x1 < 0 or x0 > self.w or y1 < 0 or y0 > self.h:
            return
        wpx = max(1, int(round(s * width)))
        self._draw.ellipse((x0, y0, max(x0, x1), max(y0, y1)), outline=iid, width=wpx)

    def bb_rect(
        self,
        ax: float,
        z: float,
        x0: float,
        x1: float,
        y0: float,
        y1: float,
        iid: int,
        min_px: float = 0.0,
    ) -> None:
        """Axis-aligned rectangle at least ``min_px`` wide, so thin poles never break up."""
        s, bx, by = self._bb(ax, z)
        sx0, sx1 = bx + s * x0, bx + s * x1
        if sx1 - sx0 < min_px:
            c = 0.5 * (sx0 + sx1)
            sx0, sx1 = c - 0.5 * min_px, c + 0.5 * min_px
        sy0, sy1 = by - s * y1, by - s * y0
        i0, i1 = math.floor(sx0 + 0.5), math.floor(sx1 + 0.5) - 1
        j0, j1 = math.floor(sy0 + 0.5), math.floor(sy1 + 0.5) - 1
        if i1 < i0 or j1 < j0 or i1 < 0 or i0 >= self.w or j1 < 0 or j0 >= self.h:
            return
        self._draw.rectangle((i0, j0, i1, j1), fill=iid)

    def bb_line(
        self,
        ax: float,
        z: float,
        p0: tuple[float, float],
        p1: tuple[float, float],
        width: float,
        iid: int,
    ) -> None:
        s, bx, by = self._bb(ax, z)
        a = (bx + s * p0[0], by - s * p0[1])
        b = (bx + s * p1[0], by - s * p1[1])
        if max(a[0], b[0]) < 0 or min(a[0], b[0]) > self.w:
            return
        if max(a[1], b[1]) < 0 or min(a[1], b[1]) > self.h:
            return
        self._draw.line((a, b), fill=iid, width=max(1, int(round(s * width))))


# --------------------------------------------------------------------------------------------
# World objects
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Building:
    sign: int
    x_in: float  # |X| of the street-facing facade
    depth: float
    z0: float
    length: float
    height: float
    colour: Rgb
    window: Rgb
    floor_h: float
    win_pitch: float
    win_w: float
    win_h: float
    shop: float  # shop-window pitch on the ground floor, 0 for none

    def near(self, cam_z: float, t: int) -> float:
        return self.z0 - cam_z

    def draw(self, cv: _Canvas) -> None:
        zr0 = self.z0 - cv.cam_z
        zr1 = zr0 + self.length
        if zr1 <= _Z_NEAR or zr0 >= _Z_FAR:
            return
        xi = self.sign * self.x_in
        xo = self.sign * (self.x_in + self.depth)
        params = (self.floor_h, self.win_pitch, self.win_w, self.win_h, self.height, self.shop)
        face = "+x" if self.sign < 0 else "-x"
        iid = cv.add(
            _BUILDING,
            _M_FACADE,
            cv.shade(self.colour, face),
            self.window,
            _P_SIDE,
            xi,
            max(zr0, _Z_NEAR),
            params,
        )
        cv.side_quad(xi, 0.0, self.height, zr0, zr1, iid)
        if zr0 >= _Z_NEAR:
            iid = cv.add(
                _BUILDING,
                _M_FACADE,
                cv.shade(self.colour, "front"),
                self.window,
                _P_FRONT,
                zr0,
                zr0,
                params,
            )
            cv.front_quad(min(xi, xo), max(xi, xo), 0.0, self.height, zr0, iid)


@dataclasses.dataclass(frozen=True)
class _Barrier:
    """A wall or fence along the street (plane X = const)."""

    cls: int
    sign: int
    x: float
    z0: float
    length: float
    height: float
    colour: Rgb
    colour2: Rgb
    pitch: float  # fence bar pitch / wall block height
    bar: float  # fence bar width fraction

    def near(self, cam_z: float, t: int) -> float:
        return self.z0 - cam_z

    def draw(self, cv: _Canvas) -> None:
        zr0 = self.z0 - cv.cam_z
        x = self.sign * self.x
        mat = _M_FENCE if self.cls == _FENCE else _M_WALL
        face = "+x" if self.sign < 0 else "-x"
        params = (self.pitch, self.bar, self.height, 0.0, 0.0, 0.0)
        iid = cv.add(
            self.cls,
            mat,
            cv.shade(self.colour, face),
            cv.shade(self.colour2, face),
            _P_SIDE,
            x,
            max(zr0, _Z_NEAR),
            params,
        )
        cv.side_quad(x, 0.0, self.height, zr0, zr0 + self.length, iid)


@dataclasses.dataclass(frozen=True)
class _Hedge:
    sign: int
    x: float
    z0: float
    step: float
    heights: tuple[float, ...]
    colour: Rgb

    def near(self, cam_z: float, t: int) -> float:
        return self.z0 - cam_z

    def draw(self, cv: _Canvas) -> None:
        zr0 = self.z0 - cv.cam_z
        x = self.sign * self.x
        top = [(zr0 + i * self.step, h) for i, h in enumerate(self.heights)]
        top = [(z, h) for z, h in top if _Z_NEAR <= z <= _Z_FAR]
        if len(top) < 2:
            return
        iid = cv.add(_VEGETATION, _M_FOLIAGE, self.colour, depth=top[0][0])
        pts = [cv.pt(x, h, z) for z, h in top]
        pts += [cv.pt(x, 0.0, top[-1][0]), cv.pt(x, 0.0, top[0][0])]
        cv.polygon(pts, iid)


@dataclasses.dataclass(frozen=True)
class _Tree:
    x: float
    z: float
    trunk_h: float
    trunk_w: float
    blobs: tuple[tuple[float, float, float], ...]  # (dx, dy, r) around the crown centre
    crown_y: float
    colour: Rgb
    bark: Rgb

    def near(self, cam_z: float, t: int) -> float:
        return self.z - cam_z - 1.0

    def draw(self, cv: _Canvas) -> None:
        z = self.z - cv.cam_z
        r0 = self.blobs[0][2]
        s = cv.bb_scale(self.x, z, 1.6 * r0, self.crown_y + 1.6 * r0)
        if s <= 0:
            return
        trunk = cv.add(_VEGETATION, _M_FLAT, self.bark, depth=z)
        hw = 0.5 * self.trunk_w
        cv.bb_rect(self.x, z, -hw, hw, 0.0, self.trunk_h, trunk, min_px=1.0)
        crown = cv.add(_VEGETATION, _M_FOLIAGE, self.colour, depth=z)
        blobs = self.blobs if s * r0 > 4.0 else self.blobs[:3]
        for dx, dy, r in blobs:
            cv.bb_ellipse(self.x, z, dx, self.crown_y + dy, r, 0.92 * r, crown)


@dataclasses.dataclass(frozen=True)
class _StreetLight:
    x: float
    z: float
    height: float
    arm: float  # signed arm length towards the road
    colour: Rgb

    def near(self, cam_z: float, t: int) -> float:
        return self.z - cam_z

    def draw(self, cv: _Canvas) -> None:
        z = self.z - cv.cam_z
        if z < _BB_MIN_Z or z > _Z_FAR:
            return
        iid = cv.add(_POLE, _M_FLAT, self.colour, depth=z)
        cv.bb_rect(self.x, z, -0.09, 0.09, 0.0, self.height, iid, min_px=1.0)
        cv.bb_line(self.x, z, (0.0, self.height - 0.4), (self.arm, self.height), 0.09, iid)
        head = cv.add(_POLE, _M_FLAT, _scale(self.colour, 0.7), depth=z)
        a = self.arm
        cv.bb_rect(
            self.x,
            z,
            a - 0.35 if a > 0 else a - 0.05,
            a + 0.05 if a > 0 else a + 0.35,
            self.height - 0.18,
            self.height + 0.04,
            head,
            min_px=1.0,
        )


@dataclasses.dataclass(frozen=True)
class _SignPost:
    x: float
    z: float
    height: float
    # (shape, centre height, size, outer colour, inner colour); shapes: circle, triangle,
    # rect, diamond, octagon.
    signs: tuple[tuple[str, float, float, Rgb, Rgb], ...]
    colour: Rgb

    def near(self, cam_z: float, t: int) -> float:
        return self.z - cam_z

    def draw(self, cv: _Canvas) -> None:
        z = self.z - cv.cam_z
        if z < _BB_MIN_Z or z > _Z_FAR:
            return
        pole = cv.add(_POLE, _M_FLAT, self.colour, depth=z)
        cv.bb_rect(self.x, z, -0.035, 0.035, 0.0, self.height, pole, min_px=1.0)
        for shape, cy, size, outer, inner in self.signs:
            a = cv.add(_SIGN, _M_FLAT, outer, depth=z)
            b = cv.add(_SIGN, _M_FLAT, inner, depth=z)
            r = 0.5 * size
            if shape == "circle":
                cv.bb_ellipse(self.x, z, 0.0, cy, r, r, a)
                cv.bb_ellipse(self.x, z, 0.0, cy, 0.72 * r, 0.72 * r, b)
            elif shape == "rect":
                cv.bb_rect(self.x, z, -r, r, cy - r * 0.8, cy + r * 0.8, a, min_px=1.0)
                cv.bb_rect(self.x, z, -0.85 * r, 0.85 * r, cy - r * 0.65, cy + r * 0.65, b)
            else:
                n, rot = {
                    "triangle": (3, math.pi / 2),
                    "diamond": (4, math.pi / 2),
                    "octagon": (8, math.pi / 8),
                }[shape]
                for k, rad in ((a, r), (b, 0.7 * r)):
                    pts = [
                        (
                            rad * math.cos(rot + 2 * math.pi * i / n),
                            cy + rad * math.sin(rot + 2 * math.pi * i / n),
                        )
                        for i in range(n)
                    ]
                    cv.bb_poly(self.x, z, pts, k)


@dataclasses.dataclass(frozen=True)
class _TrafficLight:
    x: float
    z: float
    height: float
    arm: float  # signed horizontal arm (0: the light sits on the pole)
    housing: Rgb
    pole_rgb: Rgb
    lit: int  # 0 red, 1 amber, 2 green

    def near(self, cam_z: float, t: int) -> float:
        return self.z - cam_z

    def draw(self, cv: _Canvas) -> None:
        z = self.z - cv.cam_z
        if z < _BB_MIN_Z or z > _Z_FAR:
            return
        pole = cv.add(_POLE, _M_FLAT, self.pole_rgb, depth=z)
        cv.bb_rect(self.x, z, -0.07, 0.07, 0.0, self.height, pole, min_px=1.0)
        if self.arm:
            cv.bb_line(
                self.x, z, (0.0, self.height - 0.1), (self.arm, self.height - 0.1), 0.12, pole
            )
            cx, top = self.arm, self.height - 0.15
        else:
            cx, top = 0.0, self.height + 0.85
        box = cv.add(_LIGHT, _M_FLAT, self.housing, depth=z)
        cv.bb_rect(self.x, z, cx - 0.17, cx + 0.17, top - 0.9, top, box, min_px=1.0)
        lamps = ((230, 40, 30), (240, 170, 30), (60, 220, 120))
        for k in range(3):
            on = k == self.lit
            rgb = lamps[k] if on else _scale(lamps[k], 0.18)
            iid = cv.add(_LIGHT, _M_EMISSIVE if on else _M_FLAT, rgb, depth=z)
            cy = top - 0.16 - 0.28 * k
            cv.bb_ellipse(self.x, z, cx, cy, 0.1, 0.1, iid)


@dataclasses.dataclass(frozen=True)
class _Person:
    x: float
    z: float
    vz: float  # walking speed along the street (m/frame)
    height: float
    skin: Rgb
    hair: Rgb
    top: Rgb
    bottom: Rgb
    stride: float
    phase: float
    coat: bool
    bag: Rgb | None

    def near(self, cam_z: float, t: int) -> float:
        return self.z + self.vz * t - cam_z - 0.3

    def draw(self, cv: _Canvas) -> None:
        z = self.z + self.vz * cv.t - cv.cam_z
        h, x = self.height, self.x
        px = cv.bb_scale(x, z, 0.3 * h, h) * h  # height in pixels
        if px <= 0:
            return
        if px < 10:  # far away: a three-part silhouette is all that survives rasterisation
            top = cv.add(_PERSON, _M_FLAT, self.top, depth=z)
            legs = cv.add(_PERSON, _M_FLAT, self.bottom, depth=z)
            skin = cv.add(_PERSON, _M_FLAT, self.skin, depth=z)
            cv.bb_poly(
                x,
                z,
                ((-0.1 * h, 0.52 * h), (0.1 * h, 0.52 * h), (0.08 * h, 0.0), (-0.08 * h, 0.0)),
                legs,
            )
            cv.bb_rect(x, z, -0.13 * h, 0.13 * h, 0.45 * h, 0.82 * h, top, min_px=1.0)
            cv.bb_ellipse(x, z, 0.0, 0.92 * h, 0.06 * h, 0.07 * h, skin)
            return
        s = self.stride * h * math.sin(self.phase + 1.7 * cv.t)
        legs = cv.add(_PERSON, _M_FLAT, self.bottom, depth=z)
        hip = 0.52 * h
        cv.bb_poly(
            x, z, ((-0.10 * h, hip), (0.0, hip), (-0.02 * h + s, 0.0), (-0.08 * h + s, 0.0)), legs
        )
        cv.bb_poly(
            x, z, ((0.0, hip), (0.10 * h, hip), (0.08 * h - s, 0.0), (0.02 * h - s, 0.0)), legs
        )
        top = cv.add(_PERSON, _M_FLAT, self.top, depth=z)
        tb = 0.36 * h if self.coat else 0.49 * h
        a = 0.6 * s
        cv.bb_poly(
            x,
            z,
            ((-0.125 * h, 0.81 * h), (0.125 * h, 0.81 * h), (0.11 * h, tb), (-0.11 * h, tb)),
            top,
        )
        cv.bb_poly(
            x,
            z,
            (
                (-0.125 * h, 0.80 * h),
                (-0.08 * h, 0.80 * h),
                (-0.10 * h - a, 0.45 * h),
                (-0.15 * h - a, 0.45 * h),
            ),
            top,
        )
        cv.bb_poly(
            x,
            z,
            (
                (0.08 * h, 0.80 * h),
                (0.125 * h, 0.80 * h),
                (0.15 * h + a, 0.45 * h),
                (0.10 * h + a, 0.45 * h),
            ),
            top,
        )
        if self.bag is not None:
            bag = cv.add(_PERSON, _M_FLAT, self.bag, depth=z)
            cv.bb_rect(x, z, 0.12 * h, 0.22 * h, 0.42 * h, 0.58 * h, bag)
        skin = cv.add(_PERSON, _M_FLAT, self.skin, depth=z)
        cv.bb_rect(x, z, -0.025 * h, 0.025 * h, 0.79 * h, 0.87 * h, skin)
        hair = cv.add(_PERSON, _M_FLAT, self.hair, depth=z)
        cv.bb_ellipse(x, z, 0.0, 0.94 * h, 0.062 * h, 0.058 * h, hair)
        cv.bb_ellipse(x, z, 0.0, 0.915 * h, 0.053 * h, 0.06 * h, skin)


@dataclasses.dataclass(frozen=True)
class _Rider:
    """A cyclist or motorcyclist seen from behind, riding along the street."""

    x: float
    z: float
    speed: float
    motor: bool
    frame: Rgb
    jacket: Rgb
    trousers: Rgb
    helmet: Rgb

    def near(self, cam_z: float, t: int) -> float:
        return self.z + self.speed * t - cam_z

    def draw(self, cv: _Canvas) -> None:
        z = self.z + self.speed * cv.t - cv.cam_z
        x = self.x
        vcls = _MOTORCYCLE if self.motor else _BICYCLE
        s = cv.bb_scale(x, z, 0.4, 1.9)
        if s <= 0:
            return
        if s * 1.8 < 10:  # far away: wheel, body, head
            tyre = cv.add(vcls, _M_FLAT, (25.0, 25.0, 27.0), depth=z)
            cv.bb_rect(x, z, -0.1, 0.1, 0.0, 0.9, tyre, min_px=1.0)
            top = cv.add(_RIDER, _M_FLAT, self.jacket, depth=z)
            cv.bb_rect(x, z, -0.2, 0.2, 0.9, 1.55, top, min_px=1.0)
            head = cv.add(_RIDER, _M_FLAT, self.helmet, depth=z)
            cv.bb_ellipse(x, z, 0.0, 1.68, 0.13, 0.13, head)
            return
        tyre = cv.add(vcls, _M_FLAT, (25.0, 25.0, 27.0), depth=z)
        w = 0.08 if self.motor else 0.03
        cv.bb_rect(x, z, -w, w, 0.0, 0.66, tyre, min_px=1.0)
        seat = 1.05 if self.motor else 0.95
        legs = cv.add(_RIDER, _M_FLAT, self.trousers, depth=z)
        pedal = 0.12 * math.sin(1.9 * cv.t + x)
        spread = 0.24 if self.motor else 0.15
        cv.bb_poly(
            x,
            z,
            (
                (-0.13, seat),
                (-0.02, seat),
                (-spread + 0.06, 0.33 + pedal),
                (-spread - 0.04, 0.33 + pedal),
            ),
            legs,
        )
        cv.bb_poly(
            x,
            z,
            (
                (0.02, seat),
                (0.13, seat),
                (spread + 0.04, 0.33 - pedal),
                (spread - 0.06, 0.33 - pedal),
            ),
            legs,
        )
        if self.motor:
            body = cv.add(vcls, _M_PAINT, self.frame, depth=z)
            cv.bb_poly(x, z, ((-0.26, 0.4), (0.26, 0.4), (0.2, 0.95), (-0.2, 0.95)), body)
            tail = cv.add(vcls, _M_EMISSIVE, (220.0, 30.0, 30.0), depth=z)
            cv.bb_rect(x, z, -0.08, 0.08, 0.8, 0.88, tail)
        else:
            frame = cv.add(vcls, _M_FLAT, self.frame, depth=z)
            cv.bb_rect(x, z, -0.03, 0.03, 0.55, seat, frame, min_px=1.0)
        top = cv.add(_RIDER, _M_FLAT, self.jacket, depth=z)
        cv.bb_poly(
            x,
            z,
            ((-0.19, seat + 0.6), (0.19, seat + 0.6), (0.14, seat - 0.02), (-0.14, seat - 0.02)),
            top,
        )
        bar = seat + 0.1
        cv.bb_poly(
            x, z, ((-0.19, seat + 0.58), (-0.12, seat + 0.58), (-0.26, bar), (-0.32, bar)), top
        )
        cv.bb_poly(x, z, ((0.12, seat + 0.58), (0.19, seat + 0.58), (0.32, bar), (0.26, bar)), top)
        grip = cv.add(vcls, _M_FLAT, (30.0, 30.0, 30.0), depth=z)
        cv.bb_rect(x, z, -0.36, 0.36, bar - 0.03, bar + 0.02, grip, min_px=1.0)
        head = cv.add(_RIDER, _M_FLAT, self.helmet, depth=z)
        r = 0.15 if self.motor else 0.12
        cv.bb_ellipse(x, z, 0.0, seat + 0.72, r, r * 1.05, head)


@dataclasses.dataclass(frozen=True)
class _ParkedBike:
    """A bicycle standing on the sidewalk, seen from the side."""

    x: float
    z: float
    facing: int
    colour: Rgb

    def near(self, cam_z: float, t: int) -> float:
        return self.z - cam_z

    def draw(self, cv: _Canvas) -> None:
        z = self.z - cv.cam_z
        x, d = self.x, self.facing
        s = cv.bb_scale(x, z, 0.9, 1.1)
        if s <= 0:
            return
        if s < 6:  # far away: a blob the size of the bicycle
            iid = cv.add(_BICYCLE, _M_FLAT, _scale(self.colour, 0.6), depth=z)
            cv.bb_rect(x, z, -0.8, 0.8, 0.05, 1.0, iid, min_px=1.0)
            return
        tyre = cv.add(_BICYCLE, _M_FLAT, (28.0, 28.0, 30.0), depth=z)
        cv.bb_ring(x, z, -0.52 * d, 0.34, 0.34, 0.05, tyre)
        cv.bb_ring(x, z, 0.52 * d, 0.34, 0.34, 0.05, tyre)
        frame = cv.add(_BICYCLE, _M_FLAT, self.colour, depth=z)
        pts = ((-0.52 * d, 0.34), (-0.05 * d, 0.34), (0.45 * d, 0.85), (-0.12 * d, 0.82))
        for a, b in zip(pts, (*pts[1:], pts[1]), strict=True):
            cv.bb_line(x, z, a, b, 0.04, frame)
        cv.bb_line(x, z, (0.45 * d, 0.85), (0.52 * d, 0.34), 0.04, frame)
        cv.bb_line(x, z, (-0.12 * d, 0.82), (-0.52 * d, 0.34), 0.04, frame)
        cv.bb_rect(x, z, -0.22 * d if d > 0 else 0.0, 0.0 if d > 0 else 0.22, 0.88, 0.92, frame)
        cv.bb_line(x, z, (0.45 * d, 0.85), (0.38 * d, 1.02), 0.04, frame)


@dataclasses.dataclass(frozen=True)
class _Vehicle:
    cls: int  # car, truck or bus
    x: float
    z: float  # rear (near) end at frame 0
    speed: float  # m/frame along +Z
    length: float
    width: float
    height: float
    oncoming: bool  # we see its front
    paint: Rgb
    cargo: Rgb  # truck box / bus stripe
    glass: Rgb
    cabin: tuple[float, float]  # cabin z range as fractions of length (cars)

    def near(self, cam_z: float, t: int) -> float:
        return self.z + self.speed * t - cam_z

    def draw(self, cv: _Canvas) -> None:
        z = self.z + self.speed * cv.t - cv.cam_z
        L, W, H = self.length, self.width, self.height
        if z + L < _Z_NEAR or z > _Z_FAR:
            return
        x0, x1 = self.x - 0.5 * W, self.x + 0.5 * W
        zn, zf = max(z, _Z_NEAR), min(z + L, _Z_FAR)
        xs = (
            cv.cx + cv.f * x0 / zn,
            cv.cx + cv.f * x1 / zn,
            cv.cx + cv.f * x0 / zf,
            cv.cx + cv.f * x1 / zf,
        )
        if max(xs) < 0 or min(xs) > cv.w:
            return
        if cv.f * H / zn < 7.0:  # far away: one painted box
            cv.box(self.cls, _M_PAINT, self.paint, x0, x1, 0.15, H, z, z + L)
            return
        detailed = cv.f * H / zn >= 16.0  # wheels and plates only where they are visible
        shadow = cv.add(_ROAD, _M_FLAT, (18.0, 18.0, 20.0), depth=zn)
        cv.ground_quad(x0 - 0.12, x1 + 0.12, 0.0, z - 0.15, z + L - 0.3, shadow)
        tyre = (24.0, 24.0, 26.0)
        big = self.cls != _CAR
        r = 0.5 if big else 0.32
        axles = [z + 0.6 + r, z + L - 0.6 - r] if not big else [z + 1.2 + r, z + L - 2.2 - r]
        if self.cls == _TRUCK:
            axles.append(z + 2.6 + r if not self.oncoming else z + L - 2.6 - r)
        if detailed:
            # Tyres of the nearest axle show below the body; farther axles hide behind them.
            iid = cv.add(self.cls, _M_FLAT, tyre, depth=zn)
            zc = min(axles)
            for wx0, wx1 in ((x0 + 0.02, x0 + 0.3), (x1 - 0.3, x1 - 0.02)):
                cv.front_quad(wx0, wx1, 0.0, 2 * r, zc - r, iid)
        body_y0 = 0.3 if not big else 0.45
        if self.cls == _CAR:
            self._car(cv, z, x0, x1, body_y0)
        elif self.cls == _TRUCK:
            self._truck(cv, z, x0, x1)
        else:
            self._bus(cv, z, x0, x1)
        # Wheels seen on the visible flank, painted over the body side.
        if detailed and (x1 < 0 or x0 > 0):
            xs = x1 if x1 < 0 else x0
            iid = cv.add(self.cls, _M_FLAT, _scale(tyre, 1.2), depth=zn)
            for zc in axles:
                cv.side_quad(xs, 0.0, 2 * r, zc - r, zc + r, iid)
        self._lights(cv, z, x0, x1, body_y0, detailed)

    def _car(self, cv: _Canvas, z: float, x0: float, x1: float, y0: float) -> None:
        L, H = self.length, self.height
        belt = y0 + 0.52 * (H - y0) - 0.05
        c0, c1 = self.cabin
        if self.oncoming:
            c0, c1 = 1.0 - c1, 1.0 - c0
        cv.box(self.cls, _M_PAINT, self.paint, x0, x1, y0, belt, z, z + L)
        inset = 0.12
        cv.box(
            self.cls,
            _M_GLASS,
            self.glass,
            x0 + inset,
            x1 - inset,
            belt,
            H - 0.06,
            z + c0 * L,
            z + c1 * L,
            top_rgb=self.paint,
            top_mat=_M_PAINT,
        )
        cv.box(
            self.cls,
            _M_PAINT,
            self.paint,
            x0 + inset + 0.04,
            x1 - inset - 0.04,
            H - 0.06,
            H,
            z + c0 * L + 0.1,
            z + c1 * L - 0.1,
        )

    def _truck(self, cv: _Canvas, z: float, x0: float, x1: float) -> None:
        L, H = self.length, self.height
        cab = 2.3
        cv.box(self.cls, _M_FLAT, (35.0, 35.0, 38.0), x0 + 0.15, x1 - 0.15, 0.45, 1.0, z, z + L)
        cab_z = (z + L - cab, z + L) if not self.oncoming else (z, z + cab)
        box_z = (z, z + L - cab - 0.15) if not self.oncoming else (z + cab + 0.15, z + L)
        parts = [("cab", cab_z), ("box", box_z)]
        parts.sort(key=lambda p: -p[1][0])  # far part first
        for name, (za, zb) in parts:
            if name == "box":
                cv.box(self.cls, _M_PAINT, self.cargo, x0, x1, 1.0, H, za, zb)
            else:
                cab_h = min(H, 3.0)
                cv.box(self.cls, _M_PAINT, self.paint, x0 + 0.05, x1 - 0.05, 0.6, cab_h, za, zb)
                gid = cv.add(self.cls, _M_GLASS, self.glass, depth=max(za, _Z_NEAR))
                if self.oncoming:
                    cv.front_quad(x0 + 0.2, x1 - 0.2, 1.75, cab_h - 0.3, za - 0.01, gid)
                if x1 < 0 or x0 > 0:
                    xs = x1 - 0.05 if x1 < 0 else x0 + 0.05
                    cv.side_quad(xs, 1.75, cab_h - 0.3, za + 0.3, zb - 0.9, gid)

    def _bus(self, cv: _Canvas, z: float, x0: float, x1: float) -> None:
        L, H = self.length, self.height
        cv.box(self.cls, _M_PAINT, self.paint, x0, x1, 0.35, H, z, z + L, top_rgb=self.cargo)
        gid = cv.add(self.cls, _M_GLASS, self.glass, depth=max(z, _Z_NEAR))
        if x1 < 0 or x0 > 0:
            xs = x1 if x1 < 0 else x0
            cv.side_quad(xs, 1.2, H - 0.4, z + 0.6, z + L - 0.6, gid)
            sid = cv.add(self.cls, _M_PAINT, self.cargo, depth=max(z, _Z_NEAR))
            cv.side_quad(xs, 0.55, 0.85, z + 0.3, z + L - 0.3, sid)
        lo = 0.95 if self.oncoming else 1.6
        cv.front_quad(x0 + 0.15, x1 - 0.15, lo, H - 0.35, z - 0.01, gid)
        if self.oncoming:
            sign = cv.add(self.cls, _M_EMISSIVE, (250.0, 170.0, 40.0), depth=max(z, _Z_NEAR))
            cv.front_quad(x0 + 0.4, x1 - 0.4, H - 0.32, H - 0.1, z - 0.02, sign)

    def _lights(self, cv: _Canvas, z: float, x0: float, x1: float, y0: float, plate: bool) -> None:
        if z < _Z_NEAR:
            return
        colour = (235.0, 225.0, 190.0) if self.oncoming else (200.0, 25.0, 25.0)
        iid = cv.add(self.cls, _M_EMISSIVE, colour, depth=z)
        ly = y0 + 0.42 if self.cls == _CAR else 0.7
        for a, b in ((x0 + 0.06, x0 + 0.36), (x1 - 0.36, x1 - 0.06)):
            cv.front_quad(a, b, ly, ly + 0.14, z - 0.01, iid)
        if plate:
            iid = cv.add(self.cls, _M_FLAT, (215.0, 215.0, 205.0), depth=z)
            xc = 0.5 * (x0 + x1)
            cv.front_quad(xc - 0.26, xc + 0.26, y0 + 0.1, y0 + 0.22, z - 0.01, iid)


@dataclasses.dataclass(frozen=True)
class _FarSkyline:
    """Buildings and tree lines at a fixed distance that hide the horizon (move with the camera)."""

    segments: tuple[tuple[bool, float, float, float, Rgb, tuple[float, ...]], ...]
    window: Rgb

    def near(self, cam_z: float, t: int) -> float:
        return _Z_FAR

    def draw(self, cv: _Canvas) -> None:
        z = _Z_FAR
        for building, xa, xb, h, rgb, profile in self.segments:
            if building:
                params = (3.2, 2.5, 0.5, 0.5, h, 0.0)
                iid = cv.add(_BUILDING, _M_FACADE, rgb, self.window, _P_FRONT, z, z, params)
                cv.front_quad(xa, xb, 0.0, h, z, iid)
            else:
                iid = cv.add(_VEGETATION, _M_FOLIAGE, rgb, depth=z)
                n = len(profile)
                pts = [cv.pt(xa + (xb - xa) * i / (n - 1), profile[i], z) for i in range(n)]
                pts += [cv.pt(xb, 0.0, z), cv.pt(xa, 0.0, z)]
                cv.polygon(pts, iid)


def _draw_ground(cv: _Canvas, layout: _Layout) -> None:
    """Terrain, road, curbs, lawns, sidewalks and side streets (all lie on the ground)."""
    road = layout.road
    ch = road.curb_h
    near, far = _Z_NEAR, _Z_FAR
    grass = cv.add(_TERRAIN, _M_GRASS, road.grass, ptype=_P_GROUND, pconst=ch)
    for side in layout.sides:
        s = side.sign
        start = side.outer if side.walk > 0 else side.curb + side.lawn
        cv.ground_quad(s * start, s * (start + 300.0), ch, near, far, grass)
    asphalt = cv.add(_ROAD, _M_ROAD, road.asphalt, ptype=_P_GROUND, pconst=0.0)
    cv.ground_quad(road.x_left, road.x_right, 0.0, near, far, asphalt)
    paving = cv.add(_SIDEWALK, _M_PAVING, road.paving, ptype=_P_GROUND, pconst=ch)
    for side in layout.sides:
        s = side.sign
        face = "+x" if s < 0 else "-x"
        curb = cv.add(_SIDEWALK, _M_FLAT, cv.shade(road.curb_rgb, face), depth=2.0)
        cv.side_quad(s * side.curb, 0.0, ch, near, far, curb)
        top = cv.add(_SIDEWALK, _M_FLAT, road.curb_rgb, depth=2.0)
        cv.ground_quad(s * side.curb, s * (side.curb + 0.18), ch, near, far, top)
        if side.lawn > 0:
            cv.ground_quad(
                s * (side.curb + 0.18), s * (side.curb + side.lawn), ch, near, far, grass
            )
        if side.walk > 0:
            inner = side.curb + max(side.lawn, 0.18)
            cv.ground_quad(s * inner, s * side.outer, ch, near, far, paving)
    for za, zb in road.crossings:
        r0, r1 = za - cv.cam_z, zb - cv.cam_z
        if r1 < near or r0 > far:
            continue
        for side in layout.sides:
            s = side.sign
            cv.ground_quad(s * side.curb, s * (side.curb + 300.0), ch, r0, r1, paving)
        cw = road.cross_walk
        cv.ground_quad(-300.0, 300.0, 0.0, r0 + cw, r1 - cw, asphalt)
        curb = cv.add(_SIDEWALK, _M_FLAT, cv.shade(road.curb_rgb, "front"), depth=r1)
        for side in layout.sides:
            s = side.sign
            cv.front_quad(s * side.curb, s * (side.curb + 300.0), 0.0, ch, r1 - cw, curb)


# --------------------------------------------------------------------------------------------
# Scene layout (world, metres)
# --------------------------------------------------------------------------------------------


def _in_ranges(z: float, ranges: Sequence[tuple[float, float]], pad: float = 0.0) -> bool:
    return any(a - pad <= z <= b + pad for a, b in ranges)


def _next_start(z: float, ranges: Sequence[tuple[float, float]]) -> float:
    return min((a for a, _ in ranges if a > z), default=math.inf)


def _make_building(
    rng: _Draws, sign: int, x_in: float, z0: float, length: float, height: float
) -> _Building:
    return _Building(
        sign=sign,
        x_in=x_in,
        depth=float(rng.uniform(8.0, 20.0)),
        z0=z0,
        length=length,
        height=height,
        colour=_pick(rng, _FACADES, 18.0),
        window=_pick(rng, _WINDOWS, 12.0),
        floor_h=float(rng.uniform(2.8, 3.7)),
        win_pitch=float(rng.uniform(1.4, 3.4)),
        win_w=float(rng.uniform(0.35, 0.7)),
        win_h=float(rng.uniform(0.35, 0.65)),
        shop=float(rng.uniform(3.0, 6.0)) if rng.random() < 0.45 else 0.0,
    )


def _make_tree(rng: _Draws, x: float, z: float, scale: float = 1.0) -> _Tree:
    r = float(rng.uniform(1.3, 2.8)) * scale
    blobs = [(0.0, 0.0, r)]
    for _ in range(int(rng.integers(4, 9))):
        a = rng.uniform(0.0, 2 * math.pi)
        d = rng.uniform(0.4, 0.85) * r
        blobs.append(
            (
                float(d * math.cos(a)),
                float(0.9 * d * math.sin(a)),
                float(rng.uniform(0.35, 0.65) * r),
            )
        )
    return _Tree(
        x=x,
        z=z,
        trunk_h=float(rng.uniform(1.8, 3.2)) * scale,
        trunk_w=float(rng.uniform(0.2, 0.4)) * scale,
        blobs=tuple(blobs),
        crown_y=float(rng.uniform(2.2, 3.2)) * scale + 0.8 * r,
        colour=_pick(rng, _FOLIAGE, 14.0),
        bark=_jit(rng, (75, 60, 45), 12.0),
    )


def _make_barrier(rng: _Draws, sign: int, x: float, z0: float, length: float) -> _Drawable | None:
    u = rng.random()
    if u < 0.35:
        base = ((70, 75, 72), (45, 70, 50), (150, 150, 155), (120, 90, 60))
        return _Barrier(
            _FENCE,
            sign,
            x,
            z0,
            length,
            float(rng.uniform(1.0, 2.0)),
            _pick(rng, base, 12.0),
            _jit(rng, (70, 80, 60), 15.0),
            float(rng.uniform(0.12, 0.3)),
            float(rng.uniform(0.2, 0.45)),
        )
    if u < 0.65:
        base = ((165, 162, 155), (150, 85, 65), (200, 195, 180), (120, 120, 118))
        rgb = _pick(rng, base, 15.0)
        return _Barrier(
            _WALL,
            sign,
            x,
            z0,
            length,
            float(rng.uniform(0.8, 2.6)),
            rgb,
            _scale(rgb, 0.82),
            float(rng.uniform(0.25, 0.6)),
            0.0,
        )
    if u < 0.9:
        step = 0.7
        n = max(2, int(length / step) + 1)
        base_h = float(rng.uniform(0.8, 1.8))
        heights = tuple(float(h) for h in base_h + rng.uniform(-0.15, 0.15, n))
        return _Hedge(sign, x, z0, length / (n - 1), heights, _pick(rng, _FOLIAGE, 12.0))
    return None


def _roadside(
    seed: int,
    side: _Side,
    crossings: Sequence[tuple[float, float]],
    extent: float,
    urban: float,
    storeys: float,
) -> list[_Drawable]:
    """Buildings with gaps (fences, walls, hedges, trees) along one building line."""
    rng = _Draws(seed, _S_SIDE, side.sign + 1)
    out: list[_Drawable] = []
    line = side.outer
    s = side.sign
    z = -40.0
    while z < extent:
        hit = [b for a, b in crossings if a <= z < b]
        if hit:
            z = hit[0]
            continue
        room = _next_start(z, crossings) - z
        if rng.random() < urban and room >= 5.0:
            length = min(float(rng.uniform(8.0, 35.0)), room)
            setback = 0.0 if rng.random() < 0.65 else float(rng.uniform(1.0, 6.0))
            height = storeys * float(rng.uniform(0.5, 1.6)) + 4.0
            out.append(_make_building(rng, s, line + setback, z, length, height))
            if setback > 1.5 and rng.random() < 0.6:
                b = _make_barrier(rng, s, line + 0.1, z, length)
                if b is not None:
                    out.append(b)
            z += length + (0.0 if rng.random() < 0.75 else float(rng.uniform(0.5, 4.0)))
            continue
        length = max(0.5, min(float(rng.uniform(6.0, 25.0)), room))
        for _ in range(int(rng.poisson(length / 6.0))):
            out.append(
                _make_tree(
                    rng,
                    s * (line + float(rng.uniform(1.5, 9.0))),
                    z + float(rng.uniform(0.0, length)),
                    float(rng.uniform(0.8, 1.5)),
                )
            )
        if length > 2.0:
            b = _make_barrier(rng, s, line + 0.1, z, length)
            if b is not None:
                out.append(b)
        z += length
    return out


def _back_row(
    seed: int, side: _Side, crossings: Sequence[tuple[float, float]], extent: float, storeys: float
) -> list[_Drawable]:
    """Taller buildings and trees further out, seen above and between the first row."""
    rng = _Draws(seed, _S_BACK, side.sign + 1)
    out: list[_Drawable] = []
    if rng.random() < 0.35:
        return out
    z = float(rng.uniform(-40.0, 0.0))
    while z < extent:
        hit = [b for a, b in crossings if a <= z < b]
        if hit:
            z = hit[0] + float(rng.uniform(0.0, 10.0))
            continue
        room = _next_start(z, crossings) - z
        length = min(float(rng.uniform(12.0, 40.0)), room)
        x = side.outer + float(rng.uniform(14.0, 30.0))
        if length > 5.0 and rng.random() < 0.75:
            height = storeys * float(rng.uniform(1.0, 2.4)) + 6.0
            out.append(_make_building(rng, side.sign, x, z, length, height))
        else:
            for _ in range(int(rng.integers(1, 4))):
                out.append(
                    _make_tree(
                        rng,
                        side.sign * (x + float(rng.uniform(0, 6))),
                        z + float(rng.uniform(0, max(length, 1.0))),
                        1.6,
                    )
                )
        z += max(length, 1.0) + float(rng.uniform(0.0, 8.0))
    return out


def _signs(rng: _Draws, pole_h: float) -> tuple[tuple[str, float, float, Rgb, Rgb], ...]:
    red, white = _jit(rng, (200, 30, 35), 15), _jit(rng, (235, 235, 230), 10)
    blue, yellow = _jit(rng, (25, 70, 165), 15), _jit(rng, (235, 195, 40), 15)
    kinds = (
        ("circle", 0.6, red, white),
        ("circle", 0.6, white, blue),
        ("triangle", 0.9, red, white),
        ("rect", 0.6, white, blue),
        ("diamond", 0.6, white, yellow),
        ("octagon", 0.7, white, red),
        ("rect", 0.8, yellow, white),
    )
    out = []
    y = pole_h
    for _ in range(1 if rng.random() < 0.7 else 2):
        shape, size, a, b = kinds[int(rng.integers(len(kinds)))]
        size *= float(rng.uniform(0.85, 1.15))
        out.append((shape, y - 0.5 * size, size, a, b))
        y -= size + 0.08
    return tuple(out)


def _street_furniture(
    seed: int, road: _Road, sides: Sequence[_Side], extent: float, rich: float
) -> list[_Drawable]:
    """Street lights, sign posts, traffic lights and street trees.

    Each family and side has its own stream, so generating further (a longer drive) only
    appends objects and never changes the near ones.
    """
    out: list[_Drawable] = []
    style = _Draws(seed, _S_LIGHTS, 0)
    pole_rgb = _pick(style, ((120, 122, 125), (60, 75, 65), (70, 70, 72), (150, 150, 150)), 12)
    housing = _pick(style, ((30, 30, 32), (45, 55, 45), (200, 165, 40)), 8)
    for k, side in enumerate(sides):
        rng = _Draws(seed, _S_LIGHTS, 1 + k)
        if rng.random() < 0.25:
            continue
        spacing = rng.uniform(18.0, 35.0)
        height = rng.uniform(6.5, 9.5)
        z = rng.uniform(-10.0, 10.0)
        while z < extent:
            if not _in_ranges(z, road.crossings, 1.0):
                arm = -side.sign * rng.uniform(1.0, 2.6)
                out.append(_StreetLight(side.sign * (side.curb + 0.45), z, height, arm, pole_rgb))
            z += spacing * rng.uniform(0.9, 1.1)
    rng = _Draws(seed, _S_SIGNS, 0)
    z = rng.uniform(3.0, 20.0)
    while z < extent:
        side = sides[rng.integers(2)]
        if side.walk + side.lawn > 0 and not _in_ranges(z, road.crossings):
            x = side.sign * (side.curb + rng.uniform(0.3, 0.9))
            h = rng.uniform(2.2, 3.2)
            if rng.random() < 0.2:  # a signal for a driveway or bus lane, not at a crossing
                out.append(_TrafficLight(x, z, h, 0.0, housing, pole_rgb, rng.integers(3)))
            else:
                grey = _pick(rng, ((150, 150, 152), (110, 110, 112)), 10)
                out.append(_SignPost(x, z, h, _signs(rng, h), grey))
        z += rng.uniform(6.0, 30.0) / rich
    rng = _Draws(seed, _S_SIGNS, 1)
    # Zebras first: their number is fixed, so later crossings never shift their draws.
    n_zebra = len(road.zebras)
    for k, (za, _) in enumerate((*road.zebras, *road.crossings)):
        if za > extent:
            continue
        lit = rng.integers(3)
        for side in sides:
            x = side.sign * (side.curb + 0.5)
            out.append(
                _TrafficLight(x, za - 0.4, rng.uniform(2.4, 3.0), 0.0, housing, pole_rgb, lit)
            )
        if k >= n_zebra and rng.random() < 0.6:
            x = sides[1].sign * (sides[1].curb + 0.6)
            out.append(
                _TrafficLight(
                    x,
                    za - 1.0,
                    rng.uniform(5.5, 6.5),
                    -rng.uniform(3.0, 6.0),
                    housing,
                    pole_rgb,
                    lit,
                )
            )
    for k, side in enumerate(sides):
        rng = _Draws(seed, _S_TREES, k)
        lawn = side.lawn > 0
        if not lawn and (side.walk < 3.0 or rng.random() < 0.6):
            continue
        x = side.sign * (side.curb + (0.5 * side.lawn if lawn else 0.9))
        z = rng.uniform(-5.0, 10.0)
        spacing = rng.uniform(7.0, 15.0)
        while z < extent:
            if not _in_ranges(z, road.crossings, 2.0):
                out.append(_make_tree(rng, x, z, rng.uniform(0.8, 1.25)))
            z += spacing * rng.uniform(0.8, 1.2)
    return out


def _make_person(rng: _Draws, x: float, z: float, vz: float) -> _Person:
    child = rng.random() < 0.1
    return _Person(
        x=x,
        z=z,
        vz=vz,
        height=rng.uniform(1.0, 1.4) if child else rng.uniform(1.55, 1.95),
        skin=_pick(rng, _SKINS, 10),
        hair=_pick(rng, _HAIRS, 10),
        top=_pick(rng, _CLOTHES, 20),
        bottom=_pick(rng, _TROUSERS, 15),
        stride=rng.uniform(0.0, 0.09),
        phase=rng.uniform(0, 2 * math.pi),
        coat=rng.random() < 0.3,
        bag=_pick(rng, _CLOTHES, 20) if rng.random() < 0.25 else None,
    )


def _people(
    seed: int, road: _Road, sides: Sequence[_Side], extent: float, rich: float
) -> list[_Drawable]:
    """Pedestrians on sidewalks and crossings, riders on the road, parked bicycles."""
    density = _Draws(seed, _S_PEOPLE, 0).uniform(0.02, 0.15) * rich
    out: list[_Drawable] = []
    for k, side in enumerate(sides):
        rng = _Draws(seed, _S_PEOPLE, 1 + k)
        if side.walk <= 0.6:
            continue
        lo = side.curb + max(side.lawn, 0.2) + 0.3
        hi = max(lo, side.outer - 0.3)
        z = rng.uniform(0.0, 6.0)
        while z < extent:
            for j in range(1 + rng.poisson(0.4)):
                x = side.sign * rng.uniform(lo, hi)
                out.append(_make_person(rng, x, z + 0.6 * j, rng.uniform(-0.15, 0.15)))
            z += rng.exponential(1.0 / density) + 0.8
    rng = _Draws(seed, _S_PEOPLE, 3)
    walks = list(road.zebras) + [(a, a + road.cross_walk) for a, _ in road.crossings]
    for za, zb in walks:
        if za > extent or rng.random() > 0.55:
            continue
        for _ in range(rng.integers(1, 5)):
            x = rng.uniform(road.x_left + 0.5, road.x_right - 0.5)
            out.append(_make_person(rng, x, rng.uniform(za + 0.3, zb - 0.3), 0.0))
    rng = _Draws(seed, _S_RIDERS, 0)
    speed = rng.uniform(0.3, 0.7)
    if rng.random() < 0.5:
        z = rng.uniform(6.0, 40.0)
        while z < extent:
            out.append(
                _Rider(
                    x=road.lane_right - rng.uniform(0.7, 1.3),
                    z=z,
                    speed=speed,
                    motor=rng.random() < 0.3,
                    frame=_pick(rng, _PAINTS, 15),
                    jacket=_pick(rng, _CLOTHES, 15),
                    trousers=_pick(rng, _TROUSERS, 10),
                    helmet=_pick(rng, _CLOTHES, 15),
                )
            )
            z += rng.uniform(20.0, 90.0)
    for k, side in enumerate(sides):
        rng = _Draws(seed, _S_RIDERS, 1 + k)
        if side.walk < 2.0 or rng.random() < 0.6:
            continue
        z = rng.uniform(3.0, 30.0)
        while z < extent:
            x = side.sign * (side.outer - rng.uniform(0.4, 0.8))
            for j in range(rng.integers(1, 4)):
                out.append(
                    _ParkedBike(x, z + 0.6 * j, rng.choice((-1, 1)), _pick(rng, _PAINTS, 15))
                )
            z += rng.uniform(25.0, 80.0)
    return out


def _vehicle(rng: _Draws, cls: int, x: float, z: float, speed: float, oncoming: bool) -> _Vehicle:
    if cls == _CAR:
        van = rng.random() < 0.12
        suv = rng.random() < 0.25
        length = float(rng.uniform(4.6, 5.3) if van else rng.uniform(3.8, 4.9))
        width = float(rng.uniform(1.7, 1.95))
        height = float(
            rng.uniform(1.9, 2.2)
            if van
            else rng.uniform(1.6, 1.85)
            if suv
            else rng.uniform(1.38, 1.6)
        )
        cabin = (
            (float(rng.uniform(0.03, 0.1)), 0.8)
            if van
            else (float(rng.uniform(0.05, 0.28)), float(rng.uniform(0.66, 0.78)))
        )
    elif cls == _TRUCK:
        length, width, height = float(rng.uniform(6.5, 10.0)), 2.45, float(rng.uniform(3.0, 3.9))
        cabin = (0.0, 1.0)
    else:
        length, width, height = float(rng.uniform(10.5, 12.5)), 2.55, float(rng.uniform(3.0, 3.3))
        cabin = (0.0, 1.0)
    cargo_base = ((225, 225, 220), (180, 180, 185), (200, 60, 40), (40, 80, 150), (230, 200, 60))
    paint = _pick(
        rng,
        _PAINTS if cls != _BUS else ((230, 200, 40), (220, 220, 215), (190, 30, 30), (40, 90, 160)),
        18,
    )
    return _Vehicle(
        cls,
        x,
        z,
        speed,
        length,
        width,
        height,
        oncoming,
        paint,
        _pick(rng, cargo_base, 15),
        _pick(rng, _WINDOWS, 10),
        cabin,
    )


def _traffic(
    seed: int,
    road: _Road,
    lanes: Sequence[tuple[float, float, bool, bool, bool]],
    extent: float,
    density: float,
    big_lane: int,
    big_z: float,
) -> list[_Drawable]:
    """Vehicles lane by lane; each lane moves at one speed so they never collide in a drive.

    ``lanes``: (x centre, speed, oncoming, parking, ego). One truck or bus is forced at
    ``big_z`` in lane ``big_lane`` so every scene has a large vehicle.
    """
    out: list[_Drawable] = []
    for k, (xc, speed, oncoming, parking, ego) in enumerate(lanes):
        rng = _Draws(seed, _S_VEHICLES, k)
        if parking:
            z, gap = float(rng.uniform(-12.0, 4.0)), (0.6, 3.0)
        elif ego:
            z, gap = (
                float(rng.uniform(9.0, 30.0) if rng.random() < 0.6 else rng.uniform(45, 90)),
                (10.0 / density, 50.0 / density),
            )
        else:
            z, gap = float(rng.uniform(-15.0, 15.0)), (8.0 / density, 45.0 / density)
        forced = k != big_lane
        while z < extent:
            if parking and rng.random() < 0.25:  # an empty parking spot
                z += rng.uniform(4.0, 14.0)
                continue
            if parking and _in_ranges(z, road.crossings, 8.0):
                z += 5.0
                continue
            if not forced and z + 12.0 >= big_z:
                cls = _TRUCK if rng.random() < 0.5 else _BUS
                forced = True
            else:
                u = rng.random()
                cls = _CAR if u < 0.9 or z < 10.0 else _TRUCK if u < 0.95 else _BUS
            x = xc + (rng.uniform(-0.1, 0.1) if parking else rng.uniform(-0.25, 0.25))
            v = _vehicle(rng, cls, x, z, speed, oncoming)
            out.append(v)
            z += v.length + float(rng.uniform(*gap))
    return out


def _far(seed: int, storeys: float) -> _FarSkyline:
    rng = _Draws(seed, _S_FAR)
    segs = []
    x = -800.0
    green = rng.random() < 0.5
    while x < 800.0:
        w = float(rng.uniform(15.0, 80.0))
        if rng.random() < (0.35 if green else 0.65):
            h = storeys * float(rng.uniform(0.8, 2.8)) + 4.0
            segs.append((True, x, x + w, h, _scale(_pick(rng, _FACADES, 15), 0.85), ()))
        else:
            n = max(3, int(w / 3.0))
            base = float(rng.uniform(6.0, 16.0))
            prof = base + np.cumsum(rng.uniform(-1.5, 1.5, n))
            prof = np.clip(prof, 3.0, 30.0)
            segs.append(
                (False, x, x + w, base, _pick(rng, _FOLIAGE, 10), tuple(float(p) for p in prof))
            )
        x += w
    return _FarSkyline(tuple(segs), _pick(rng, _WINDOWS, 8))


def _make_layout(seed: int, extent: float) -> _Layout:
    """The world of scene ``seed`` out to ``extent`` metres (prefix-stable in ``extent``)."""
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    g = _Draws(seed, _S_SCENE)
    camera = _Camera(
        height_m=float(g.uniform(1.3, 1.75)),
        focal_rel=float(g.uniform(0.85, 1.2)),
        horizon_rel=float(g.uniform(0.36, 0.47)),
        center_rel=0.5 + float(g.uniform(-0.05, 0.05)),
        speed=float(g.uniform(0.8, 1.6)),
    )
    # Road cross-section.
    n_lanes = int(g.choice((2, 2, 3, 4)))
    lane_w = float(g.uniform(2.9, 3.6))
    two_way = n_lanes == 2 or g.random() < 0.6
    n_on = n_lanes // 2 if two_way else 0
    ego = int(g.integers(n_on, n_lanes))
    xl = -(ego + 0.5) * lane_w + float(g.uniform(-0.5, 0.5))
    xr = xl + n_lanes * lane_w
    park_r = bool(g.random() < 0.55)
    park_l = (not two_way) and bool(g.random() < 0.4)
    road_l, road_r = xl - 2.2 * park_l, xr + 2.2 * park_r
    period, duty = float(g.uniform(8.0, 13.0)), float(g.uniform(0.25, 0.45))
    lines: list[tuple[float, float, float, float]] = []
    if g.random() < 0.6:
        lines += [(xl + 0.25, 0.13, 0.0, 0.0), (xr - 0.25, 0.13, 0.0, 0.0)]
    for k in range(1, n_lanes):
        x = xl + k * lane_w
        if two_way and k == n_on:
            if g.random() < 0.5:
                lines += [(x - 0.1, 0.11, 0.0, 0.0), (x + 0.1, 0.11, 0.0, 0.0)]
            else:
                lines.append((x, 0.15, 0.0, 0.0))
        else:
            lines.append((x, 0.13, period, duty))
    if park_r:
        lines.append((xr, 0.12, 3.0, 0.5))
    if park_l:
        lines.append((xl, 0.12, 3.0, 0.5))
    curb_h = float(g.uniform(0.1, 0.16))
    sides_l = []
    for sign, edge in ((-1, road_l), (1, road_r)):
        walk = float(g.uniform(1.8, 5.0))
        lawn = float(g.uniform(1.0, 2.4)) if g.random() < 0.3 else 0.0
        if g.random() < 0.1:
            walk, lawn = 0.0, float(g.uniform(1.5, 5.0))
        sides_l.append(_Side(sign, abs(edge), lawn, walk))
    sides = (sides_l[0], sides_l[1])
    # Side streets and zebra crossings (their own stream, generated past the extent so the
    # objects that avoid them do not depend on how far the world was generated).
    gc = _Draws(seed, _S_CROSSINGS)
    crossings: list[tuple[float, float]] = []
    zebras: list[tuple[float, float]] = []
    zebra = gc.uniform(12.0, 60.0) if gc.random() < 0.3 else -1.0
    zebra_w = gc.uniform(3.0, 4.5)
    z = gc.uniform(25.0, 130.0) if gc.random() < 0.65 else gc.uniform(130.0, 260.0)
    while z < extent + 100.0:
        w = gc.uniform(10.0, 17.0)
        crossings.append((z, z + w))
        z += w + gc.uniform(70.0, 200.0)
    if zebra > 0 and not _in_ranges(zebra, crossings, 8.0):
        zebras.append((zebra, zebra + zebra_w))
    asphalt_grey = float(g.uniform(55.0, 110.0))
    road = _Road(
        x_left=road_l,
        x_right=road_r,
        lane_right=xr,
        curb_h=curb_h,
        lines=tuple(lines),
        crossings=tuple(crossings),
        cross_walk=float(g.uniform(2.5, 4.0)),
        zebras=tuple(zebras),
        asphalt=_jit(g, (asphalt_grey, asphalt_grey, asphalt_grey + 3), 5.0),
        paint=_jit(g, (225, 225, 215), 12.0),
        paving=_pick(g, ((150, 145, 140), (172, 165, 155), (145, 120, 115), (120, 120, 126)), 14),
        curb_rgb=_jit(g, (170, 168, 162), 12.0),
        grass=_pick(g, ((85, 120, 50), (100, 130, 60), (130, 125, 80), (75, 105, 55)), 12),
        tile=float(g.uniform(0.3, 0.6)),
    )
    # Light and camera response.
    sunny = g.random() < 0.55
    sun = 1.0 if g.random() < 0.5 else -1.0
    bright = float(g.uniform(0.35, 0.5)) if sunny else float(g.uniform(0.05, 0.15))
    overcast = (float(g.uniform(160, 210)),) * 3
    zenith = _jit(g, (75, 125, 200), 20.0) if sunny or g.random() < 0.4 else _jit(g, overcast, 10)
    horizon = (
        _jit(g, (200, 210, 225), 15.0)
        if zenith[2] > zenith[0] + 40
        else _jit(g, _scale(overcast, 1.1), 8)
    )
    wb = g.uniform(-0.07, 0.07, 3)
    exposure = float(g.uniform(0.75, 1.2))
    look = _Look(
        sky_zenith=zenith,
        sky_horizon=horizon,
        cloud=_jit(g, (235, 235, 238), 10.0),
        cloud_cover=float(g.uniform(0.0, 0.8)),
        haze=horizon,
        visibility=float(g.uniform(250.0, 1500.0)),
        shade_front=float(g.uniform(0.8, 1.0)),
        shade_pos_x=1.0 + sun * bright * 0.5 - 0.1,
        shade_neg_x=1.0 - sun * bright * 0.5 - 0.1,
        shade_top=float(g.uniform(1.0, 1.15)),
        gain=(exposure * (1 + wb[0]), exposure * (1 + wb[1]), exposure * (1 + wb[2])),
        contrast=float(g.uniform(0.85, 1.15)),
        vignette=float(g.uniform(0.0, 0.35)),
        blur=float(g.uniform(0.08, 0.22)),
        noise=float(g.uniform(1.5, 6.0)),
    )
    urban = float(g.uniform(0.45, 0.95))
    storeys = float(g.uniform(6.0, 16.0))
    rich = float(g.uniform(0.7, 1.4))  # clutter multiplier
    traffic = float(g.uniform(0.6, 1.6))
    hood = None
    if g.random() < 0.8:
        hood = (float(g.uniform(0.05, 0.1)), float(g.uniform(0.01, 0.05)), _pick(g, _PAINTS, 10))
    # Lanes: (x centre, speed, oncoming, parking, ego).
    lanes: list[tuple[float, float, bool, bool, bool]] = []
    for k in range(n_lanes):
        xc = xl + (k + 0.5) * lane_w
        if k < n_on:
            lanes.append((xc, -camera.speed * float(g.uniform(0.6, 1.1)), True, False, False))
        elif k == ego:
            lanes.append((xc, camera.speed, False, False, True))
        else:
            lanes.append((xc, camera.speed * float(g.uniform(0.4, 1.2)), False, False, False))
    if park_r:
        lanes.append((xr + 1.1, 0.0, False, True, False))
    if park_l:
        lanes.append((xl - 1.1, 0.0, False, True, False))
    others = [k for k, lane in enumerate(lanes) if not lane[4]]
    big_lane = others[int(g.integers(len(others)))]
    big_z = float(g.uniform(15.0, 55.0))

    roadside: list[_Drawable] = []
    back: list[_Drawable] = []
    for side in sides:
        roadside += _roadside(seed, side, crossings, extent, urban, storeys)
        back += _back_row(seed, side, crossings, extent, storeys)
    street = _street_furniture(seed, road, sides, extent, rich)
    street += _people(seed, road, sides, extent, rich)
    street += _traffic(seed, road, lanes, extent, traffic, big_lane, big_z)
    return _Layout(
        camera,
        look,
        road,
        sides,
        _far(seed, storeys),
        tuple(roadside),
        tuple(back),
        tuple(street),
        hood,
    )


# --------------------------------------------------------------------------------------------
# Per-pixel shading
# --------------------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, h: int, w: int, gh: int, gw: int) -> np.ndarray:
    """Value noise in [0, 1]: a ``gh`` x ``gw`` random grid resized bicubically to ``h`` x ``w``.

    Pillow's resampler is single-threaded C and beat numpy gathers or BLAS products here.
    """
    grid = rng.random((max(2, gh), max(2, gw)), dtype=np.float32)
    img = Image.fromarray(grid).resize((w, h), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32).reshape(-1)


@dataclasses.dataclass(frozen=True)
class _Noise:
    low: np.ndarray  # clouds and large-scale variation
    mid: np.ndarray
    hi: np.ndarray  # leaf clumps
    fine: np.ndarray  # per-pixel, centred on 0


def _texture_noise(seed: int, h: int, w: int) -> _Noise:
    """Texture noise fixed per scene (not per frame), so a drive does not shimmer."""
    rng = _rng(seed, _S_TEXTURE)
    low = _smooth_noise(rng, h, w, 6, 5)
    mid = _smooth_noise(rng, h, w, max(2, w // 24), max(2, w // 12))
    hi = _smooth_noise(rng, h, w, max(2, h // 3), max(2, w // 3))
    fine = rng.random(h * w, dtype=np.float32) - 0.5
    return _Noise(low, mid, hi, fine)


def _frac(x: np.ndarray) -> np.ndarray:
    """``x mod 1`` (``np.mod`` on floats is many times slower than this)."""
    return x - np.floor(x)


class _Shader:
    """Computes the colour of every pixel of one material from the instance table.

    Colours are planar (3 x n) float32 so per-pixel factors broadcast along the contiguous
    axis, and blends are arithmetic rather than ``np.where`` on colour arrays: both are several
    times faster in numpy, and shading is most of the cost of a scene.
    """

    def __init__(self, cv: _Canvas, layout: _Layout, noise: _Noise) -> None:
        tab = np.asarray(cv.rows, dtype=np.float64)
        self.cls = tab[:, 0]
        self.mat = tab[:, 1].astype(np.uint8)
        self.ptype = tab[:, 2].astype(np.int8)
        self.pconst = tab[:, 3].astype(np.float32)
        self.rgb = np.ascontiguousarray(tab[:, 5:8].T, dtype=np.float32)
        self.rgb2 = np.ascontiguousarray(tab[:, 8:11].T, dtype=np.float32)
        self.params = np.ascontiguousarray(tab[:, 11:17].T, dtype=np.float32)
        self.cv, self.layout, self.noise = cv, layout, noise
        lk = layout.look
        self.haze = np.asarray(lk.haze, dtype=np.float32)[:, None]
        # Haze per instance, for materials without a per-pixel depth.
        self.haze_w = (1.0 - np.exp(-np.maximum(tab[:, 4], 0.0) / lk.visibility)).astype(np.float32)

    # Helpers ----------------------------------------------------------------------------------
    def _xy(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = self.cv.w
        row = idx // w
        xs = (idx - row * w).astype(np.float32) + 0.5
        return xs, row.astype(np.float32) + 0.5

    def _colour(self, ids: np.ndarray, k: np.ndarray) -> np.ndarray:
        col = np.take(self.rgb, ids, axis=1)
        col *= k
        return col

    def _hazed(self, col: np.ndarray, w: np.ndarray) -> np.ndarray:
        col += (self.haze - col) * w
        return col

    def _ground(self, idx: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per-pixel world X, camera-relative Z and world Z on a ground-parallel plane."""
        cv = self.cv
        xs, ys = self._xy(idx)
        zr = (cv.f * (cv.hc - self.pconst[ids])) / np.maximum(ys - cv.yh, 0.05)
        np.minimum(zr, 5000.0, out=zr)
        x = (xs - cv.cx) * zr * (1.0 / cv.f)
        return x, zr, zr + cv.cam_z

    def _plane(self, idx: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per-pixel (u along the surface, v height, depth) on side (X=c) or front (Z=c) planes."""
        cv = self.cv
        xs, ys = self._xy(idx)
        c = self.pconst[ids]
        side = self.ptype[ids] == _P_SIDE
        dx = xs - cv.cx
        dx[np.abs(dx) < 1e-3] = 1e-3
        zr = np.where(side, cv.f * c / dx, c)
        np.clip(zr, _Z_NEAR, 5000.0, out=zr)
        u = np.where(side, zr + cv.cam_z, dx * zr * (1.0 / cv.f))
        v = cv.hc - (ys - cv.yh) * zr * (1.0 / cv.f)
        return u, v, zr

    def _depth_haze(self, z: np.ndarray) -> np.ndarray:
        return 1.0 - np.exp(z * (-1.0 / self.layout.look.visibility))

    # Materials: each returns planar colours (3 x n) ----------------------------------------------
    def flat(self, idx: np.ndarray, ids: np.ndarray) -> np.ndarray:
        col = self._colour(ids, 1.0 + 0.07 * self.noise.fine[idx])
        return self._hazed(col, self.haze_w[ids])

    def emissive(self, idx: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return np.take(self.rgb, ids, axis=1)

    def paint(self, idx: np.ndarray, ids: np.ndarray) -> np.ndarray:
        n = self.noise
        col = self._colour(ids, 0.95 + 0.1 * n.mid[idx] + 0.04 * n.fine[idx])
        return self._hazed(col, self.haze_w[ids])

    def glass(self, idx: np.ndarray, ids: np.ndarray) -> np.ndarray:
        n = self.noise
        col = self._colour(ids, 0.55 + 0.5 * n.low[idx] + 0.1 * n.mid[idx] + 0.05 * n.fine[idx])
        return self._hazed(col, self.haze_w[ids])

    def foliage(self, idx: np.ndarray, ids: np.ndarray) -> np.ndarray:
        n = self.noise
        clump = 0.65 * n.hi[idx] + 0.35 * n.mid[idx]
        col = self._colour(ids, 0.35 + clump * clump + 0.35 * n.fine[idx])
        return self._hazed(col, self.haze_w[ids])

    def sky(self, idx: np.ndarray, ids: np.ndarray) -> np.ndarray:
        cv, lk, n = self.cv, self.layout.look, self.noise
        _, ys = self._xy(idx)
        t = np.clip((cv.yh - ys) * (1.0 / max(cv.yh, 1.0)), 0.0, 1.0)
        top = np.asarray(lk.sky_zenith, dtype=np.float32)[:, None]
        bottom = np.asarray(lk.sky_horizon, dtype=np.float32)[:, None]
        col = bottom + (top - bottom) * np.sqrt(t)
        if lk.cloud_cover > 0.02:
            # Clouds: large blobs plus mid-scale detail read through a stretched lookup
            # (rows x2, columns /2), so they are wide and flat and hide the noise grid.
            w = cv.w
            row = idx // w
            stretched = ((2 * row) % cv.h) * w + (idx - row * w) // 2
            mid = n.mid[stretched]
            dens = 0.6 * n.low[idx] + 0.4 * mid + 0.12 * (n.hi[idx] - 0.5)
            a = np.clip((dens - (1.0 - lk.cloud_cover)) * 3.0, 0.0, 1.0)
            a *= np.minimum(t * 5.0, 1.0)
            cloud = np.asarray(lk.cloud, dtype=np.float32)[:, None] * (0.78 + 0.3 * mid)
            col += (cloud - col) * a
        return col

    def road(self, idx: np.ndarray, ids: np.ndarray) -> np.ndarray:
        cv, road, n = self.cv, self.layout.road, self.noise
        x, zr, zw = self._ground(idx, ids)
        k = 0.94 + 0.12 * n.mid[idx] + 0.12 * n.fine[idx] + 0.1 * n.low[idx]
        col = self._colour(ids, k)
        inv_px = cv.f / zr  # pixels per metre across the road: anti-aliased paint edges
        cov = np.zeros(idx.shape, dtype=np.float32)
        for xc, width, period, duty in road.lines:
            c = (0.5 * width - np.abs(x - xc)) * inv_px
            c += 0.5
            np.clip(c, 0.0, 1.0, out=c)
            if period > 0:
                c *= _frac(zw * (1.0 / period)) < duty
            np.maximum(cov, c, out=cov)
        for za, zb in road.crossings:
            cov[(zw >= za) & (zw < zb)] = 0.0
        zebras = [(a + 0.3, a + road.cross_walk - 0.3) for a, _ in road.crossings]
        for za, zb in (*zebras, *road.zebras):
            zeb = (zw >= za) & (zw < zb) & (x > road.x_left + 0.3) & (x < road.x_right - 0.3)
            zeb &= _frac(x - road.x_left) < 0.5
            cov[zeb] = 1.0
        paint = np.asarray(road.paint, dtype=np.float32)[:, None] * (0.85 + 0.25 * n.hi[idx])
        col += (paint - col) * cov
        return self._hazed(col, self._depth_haze(zr))

    def paving(self, idx: np.ndarray, ids: np.ndarray) -> np.ndarray:
        cv, road, n = self.cv, self.layout.road, self.noise
        x, zr, zw = self._ground(idx, ids)
        tile = road.tile
        fade = np.clip((tile * cv.f) / zr * 0.25 - 0.75, 0.0, 1.0)
        gx = np.abs(_frac(x * (1.0 / tile)) - 0.5) > 0.44
        gz = np.abs(_frac(zw * (1.0 / tile)) - 0.5) > 0.44
        k = 0.95 + 0.08 * n.fine[idx] + 0.1 * n.mid[idx] - 0.18 * (gx | gz) * fade
        return self._hazed(self._colour(ids, k), self._depth_haze(zr))

    def grass(self, idx: np.ndarray, ids: np.ndarray) -> np.ndarray:
        n = self.noise
        _, zr, _ = self._ground(idx, ids)
        k = 0.575 + 0.45 * n.mid[idx] + 0.3 * n.fine[idx] + 0.25 * n.low[idx]
        return self._hazed(self._colour(ids, k), self._depth_haze(zr))

    def facade(self, idx: np.ndarray, ids: np.ndarray) -> np.ndarray:
        cv, n = self.cv, self.noise
        u, v, zr = self._plane(idx, ids)
        floor_h, pitch, ww, wh, height, shop = np.take(self.params, ids, axis=1)
        fv = v / floor_h
        storey = np.floor(fv)
        fracv = fv - storey
        fu = u / pitch
        column = np.floor(fu)
        fracu = fu - column
        has_shop = shop > 0
        win = (np.abs(fracu - 0.5) < 0.5 * ww) & (np.abs(fracv - 0.55) < 0.5 * wh)
        win &= (v < height - 0.9) & ((storey >= 1) | ~has_shop)
        shopwin = has_shop & (v > 0.25) & (v < 0.8 * floor_h)
        shopwin &= _frac(u / np.where(has_shop, shop, 1.0)) < 0.78
        cornice = (v > height - 0.6) | ((fracv < 0.08) & (storey >= 1)) | (v < 0.4)
        base_k = (1.0 + 0.06 * n.fine[idx] + 0.08 * (n.mid[idx] - 0.5)) * (1.0 - 0.18 * cornice)
        base = self._colour(ids, base_k)
        # Each window gets its own brightness from a cheap hash of (storey, column, facade).
        hsh = _frac(storey * 0.618034 + column * 0.4142136 + ids * 0.7548777)
        wcol = np.take(self.rgb2, ids, axis=1)
        special = hsh > 0.96  # lit windows, and shop fronts lit from inside
        wcol *= 0.6 + 0.9 * hsh
        lit = np.asarray((235.0, 205.0, 140.0), np.float32)[:, None]
        wcol += (lit - wcol) * (special & ~shopwin)
        wcol += (wcol * 0.6 + 25.0) * shopwin
        win |= shopwin
        # Far windows shrink below a pixel: blend towards the average colour instead of aliasing.
        sharp = np.clip(ww * pitch * cv.f / zr * (1.0 / 3.0) - 0.3, 0.0, 1.0)
        area = ww * wh
        mix = area + (win - area) * sharp
        base += (wcol - base) * mix
        return self._hazed(base, self._depth_haze(zr))

    def wall(self, idx: np.ndarray, ids: np.ndarray) -> np.ndarray:
        n = self.noise
        _, v, zr = self._plane(idx, ids)
        pitch, _, height = self.params[0, ids], self.params[1, ids], self.params[2, ids]
        block = np.abs(_frac(v / pitch) - 0.5) > 0.45
        k = (0.94 + 0.08 * n.fine[idx] + 0.12 * n.mid[idx]) * (1.0 + 0.12 * (v > height - 0.12))
        col = self._colour(ids, k)
        col += (np.take(self.rgb2, ids, axis=1) * k - col) * block
        return self._hazed(col, self._depth_haze(zr))

    def fence(self, idx: np.ndarray, ids: np.ndarray) -> np.ndarray:
        n = self.noise
        u, v, zr = self._plane(idx, ids)
        pitch, bar_w, height = self.params[0, ids], self.params[1, ids], self.params[2, ids]
        bar = _frac(u / pitch) < bar_w
        bar |= (v > height - 0.08) | (np.abs(v - 0.5 * height) < 0.04)
        col = np.take(self.rgb2, ids, axis=1) * (0.6 + 0.6 * n.hi[idx])
        col += (np.take(self.rgb, ids, axis=1) - col) * bar
        return self._hazed(col, self._depth_haze(zr))

    def hood(self, idx: np.ndarray, ids: np.ndarray) -> np.ndarray:
        cv = self.cv
        _, ys = self._xy(idx)
        t = np.clip((cv.h - ys) * (1.0 / (0.12 * cv.h)), 0.0, 1.0)
        col = self._colour(ids, 0.55 + 0.6 * t)
        sky = np.asarray(self.layout.look.sky_horizon, dtype=np.float32)[:, None]
        col += (sky - col) * (0.25 * t * t)
        return col

    def shade_all(self, inst: np.ndarray) -> np.ndarray:
        """Planar colours (3 x H*W, float32) for the flattened instance map ``inst``."""
        mats = self.mat[inst]
        order = np.argsort(mats, kind="stable")
        bounds = np.concatenate(([0], np.cumsum(np.bincount(mats, minlength=_NUM_MATERIALS))))
        out = np.empty((3, inst.size), dtype=np.float32)
        fns: dict[int, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
            _M_FLAT: self.flat,
            _M_SKY: self.sky,
            _M_ROAD: self.road,
            _M_PAVING: self.paving,
            _M_GRASS: self.grass,
            _M_FOLIAGE: self.foliage,
            _M_FACADE: self.facade,
            _M_WALL: self.wall,
            _M_FENCE: self.fence,
            _M_PAINT: self.paint,
            _M_GLASS: self.glass,
            _M_EMISSIVE: self.emissive,
            _M_HOOD: self.hood,
        }
        for m, fn in fns.items():
            a, b = bounds[m], bounds[m + 1]
            if b > a:
                idx = order[a:b]
                col = fn(idx, inst[idx])
                for c in range(3):
                    out[c][idx] = col[c]
        return out


def _finish(rgb: np.ndarray, look: _Look, rng: np.random.Generator) -> np.ndarray:
    """Camera response on a planar 3 x H x W float image: blur, vignette, gain, contrast, noise.

    In-place, broadcast operations because this touches every pixel of every training image;
    the vignette is separable (a product of a row and a column falloff). Returns H x W x 3 uint8.
    """
    _, h, w = rgb.shape
    a = look.blur
    if a > 0 and h > 2:
        tmp = rgb[:, :-2] + rgb[:, 2:]
        tmp *= a
        rgb[:, 1:-1] *= 1.0 - 2.0 * a
        rgb[:, 1:-1] += tmp
    if a > 0 and w > 2:
        # Along rows on the flat (contiguous) buffer: far faster than strided column slices.
        # The two border columns would mix with the neighbouring row, so they are restored.
        edges = rgb[:, :, [0, -1]].copy()
        flat = rgb.reshape(-1)
        tmp = flat[:-2] + flat[2:]
        tmp *= a
        flat[1:-1] *= 1.0 - 2.0 * a
        flat[1:-1] += tmp
        rgb[:, :, [0, -1]] = edges
    c = 0.5 * look.vignette
    rows = np.exp(-c * np.linspace(-1.0, 1.0, h, dtype=np.float32) ** 2)
    cols = np.exp(-c * np.linspace(-1.0, 1.0, w, dtype=np.float32) ** 2)
    gain = np.asarray(look.gain, dtype=np.float32) * look.contrast
    rgb *= gain[:, None, None] * rows[None, :, None]
    rgb *= cols
    rgb += 110.0 * (1.0 - look.contrast) + 0.5
    if look.noise > 0:
        # Sensor noise: a triangular distribution (sum of two 4-bit uniforms) read through a
        # 256-entry table from random bytes, far cheaper than Gaussian draws.
        n = 3 * h * w
        words = rng.integers(0, 2**64 - 1, (n + 7) // 8, dtype=np.uint64, endpoint=True)
        b = words.view(np.uint8)[:n].reshape(3, h, w)
        k = np.arange(256)
        lut = (((k & 15) + (k >> 4) - 15) * (look.noise / 6.5)).astype(np.float32)
        rgb += np.take(lut, b)
    np.clip(rgb, 0.0, 255.0, out=rgb)
    planar = rgb.astype(np.uint8)
    image = np.empty((h, w, 3), dtype=np.uint8)
    for ch in range(3):
        image[:, :, ch] = planar[ch]
    return image


def _render(
    layout: _Layout,
    seed: int,
    height: int,
    width: int,
    frame: int,
    noise: _Noise,
    *,
    hood: bool,
    sensor: bool,
) -> tuple[np.ndarray, np.ndarray]:
    cv = _Canvas(layout, height, width, frame)
    _draw_frame(cv, layout, hood)
    inst = np.asarray(cv.image, dtype=np.int32).reshape(-1)
    shader = _Shader(cv, layout, noise)
    rgb = shader.shade_all(inst).reshape(3, height, width)
    cls = shader.cls
    lut = np.where(cls >= 0, cls, IGNORE_ID).astype(np.uint8)
    label = lut[inst].reshape(height, width)
    look = layout.look
    if not sensor:
        look = dataclasses.replace(look, noise=0.0, blur=0.0)
    image = _finish(rgb, look, _rng(seed, _S_FRAME, frame))
    return image, label


def _draw_frame(cv: _Canvas, layout: _Layout, hood: bool) -> None:
    """Painter's order: skyline, ground, back row, building line, street objects, hood."""
    t, cam_z = cv.t, cv.cam_z
    layout.far.draw(cv)
    _draw_ground(cv, layout)
    for group in (layout.back_row, layout.roadside):
        items = [(o.near(cam_z, t), o) for o in group]
        for d, o in sorted(items, key=lambda p: -p[0]):
            if d < _Z_FAR:
                o.draw(cv)
    items = [(o.near(cam_z, t), o) for o in layout.street]
    for d, o in sorted(items, key=lambda p: -p[0]):
        if -15.0 < d < _Z_FAR:
            o.draw(cv)
    if hood and layout.hood is not None:
        frac, curve, rgb = layout.hood
        w, h = cv.w, cv.h
        iid = cv.add(-1, _M_HOOD, rgb)
        pts = []
        for i in range(17):
            xn = i / 16
            pts.append((xn * w, h * (1.0 - frac) + h * curve * (2 * xn - 1) ** 2))
        pts += [(w, h + 1.0), (0.0, h + 1.0)]
        cv.polygon(pts, iid)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _check_size(height: int, width: int) -> None:
    if height < 8 or width < 8:
        raise ValueError(f"image size must be at least 8x8, got {height}x{width}")


def render_scene(
    seed: int,
    height: int,
    width: int,
    *,
    hood: bool = True,
    sensor: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """One street scene: (RGB uint8 HxWx3, trainId uint8 HxW with 255 for the ego hood).

    Options: ``hood=False`` leaves out the ego-vehicle bonnet (so no ignore pixels);
    ``sensor=False`` turns off blur and sensor noise (labels are always crisp).
    The same ``seed`` gives the same world at any size, so sizes can be mixed freely.
    """
    _check_size(height, width)
    layout = _make_layout(seed, _Z_FAR + 30.0)
    noise = _texture_noise(seed, height, width)
    return _render(layout, seed, height, width, 0, noise, hood=hood, sensor=sensor)


def render_drive(
    seed: int, num_frames: int, height: int, width: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Consecutive frames of one scene while the camera drives forward along the road.

    The world is fixed (parked cars, buildings, signs) except for traffic and pedestrians,
    which move at constant speeds; frame 0 equals ``render_scene(seed, height, width)``.
    """
    _check_size(height, width)
    if num_frames < 1:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    travel = 1.6 * num_frames
    layout = _make_layout(seed, _Z_FAR + 30.0 + 2.5 * travel)
    noise = _texture_noise(seed, height, width)
    return [
        _render(layout, seed, height, width, k, noise, hood=True, sensor=True)
        for k in range(num_frames)
    ]


def _save_png_atomic(array: np.ndarray, path: Path) -> None:
    """Write a PNG next to its final name and rename it, so readers never see half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            Image.fromarray(array).save(fh, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_drive(
    out_dir: str | os.PathLike[str],
    seed: int = 0,
    num_frames: int = 8,
    height: int = 256,
    width: int = 512,
) -> list[tuple[Path, Path]]:
    """Render a drive and write ``frame_0000.png`` / ``label_0000.png`` ... into ``out_dir``.

    Returns the (frame path, label path) pairs in frame order. Labels are 8-bit PNGs of
    trainIds (255 = ignore).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, (image, label) in enumerate(render_drive(seed, num_frames, height, width)):
        fp, lp = out / f"frame_{k:04d}.png", out / f"label_{k:04d}.png"
        _save_png_atomic(image, fp)
        _save_png_atomic(label, lp)
        paths.append((fp, lp))
    return paths


def colorize(label: np.ndarray) -> np.ndarray:
    """Cityscapes colours for a trainId map (ignore is black), for looking at labels."""
    return _PALETTE[np.asarray(label, dtype=np.uint8)]


class SyntheticStreetDataset(Dataset):
    """``length`` synthetic scenes of ``height`` x ``width``; item i is scene
    ``seed * 1_000_003 + i``, so the data do not depend on worker count or order.

    Returns (3xHxW float32 ImageNet-normalised image, HxW int64 trainIds with 255 = ignore).
    """

    def __init__(self, length: int, height: int, width: int, seed: int = 0) -> None:
        if length < 0:
            raise ValueError(f"length must be non-negative, got {length}")
        _check_size(height, width)
        self.length, self.height, self.width, self.seed = length, height, width, seed

    def __len__(self) -> int:
        return self.length

    def scene_seed(self, index: int) -> int:
        return self.seed * 1_000_003 + index

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} scenes")
        image, label = render_scene(self.scene_seed(index), self.height, self.width)
        return normalize(image), torch.from_numpy(label.astype(np.int64))
