"""Face rendering: a face's still layers are painted once with numpy, then each frame is a copy
of them (shifted for head motion) with the mouth and eyelids painted into small regions, as I420.

Colours are BT.601 limited range, what VP8/H.264 decoders assume. No per-pixel Python loops: a
frame costs a few hundred microseconds (one 400 kB copy plus vectorised work on ~15k pixels).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from roost.avatar.faces import RGB, Face

WIDTH = 512
HEIGHT = 512
MARGIN = 8  # canvas border that head motion can shift into view
CANVAS = WIDTH + 2 * MARGIN
MAX_SHIFT = MARGIN - 1

YUV = tuple[float, float, float]
F32 = np.float32


def rgb_to_yuv(rgb: RGB) -> YUV:
    """BT.601 limited-range Y, U, V of an sRGB colour."""
    r, g, b = (c / 255.0 for c in rgb)
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    u = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    v = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    return (y, u, v)


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def ellipse(xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, rx: float, ry: float,
            soft: float = 1.0) -> np.ndarray:
    """Antialiased coverage (0..1) of an ellipse over pixel-centre grids `xs`, `ys`."""
    dx = (xs - cx) * (1.0 / rx)
    dy = (ys - cy) * (1.0 / ry)
    dist = np.sqrt(dx * dx + dy * dy)
    edge = (1.0 - dist) * (min(rx, ry) / soft) + 0.5
    return np.clip(edge, 0.0, 1.0).astype(F32, copy=False)


@dataclass(frozen=True)
class Geometry:
    """Where the moving parts of a face sit on the canvas (canvas pixel coordinates)."""

    mouth_x: float
    mouth_y: float
    mouth_half_width: float
    eyes: tuple[tuple[float, float], tuple[float, float]]
    eye_rx: float
    eye_ry: float


@dataclass(frozen=True)
class Palette:
    """The YUV colours frames paint with."""

    skin: YUV
    lips: YUV
    lip_line: YUV
    cavity: YUV
    teeth: YUV
    tongue: YUV
    lash: YUV


@dataclass(frozen=True)
class FaceLayers:
    """A face's still picture as canvas-sized I420 planes, plus what frames paint over it."""

    y: np.ndarray  # (CANVAS, CANVAS) uint8
    u: np.ndarray  # (CANVAS // 2, CANVAS // 2) uint8
    v: np.ndarray
    geometry: Geometry
    palette: Palette


