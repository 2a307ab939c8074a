"""Drawing the synthetic world: one shape (the class) over a textured background, with its mask.

Every image is a pure function of (world seed, split, class, image index). Shapes are drawn
anti-aliased by supersampling; the exact mask is the set of pixels at least half covered by the
shape, and the box is the tight bounding box of that mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

SHAPES = (
    "circle", "square", "triangle", "star", "cross",
    "ring", "diamond", "hexagon", "crescent", "arrow",
)
#: The WordNet 3.0 noun each shape is (its wnid), so that the world's classes have a place in
#: the noun hierarchy (the ``concepts`` kind): plane figures (circle, square, triangle, star,
#: rhombus, hexagon), a toroid (ring), a curve (crescent), a decorative marking (crisscross)
#: and a written mark (arrow). Names, not images: drawing does not read it.
SHAPE_WNIDS = {
    "circle": "n13873502", "square": "n13878634", "triangle": "n13879320",
    "star": "n13881644", "cross": "n04681387", "ring": "n13875392",
    "diamond": "n13882961", "hexagon": "n13882276", "crescent": "n13896217",
    "arrow": "n06818121",
}
BACKGROUNDS = (
    "stripes", "checker", "dots", "noise", "gradient",
    "waves", "grid", "plain", "bricks", "zigzag",
)
SPLITS = ("train", "val")
#: Shape diameter as a fraction of the image side.
SCALE_RANGE = (0.45, 0.75)
#: Shapes stand roughly upright, as objects in photographs do: tilted by at most this many
#: radians (about 23 degrees) either way. Free rotation makes the world far slower to learn.
MAX_ROTATION = 0.4
#: Spread of the second background colour around the first (per channel, 0-255 scale): textures
#: stay visible without drowning the shape's outline.
BACKGROUND_CONTRAST = 30.0
SUPERSAMPLE = 4
NOISE_STD = 4.0

Array = np.ndarray


@dataclass(frozen=True)
class Rendered:
    """One synthetic image with its exact foreground mask and tight box."""

    image: Array  # uint8 (H, W, 3)
    mask: Array  # bool (H, W)
    box: tuple[int, int, int, int]  # xmin, ymin, xmax, ymax: 0-based, inclusive
    background: str


@lru_cache(maxsize=16)
def home_backgrounds(seed: int) -> tuple[str, ...]:
    """The home background family of each class (a permutation drawn from the world seed)."""
    order = np.random.default_rng([seed, 0x5EED]).permutation(len(BACKGROUNDS))
    return tuple(BACKGROUNDS[i] for i in order)


@lru_cache(maxsize=16)
def home_hues(seed: int) -> tuple[float, ...]:
    """The home hue (0-1) of each class's shapes: evenly spaced, permuted by the world seed."""
    order = np.random.default_rng([seed, 0xC0105]).permutation(len(SHAPES))
    return tuple(float(i) / len(SHAPES) for i in order)


def render_image(
    seed: int, split: str, class_index: int, image_index: int, *, size: int, home_prob: float,
    colour_prob: float = 0.0,
) -> Rendered:
    """Image ``image_index`` of class ``class_index`` in ``split`` of the world ``seed``."""
    rng = np.random.default_rng([seed, SPLITS.index(split), class_index, image_index])
    home = home_backgrounds(seed)[class_index]
    others = [b for b in BACKGROUNDS if b != home]
    family = home if rng.random() < home_prob else str(rng.choice(others))
    low, high = _background_colours(rng)
    xx, yy = _pixel_centres(size)
    pattern = _BACKGROUNDS[family](rng, size, *_rotated(rng, xx, yy)).astype(np.float32)

    coverage = _shape_coverage(rng, SHAPES[class_index], size)
    colour = _foreground_colour(rng, low, high)
    if colour_prob > 0 and rng.random() < colour_prob:
        colour = _home_colour(rng, home_hues(seed)[class_index])
    direction = rng.uniform(0, 2 * np.pi)
    shade = 1 + 0.15 / (size / 2) * (
        (xx - size / 2) * np.cos(direction) + (yy - size / 2) * np.sin(direction)
    ).astype(np.float32)
    # background + pattern * (high - low), blended towards the shaded foreground by coverage
    image = (
        low.astype(np.float32) + pattern[..., None] * (high - low).astype(np.float32)
    ) * (1 - coverage[..., None]) + (shade * coverage)[..., None] * colour.astype(np.float32)
    image += rng.standard_normal(image.shape, dtype=np.float32) * NOISE_STD
    mask = coverage >= 0.5
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = (int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1]))
    return Rendered(np.clip(np.rint(image), 0, 255).astype(np.uint8), mask, box, family)


