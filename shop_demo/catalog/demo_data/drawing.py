"""Product pictures drawn with PIL: one shape per category, varied by colour, pattern and style.

Every picture is a function of a :class:`Look` (what the product is) and an integer seed
(which copy of it): the same arguments always give the same pixels, so the demo catalogue
can be drawn in parallel processes and still be reproducible. Pictures imitate a shop's
studio photo: a light, slightly varying background, the product roughly centred with a
little random scale, offset and rotation, and a soft shadow. They are drawn at twice the
final size and scaled down, which anti-aliases the polygon edges.

Nothing here imports Django.
"""
from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

RGB = tuple[int, int, int]
Point = tuple[float, float]
Box = tuple[float, float, float, float]

#: Side of the square pictures written to disk, in pixels.
IMAGE_SIZE = 256
#: JPEG quality of the written pictures.
JPEG_QUALITY = 88
_SUPERSAMPLE = 2

#: The named colours a product can have, as the sRGB value a product of that colour is drawn in.
COLOURS: dict[str, RGB] = {
    "red": (196, 32, 38),
    "blue": (38, 102, 204),
    "green": (38, 140, 68),
    "yellow": (242, 200, 36),
    "black": (32, 32, 34),
    "white": (242, 241, 236),
    "grey": (136, 138, 142),
    "pink": (236, 132, 172),
    "orange": (240, 122, 28),
    "purple": (116, 56, 156),
    "brown": (118, 74, 42),
    "navy": (26, 38, 88),
}

#: Surface patterns, drawn in a neutral accent colour over the product colour.
PATTERNS: tuple[str, ...] = ("solid", "striped", "dotted", "checked", "zigzag")

#: Categories and the shape variants ("styles") each one is drawn in.
CATEGORY_STYLES: dict[str, tuple[str, ...]] = {
    "t-shirts": ("crew", "v-neck", "long-sleeve"),
    "sneakers": ("low-top", "high-top", "runner"),
    "mugs": ("classic", "tall", "camp"),
    "handbags": ("tote", "satchel", "crossbody"),
    "lamps": ("drum", "cone", "dome"),
    "chairs": ("dining", "armchair", "bar-stool"),
    "watches": ("round", "square", "chronograph"),
    "backpacks": ("classic", "rolltop", "mini"),
    "dresses": ("a-line", "sheath", "maxi"),
    "sunglasses": ("wayfarer", "round", "cat-eye"),
    "vases": ("bottle", "cylinder", "round"),
    "cushions": ("square", "lumbar", "round"),
}

_ACCENT_LIGHT: RGB = (246, 244, 238)
_ACCENT_DARK: RGB = (38, 38, 42)
_METALS: dict[str, RGB] = {
    "silver": (196, 198, 204),
    "gold": (206, 166, 78),
    "black": (44, 44, 48),
    "rose gold": (214, 156, 134),
}
_WOODS: tuple[RGB, ...] = ((150, 102, 58), (196, 160, 110), (92, 60, 36), (40, 40, 42))


@dataclass(frozen=True)
class Look:
    """What a product looks like: the hidden attributes its picture is drawn from."""

    category: str
    style: str
    colour: str
    pattern: str

    def __post_init__(self) -> None:
        if self.category not in CATEGORY_STYLES:
            raise ValueError(f"unknown category {self.category!r}")
        if self.style not in CATEGORY_STYLES[self.category]:
            raise ValueError(f"unknown style {self.style!r} for {self.category!r}")
        if self.colour not in COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}")
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown pattern {self.pattern!r}")


def accent_name(colour: str) -> str:
    """The name of the neutral colour a pattern is drawn in on a product of ``colour``."""
    return "black" if _luminance(COLOURS[colour]) > 0.62 else "white"


@dataclass(frozen=True)
class ImageJob:
    """One picture to draw and write: a product's look, its seed, which view and where.

    ``seed`` identifies the product (e.g. ``(catalogue_seed, index)``): both views of a
    product share colour shade, pattern scale and details; ``view`` changes the framing.
    """

    look: Look
    seed: tuple[int, ...]
    view: int
    path: str


# --- geometry helpers -------------------------------------------------------------------


def _luminance(rgb: RGB) -> float:
    r, g, b = (c / 255 for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _scale(rgb: Sequence[float], factor: float) -> RGB:
    return tuple(int(max(0, min(255, round(c * factor)))) for c in rgb)  # type: ignore[return-value]


def _mix(a: Sequence[float], b: Sequence[float], t: float) -> RGB:
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b))  # type: ignore[return-value]


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 24) -> list[Point]:
    """Points on an ellipse from angle ``a0`` to ``a1`` (degrees, 0 = right, 90 = down)."""
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
        for a in np.linspace(a0, a1, n)
    ]


def _smooth(points: Sequence[Point], closed: bool = True, samples: int = 8) -> list[Point]:
    """A Catmull-Rom spline through ``points``: organic outlines from a few control points."""
    pts = list(points)
    n = len(pts)
    out: list[Point] = []
    segments = range(n) if closed else range(n - 1)
    for i in segments:
        p0 = pts[(i - 1) % n] if closed else pts[max(i - 1, 0)]
        p1 = pts[i]
        p2 = pts[(i + 1) % n]
        p3 = pts[(i + 2) % n] if closed else pts[min(i + 2, n - 1)]
        for k in range(samples):
            t = k / samples
            t2, t3 = t * t, t * t * t
            out.append(tuple(  # type: ignore[arg-type]
                0.5 * (2 * b + (-a + c) * t + (2 * a - 5 * b + 4 * c - d) * t2 + (-a + 3 * b - 3 * c + d) * t3)
                for a, b, c, d in zip(p0, p1, p2, p3)
            ))
    if not closed:
        out.append(pts[-1])
    return out


def _mirror(points: Iterable[Point]) -> list[Point]:
    return [(1 - x, y) for x, y in points]


def _profile_polygon(profile: Sequence[tuple[float, float]], cx: float = 0.5) -> list[Point]:
    """A symmetric outline from ``(y, half_width)`` pairs listed top to bottom."""
    right = [(cx + w, y) for y, w in profile]
    left = [(cx - w, y) for y, w in reversed(profile)]
    return _smooth(right, closed=False, samples=6) + _smooth(left, closed=False, samples=6)


# --- the painter --------------------------------------------------------------------------