class _RgbCanvas:
    """Float RGB canvas for the one-time painting of a face's still layers."""

    def __init__(self, size: int) -> None:
        coords = np.arange(size, dtype=F32) + 0.5
        self.xs = coords[None, :]
        self.ys = coords[:, None]
        self.rgb = np.zeros((size, size, 3), dtype=F32)

    def fill(self, alpha: np.ndarray, colour: RGB, opacity: float = 1.0) -> None:
        rows = np.flatnonzero(alpha.any(axis=1))
        cols = np.flatnonzero(alpha.any(axis=0))
        if rows.size == 0:
            return
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        a = (alpha[box] * F32(opacity))[..., None]
        block = self.rgb[box]
        block += (np.asarray(colour, dtype=F32) - block) * a

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, soft: float = 1.0
                ) -> np.ndarray:
        """Full-canvas coverage, computed only inside the ellipse's bounding box."""
        size = self.rgb.shape[0]
        out = np.zeros((size, size), dtype=F32)
        pad = soft + 2
        x0, x1 = max(0, int(cx - rx - pad)), min(size, int(cx + rx + pad) + 1)
        y0, y1 = max(0, int(cy - ry - pad)), min(size, int(cy + ry + pad) + 1)
        if x0 < x1 and y0 < y1:
            out[y0:y1, x0:x1] = ellipse(self.xs[:, x0:x1], self.ys[y0:y1], cx, cy, rx, ry, soft)
        return out

    def to_i420(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r, g, b = (self.rgb[..., i] / 255.0 for i in range(3))
        y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
        u = 128 - 37.797 * r - 74.203 * g + 112.0 * b
        v = 128 + 112.0 * r - 93.786 * g - 18.214 * b
        h, w = y.shape

        def sub(plane: np.ndarray) -> np.ndarray:
            out: np.ndarray = plane.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
            return out

        def u8(plane: np.ndarray) -> np.ndarray:
            out: np.ndarray = np.clip(np.rint(plane), 0, 255).astype(np.uint8)
            return out

        return u8(y), u8(sub(u)), u8(sub(v))


def _paint(face: Face) -> tuple[_RgbCanvas, Geometry]:
    """Paint the still parts of `face`: background, body, head, hair, eyes, nose."""
    c = _RgbCanvas(CANVAS)
    cx, cy = CANVAS / 2, 236.0 + MARGIN
    rx, ry = face.head_rx, face.head_ry
    t = np.clip((c.ys - MARGIN) / HEIGHT, 0.0, 1.0)
    top = np.asarray(face.background_top, dtype=F32)
    bottom = np.asarray(face.background_bottom, dtype=F32)
    c.rgb[:] = (top + (bottom - top) * t[..., None]).astype(F32)

    hair_dark = _mix(face.hair, (0, 0, 0), 0.35)
    if face.hair_style == "long":
        c.fill(c.ellipse(cx, cy + 70, rx + 34, ry + 90, soft=3), face.hair)
    c.fill(c.ellipse(cx, cy + ry + 190, 236, 170, soft=2), face.shirt)
    c.fill(c.ellipse(cx, cy + ry + 64, 54, 34, soft=2), face.skin_shade)  # neckline
    c.fill(c.ellipse(cx, cy + ry - 10, 50, 84, soft=2), face.skin_shade)  # neck
    for side in (-1, 1):
        ex = cx + side * rx * 0.97
        c.fill(c.ellipse(ex, cy + 12, 19, 31, soft=1.5), face.skin_shade)
        c.fill(c.ellipse(ex - side * 2, cy + 12, 12, 22, soft=2), face.skin)
    head = c.ellipse(cx, cy, rx, ry, soft=1.2)
    c.fill(head, face.skin)
    dist = np.sqrt(((c.xs - cx) / rx) ** 2 + ((c.ys - cy) / ry) ** 2)
    c.fill(head * np.clip((dist - 0.72) / 0.28, 0, 1), face.skin_shade, 0.7)

    hairline = c.ellipse(cx, cy + ry * 0.30, rx * 0.93, ry * 0.98, soft=4)
    cap = c.ellipse(cx, cy - ry * 0.22, rx * 1.05, ry * 0.82, soft=2)
    c.fill(cap * (1.0 - hairline), face.hair)
    if face.hair_style == "bun":
        c.fill(c.ellipse(cx, cy - ry * 1.02, 50, 44, soft=2), face.hair)
        c.fill(c.ellipse(cx, cy - ry * 1.02, 40, 6, soft=2), hair_dark, 0.5)

    eye_y = cy - 4
    eyes = ((cx - rx * 0.40, eye_y), (cx + rx * 0.40, eye_y))
    eye_rx, eye_ry = 25.0, 13.0
    for ex, ey in eyes:
        brow = c.ellipse(ex, ey - 26, 32, 12, soft=1.5) * (1 - c.ellipse(ex, ey - 22, 31, 10))
        c.fill(brow * (c.ys < ey - 24), hair_dark)
        c.fill(c.ellipse(ex, ey, eye_rx + 3, eye_ry + 3, soft=2), face.skin_shade, 0.6)
        white = c.ellipse(ex, ey, eye_rx, eye_ry)
        c.fill(white, (244, 242, 236))
        c.fill(white * c.ellipse(ex, ey, 11, 11), face.iris)
        c.fill(white * c.ellipse(ex, ey, 5.5, 5.5), (12, 10, 10))
        c.fill(c.ellipse(ex + 4, ey - 4, 2.6, 2.6), (255, 255, 255))
        lash = c.ellipse(ex, ey, eye_rx + 2, eye_ry + 2) * (1 - white) * (c.ys < ey)
        c.fill(lash, (30, 20, 20))
        if face.glasses:
            ring = c.ellipse(ex, ey, 40, 31) * (1 - c.ellipse(ex, ey, 35, 26))
            c.fill(ring, (30, 30, 36))
    if face.glasses:
        bridge = c.ellipse(cx, eye_y - 6, 11, 3.5, soft=1)
        c.fill(bridge, (30, 30, 36))

    c.fill(c.ellipse(cx + 3, cy + 44, 12, 30, soft=6), face.skin_shade, 0.45)
    for side in (-1, 1):
        c.fill(c.ellipse(cx + side * 9, cy + 64, 5.5, 3.2), _mix(face.skin_shade, (0, 0, 0), 0.4),
               0.6)
        c.fill(c.ellipse(cx + side * rx * 0.55, cy + 52, 26, 16, soft=10), face.lips, 0.22)

    mouth_y = cy + ry * 0.56
    if face.beard:
        jaw = head * c.ellipse(cx, cy + ry * 0.62, rx * 0.96, ry * 0.55, soft=6)
        c.fill(jaw * (c.ys > cy + 40), face.hair, 0.88)
        c.fill(c.ellipse(cx, mouth_y - 17, 44, 9, soft=3), face.hair, 0.95)  # moustache
    geometry = Geometry(mouth_x=cx, mouth_y=mouth_y, mouth_half_width=34.0, eyes=eyes,
                        eye_rx=eye_rx, eye_ry=eye_ry)
    return c, geometry


@lru_cache(maxsize=16)
def face_layers(face: Face) -> FaceLayers:
    """The painted layers of `face` (painted once per process, then shared read-only)."""
    canvas, geometry = _paint(face)
    y, u, v = canvas.to_i420()
    for plane in (y, u, v):
        plane.setflags(write=False)
    palette = Palette(
        skin=rgb_to_yuv(face.skin),
        lips=rgb_to_yuv(face.lips),
        lip_line=rgb_to_yuv(_mix(face.lips, (20, 0, 0), 0.55)),
        cavity=rgb_to_yuv((46, 12, 18)),
        teeth=rgb_to_yuv((236, 234, 224)),
        tongue=rgb_to_yuv((186, 78, 92)),
        lash=rgb_to_yuv((30, 20, 20)),
    )
    return FaceLayers(y=y, u=u, v=v, geometry=geometry, palette=palette)


@dataclass
class FaceState:
    """What one frame shows: mouth opening/width (0..1), eyelids (0 open, 1 shut), head shift."""

    mouth_open: float = 0.0
    mouth_wide: float = 0.5
    blink: float = 0.0
    shift_x: int = 0
    shift_y: int = 0


class _Region:
    """A small even-aligned rectangle of an I420 frame, painted in float and stored back."""

    def __init__(self, planes: tuple[np.ndarray, np.ndarray, np.ndarray],
                 x0: int, y0: int, w: int, h: int) -> None:
        x0 = max(0, min(WIDTH - w, x0 & ~1))
        y0 = max(0, min(HEIGHT - h, y0 & ~1))
        self._views = (planes[0][y0:y0 + h, x0:x0 + w],
                       planes[1][y0 // 2:(y0 + h) // 2, x0 // 2:(x0 + w) // 2],
                       planes[2][y0 // 2:(y0 + h) // 2, x0 // 2:(x0 + w) // 2])
        self._data = [view.astype(F32) for view in self._views]
        self._h, self._w = h, w
        self.xs = (np.arange(x0, x0 + w, dtype=F32) + 0.5)[None, :]
        self.ys = (np.arange(y0, y0 + h, dtype=F32) + 0.5)[:, None]

    def fill(self, alpha: np.ndarray, colour: YUV) -> None:
        chroma = alpha.reshape(self._h // 2, 2, self._w // 2, 2).mean(axis=(1, 3))
        for data, a, value in zip(self._data, (alpha, chroma, chroma), colour, strict=True):
            data += (F32(value) - data) * a

    def store(self) -> None:
        for view, data in zip(self._views, self._data, strict=True):
            np.copyto(view, np.clip(data + 0.5, 0, 255), casting="unsafe")


class Renderer:
    """Draws frames of one face into a reused 512x512 I420 buffer."""

    def __init__(self, face: Face) -> None:
        self.face = face
        self.layers = face_layers(face)
        self._buffer = np.empty(WIDTH * HEIGHT * 3 // 2, dtype=np.uint8)
        luma = WIDTH * HEIGHT
        chroma = luma // 4
        self._planes = (
            self._buffer[:luma].reshape(HEIGHT, WIDTH),
            self._buffer[luma:luma + chroma].reshape(HEIGHT // 2, WIDTH // 2),
            self._buffer[luma + chroma:].reshape(HEIGHT // 2, WIDTH // 2),
        )

    def render(self, state: FaceState) -> np.ndarray:
        """The frame for `state`, as a flat I420 array (valid until the next call)."""
        sx = max(-MAX_SHIFT, min(MAX_SHIFT, state.shift_x))
        sy = max(-MAX_SHIFT, min(MAX_SHIFT, state.shift_y))
        layers = self.layers
        x0, y0 = MARGIN - sx, MARGIN - sy
        np.copyto(self._planes[0], layers.y[y0:y0 + HEIGHT, x0:x0 + WIDTH])
        cx0, cy0 = x0 // 2, y0 // 2
        np.copyto(self._planes[1], layers.u[cy0:cy0 + HEIGHT // 2, cx0:cx0 + WIDTH // 2])
        np.copyto(self._planes[2], layers.v[cy0:cy0 + HEIGHT // 2, cx0:cx0 + WIDTH // 2])
        # canvas point (x, y) now sits at frame point (x - x0, y - y0)
        if state.blink > 0.02:
            for ex, ey in layers.geometry.eyes:
                self._eyelid(ex - x0, ey - y0, state.blink)
        g = layers.geometry
        self._mouth(g.mouth_x - x0, g.mouth_y - y0, state.mouth_open, state.mouth_wide)
        return self._buffer

    def _eyelid(self, ex: float, ey: float, blink: float) -> None:
        g, p = self.layers.geometry, self.layers.palette
        rx, ry = g.eye_rx + 3, g.eye_ry + 3
        region = _Region(self._planes, int(ex - rx - 4), int(ey - ry - 4),
                         int(2 * rx + 10) & ~1, int(2 * ry + 10) & ~1)
        mask = ellipse(region.xs, region.ys, ex, ey, rx, ry)
        lid_y = (ey - ry) + blink * 2 * ry
        region.fill(mask * np.clip(lid_y - region.ys + 0.5, 0, 1), p.skin)
        region.fill(mask * np.clip(1.6 - np.abs(region.ys - lid_y), 0, 1), p.lash)
        region.store()

    def _mouth(self, mx: float, my: float, opening: float, wide: float) -> None:
        p = self.layers.palette
        opening = min(max(opening, 0.0), 1.0)
        wide = min(max(wide, 0.0), 1.0)
        half_w = self.layers.geometry.mouth_half_width + 9 * (wide - 0.5) - 7 * opening * (1 - wide)
        top = my - 8 - 3 * opening
        bottom = my + 8 + 44 * opening
        region = _Region(self._planes, int(mx - 52), int(my - 18), 104, 80)
        xs, ys = region.xs, region.ys
        lips_cy, lips_ry = (top + bottom) / 2, (bottom - top) / 2
        region.fill(ellipse(xs, ys, mx, lips_cy, half_w, lips_ry, soft=1.2), p.lips)
        if opening < 0.06:
            region.fill(ellipse(xs, ys, mx, my, half_w - 3, 1.4, soft=0.8), p.lip_line)
        else:
            inner_top, inner_bottom = top + 6, bottom - 7
            in_cy, in_ry = (inner_top + inner_bottom) / 2, (inner_bottom - inner_top) / 2
            cavity = ellipse(xs, ys, mx, in_cy, half_w - 6, in_ry, soft=1.0)
            region.fill(cavity, p.cavity)
            teeth_h = 3 + 8 * min(1.0, opening * 3)
            region.fill(cavity * np.clip(inner_top + teeth_h - ys, 0, 1), p.teeth)
            tongue = ellipse(xs, ys, mx, inner_bottom - 2, (half_w - 6) * 0.62, 3 + 8 * opening)
            region.fill(cavity * tongue, p.tongue)
        region.store()