@lru_cache(maxsize=8)
def _pixel_centres(size: int) -> tuple[Array, Array]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    return xx, yy


# ---------------------------------------------------------------------------------- shapes


def _shape_coverage(rng: np.random.Generator, shape: str, size: int) -> Array:
    """Fraction (H, W) of each pixel covered by a randomly placed, scaled, rotated shape.

    The shape is filled on a canvas ``SUPERSAMPLE`` times finer, then averaged down.
    """
    radius = rng.uniform(*SCALE_RANGE) * size / 2
    cx, cy = rng.uniform(radius, size - radius, 2)
    angle = rng.uniform(-MAX_ROTATION, MAX_ROTATION)
    s = SUPERSAMPLE
    to_canvas = s * np.array([[radius * np.cos(angle), radius * np.sin(angle)],
                              [-radius * np.sin(angle), radius * np.cos(angle)]])
    centre = s * np.array([cx, cy])
    canvas = Image.new("L", (size * s, size * s), 0)
    draw = ImageDraw.Draw(canvas)
    for fill, part in _SHAPES[shape]:
        if isinstance(part, Disc):
            x, y = np.array([part.x, part.y]) @ to_canvas + centre
            r = part.radius * radius * s
            draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)
        else:
            draw.polygon([tuple(p) for p in part @ to_canvas + centre], fill=fill)
    return np.asarray(canvas.reduce(s), dtype=np.float32) / np.float32(255)


@dataclass(frozen=True)
class Disc:
    """A disc in shape units (the shape fits in the unit disc)."""

    x: float
    y: float
    radius: float


def _regular(n: int, radius: float = 1.0, inner: float | None = None) -> Array:
    """Vertices of a regular polygon (or a star, with ``inner`` radius) pointing up."""
    k = 2 * n if inner else n
    angles = -np.pi / 2 + 2 * np.pi * np.arange(k) / k
    radii = np.where(np.arange(k) % 2 == 1, inner, radius) if inner else np.full(k, radius)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _box(half_width: float, half_height: float) -> Array:
    return np.array([(-half_width, -half_height), (half_width, -half_height),
                     (half_width, half_height), (-half_width, half_height)])


_ARM, _REACH = 0.3, 0.92
#: Each shape: what to paint, in order, as (fill, disc or polygon vertices); fill 0 cuts out.
_SHAPES: dict[str, list[tuple[int, Disc | Array]]] = {
    "circle": [(255, Disc(0, 0, 0.88))],
    "square": [(255, _box(0.68, 0.68))],
    "triangle": [(255, _regular(3))],
    "star": [(255, _regular(5, 1.0, 0.42))],
    "cross": [(255, _box(_ARM, _REACH)), (255, _box(_REACH, _ARM))],
    "ring": [(255, Disc(0, 0, 0.93)), (0, Disc(0, 0, 0.55))],
    "diamond": [(255, np.array([(0.52, 0.0), (0.0, 0.97), (-0.52, 0.0), (0.0, -0.97)]))],
    "hexagon": [(255, _regular(6, 0.95))],
    "crescent": [(255, Disc(0, 0, 0.92)), (0, Disc(0.45, 0, 0.72))],
    "arrow": [(255, np.array([(-0.95, -0.24), (0.05, -0.24), (0.05, -0.65), (0.95, 0.0),
                              (0.05, 0.65), (0.05, 0.24), (-0.95, 0.24)]))],
}


# ----------------------------------------------------------------------------- backgrounds


