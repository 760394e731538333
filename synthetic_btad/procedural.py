"""Generated stand-in defect masks, one family per category.

Shapes are drawn as vector geometry in normalised coordinates ([0, 1]^2) and rasterised twice: at
the reference resolution (to apply the same area rule as for real masks) and at the output size
(the mask that is used). Rasterising rather than resizing keeps one-pixel cracks connected at small
output sizes. Sizes are tuned for the default rule (400 px at 128x128) and checked against the
actual rule, so every generated mask satisfies the grouping it is labelled with:
small categories <= threshold, ``mixed_large`` > threshold, at the reference resolution.

Typical areas at 128 px (seed 0, 200 masks each): see docs/synthetic_btad.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from synthetic_btad.errors import SyntheticBTADError
from synthetic_btad.masks import LARGE_CATEGORY, GroupingRules

# Widths are in pixels at this resolution and scale with the raster size (at least 1 px).
_DESIGN_SIZE = 128


@dataclass(frozen=True)
class _Stroke:
    points: np.ndarray  # (N, 2) normalised x, y
    width: float  # in pixels at _DESIGN_SIZE


@dataclass(frozen=True)
class _Polygon:
    points: np.ndarray  # (N, 2) normalised x, y


Shape = list[_Stroke | _Polygon]


def rasterise(shape: Shape, size: int) -> np.ndarray:
    """Boolean ``size`` x ``size`` mask of the geometry (PIL drawing: deterministic)."""
    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    for part in shape:
        # Map [0, 1] onto pixel edges: pixel centres sit at integer coordinates in PIL.
        pts = [(float(x) * size - 0.5, float(y) * size - 0.5) for x, y in part.points]
        if isinstance(part, _Polygon):
            draw.polygon(pts, fill=255)
        else:
            width = max(1, int(part.width * size / _DESIGN_SIZE + 0.5))
            draw.line(pts, fill=255, width=width, joint="curve" if width > 2 else None)
    return np.asarray(img) > 0


def _walk(
    rng: np.random.Generator, start: np.ndarray, angle: float, length: float, n: int, jitter: float
) -> np.ndarray:
    """Polyline from ``start`` with ``n`` steps and a random-walk direction (crack-like)."""
    pts = [start]
    step = length / n
    for _ in range(n):
        angle += rng.normal(0.0, jitter)
        pts.append(pts[-1] + step * np.array([math.cos(angle), math.sin(angle)]))
    return np.array(pts)


def _crack(rng: np.random.Generator) -> Shape:
    """Thin jagged main line with 1-3 shorter branches."""
    start = rng.uniform(0.2, 0.8, 2)
    angle = rng.uniform(0, 2 * math.pi)
    length = rng.uniform(0.25, 0.55)
    width = rng.uniform(1.0, 2.4)
    main = _walk(rng, start, angle, length, int(rng.integers(10, 20)), jitter=0.28)
    shape: Shape = [_Stroke(main, width)]
    for _ in range(int(rng.integers(1, 4))):
        k = int(rng.integers(2, len(main) - 1))
        seg = main[k] - main[k - 1]
        base_angle = math.atan2(seg[1], seg[0]) + rng.choice([-1, 1]) * rng.uniform(0.4, 1.1)
        branch = _walk(
            rng,
            main[k],
            base_angle,
            length * rng.uniform(0.2, 0.5),
            int(rng.integers(4, 9)),
            jitter=0.35,
        )
        shape.append(_Stroke(branch, max(1.0, width * 0.75)))
    return shape


def _scratch(rng: np.random.Generator) -> Shape:
    """Long, thin, almost straight line (quadratic Bezier with a small bow)."""
    centre = rng.uniform(0.25, 0.75, 2)
    angle = rng.uniform(0, math.pi)
    length = rng.uniform(0.3, 0.8)
    d = np.array([math.cos(angle), math.sin(angle)])
    normal = np.array([-d[1], d[0]])
    p0, p2 = centre - d * length / 2, centre + d * length / 2
    p1 = centre + normal * rng.normal(0.0, 0.06) * length
    t = np.linspace(0.0, 1.0, 24)[:, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    return [_Stroke(pts, rng.uniform(1.3, 3.0))]


def _blob_points(
    rng: np.random.Generator, centre: np.ndarray, radius: float, elongation: float
) -> np.ndarray:
    """Star-shaped random polygon: radius modulated by a few random harmonics, then stretched."""
    phi = np.linspace(0.0, 2 * math.pi, 64, endpoint=False)
    r = np.ones_like(phi)
    for k in range(2, 6):
        r += rng.normal(0.0, 0.22 / k) * np.cos(k * phi + rng.uniform(0, 2 * math.pi))
    r = radius * np.clip(r, 0.35, None)
    xy = np.stack([r * np.cos(phi) * elongation, r * np.sin(phi) / elongation], axis=1)
    rot = rng.uniform(0, math.pi)
    c, s = math.cos(rot), math.sin(rot)
    return centre + xy @ np.array([[c, s], [-s, c]])


def _irregular(rng: np.random.Generator) -> Shape:
    """Compact irregular blob; area ~ 25-350 px at 128 px."""
    area = math.exp(rng.uniform(math.log(25), math.log(350)))
    radius = math.sqrt(area / math.pi) / _DESIGN_SIZE
    return [_Polygon(_blob_points(rng, rng.uniform(0.15, 0.85, 2), radius, rng.uniform(1.0, 1.8)))]


def _mixed_large(rng: np.random.Generator) -> Shape:
    """A large blob plus 0-2 further parts (blob, thick stroke or crack) close to it."""
    area = math.exp(rng.uniform(math.log(450), math.log(3500)))
    radius = math.sqrt(area / math.pi) / _DESIGN_SIZE
    centre = rng.uniform(0.25, 0.75, 2)
    shape: Shape = [_Polygon(_blob_points(rng, centre, radius, rng.uniform(1.0, 2.2)))]
    for _ in range(int(rng.integers(0, 3))):
        offset = rng.normal(0.0, radius * 1.5, 2)
        kind = int(rng.integers(0, 3))
        if kind == 0:
            r2 = radius * rng.uniform(0.3, 0.7)
            shape.append(_Polygon(_blob_points(rng, centre + offset, r2, rng.uniform(1.0, 2.0))))
        elif kind == 1:
            pts = _walk(
                rng,
                centre + offset,
                rng.uniform(0, 2 * math.pi),
                rng.uniform(0.15, 0.4),
                8,
                jitter=0.15,
            )
            shape.append(_Stroke(pts, rng.uniform(3.0, 7.0)))
        else:
            shape.extend(_crack(rng))
    return shape


PROCEDURAL_FAMILIES: dict[str, str] = {
    "crack": "jagged random-walk line, 1-2.4 px wide at 128 px, with 1-3 thinner branches",
    "scratch": "long thin quadratic Bezier line (0.3-0.8 of the image), 1.3-3 px wide at 128 px",
    "irregular": "star-shaped blob (random harmonics, stretched), about 25-350 px at 128 px",
    LARGE_CATEGORY: "large blob (about 450-3500 px at 128 px) plus 0-2 blobs/thick strokes/cracks",
    "rule": "redrawn until the area rule of the grouping holds at the reference resolution",
}

_FAMILIES = {
    "crack": _crack,
    "scratch": _scratch,
    "irregular": _irregular,
    LARGE_CATEGORY: _mixed_large,
}


@dataclass(frozen=True)
class GeneratedMask:
    mask: np.ndarray  # boolean, output size
    area_ref: int
    area_out: int
    attempts: int


def generate_mask(
    category: str,
    rng: np.random.Generator,
    size: int,
    rules: GroupingRules,
    max_attempts: int = 200,
) -> GeneratedMask:
    """Draw one mask of ``category`` that obeys ``rules``' area rule and is non-empty at ``size``.

    Shapes outside the category's area bounds are redrawn from the same generator, so the result
    is a deterministic function of the generator state.
    """
    family = _FAMILIES[category]
    thr = rules.large_area_threshold
    for attempt in range(1, max_attempts + 1):
        shape = family(rng)
        ref = rasterise(shape, rules.reference_size)
        area_ref = int(ref.sum())
        ok = area_ref > thr if category == LARGE_CATEGORY else 0 < area_ref <= thr
        if not ok:
            continue
        out = ref if size == rules.reference_size else rasterise(shape, size)
        area_out = int(out.sum())
        if area_out > 0:
            return GeneratedMask(out, area_ref, area_out, attempt)
    raise SyntheticBTADError(
        f"could not draw a generated {category!r} mask within the area rule "
        f"(threshold {thr} px at {rules.reference_size} px) in {max_attempts} attempts; "
        "the generated families are tuned for thresholds near 400 px at 128 px"
    )
