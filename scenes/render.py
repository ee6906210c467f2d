"""Drawing primitives and the frame compositor.

Every object is a list of flat polygons (`Part`). The compositor draws them in painter's
order (far to near) into the colour frame and, with the very same `cv2.fillPoly` calls,
into an instance-id map. A labelled instance's ground-truth mask is the set of pixels of
the id map that still carry its id after everything in front of it was drawn, so the
ground truth equals the drawn pixels, occlusion included. Post effects (light, noise,
blur, JPEG) change colours only, never geometry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .camera import Camera

SHIFT = 4  # fractional bits of polygon vertices (1/16 px), so slow motion stays smooth
_ONE = float(1 << SHIFT)
_LIMIT = 1e6 * _ONE


@dataclass
class Part:
    """One filled polygon: vertices in 1/16 px (int32, (k, 2)) and a BGR colour."""

    pts: np.ndarray
    color: tuple[int, int, int]


@dataclass
class Line:
    """A thin open polyline (fence mesh, goal net), drawn into the frame and the id map."""

    pts: np.ndarray  # int32 (k, 2), 1/16 px
    color: tuple[int, int, int]
    thickness: int = 1


@dataclass
class Item:
    """A drawn object. `class_id` >= 0: a labelled instance; -1: an unlabelled distractor."""

    depth: float  # painter key: larger = farther = drawn earlier
    parts: list[Part]
    class_id: int = -1
    track_id: int = 0
    lines: list[Line] = field(default_factory=list)


def to_fixed(uv: np.ndarray) -> np.ndarray:
    """Float pixel coordinates -> int32 fixed-point vertices for fillPoly(shift=SHIFT)."""
    a = np.asarray(uv, dtype=np.float64).reshape(-1, 2) * _ONE
    # points near or behind the camera plane project far away: clamp so int32 never overflows
    if not np.isfinite(a).all():
        a = np.where(np.isfinite(a), a, -_LIMIT)
    np.clip(a, -_LIMIT, _LIMIT, out=a)
    return np.rint(a).astype(np.int32)


def shade(color: tuple[float, float, float], k: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(c * k, 0, 255)) for c in color)  # type: ignore[return-value]


class Painter:
    """Builds parts for one camera and one light."""

    def __init__(self, camera: Camera, light_dir: np.ndarray, ambient: float = 0.55):
        self.cam = camera
        self.light = np.asarray(light_dir, dtype=np.float64) / np.linalg.norm(light_dir)
        self.ambient = ambient

    def lit(self, color, normal: np.ndarray) -> tuple[int, int, int]:
        k = self.ambient + (1.0 - self.ambient) * max(0.0, float(np.dot(normal, self.light)))
        return shade(color, k * 1.15)

    def polygon(self, pts3d: np.ndarray, color) -> Part:
        return Part(to_fixed(self.cam.project(pts3d)), tuple(int(c) for c in color))

    # corner sign patterns of a box and its faces (corner indices, counter-clockwise)
    _SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], np.float64)
    _FACES = (
        (0, 1.0, (4, 5, 7, 6)), (0, -1.0, (0, 1, 3, 2)),
        (1, 1.0, (2, 3, 7, 6)), (1, -1.0, (0, 1, 5, 4)),
        (2, 1.0, (1, 3, 7, 5)), (2, -1.0, (0, 2, 6, 4)),
    )

    def box(self, center, axes: np.ndarray, half, color) -> list[tuple[float, Part]]:
        """Visible faces of an oriented box. `axes`: 3x3, columns = local x, y, z in world.

        Returns (depth, part) pairs so an object can order its parts far to near.
        """
        c = np.asarray(center, dtype=np.float64)
        scaled = axes * np.asarray(half, dtype=np.float64)[None, :]  # columns: half-extent vectors
        corners = c + self._SIGNS @ scaled.T
        uv = to_fixed(self.cam.project(corners))
        cam = self.cam.position
        out: list[tuple[float, Part]] = []
        for axis, sgn, idx in self._FACES:
            n = sgn * axes[:, axis]
            fc = c + sgn * scaled[:, axis]
            if np.dot(n, cam - fc) <= 0:
                continue
            out.append((float(self.cam.depth(fc)), Part(uv[list(idx)], self.lit(color, n))))
        return out

    def prism(self, base: np.ndarray, height: float, color) -> list[tuple[float, Part]]:
        """Vertical prism over a convex ground polygon `base` ((k, 3), counter-clockwise seen from above)."""
        top = base + np.array([0.0, height, 0.0])
        out = [(float(self.cam.depth(top.mean(0))) + 1e-3, self.polygon(top, self.lit(color, np.array([0, 1.0, 0]))))]
        cam = self.cam.position
        k = len(base)
        for i in range(k):
            a, b = base[i], base[(i + 1) % k]
            e = b - a
            n = np.array([e[2], 0.0, -e[0]])
            n /= np.linalg.norm(n) + 1e-12
            mid = (a + b) / 2 + np.array([0, height / 2, 0])
            if np.dot(n, cam - mid) <= 0:
                n = -n  # either orientation: keep faces that face the camera
                if np.dot(n, cam - mid) <= 0:
                    continue
            quad = np.stack([a, b, top[(i + 1) % k], top[i]])
            out.append((float(self.cam.depth(mid)), self.polygon(quad, self.lit(color, n))))
        return out

    def cone(self, base_c, radius: float, height: float, color, segments: int = 10) -> list[tuple[float, Part]]:
        """A cone or pile: triangular facets around the apex, shaded by their normals."""
        c = np.asarray(base_c, dtype=np.float64)
        apex = c + np.array([0, height, 0])
        ang = np.linspace(0, 2 * np.pi, segments, endpoint=False)
        ring = c + np.stack([np.cos(ang) * radius, np.zeros_like(ang), np.sin(ang) * radius], 1)
        facets = []
        cam = self.cam.position
        for i in range(segments):
            a, b = ring[i], ring[(i + 1) % segments]
            n = np.cross(b - a, apex - a)
            n /= np.linalg.norm(n) + 1e-12
            if np.dot(n, (a + b) / 2 - c) < 0:
                n = -n
            mid = (a + b + apex) / 3
            facing = np.dot(n, cam - mid) > 0
            facets.append((facing, float(self.cam.depth(mid)), np.stack([a, b, apex]), n))
        out = []
        for facing, d, tri, n in facets:
            if facing:
                out.append((d, self.polygon(tri, self.lit(color, n))))
        return out

    def ground_shadow(self, pts3d: np.ndarray) -> np.ndarray | None:
        """Convex hull (float px) of points cast onto the ground along the light."""
        p = np.asarray(pts3d, dtype=np.float64).reshape(-1, 3)
        if self.light[1] <= 0.05:
            return None
        g = p - (p[:, 1:2] / self.light[1]) * self.light
        uv = self.cam.project(g).astype(np.float32)
        return cv2.convexHull(uv).reshape(-1, 2)


def order_parts(pairs: list[tuple[float, Part]]) -> list[Part]:
    """Far to near (stable for equal depths)."""
    return [p for _, p in sorted(pairs, key=lambda dp: -dp[0])]


@dataclass
class Effects:
    """Per-seed camera look: light and colour cast (LUT), blur, sensor noise, JPEG."""

    lut: np.ndarray | None = None  # (256, 1, 3) uint8
    blur: tuple[int, int] | None = None  # box-blur kernel (kx, ky): motion / defocus
    noise: np.ndarray | None = None  # int16 (H + 32, W + 32, 3) zero-mean; a view per frame
    jpeg_quality: int | None = None
    shadow_strength: float = 0.6  # shadowed ground keeps this fraction of its light

    def apply(self, frame: np.ndarray, frame_index: int) -> np.ndarray:
        if self.blur is not None:
            frame = cv2.blur(frame, self.blur)
        if self.lut is not None:
            frame = cv2.LUT(frame, self.lut)
        if self.noise is not None:
            h, w = frame.shape[:2]
            oy = (frame_index * 7) % 32
            ox = (frame_index * 13) % 32
            n = self.noise[oy : oy + h, ox : ox + w]
            frame = cv2.add(frame.astype(np.int16), n, dtype=cv2.CV_16S)
            frame = np.clip(frame, 0, 255).astype(np.uint8)
        if self.jpeg_quality is not None:
            ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            if ok:
                frame = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        return frame


def random_effects(rng: np.random.Generator, width: int, height: int, *, jpeg: bool = True) -> Effects:
    """Lighting, colour cast, blur, noise and JPEG quality drawn from `rng`."""
    gain = rng.uniform(0.65, 1.25)
    cast = rng.normal(1.0, 0.06, size=3).clip(0.85, 1.15)
    gamma = rng.uniform(0.8, 1.25)
    x = np.arange(256, dtype=np.float64) / 255.0
    lut = np.stack([np.clip(255.0 * (x ** gamma) * gain * cast[c], 0, 255) for c in range(3)], -1)
    lut = lut.astype(np.uint8).reshape(256, 1, 3)
    blur = None
    r = rng.uniform()
    if r < 0.25:
        blur = (int(rng.integers(2, 5)), 1)  # horizontal pan / motion blur
    elif r < 0.4:
        blur = (2, 2)  # slight defocus
    sigma = rng.uniform(0.0, 7.0)
    noise = None
    if sigma > 1.0:
        noise = (rng.standard_normal((height + 32, width + 32, 3), dtype=np.float32) * sigma).astype(np.int16)
    q = int(rng.integers(35, 92)) if (jpeg and rng.uniform() < 0.5) else None
    return Effects(lut=lut, blur=blur, noise=noise, jpeg_quality=q, shadow_strength=float(rng.uniform(0.45, 0.8)))


@dataclass
class Instance:
    """Ground truth of one visible instance in one frame."""

    class_id: int
    track_id: int
    xyxy: tuple[int, int, int, int]  # tight box of the visible mask, pixel edges (x1, y1 exclusive)
    roi: tuple[int, int]  # (x0, y0) of `mask` in the frame
    mask: np.ndarray  # bool, ROI-sized

    def full_mask(self, height: int, width: int) -> np.ndarray:
        m = np.zeros((height, width), dtype=bool)
        x0, y0 = self.roi
        m[y0 : y0 + self.mask.shape[0], x0 : x0 + self.mask.shape[1]] = self.mask
        return m

    @property
    def area(self) -> int:
        return int(self.mask.sum())


def draw_items(
    frame: np.ndarray, idmap: np.ndarray | None, items: list[Item]
) -> list[tuple[int, Item]]:
    """Draw items far to near. Returns (id-map value, item) of the labelled ones."""
    labelled: list[tuple[int, Item]] = []
    for item in sorted(items, key=lambda it: -it.depth):
        val = 0
        if item.class_id >= 0:
            val = len(labelled) + 1
            labelled.append((val, item))
        for p in item.parts:
            cv2.fillPoly(frame, [p.pts], p.color, cv2.LINE_8, SHIFT)
            if idmap is not None:
                cv2.fillPoly(idmap, [p.pts], val, cv2.LINE_8, SHIFT)
        for ln in item.lines:
            cv2.polylines(frame, [ln.pts], False, ln.color, ln.thickness, cv2.LINE_8, SHIFT)
            if idmap is not None:
                cv2.polylines(idmap, [ln.pts], False, val, ln.thickness, cv2.LINE_8, SHIFT)
    if len(labelled) > 65534:
        raise ValueError("too many instances in one frame")
    return labelled


def extract_instances(idmap: np.ndarray, labelled: list[tuple[int, Item]]) -> list[Instance]:
    """Visible masks from the id map; fully hidden or off-frame instances are left out."""
    h, w = idmap.shape
    out: list[Instance] = []
    for val, item in labelled:
        pts = np.concatenate([p.pts for p in item.parts] + [ln.pts for ln in item.lines], 0)
        x0 = max(int(np.floor(pts[:, 0].min() / _ONE)) - 2, 0)
        y0 = max(int(np.floor(pts[:, 1].min() / _ONE)) - 2, 0)
        x1 = min(int(np.ceil(pts[:, 0].max() / _ONE)) + 3, w)
        y1 = min(int(np.ceil(pts[:, 1].max() / _ONE)) + 3, h)
        if x1 <= x0 or y1 <= y0:
            continue
        m = idmap[y0:y1, x0:x1] == val
        cols = np.flatnonzero(m.any(0))
        if cols.size == 0:
            continue
        rows = np.flatnonzero(m.any(1))
        bx0, bx1 = int(cols[0]), int(cols[-1]) + 1
        by0, by1 = int(rows[0]), int(rows[-1]) + 1
        out.append(
            Instance(
                class_id=item.class_id,
                track_id=item.track_id,
                xyxy=(x0 + bx0, y0 + by0, x0 + bx1, y0 + by1),
                roi=(x0 + bx0, y0 + by0),
                mask=np.ascontiguousarray(m[by0:by1, bx0:bx1]),
            )
        )
    return out


def draw_shadows(frame: np.ndarray, hulls: list[np.ndarray], strength: float) -> None:
    """Darken the ground under cast-shadow polygons (in place; not part of any mask)."""
    hulls = [h for h in hulls if h is not None and len(h) >= 3]
    if not hulls:
        return
    allp = np.concatenate(hulls, 0)
    h, w = frame.shape[:2]
    x0, y0 = max(int(allp[:, 0].min()) - 1, 0), max(int(allp[:, 1].min()) - 1, 0)
    x1, y1 = min(int(allp[:, 0].max()) + 2, w), min(int(allp[:, 1].max()) + 2, h)
    if x1 <= x0 or y1 <= y0:
        return
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    off = np.array([x0, y0], np.float64)
    for hull in hulls:
        cv2.fillPoly(m, [to_fixed(hull - off)], 1, cv2.LINE_8, SHIFT)
    roi = frame[y0:y1, x0:x1]
    dark = cv2.convertScaleAbs(roi, alpha=strength)
    cv2.copyTo(dark, m, roi)