def _rotated(rng: np.random.Generator, xx: Array, yy: Array) -> tuple[Array, Array]:
    angle = rng.uniform(0, np.pi)
    cos, sin = np.cos(angle), np.sin(angle)
    return xx * cos + yy * sin, -xx * sin + yy * cos


def _period(rng: np.random.Generator, size: int) -> float:
    return rng.uniform(0.1, 0.22) * size


def _stripes(rng, size, xr, yr):
    return (np.sin(2 * np.pi * xr / _period(rng, size) + rng.uniform(0, 2 * np.pi)) > 0) * 1.0


def _checker(rng, size, xr, yr):
    p = _period(rng, size)
    return (np.floor(xr / p + rng.random()) + np.floor(yr / p + rng.random())) % 2


def _dots(rng, size, xr, yr):
    p = _period(rng, size)
    fx, fy = (xr / p + rng.random()) % 1 - 0.5, (yr / p + rng.random()) % 1 - 0.5
    return (fx * fx + fy * fy < 0.28**2) * 1.0


def _noise(rng, size, xr, yr):
    cells = int(rng.integers(3, 7))
    coarse = rng.random((cells + 1, cells + 1))
    pos = (np.arange(size) + 0.5) / size * cells
    i, f = np.minimum(pos.astype(int), cells - 1), pos - np.minimum(pos.astype(int), cells - 1)
    rows = coarse[i] * (1 - f)[:, None] + coarse[i + 1] * f[:, None]
    smooth = rows[:, i] * (1 - f) + rows[:, i + 1] * f
    return (smooth - smooth.min()) / max(np.ptp(smooth), 1e-6)


def _gradient(rng, size, xr, yr):
    return (xr - xr.min()) / max(np.ptp(xr), 1e-6)


def _waves(rng, size, xr, yr):
    p = _period(rng, size)
    return 0.5 + 0.5 * np.sin(2 * np.pi * xr / p + 2.0 * np.sin(np.pi * yr / p))


def _grid(rng, size, xr, yr):
    p = _period(rng, size)
    return (((xr / p + rng.random()) % 1 < 0.2) | ((yr / p + rng.random()) % 1 < 0.2)) * 1.0


def _plain(rng, size, xr, yr):
    return np.zeros_like(xr)


def _bricks(rng, size, xr, yr):
    h = _period(rng, size)
    row = np.floor(yr / h)
    fx = (xr / (2 * h) + 0.5 * (row % 2)) % 1
    return ((fx < 0.1) | ((yr / h) % 1 < 0.18)) * 1.0


def _zigzag(rng, size, xr, yr):
    p = _period(rng, size)
    tri = np.abs((xr / p) % 2 - 1)
    return ((yr / p + tri) % 1 < 0.5) * 1.0


_BACKGROUNDS = {
    "stripes": _stripes, "checker": _checker, "dots": _dots, "noise": _noise,
    "gradient": _gradient, "waves": _waves, "grid": _grid, "plain": _plain,
    "bricks": _bricks, "zigzag": _zigzag,
}


def _background_colours(rng: np.random.Generator) -> tuple[Array, Array]:
    low = rng.uniform(20, 235, 3)
    high = np.clip(low + rng.normal(0, BACKGROUND_CONTRAST, 3), 0, 255)
    return low, high


def _foreground_colour(rng: np.random.Generator, low: Array, high: Array) -> Array:
    """A random colour far from both background colours (the best of a few draws)."""
    candidates = rng.uniform(0, 255, (16, 3))
    distance = np.minimum(
        np.linalg.norm(candidates - low, axis=1), np.linalg.norm(candidates - high, axis=1)
    )
    return candidates[int(np.argmax(distance))]


def _home_colour(rng: np.random.Generator, hue: float) -> Array:
    """A saturated colour near a class's home hue (objects have typical colours too)."""
    import colorsys

    h = (hue + rng.uniform(-0.03, 0.03)) % 1.0
    rgb = colorsys.hsv_to_rgb(h, rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0))
    return np.array(rgb) * 255.0