class _Painter:
    """Draws a product in unit coordinates onto a transparent layer.

    "Fabric" parts take the product's colour and pattern (pasted through a mask, so the
    pattern is clipped to the part); other parts get a solid colour. The layer's RGB is
    premultiplied by its alpha, which keeps later scaling and rotation free of dark fringes.
    """

    def __init__(self, size: int, fabric: np.ndarray, colour: RGB) -> None:
        self.s = size
        self.colour = colour
        self.layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        self.draw = ImageDraw.Draw(self.layer)
        self._fabric = Image.fromarray(fabric)
        self._shades: dict[float, Image.Image] = {}
        #: (mask, kind, parameters) shading passes applied after drawing.
        self.shading: list[tuple[Image.Image, str, tuple[float, ...]]] = []

    def xy(self, points: Iterable[Point]) -> list[tuple[float, float]]:
        return [(x * self.s, y * self.s) for x, y in points]

    def box(self, b: Box) -> list[float]:
        return [v * self.s for v in b]

    def px(self, v: float) -> int:
        return max(1, int(round(v * self.s)))

    def _shade(self, shade: float) -> Image.Image:
        key = round(shade, 3)
        if key not in self._shades:
            lut = [min(255, int(v * shade)) for v in range(256)] * 3 + list(range(256))
            self._shades[key] = self._fabric.point(lut)
        return self._shades[key]

    def new_mask(self) -> tuple[Image.Image, ImageDraw.ImageDraw]:
        mask = Image.new("L", (self.s, self.s), 0)
        return mask, ImageDraw.Draw(mask)

    def fabric(self, mask: Image.Image, shade: float = 1.0) -> Image.Image:
        self.layer.paste(self._shade(shade), (0, 0), mask)
        return mask

    def fabric_polygon(self, points: Sequence[Point], shade: float = 1.0) -> Image.Image:
        mask, d = self.new_mask()
        d.polygon(self.xy(points), fill=255)
        return self.fabric(mask, shade)

    def fabric_ellipse(self, b: Box, shade: float = 1.0, width: float = 0) -> Image.Image:
        mask, d = self.new_mask()
        if width:
            d.ellipse(self.box(b), outline=255, width=self.px(width))
        else:
            d.ellipse(self.box(b), fill=255)
        return self.fabric(mask, shade)

    def fabric_rounded(self, b: Box, radius: float, shade: float = 1.0) -> Image.Image:
        mask, d = self.new_mask()
        d.rounded_rectangle(self.box(b), radius=self.px(radius), fill=255)
        return self.fabric(mask, shade)

    def fabric_line(self, points: Sequence[Point], width: float, shade: float = 1.0) -> Image.Image:
        mask, d = self.new_mask()
        d.line(self.xy(points), fill=255, width=self.px(width), joint="curve")
        return self.fabric(mask, shade)

    def polygon(self, points: Sequence[Point], fill: RGB) -> None:
        self.draw.polygon(self.xy(points), fill=fill)

    def ellipse(self, b: Box, fill: RGB | None, outline: RGB | None = None, width: float = 0) -> None:
        self.draw.ellipse(self.box(b), fill=fill, outline=outline, width=self.px(width) if width else 0)

    def rounded(self, b: Box, radius: float, fill: RGB) -> None:
        self.draw.rounded_rectangle(self.box(b), radius=self.px(radius), fill=fill)

    def line(self, points: Sequence[Point], fill: RGB, width: float, round_caps: bool = False) -> None:
        xy = self.xy(points)
        w = self.px(width)
        self.draw.line(xy, fill=fill, width=w, joint="curve")
        if round_caps:
            for x, y in (xy[0], xy[-1]):
                self.draw.ellipse([x - w / 2, y - w / 2, x + w / 2, y + w / 2], fill=fill)

    def dashed(self, points: Sequence[Point], fill: RGB, width: float, dash: float = 0.012,
               gap: float = 0.009) -> None:
        """Stitching: a dashed polyline."""
        pts = np.asarray(points, dtype=float)
        seg = np.diff(pts, axis=0)
        lengths = np.hypot(seg[:, 0], seg[:, 1])
        total = float(lengths.sum())
        if total == 0:
            return
        cum = np.concatenate([[0.0], np.cumsum(lengths)])

        def at(d: float) -> Point:
            i = int(min(np.searchsorted(cum, d, side="right") - 1, len(seg) - 1))
            t = (d - cum[i]) / lengths[i] if lengths[i] else 0.0
            return (pts[i, 0] + seg[i, 0] * t, pts[i, 1] + seg[i, 1] * t)

        d = 0.0
        while d < total:
            self.line([at(d), at(min(d + dash, total))], fill, width)
            d += dash + gap

    def overlay(self, paint: Callable[[ImageDraw.ImageDraw], None]) -> None:
        """Blends semi-transparent paint over what is drawn (highlights, glints)."""
        top = Image.new("RGBA", (self.s, self.s), (0, 0, 0, 0))
        paint(ImageDraw.Draw(top))
        alpha = self.layer.getchannel("A")
        merged = Image.alpha_composite(self.layer, top)
        merged.putalpha(alpha)
        self.layer = merged
        self.draw = ImageDraw.Draw(self.layer)

    def cylinder(self, mask: Image.Image, x0: float, x1: float, strength: float = 1.0) -> None:
        """Shades the masked part like a vertical cylinder spanning ``x0``..``x1``."""
        self.shading.append((mask, "cylinder", (x0, x1, strength)))

    def dome(self, mask: Image.Image, cx: float, cy: float, radius: float, strength: float = 1.0) -> None:
        """Shades the masked part like a cushion: lighter in the middle, darker at the rim."""
        self.shading.append((mask, "dome", (cx, cy, radius, strength)))

    def folds(self, mask: Image.Image, period: float, phase: float, strength: float = 1.0) -> None:
        """Soft vertical folds (skirts, curtains of fabric)."""
        self.shading.append((mask, "folds", (period, phase, strength)))


# --- patterns --------------------------------------------------------------------------------

def _fabric(size: int, colour: RGB, accent: RGB, pattern: str, rng: np.random.Generator) -> np.ndarray:
    """The product's surface: ``(size, size, 4)`` uint8 RGBA, the colour with the pattern over it.

    Patterns are periodic, so one tile of whole pixels is computed and repeated.
    """
    out = np.empty((size, size, 4), dtype=np.uint8)
    out[..., 3] = 255
    if pattern == "solid":
        out[..., :3] = colour
        return out
    unit = size / 512
    if pattern == "striped":
        period = rng.uniform(26, 50) * unit
        degrees = int(rng.choice([0, 90, 45, -45], p=[0.55, 0.25, 0.1, 0.1]))
        width = rng.uniform(0.28, 0.42)
        if degrees in (0, 90):
            n = max(2, round(period))
            line = ((np.arange(n) + 0.5) / n < width).astype(np.float32)
            coverage = line[:, None] if degrees == 0 else line[None, :]
        else:
            n = max(2, round(period * math.sqrt(2)))
            ys, xs = np.mgrid[0:n, 0:n]
            u = (xs + ys) % n if degrees == 45 else (xs - ys) % n
            coverage = ((u + 0.5) / n < width).astype(np.float32)
    elif pattern == "dotted":
        n = max(4, round(rng.uniform(30, 52) * unit))
        radius = n * rng.uniform(0.17, 0.25)
        ys, xs = np.mgrid[0:2 * n, 0:n].astype(np.float32) + 0.5
        dx = ((xs + (ys // n % 2) * n / 2) % n) - n / 2
        dy = (ys % n) - n / 2
        coverage = np.clip(radius + 0.5 - np.sqrt(dx * dx + dy * dy), 0, 1)
    elif pattern == "checked":
        half = max(2, round(rng.uniform(16, 30) * unit))
        band = (np.arange(2 * half) // half % 2).astype(np.float32)
        coverage = 0.42 * band[None, :] + 0.42 * band[:, None]
    else:  # zigzag
        n = max(4, round(rng.uniform(28, 46) * unit))
        amplitude = n * rng.uniform(0.35, 0.55)
        width = rng.uniform(0.28, 0.4)
        ys, xs = np.mgrid[0:n, 0:n].astype(np.float32) + 0.5
        u = ys + np.abs((xs / n) % 1.0 - 0.5) * 2 * amplitude
        coverage = (((u / n) % 1.0) < width).astype(np.float32)
    base = np.asarray(colour, dtype=np.float32)
    tile = np.clip(base + (np.asarray(accent, dtype=np.float32) - base) * coverage[..., None], 0, 255)
    th, tw = tile.shape[:2]
    oy, ox = int(rng.integers(0, th)), int(rng.integers(0, tw))
    tiled = np.tile(tile.astype(np.uint8), (size // th + 2, size // tw + 2, 1))
    out[..., :3] = tiled[oy:oy + size, ox:ox + size]
    return out


# --- the categories ---------------------------------------------------------------------------


def _draw_tshirt(p: _Painter, style: str, rng: np.random.Generator) -> None:
    long_sleeves = style == "long-sleeve"
    neck_l, neck_r = (0.40, 0.14), (0.60, 0.14)
    shoulder = (0.225, 0.195)
    armpit = (0.285, 0.37)
    if long_sleeves:
        sleeve = [shoulder, (0.13, 0.42), (0.06, 0.76), (0.145, 0.79), (0.22, 0.52), armpit]
        cuff = [(0.06, 0.76), (0.145, 0.79)]
    else:
        sleeve = [shoulder, (0.06, 0.375), (0.165, 0.475), armpit]
        cuff = [(0.07, 0.385), (0.165, 0.47)]
    for side in (sleeve, _mirror(sleeve)):
        p.fabric_polygon(side, 0.93)
    for a, b in (cuff, _mirror(cuff)):
        p.line([a, b], _scale(p.colour, 0.8), 0.006)
    back_neck = _arc(0.5, 0.105, 0.10, 0.05, 167, 13, 16)
    hem_y = 0.88
    body = [*back_neck, (0.775, 0.195), (0.715, 0.37), (0.72, hem_y), (0.5, hem_y + 0.008),
            (0.28, hem_y), (0.285, 0.37), shoulder]
    mask = p.fabric_polygon(body, 1.0)
    p.cylinder(mask, 0.28, 0.72, 0.5)
    if style == "v-neck":
        front = [neck_l, (0.445, 0.24), (0.5, 0.31), (0.555, 0.24), neck_r]
    else:
        front = _arc(0.5, 0.13, 0.10, 0.085, 170, 10, 16)
    p.fabric_polygon([*back_neck, *reversed(front)], 0.55)
    p.line(front, _scale(p.colour, 0.86), 0.022)
    p.dashed([(0.29, hem_y - 0.025), (0.71, hem_y - 0.025)], _scale(p.colour, 0.78), 0.004)
    p.line([(0.285, 0.37), (0.225, 0.195)], _scale(p.colour, 0.82), 0.004)
    p.line([(0.715, 0.37), (0.775, 0.195)], _scale(p.colour, 0.82), 0.004)


def _draw_sneaker(p: _Painter, style: str, rng: np.random.Generator) -> None:
    sole_colour = (238, 236, 230) if rng.random() < 0.75 else (48, 48, 50)
    outsole = (176, 120, 66) if rng.random() < 0.3 else _scale(sole_colour, 0.8)
    lace = (244, 242, 236) if _luminance(p.colour) < 0.6 or rng.random() < 0.5 else (40, 40, 44)
    lining = (70, 70, 74)
    if style == "high-top":
        upper = [(0.09, 0.63), (0.08, 0.57), (0.12, 0.51), (0.22, 0.47), (0.34, 0.43), (0.44, 0.36),
                 (0.51, 0.24), (0.54, 0.15), (0.60, 0.16), (0.74, 0.15), (0.85, 0.16), (0.88, 0.26),
                 (0.91, 0.42), (0.925, 0.55), (0.92, 0.63)]
        lace_line = [(0.31, 0.45), (0.54, 0.19)]
        sole_top, sole_bottom = 0.61, 0.73
    elif style == "runner":
        upper = [(0.09, 0.62), (0.08, 0.56), (0.14, 0.50), (0.26, 0.46), (0.40, 0.41), (0.52, 0.35),
                 (0.58, 0.33), (0.66, 0.37), (0.77, 0.37), (0.86, 0.32), (0.91, 0.36), (0.925, 0.48),
                 (0.92, 0.60)]
        lace_line = [(0.30, 0.45), (0.56, 0.35)]
        sole_top, sole_bottom = 0.59, 0.73
    else:
        upper = [(0.09, 0.63), (0.08, 0.57), (0.12, 0.51), (0.22, 0.465), (0.34, 0.44), (0.46, 0.395),
                 (0.55, 0.345), (0.60, 0.35), (0.66, 0.39), (0.76, 0.385), (0.84, 0.35), (0.90, 0.37),
                 (0.92, 0.45), (0.925, 0.55), (0.92, 0.63)]
        lace_line = [(0.30, 0.46), (0.55, 0.355)]
        sole_top, sole_bottom = 0.61, 0.73
    # Tongue, then the upper over it.
    tx, ty = lace_line[1]
    p.fabric_polygon([(tx - 0.05, ty + 0.04), (tx - 0.01, ty - 0.05), (tx + 0.05, ty - 0.045),
                      (tx + 0.05, ty + 0.03)], 0.8)
    mask = p.fabric_polygon(_smooth(upper, closed=False, samples=5), 1.0)
    p.shading.append((mask, "vertical", (0.3, 0.65, 0.35)))
    # Collar lining along the top edge behind the tongue.
    top_edge = [pt for pt in upper if pt[0] > tx + 0.01 and pt[1] < 0.5]
    if len(top_edge) >= 2:
        p.line(top_edge[:-1], lining, 0.016)
    # Heel counter and toe cap panels.
    heel = [(0.80, sole_top + 0.02), (0.79, 0.50), (0.86, upper[-4][1] + 0.03), (0.915, 0.45), (0.925, sole_top + 0.02)]
    p.fabric_polygon(_smooth(heel, closed=False, samples=4), 0.84)
    toe = [(0.085, 0.58), (0.12, 0.51), (0.19, 0.48), (0.235, 0.53), (0.22, sole_top + 0.02), (0.09, sole_top + 0.02)]
    if style == "high-top":
        p.polygon(_smooth(toe, closed=False, samples=4), sole_colour)
        p.dashed([(0.235, 0.535), (0.22, sole_top)], _scale(sole_colour, 0.8), 0.004)
        cx, cy = 0.76, 0.27
        p.ellipse((cx - 0.04, cy - 0.04, cx + 0.04, cy + 0.04), (244, 242, 236), _scale(p.colour, 0.7), 0.006)
    else:
        p.fabric_polygon(_smooth(toe, closed=False, samples=4), 0.9)
        p.dashed(_smooth([(0.19, 0.485), (0.235, 0.535), (0.225, sole_top)], closed=False, samples=4),
                 _scale(p.colour, 0.7), 0.004)
    # Side stripes.
    stripe = _scale(p.colour, 0.72) if rng.random() < 0.5 else (lace if lace[0] > 128 else (240, 240, 236))
    for k in range(2 if style == "runner" else 1):
        off = 0.05 * k
        p.line(_smooth([(0.36 + off, sole_top - 0.01), (0.46 + off, 0.50), (0.58 + off, 0.44)],
                       closed=False, samples=6), stripe, 0.022)
    # Eyestay and laces.
    p.fabric_line(lace_line, 0.05, 0.78)
    (x0, y0), (x1, y1) = lace_line
    for k in range(5 if style != "high-top" else 7):
        t = (k + 0.5) / (5 if style != "high-top" else 7)
        x, y = x0 + (x1 - x0) * t, y0 + (y1 - y0) * t
        p.line([(x - 0.026, y - 0.02), (x + 0.026, y + 0.02)], lace, 0.011)
        p.ellipse((x - 0.007, y + 0.014, x + 0.007, y + 0.028), (70, 70, 72))
    # Sole: midsole and a thin outsole, with a little toe spring.
    p.rounded((0.07, sole_bottom - 0.03, 0.94, sole_bottom + 0.004), 0.014, outsole)
    p.rounded((0.055, sole_top - 0.005, 0.945, sole_bottom - 0.012), 0.03, sole_colour)
    p.line([(0.08, sole_top + 0.025), (0.93, sole_top + 0.025)], _scale(sole_colour, 0.85), 0.005)
    if style == "runner":
        p.line(_smooth([(0.5, sole_bottom - 0.03), (0.62, sole_top + 0.03), (0.78, sole_bottom - 0.035),
                        (0.92, sole_top + 0.02)], closed=False), _scale(sole_colour, 0.8), 0.006)


def _draw_mug(p: _Painter, style: str, rng: np.random.Generator) -> None:
    if style == "tall":
        x0, x1, top, bottom = 0.31, 0.63, 0.15, 0.85
        handle, hw = (0.54, 0.30, 0.80, 0.66), 0.048
    elif style == "camp":
        x0, x1, top, bottom = 0.20, 0.70, 0.33, 0.74
        handle, hw = (0.62, 0.40, 0.86, 0.64), 0.032
    else:
        x0, x1, top, bottom = 0.25, 0.67, 0.25, 0.80
        handle, hw = (0.57, 0.35, 0.85, 0.68), 0.055
    cx, rx = (x0 + x1) / 2, (x1 - x0) / 2
    ry = rx * 0.22
    p.fabric_ellipse(handle, 0.85, width=hw)
    body = [(x0, top), (x1, top), *_arc(cx, bottom, rx, ry, 0, 180, 20)]
    mask = p.fabric_polygon(body, 1.0)
    p.cylinder(mask, x0, x1, 1.0)
    interior = (236, 234, 228) if rng.random() < 0.6 else _scale(p.colour, 0.8)
    p.fabric_ellipse((x0, top - ry, x1, top + ry), 1.05)
    inset = 0.014
    p.ellipse((x0 + inset, top - ry + inset * 0.6, x1 - inset, top + ry - inset * 0.6), _scale(interior, 0.72))
    p.ellipse((x0 + inset, top - ry * 0.25, x1 - inset, top + ry - inset * 0.6), interior)
    if style == "camp":
        rim = (44, 46, 52) if _luminance(p.colour) > 0.25 else (236, 234, 228)
        p.ellipse((x0, top - ry, x1, top + ry), None, rim, 0.012)
        p.line(_arc(cx, bottom, rx, ry, 0, 180, 20), rim, 0.012)
        p.ellipse(handle, None, rim, 0.006)


def _draw_handbag(p: _Painter, style: str, rng: np.random.Generator) -> None:
    trim = _scale(p.colour, 0.7) if rng.random() < 0.6 else (92, 60, 36)
    metal = _METALS["gold"] if rng.random() < 0.6 else _METALS["silver"]
    stitch = _mix(p.colour, (250, 248, 240), 0.45)
    if style == "tote":
        p.line(_arc(0.5, 0.37, 0.15, 0.25, 180, 360, 24), _scale(trim, 0.8), 0.03)
        body = [(0.2, 0.36), (0.8, 0.36), *_arc(0.82, 0.81, 0.05, 0.05, 0, 90, 8),
                *_arc(0.18, 0.81, 0.05, 0.05, 90, 180, 8)]
        mask = p.fabric_polygon(body)
        p.cylinder(mask, 0.13, 0.87, 0.45)
        p.fabric_polygon([(0.2, 0.36), (0.8, 0.36), (0.805, 0.41), (0.195, 0.41)], 0.86)
        p.line(_arc(0.5, 0.39, 0.17, 0.29, 180, 360, 24), trim, 0.032)
        for x in (0.33, 0.67):
            p.ellipse((x - 0.014, 0.375, x + 0.014, 0.403), metal)
        p.dashed([(0.21, 0.42), (0.79, 0.42)], stitch, 0.004)
    elif style == "satchel":
        p.line(_arc(0.5, 0.36, 0.14, 0.18, 180, 360, 24), trim, 0.036)
        body = (0.14, 0.34, 0.86, 0.84)
        mask, d = p.new_mask()
        d.rounded_rectangle(p.box(body), radius=p.px(0.07), fill=255)
        p.fabric(mask)
        p.cylinder(mask, 0.14, 0.86, 0.45)
        flap = [(0.14, 0.36), (0.86, 0.36), (0.86, 0.55), *_arc(0.5, 0.55, 0.36, 0.10, 0, 180, 24)]
        p.fabric_polygon(flap, 0.9)
        p.dashed(_arc(0.5, 0.545, 0.34, 0.085, 5, 175, 24), stitch, 0.004)
        p.rounded((0.455, 0.60, 0.545, 0.67), 0.01, metal)
        p.rounded((0.475, 0.62, 0.525, 0.65), 0.006, _scale(metal, 0.7))
        for x in (0.36, 0.64):
            p.rounded((x - 0.02, 0.33, x + 0.02, 0.37), 0.006, metal)
    else:
        p.line(_arc(0.5, 0.47, 0.27, 0.42, 180, 360, 40), trim, 0.014)
        body = (0.20, 0.44, 0.80, 0.82)
        mask, d = p.new_mask()
        d.rounded_rectangle(p.box(body), radius=p.px(0.06), fill=255)
        p.fabric(mask)
        p.cylinder(mask, 0.20, 0.80, 0.45)
        p.line([(0.25, 0.49), (0.75, 0.49)], (60, 60, 62), 0.008)
        p.rounded((0.70, 0.485, 0.725, 0.54), 0.006, metal)
        p.fabric_rounded((0.27, 0.58, 0.73, 0.78), 0.03, 0.9)
        p.dashed([(0.29, 0.60), (0.71, 0.60)], stitch, 0.004)
        for x in (0.21, 0.79):
            p.ellipse((x - 0.018, 0.44, x + 0.018, 0.476), metal)


def _draw_lamp(p: _Painter, style: str, rng: np.random.Generator) -> None:
    metal = [_METALS["gold"], _METALS["silver"], _METALS["black"], (236, 234, 228), _WOODS[0]][
        int(rng.integers(0, 5))]
    if style == "dome":
        base_top = 0.40
        p.line([(0.5, base_top), (0.5, 0.83)], metal, 0.022)
        p.ellipse((0.34, 0.80, 0.66, 0.88), _scale(metal, 0.85))
        p.ellipse((0.34, 0.79, 0.66, 0.86), metal)
        shade = [*_arc(0.5, 0.42, 0.28, 0.27, 180, 360, 32), (0.78, 0.44), (0.22, 0.44)]
        mask = p.fabric_polygon(shade)
        p.cylinder(mask, 0.22, 0.78, 1.0)
        p.ellipse((0.47, 0.125, 0.53, 0.165), metal)
        p.polygon([(0.22, 0.43), (0.78, 0.43), (0.78, 0.445), (0.22, 0.445)], _scale(p.colour, 0.7))
        return
    if style == "drum":
        body_colour = (236, 234, 228) if rng.random() < 0.5 else metal
        p.line([(0.5, 0.40), (0.5, 0.52)], _METALS["silver"], 0.012)
        vase = _profile_polygon([(0.50, 0.05), (0.55, 0.11), (0.64, 0.13), (0.74, 0.10), (0.80, 0.06), (0.82, 0.07)])
        p.polygon(vase, body_colour)
        shading = Image.new("L", (p.s, p.s), 0)
        ImageDraw.Draw(shading).polygon(p.xy(vase), fill=255)
        p.cylinder(shading, 0.36, 0.64, 1.0)
        shade = [(0.29, 0.14), (0.71, 0.14), *_arc(0.5, 0.44, 0.21, 0.035, 0, 180, 20)]
        top_y = 0.14
    else:
        p.line([(0.5, 0.40), (0.5, 0.83)], metal, 0.018)
        p.ellipse((0.35, 0.81, 0.65, 0.88), _scale(metal, 0.82))
        p.ellipse((0.35, 0.80, 0.65, 0.86), metal)
        p.line([(0.45, 0.60), (0.55, 0.60)], metal, 0.025)
        shade = [(0.37, 0.13), (0.63, 0.13), *_arc(0.5, 0.46, 0.28, 0.04, 0, 180, 20)]
        top_y = 0.13
    mask = p.fabric_polygon(shade)
    p.cylinder(mask, 0.21, 0.79, 0.8)
    xs = [x for x, _ in shade]
    width = (max(xs) - min(xs)) / 2
    p.line(_arc(0.5, max(y for _, y in shade) - 0.035, width, 0.035, 0, 180, 20), _scale(p.colour, 0.75), 0.01)
    top_w = abs(shade[1][0] - shade[0][0]) / 2
    p.ellipse((0.5 - top_w, top_y - 0.012, 0.5 + top_w, top_y + 0.012), _scale(p.colour, 0.6))
    p.ellipse((0.48, top_y - 0.045, 0.52, top_y - 0.012), _METALS["silver"] if metal == (236, 234, 228) else metal)


def _draw_chair(p: _Painter, style: str, rng: np.random.Generator) -> None:
    wood = _WOODS[int(rng.integers(0, len(_WOODS)))]
    if style == "armchair":
        for x in (0.17, 0.79):
            p.polygon([(x, 0.78), (x + 0.04, 0.78), (x + 0.035, 0.88), (x + 0.01, 0.88)], wood)
        back = p.fabric_rounded((0.22, 0.12, 0.78, 0.62), 0.09, 0.92)
        p.dome(back, 0.5, 0.3, 0.4, 0.6)
        p.fabric_rounded((0.26, 0.50, 0.74, 0.69), 0.04, 1.02)
        p.fabric_rounded((0.25, 0.66, 0.75, 0.81), 0.02, 0.82)
        for x0, x1 in ((0.11, 0.31), (0.69, 0.89)):
            arm = p.fabric_rounded((x0, 0.36, x1, 0.81), 0.06, 0.97)
            p.cylinder(arm, x0, x1, 0.8)
            p.fabric_ellipse((x0, 0.34, x1, 0.42), 1.06)
        p.line([(0.27, 0.665), (0.73, 0.665)], _scale(p.colour, 0.65), 0.008)
        p.line([(0.5, 0.16), (0.5, 0.50)], _scale(p.colour, 0.8), 0.005)
        return
    if style == "bar-stool":
        legs = [((0.33, 0.36), (0.26, 0.93)), ((0.67, 0.36), (0.74, 0.93)),
                ((0.42, 0.37), (0.40, 0.88)), ((0.58, 0.37), (0.60, 0.88))]
        for top, foot in legs[2:]:
            p.line([top, foot], _scale(wood, 0.8), 0.02)
        p.line(_arc(0.5, 0.70, 0.155, 0.03, 0, 180, 16), wood, 0.016)
        for top, foot in legs[:2]:
            p.line([top, foot], wood, 0.024)
        p.line(_arc(0.5, 0.72, 0.19, 0.035, 0, 180, 16), wood, 0.018)
        side = [(0.26, 0.27), (0.74, 0.27), *_arc(0.5, 0.34, 0.24, 0.06, 0, 180, 24)]
        p.fabric_polygon(side, 0.78)
        seat = p.fabric_ellipse((0.26, 0.20, 0.74, 0.34), 1.02)
        p.dome(seat, 0.45, 0.25, 0.25, 0.5)
        return
    # A dining chair seen from three quarters: back legs, back rest, seat, front legs.
    for top, foot in (((0.375, 0.55), (0.385, 0.83)), ((0.70, 0.55), (0.705, 0.82))):
        p.line([top, foot], _scale(wood, 0.75), 0.022)
    p.line([(0.34, 0.12), (0.365, 0.55)], wood, 0.026)
    p.line([(0.715, 0.13), (0.705, 0.55)], wood, 0.026)
    back = p.fabric_polygon([(0.35, 0.15), (0.71, 0.16), (0.70, 0.46), (0.36, 0.455)], 0.95)
    p.dome(back, 0.53, 0.3, 0.3, 0.5)
    p.polygon([(0.26, 0.635), (0.78, 0.625), (0.78, 0.68), (0.26, 0.69)], _scale(wood, 0.9))
    p.fabric_polygon([(0.26, 0.63), (0.78, 0.62), (0.78, 0.665), (0.26, 0.675)], 0.75)
    seat = p.fabric_polygon(_smooth([(0.365, 0.51), (0.71, 0.51), (0.785, 0.62), (0.255, 0.63)], samples=3), 1.05)
    p.dome(seat, 0.52, 0.57, 0.3, 0.4)
    p.line([(0.28, 0.78), (0.385, 0.74)], _scale(wood, 0.8), 0.012)
    p.line([(0.76, 0.77), (0.70, 0.73)], _scale(wood, 0.8), 0.012)
    for top, foot in (((0.275, 0.67), (0.27, 0.93)), ((0.765, 0.66), (0.77, 0.92))):
        p.line([top, foot], wood, 0.028)


def _draw_watch(p: _Painter, style: str, rng: np.random.Generator) -> None:
    metal = list(_METALS.values())[int(rng.integers(0, len(_METALS)))]
    dial = [(246, 245, 240), (30, 30, 34), (238, 228, 204), _scale(p.colour, 0.9)][int(rng.integers(0, 4))]
    ink = (30, 30, 34) if _luminance(dial) > 0.5 else (240, 240, 236)
    top = [(0.375, 0.40), (0.625, 0.40), (0.605, 0.06), (0.395, 0.06)]
    bottom = [(0.375, 0.60), (0.625, 0.60), (0.605, 0.92), *_arc(0.5, 0.92, 0.105, 0.035, 0, 180, 10), (0.395, 0.92)]
    for strap in (top, bottom):
        mask = p.fabric_polygon(strap)
        p.cylinder(mask, 0.375, 0.625, 0.7)
    p.line([(0.39, 0.07), (0.61, 0.07)], metal, 0.018)
    p.rounded((0.37, 0.72, 0.63, 0.755), 0.01, _scale(p.colour, 0.8))
    for k in range(4):
        y = 0.80 + 0.03 * k
        p.ellipse((0.492, y, 0.508, y + 0.014), _scale(p.colour, 0.45))
    cx, cy = 0.5, 0.5
    if style == "square":
        p.rounded((0.33, 0.30, 0.67, 0.70), 0.05, metal)
        p.rounded((0.35, 0.32, 0.65, 0.68), 0.04, _scale(metal, 0.8))
        p.rounded((0.365, 0.335, 0.635, 0.665), 0.035, dial)
        p.rounded((0.665, 0.47, 0.695, 0.53), 0.008, metal)
        r = 0.12
    else:
        rc = 0.19 if style == "chronograph" else 0.17
        for a in (-45, 0, 45) if style == "chronograph" else (0,):
            x = cx + (rc + 0.01) * math.cos(math.radians(a))
            y = cy + (rc + 0.01) * math.sin(math.radians(a))
            p.rounded((x - 0.02, y - 0.018, x + 0.025, y + 0.018), 0.006, metal)
        p.ellipse((cx - rc, cy - rc, cx + rc, cy + rc), metal)
        bezel = (36, 36, 40) if style == "chronograph" else _scale(metal, 0.8)
        p.ellipse((cx - rc + 0.015, cy - rc + 0.015, cx + rc - 0.015, cy + rc - 0.015), bezel)
        r = rc - 0.035
        p.ellipse((cx - r, cy - r, cx + r, cy + r), dial)
        r -= 0.01
    for k in range(12):
        a = math.radians(k * 30)
        outer, inner = r * 0.95, r * (0.78 if k % 3 == 0 else 0.86)
        p.line([(cx + outer * math.sin(a), cy - outer * math.cos(a)),
                (cx + inner * math.sin(a), cy - inner * math.cos(a))], ink, 0.012 if k % 3 == 0 else 0.006)
    if style == "chronograph":
        for dx, dy in ((0, -0.055), (-0.055, 0.02), (0.055, 0.02)):
            sub = (cx + dx - 0.03, cy + dy - 0.03, cx + dx + 0.03, cy + dy + 0.03)
            p.ellipse(sub, None, _mix(dial, ink, 0.5), 0.005)
    hour, minute = rng.uniform(0, 360), rng.uniform(0, 360)
    for angle, length, width in ((hour, 0.5, 0.016), (minute, 0.8, 0.011)):
        a = math.radians(angle)
        p.line([(cx, cy), (cx + r * length * math.sin(a), cy - r * length * math.cos(a))], ink, width, True)
    a = math.radians(rng.uniform(0, 360))
    p.line([(cx - r * 0.2 * math.sin(a), cy + r * 0.2 * math.cos(a)),
            (cx + r * 0.9 * math.sin(a), cy - r * 0.9 * math.cos(a))], (210, 40, 30), 0.004)
    p.ellipse((cx - 0.012, cy - 0.012, cx + 0.012, cy + 0.012), metal)
    p.overlay(lambda d: d.polygon(p.xy([(cx - r * 0.7, cy - r * 0.5), (cx - r * 0.2, cy - r * 0.9),
                                        (cx + r * 0.1, cy - r * 0.85), (cx - r * 0.6, cy - r * 0.2)]),
                                  fill=(255, 255, 255, 40)))


def _draw_backpack(p: _Painter, style: str, rng: np.random.Generator) -> None:
    webbing = (46, 46, 50) if rng.random() < 0.6 else _scale(p.colour, 0.6)
    zip_colour = (52, 52, 56)
    if style == "mini":
        x0, x1, top, bottom = 0.27, 0.73, 0.20, 0.84
    else:
        x0, x1, top, bottom = 0.21, 0.79, 0.12, 0.88
    strap = [(x0 + 0.03, top + 0.2), (x0 - 0.028, top + 0.26), (x0 - 0.036, bottom - 0.12), (x0 + 0.03, bottom - 0.16)]
    p.polygon(_smooth(strap, samples=4), webbing)
    p.polygon(_smooth(_mirror(strap), samples=4), webbing)
    cx, rx = (x0 + x1) / 2, (x1 - x0) / 2
    if style == "rolltop":
        body = [(x0, top + 0.12), (x1, top + 0.12), (x1, bottom - 0.04), (x1 - 0.04, bottom),
                (x0 + 0.04, bottom), (x0, bottom - 0.04)]
        mask = p.fabric_polygon(body)
        p.cylinder(mask, x0, x1, 0.6)
        p.fabric_rounded((x0 - 0.01, top + 0.03, x1 + 0.01, top + 0.16), 0.06, 0.88)
        p.line([(x0 + 0.02, top + 0.095), (x1 - 0.02, top + 0.095)], _scale(p.colour, 0.7), 0.006)
        p.fabric_rounded((x0 + 0.07, 0.56, x1 - 0.07, bottom - 0.04), 0.03, 0.92)
        for x in (cx - 0.12, cx + 0.12):
            p.line([(x, top + 0.08), (x, 0.52)], webbing, 0.03)
            p.rounded((x - 0.028, 0.44, x + 0.028, 0.50), 0.008, (30, 30, 32))
    else:
        ry = rx * 0.95
        body = [*_arc(cx, top + ry, rx, ry, 180, 360, 28), (x1, bottom - 0.05), (x1 - 0.05, bottom),
                (x0 + 0.05, bottom), (x0, bottom - 0.05)]
        p.line(_arc(cx, top + 0.01, 0.05, 0.05, 180, 360, 12), webbing, 0.016)
        mask = p.fabric_polygon(body)
        p.cylinder(mask, x0, x1, 0.6)
        p.line(_arc(cx, top + ry + 0.02, rx - 0.035, ry - 0.02, 195, 345, 24), zip_colour, 0.008)
        for a in (200, 340):
            x = cx + (rx - 0.035) * math.cos(math.radians(a))
            y = top + ry + 0.02 + (ry - 0.02) * math.sin(math.radians(a))
            p.rounded((x - 0.01, y, x + 0.01, y + 0.05), 0.005, (40, 40, 44))
        pocket = (x0 + 0.07, bottom - 0.33 if style != "mini" else bottom - 0.3, x1 - 0.07, bottom - 0.05)
        pm = p.fabric_rounded(pocket, 0.06, 0.9)
        p.dome(pm, cx, (pocket[1] + pocket[3]) / 2, 0.25, 0.4)
        p.line(_arc(cx, pocket[1] + 0.08, (pocket[2] - pocket[0]) / 2 - 0.03, 0.05, 195, 345, 20), zip_colour, 0.007)
        p.rounded((cx + 0.08, pocket[1] + 0.04, cx + 0.1, pocket[1] + 0.09), 0.005, (40, 40, 44))
        p.polygon([(x0 + 0.01, bottom - 0.06), (x1 - 0.01, bottom - 0.06), (x1 - 0.05, bottom), (x0 + 0.05, bottom)],
                  _scale(webbing, 1.1))


def _draw_dress(p: _Painter, style: str, rng: np.random.Generator) -> None:
    if style == "sheath":
        p.fabric_polygon([(0.37, 0.14), (0.30, 0.19), (0.27, 0.27), (0.34, 0.29), (0.36, 0.22)], 0.92)
        p.fabric_polygon(_mirror([(0.37, 0.14), (0.30, 0.19), (0.27, 0.27), (0.34, 0.29), (0.36, 0.22)]), 0.92)
        body = _smooth([(0.37, 0.13), (0.63, 0.13), (0.655, 0.24), (0.615, 0.40), (0.655, 0.58), (0.64, 0.90),
                        (0.36, 0.90), (0.345, 0.58), (0.385, 0.40), (0.345, 0.24)], samples=6)
        mask = p.fabric_polygon(body)
        p.cylinder(mask, 0.34, 0.66, 0.7)
        neck = _arc(0.5, 0.13, 0.09, 0.06, 180, 0, 14)
        p.fabric_polygon([(0.41, 0.13), (0.59, 0.13), *reversed(neck[1:-1])], 0.55)
        p.line(neck, _scale(p.colour, 0.8), 0.008)
        p.dashed([(0.5, 0.5), (0.5, 0.88)], _scale(p.colour, 0.8), 0.004)
        return
    waist = 0.40 if style == "a-line" else 0.36
    hem = 0.88 if style == "a-line" else 0.96
    flare = 0.31 if style == "a-line" else 0.28
    for x in (0.405, 0.595):
        p.fabric_line([(x, 0.06), (x - 0.01 if x < 0.5 else x + 0.01, 0.18)], 0.016, 0.85)
    hem_pts = [(0.5 + flare - k * (2 * flare) / 8, hem + 0.012 * math.sin(k * 1.7)) for k in range(9)]
    skirt = [(0.39, waist), (0.61, waist), *hem_pts]
    skirt_mask = p.fabric_polygon(_smooth(skirt, samples=5) if style == "maxi" else skirt, 1.0)
    p.folds(skirt_mask, 0.09, float(rng.uniform(0, 1)), 0.9)
    bodice = _smooth([(0.375, 0.17), (0.625, 0.17), (0.645, 0.26), (0.61, waist + 0.01), (0.39, waist + 0.01),
                      (0.355, 0.26)], samples=5)
    mask = p.fabric_polygon(bodice)
    p.cylinder(mask, 0.355, 0.645, 0.7)
    neck = _arc(0.5, 0.17, 0.1, 0.07, 180, 0, 14)
    p.fabric_polygon([(0.40, 0.168), (0.60, 0.168), *reversed(neck[1:-1])], 0.55)
    p.line(neck, _scale(p.colour, 0.82), 0.008)
    p.fabric_polygon([(0.39, waist - 0.012), (0.61, waist - 0.012), (0.612, waist + 0.02), (0.388, waist + 0.02)], 0.78)
    if style == "maxi":
        for y in (0.58, 0.77):
            t = (y - waist) / (hem - waist)
            w = 0.11 + (flare - 0.11) * t
            p.line([(0.5 - w, y), (0.5 + w, y)], _scale(p.colour, 0.8), 0.006)


def _draw_sunglasses(p: _Painter, style: str, rng: np.random.Generator) -> None:
    lens_top = _mix((22, 22, 26), p.colour, 0.18)
    lens_bottom = _mix((86, 86, 96), p.colour, 0.25)
    if style == "round":
        lens = _arc(0.29, 0.5, 0.145, 0.145, 0, 360, 40)
    elif style == "cat-eye":
        lens = _smooth([(0.09, 0.39), (0.26, 0.42), (0.44, 0.43), (0.45, 0.52), (0.36, 0.61), (0.22, 0.61),
                        (0.13, 0.53)], samples=6)
    else:
        lens = _smooth([(0.11, 0.40), (0.30, 0.41), (0.455, 0.41), (0.445, 0.52), (0.39, 0.60), (0.22, 0.61),
                        (0.15, 0.55)], samples=6)
    frame_w = 0.05 if style != "round" else 0.035
    lenses = [lens, _mirror(lens)]
    # Temples poking out behind the hinges.
    for sgn in (-1, 1):
        x = 0.5 + sgn * 0.43
        temple = [(x - sgn * 0.03, 0.42), (x + sgn * 0.06, 0.45), (x + sgn * 0.06, 0.47), (x - sgn * 0.03, 0.47)]
        p.fabric_polygon(temple, 0.7)
    for side in lenses:
        p.fabric_line([*side, side[0]], frame_w * 2, 1.0)
        p.fabric_polygon(side)
    if style == "wayfarer":
        p.fabric_polygon([(0.06, 0.37), (0.94, 0.37), (0.945, 0.43), (0.05, 0.43)])
    bridge = _arc(0.5, 0.48, 0.07, 0.04, 200, 340, 12)
    p.fabric_line(bridge, 0.03)
    for side in lenses:
        mask, d = p.new_mask()
        d.polygon(p.xy(side), fill=255)
        ys = [y for _, y in side]
        y0, y1 = min(ys), max(ys)
        col = np.linspace(0, 1, p.s, dtype=np.float32)[:, None]
        t = np.clip((col - y0) / (y1 - y0), 0, 1)
        arr = np.asarray(lens_top, np.float32) * (1 - t[..., None]) + np.asarray(lens_bottom, np.float32) * t[..., None]
        arr = np.broadcast_to(arr, (p.s, p.s, 3))
        grad = Image.fromarray(np.dstack([arr, np.full((p.s, p.s), 255, np.float32)]).astype(np.uint8), "RGBA")
        p.layer.paste(grad, (0, 0), mask)
        xs = [x for x, _ in side]
        x0 = min(xs)
        p.overlay(lambda dr, x0=x0, y0=y0, y1=y1: dr.polygon(
            p.xy([(x0 + 0.05, y0 + 0.02), (x0 + 0.11, y0 + 0.02), (x0 + 0.06, y1 - 0.03), (x0 + 0.0, y1 - 0.03)]),
            fill=(255, 255, 255, 46)))
    for sgn in (-1, 1):
        x = 0.5 + sgn * 0.405
        p.ellipse((x - 0.008, 0.425, x + 0.008, 0.441), _METALS["silver"])


def _draw_vase(p: _Painter, style: str, rng: np.random.Generator) -> None:
    if style == "bottle":
        profile = [(0.10, 0.055), (0.16, 0.05), (0.30, 0.055), (0.40, 0.13), (0.52, 0.19), (0.66, 0.2), (0.80, 0.17),
                   (0.89, 0.12)]
    elif style == "cylinder":
        profile = [(0.10, 0.145), (0.12, 0.15), (0.40, 0.15), (0.70, 0.15), (0.88, 0.15), (0.90, 0.145)]
    else:
        profile = [(0.18, 0.09), (0.22, 0.08), (0.30, 0.12), (0.42, 0.24), (0.58, 0.26), (0.74, 0.21), (0.86, 0.12),
                   (0.89, 0.09)]
    outline = _profile_polygon(profile)
    mask = p.fabric_polygon(outline)
    w_max = max(w for _, w in profile)
    p.cylinder(mask, 0.5 - w_max, 0.5 + w_max, 1.1)
    y_top, w_top = profile[0]
    p.fabric_ellipse((0.5 - w_top, y_top - 0.02, 0.5 + w_top, y_top + 0.02), 1.1)
    p.ellipse((0.5 - w_top + 0.01, y_top - 0.013, 0.5 + w_top - 0.01, y_top + 0.013), _scale(p.colour, 0.35))


def _draw_cushion(p: _Painter, style: str, rng: np.random.Generator) -> None:
    piping = _scale(p.colour, 0.72)
    if style == "round":
        mask = p.fabric_ellipse((0.14, 0.14, 0.86, 0.86))
        p.dome(mask, 0.5, 0.5, 0.36, 1.0)
        p.ellipse((0.14, 0.14, 0.86, 0.86), None, piping, 0.014)
        for k in range(12):
            a = math.radians(k * 30)
            p.line([(0.5 + 0.06 * math.cos(a), 0.5 + 0.06 * math.sin(a)),
                    (0.5 + 0.3 * math.cos(a), 0.5 + 0.3 * math.sin(a))], _scale(p.colour, 0.86), 0.005)
        p.ellipse((0.47, 0.47, 0.53, 0.53), _scale(p.colour, 0.7))
        return
    if style == "lumbar":
        x0, y0, x1, y1 = 0.07, 0.27, 0.93, 0.73
    else:
        x0, y0, x1, y1 = 0.13, 0.13, 0.87, 0.87
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    sag = 0.035
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    outline: list[Point] = []
    for k in range(4):
        a, b = corners[k], corners[(k + 1) % 4]
        mid = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
        inward = (mid[0] + (cx - mid[0]) * sag * 2.2, mid[1] + (cy - mid[1]) * sag * 2.2)
        for t in np.linspace(0, 1, 12, endpoint=False):
            outline.append(((1 - t) ** 2 * a[0] + 2 * (1 - t) * t * inward[0] + t * t * b[0],
                            (1 - t) ** 2 * a[1] + 2 * (1 - t) * t * inward[1] + t * t * b[1]))
    mask = p.fabric_polygon(outline)
    p.dome(mask, cx, cy, max(x1 - x0, y1 - y0) / 2, 1.0)
    p.line([*outline, outline[0]], piping, 0.012)


_DRAWERS: dict[str, Callable[[_Painter, str, np.random.Generator], None]] = {
    "t-shirts": _draw_tshirt,
    "sneakers": _draw_sneaker,
    "mugs": _draw_mug,
    "handbags": _draw_handbag,
    "lamps": _draw_lamp,
    "chairs": _draw_chair,
    "watches": _draw_watch,
    "backpacks": _draw_backpack,
    "dresses": _draw_dress,
    "sunglasses": _draw_sunglasses,
    "vases": _draw_vase,
    "cushions": _draw_cushion,
}
#: Categories that stand on a surface (get a contact shadow) rather than lie flat.
_UPRIGHT = {"sneakers", "mugs", "handbags", "lamps", "chairs", "backpacks", "vases"}


# --- composing the photo ------------------------------------------------------------------------


def _apply_shading(p: _Painter, size: int) -> np.ndarray:
    """The layer reduced to ``size``, shaded for volume: premultiplied ``(size, size, 4)`` uint8.

    Shading profiles are separable (functions of x or y, or outer products), which keeps
    this cheap at the drawing resolution.
    """
    k = p.s // size
    s = size
    layer = p.layer.reduce(k) if k > 1 else p.layer
    out = np.array(layer, dtype=np.uint8)
    alpha_img = layer.getchannel("A")
    bbox = alpha_img.getbbox()
    if not bbox:
        return out
    # Work on the product's bounding box (plus room for the blur) only.
    pad = int(s * 0.03)
    X0, Y0 = max(bbox[0] - pad, 0), max(bbox[1] - pad, 0)
    X1, Y1 = min(bbox[2] + pad, s), min(bbox[3] + pad, s)
    coord = (np.arange(s, dtype=np.float32) + 0.5) / s
    factor = np.ones((Y1 - Y0, X1 - X0), dtype=np.float32)
    for mask, kind, params in p.shading:
        mask = mask.reduce(k) if k > 1 else mask
        box = mask.getbbox()
        if not box:
            continue
        x0b, y0b, x1b, y1b = box
        m = np.asarray(mask.crop(box), dtype=np.float32) / 255.0
        xs, ys = coord[x0b:x1b][None, :], coord[y0b:y1b][:, None]
        if kind == "cylinder":
            x0, x1, strength = params
            u = np.clip((xs - x0) / max(x1 - x0, 1e-3), 0, 1)
            f = 1 + strength * (-0.2 + 0.3 * np.exp(-(((u - 0.36) / 0.32) ** 2)) - 0.1 * u ** 3)
        elif kind == "dome":
            cx, cy, radius, strength = params
            d2 = ((xs - cx) ** 2 + (ys - cy) ** 2) / radius ** 2
            f = 1 + strength * (0.1 - 0.22 * np.minimum(d2, 1.7))
        elif kind == "folds":
            period, phase, strength = params
            f = 1 + strength * 0.09 * np.sin((xs / period + phase) * 2 * math.pi) * np.sqrt(ys)
        else:  # vertical
            y0, y1, strength = params
            f = 1 + strength * (0.12 - 0.24 * np.clip((ys - y0) / (y1 - y0), 0, 1))
        factor[y0b - Y0:y1b - Y0, x0b - X0:x1b - X0] *= 1 + m * (f - 1)
    # Soft edge darkening gives the silhouette some volume; light comes from the top left.
    crop = alpha_img.crop((X0, Y0, X1, Y1))
    blurred = np.asarray(crop.filter(ImageFilter.GaussianBlur(s * 0.012)), np.float32) / 255.0
    factor *= 0.86 + 0.14 * np.sqrt(np.clip(blurred * 2 - 1, 0, 1))
    factor *= 1.05 - 0.05 * (coord[None, X0:X1] + coord[Y0:Y1, None])
    region = out[Y0:Y1, X0:X1]
    rgb = np.minimum(region[..., :3] * factor[..., None], region[..., 3:4])
    region[..., :3] = rgb.astype(np.uint8)
    return out


def _product_colour(look: Look, rng: np.random.Generator) -> RGB:
    base = np.asarray(COLOURS[look.colour], dtype=np.float32)
    return _scale(np.clip(base * rng.uniform(0.92, 1.06) + rng.normal(0, 5, 3), 0, 255), 1.0)


def _draw_product(look: Look, seed: Sequence[int], size: int) -> np.ndarray:
    """The product alone on a transparent layer, shaded: premultiplied ``(size, size, 4)`` uint8.

    Drawn at ``_SUPERSAMPLE`` times the size and reduced, which anti-aliases the edges.
    """
    rng = np.random.default_rng([*seed, 0])
    colour = _product_colour(look, rng)
    accent = _ACCENT_DARK if accent_name(look.colour) == "black" else _ACCENT_LIGHT
    big = size * _SUPERSAMPLE
    painter = _Painter(big, _fabric(big, colour, accent, look.pattern, rng), colour)
    _DRAWERS[look.category](painter, look.style, rng)
    return _apply_shading(painter, size)


def product_mask(look: Look, seed: Sequence[int] = (0,), size: int = IMAGE_SIZE) -> np.ndarray:
    """The product's silhouette before framing: ``(size, size)`` bool, True on the product.

    Used to check that categories really differ in shape.
    """
    return _draw_product(look, seed, size)[..., 3] > 127


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A light studio sweep: ``(size, 1, 3)`` float32 in 0..1 (constant along x)."""
    level = rng.uniform(0.915, 0.975)
    tint = rng.normal(0, 0.008, 3) + np.array([0.006, 0.0, -0.006]) * rng.uniform(-1, 1)
    v = (np.arange(size, dtype=np.float32) + 0.5) / size
    horizon = rng.uniform(0.55, 0.75)
    gradient = 0.025 - 0.05 * np.clip((v - 0.1) / 0.9, 0, 1) + 0.012 * np.tanh((v - horizon) * 8)
    return np.clip(level + gradient[:, None, None] + tint[None, None, :], 0, 1).astype(np.float32)


def _frame(layer: Image.Image, rng: np.random.Generator, view: int) -> Image.Image:
    """Scales, offsets, rotates (and for odd views mirrors) the product in one affine map."""
    s = layer.width
    x0, y0, x1, y1 = layer.getchannel(3).getbbox() or (0, 0, s, s)
    target = rng.uniform(0.70, 0.86) if view == 0 else rng.uniform(0.80, 0.95)
    zoom = target * s / max(x1 - x0, y1 - y0)
    theta = math.radians(rng.uniform(-6, 6) if view == 0 else rng.uniform(-12, 12))
    # Rotated extent of the product, so that the offset keeps it inside the picture.
    w, h = (x1 - x0) * zoom, (y1 - y0) * zoom
    c, n = abs(math.cos(theta)), abs(math.sin(theta))
    room_x, room_y = max(0.0, (s - (w * c + h * n)) / 2 - 2), max(0.0, (s - (w * n + h * c)) / 2 - 2)
    ou = s / 2 + rng.uniform(-1, 1) * min(0.05 * s, room_x)
    ov = s / 2 + rng.uniform(-1, 1) * min(0.05 * s, room_y)
    flip = -1.0 if view % 2 == 1 else 1.0
    cos, sin = math.cos(theta) / zoom, math.sin(theta) / zoom
    a, b, d, e = flip * cos, flip * sin, -sin, cos
    bx, by = (x0 + x1) / 2, (y0 + y1) / 2
    coefficients = (a, b, bx - a * ou - b * ov, d, e, by - d * ou - e * ov)
    return layer.transform((s, s), Image.Transform.AFFINE, coefficients, resample=Image.Resampling.BILINEAR)


def render_product_image(look: Look, seed: Sequence[int], view: int = 0, size: int = IMAGE_SIZE) -> Image.Image:
    """The product photo: an RGB image ``size`` x ``size``.

    Args:
        look: what to draw.
        seed: the product's seed; the same seed gives the same product details.
        view: 0 for the main picture; other values frame the same product differently
            (mirrored, closer or further, another background), like a second photo.
        size: output side in pixels.
    """
    product = _draw_product(look, seed, size)
    rng = np.random.default_rng([*seed, 1, view])
    layer = Image.frombytes("RGBa", (size, size), product.tobytes())
    framed = _frame(layer, rng, view)
    arr = np.asarray(framed, dtype=np.float32) / 255.0
    alpha_img = framed.getchannel(3)
    # Shadows: a soft drop shadow to the lower right, and a contact shadow for standing things.
    drop = Image.new("L", (size, size), 0)
    drop.paste(alpha_img, (int(size * rng.uniform(0.008, 0.02)), int(size * rng.uniform(0.012, 0.028))))
    drop = drop.filter(ImageFilter.GaussianBlur(size * rng.uniform(0.015, 0.03)))
    shadow = np.asarray(drop, dtype=np.float32) * (rng.uniform(0.16, 0.26) / 255.0)
    box = alpha_img.getbbox()
    if look.category in _UPRIGHT and box:
        contact = Image.new("L", (size, size), 0)
        w = (box[2] - box[0]) * 0.48
        cx, bottom = (box[0] + box[2]) / 2, box[3]
        ImageDraw.Draw(contact).ellipse([cx - w, bottom - size * 0.025, cx + w, bottom + size * 0.02], fill=255)
        contact = contact.filter(ImageFilter.GaussianBlur(size * 0.02))
        shadow = np.maximum(shadow, np.asarray(contact, dtype=np.float32) * (0.3 / 255.0))
    background = _background(size, rng) * (1 - shadow[..., None])
    out = background * (1 - arr[..., 3:4]) + arr[..., :3]
    out = out * 255 + rng.normal(0.5, 1.6, (size, size, 1)).astype(np.float32)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def encode_jpeg(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    """The image as JPEG bytes (deterministic for the same pixels)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def render_jpeg(look: Look, seed: Sequence[int], view: int = 0) -> bytes:
    """The product photo as JPEG bytes, ``IMAGE_SIZE`` square."""
    return encode_jpeg(render_product_image(look, seed, view))


def write_image(job: ImageJob) -> str:
    """Draws one job's picture and writes it to ``job.path``; returns the path.

    Top-level so that a ``multiprocessing`` pool can run it.
    """
    path = Path(job.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(render_jpeg(job.look, job.seed, job.view))
    return job.path


def contact_sheet(images: Sequence[Image.Image], captions: Sequence[str] | None = None, columns: int = 8,
                  tile: int = 160) -> Image.Image:
    """A grid of pictures with optional captions, for looking at many products at once."""
    rows = max(1, math.ceil(len(images) / columns))
    caption_h = 14 if captions else 0
    sheet = Image.new("RGB", (columns * tile, rows * (tile + caption_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for k, image in enumerate(images):
        x, y = (k % columns) * tile, (k // columns) * (tile + caption_h)
        sheet.paste(image.resize((tile, tile), Image.Resampling.LANCZOS), (x, y))
        if captions:
            draw.text((x + 2, y + tile), captions[k][: tile // 6], fill=(0, 0, 0), font=font)
    return sheet
