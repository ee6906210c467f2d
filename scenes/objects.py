"""Object models: people (billboards facing the camera), ball, excavator, dump truck and
unlabelled distractors, each turned into an `Item` of flat polygons."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .render import Item, Line, Painter, Part, order_parts, to_fixed

UP = np.array([0.0, 1.0, 0.0])

SKIN = [(60, 90, 150), (90, 130, 190), (120, 160, 215), (40, 60, 100), (150, 185, 230)]
HIVIS = [(0, 255, 220), (30, 240, 190), (0, 140, 255), (20, 110, 250), (60, 255, 170)]
HELMET = [(240, 240, 240), (0, 220, 250), (0, 140, 250), (200, 120, 30), (40, 40, 220)]
WORKWEAR = [(90, 60, 40), (60, 60, 60), (130, 100, 70), (40, 40, 40), (150, 150, 150)]


@dataclass
class Look:
    """Colours of a person."""

    torso: tuple
    sleeve: tuple
    legs: tuple
    lower: tuple  # socks / boots
    skin: tuple
    head_top: tuple  # helmet or hair
    helmet: bool
    stripe: tuple | None = None  # reflective band on a vest
    number: tuple | None = None  # shirt number colour (players)


def worker_look(rng: np.random.Generator) -> Look:
    return Look(
        torso=HIVIS[int(rng.integers(len(HIVIS)))],
        sleeve=WORKWEAR[int(rng.integers(len(WORKWEAR)))],
        legs=WORKWEAR[int(rng.integers(len(WORKWEAR)))],
        lower=(30, 30, 30),
        skin=SKIN[int(rng.integers(len(SKIN)))],
        head_top=HELMET[int(rng.integers(len(HELMET)))],
        helmet=True,
        stripe=(200, 200, 205) if rng.uniform() < 0.8 else None,
    )


def _ngon(c: np.ndarray, r: float, n: int = 8, a0: float = 0.0, arc: float = 2 * np.pi) -> np.ndarray:
    a = a0 + np.linspace(0, arc, n, endpoint=arc < 2 * np.pi - 1e-6)
    return np.stack([c[0] + r * np.cos(a), c[1] + r * np.sin(a)], 1)


def _limb(a: np.ndarray, b: np.ndarray, wa: float, wb: float) -> np.ndarray:
    d = b - a
    n = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-9)
    return np.stack([a + n * wa / 2, b + n * wb / 2, b - n * wb / 2, a - n * wa / 2])


def person_parts(
    painter: Painter, foot_xz: np.ndarray, height: float, pose: str, phase: float, side: float, look: Look
) -> tuple[list[Part], np.ndarray]:
    """A person as polygons in the vertical plane through `foot_xz` facing the camera.

    `phase`: gait phase (rad); `side`: how much of the motion is across the view (0..1),
    which sets the visible leg and arm swing. Returns parts (back to front) and the 3D
    outline points for the shadow.
    """
    cam = painter.cam
    yaw = np.radians(cam.yaw_deg)
    right = np.array([np.cos(yaw), 0.0, -np.sin(yaw)])
    base = np.array([foot_xz[0], 0.0, foot_xz[1]])
    H = height
    run = pose == "run"
    if pose in ("walk", "run"):
        amp = (0.32 if run else 0.2) * (0.35 + 0.65 * side)
        s = np.sin(phase) * amp
        bob = abs(np.cos(phase)) * (0.02 if run else 0.01)
    else:
        s, bob = 0.0, 0.0
    # 2D keypoints (lateral, up) in metres
    if pose == "crouch":
        hip_y, sh_y, head_y = 0.36 * H, 0.62 * H, 0.7 * H
        hipL, hipR = np.array([-0.06 * H, hip_y]), np.array([0.06 * H, hip_y])
        kneeL, kneeR = np.array([-0.16 * H, 0.24 * H]), np.array([0.14 * H, 0.22 * H])
        footL, footR = np.array([-0.1 * H, 0.0]), np.array([0.1 * H, 0.0])
        handL, handR = np.array([-0.14 * H, 0.3 * H]), np.array([0.12 * H, 0.28 * H])
    else:
        hip_y, sh_y, head_y = 0.52 * H + bob * H, 0.81 * H + bob * H, 0.9 * H + bob * H
        hipL, hipR = np.array([-0.055 * H, hip_y]), np.array([0.055 * H, hip_y])
        footL = np.array([-0.06 * H + s * 0.5 * H, 0.0 + max(0, -np.cos(phase)) * 0.04 * H * (run + 0.3)])
        footR = np.array([0.06 * H - s * 0.5 * H, 0.0 + max(0, np.cos(phase)) * 0.04 * H * (run + 0.3)])
        kneeL = (hipL + footL) / 2 + np.array([s * 0.08 * H, 0.0])
        kneeR = (hipR + footR) / 2 + np.array([-s * 0.08 * H, 0.0])
        handL = np.array([-0.17 * H - s * 0.35 * H, 0.47 * H + bob * H + (0.05 * H if run else 0)])
        handR = np.array([0.17 * H + s * 0.35 * H, 0.47 * H + bob * H + (0.05 * H if run else 0)])
    shL, shR = np.array([-0.13 * H, sh_y]), np.array([0.13 * H, sh_y])
    leg_w, arm_w = 0.075 * H, 0.055 * H
    polys2d: list[tuple[np.ndarray, tuple]] = []
    for hip, knee, foot in ((hipL, kneeL, footL), (hipR, kneeR, footR)):
        polys2d.append((_limb(hip, knee, leg_w * 1.1, leg_w), look.legs))
        polys2d.append((_limb(knee, foot, leg_w, leg_w * 0.8), look.lower))
    torso = np.stack([shL, shR, hipR + [0.045 * H, 0], hipL - [0.045 * H, 0]])
    polys2d.append((torso, look.torso))
    if look.stripe is not None:
        y0, y1 = hip_y + 0.1 * H, hip_y + 0.135 * H
        xl = -0.1 * H - 0.02 * H
        polys2d.append((np.array([[xl, y0], [-xl, y0], [-xl, y1], [xl, y1]]), look.stripe))
    if look.number is not None:
        cy = (sh_y + hip_y) / 2
        polys2d.append((np.array([[-0.04 * H, cy - 0.05 * H], [0.04 * H, cy - 0.05 * H], [0.04 * H, cy + 0.05 * H], [-0.04 * H, cy + 0.05 * H]]), look.number))
    for sh, hand in ((shL, handL), (shR, handR)):
        elbow = (sh + hand) / 2 + np.array([0.0, 0.02 * H])
        polys2d.append((_limb(sh, elbow, arm_w * 1.2, arm_w), look.torso if not look.helmet else look.sleeve))
        polys2d.append((_limb(elbow, hand, arm_w, arm_w * 0.8), look.sleeve if not look.helmet else look.sleeve))
        polys2d.append((_ngon(hand, 0.028 * H, 6), look.skin))
    neck = np.array([0.0, sh_y])
    head_c = np.array([0.0, head_y + 0.035 * H])
    polys2d.append((_limb(neck - [0, 0.01 * H], head_c, 0.05 * H, 0.05 * H), look.skin))
    polys2d.append((_ngon(head_c, 0.062 * H, 10), look.skin))
    if look.helmet:
        dome = _ngon(head_c + [0, 0.01 * H], 0.07 * H, 9, 0.0, np.pi)
        brim = np.array([[-0.085 * H, head_c[1] + 0.005 * H], [0.085 * H, head_c[1] + 0.005 * H]])
        polys2d.append((np.concatenate([brim[1:], dome[1:-1], brim[:1]]), look.head_top))
        polys2d.append((np.concatenate([dome, brim[::-1] + [0, -0.012 * H]]), look.head_top))
    else:
        hair = _ngon(head_c + [0, 0.012 * H], 0.064 * H, 9, 0.0, np.pi)
        polys2d.append((hair, look.head_top))
    pts2 = np.concatenate([p for p, _ in polys2d], 0)
    p3 = base + pts2[:, :1] * right + pts2[:, 1:2] * UP
    fixed = to_fixed(cam.project(p3))
    parts = []
    k = 0
    for poly, col in polys2d:
        parts.append(Part(fixed[k : k + len(poly)], tuple(int(c) for c in col)))
        k += len(poly)
    return parts, p3


def ball_parts(painter: Painter, pos3: np.ndarray, radius: float = 0.11) -> list[Part]:
    cam = painter.cam
    uv = cam.project(pos3[None])[0]
    r_px = cam.focal_px * radius / max(float(cam.depth(pos3)), 0.5)
    r_px = max(r_px, 1.2)
    circle = _ngon(uv, r_px, 14)
    parts = [Part(to_fixed(circle), (235, 238, 240))]
    if r_px > 3:
        parts.append(Part(to_fixed(_ngon(uv + [r_px * 0.2, -r_px * 0.1], r_px * 0.35, 5)), (40, 40, 40)))
        shade_ = _ngon(uv, r_px, 14, 0.1, np.pi * 0.9)
        parts.append(Part(to_fixed(shade_), (190, 192, 195)))
    return parts


def _frame(yaw: float) -> tuple[np.ndarray, np.ndarray]:
    fwd = np.array([np.sin(yaw), 0.0, np.cos(yaw)])
    right = np.array([np.cos(yaw), 0.0, -np.sin(yaw)])
    return fwd, right


def _axes(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    return np.stack([x, y, z], 1)


@dataclass
class ExcavatorPose:
    house_yaw: float  # rad, relative to the tracks
    boom: float  # deg above horizontal
    arm: float  # deg relative to the boom (negative folds down)
    bucket: float  # deg relative to the arm


def excavator_parts(painter: Painter, pos_xz: np.ndarray, yaw: float, pose: ExcavatorPose, color, scale: float = 1.0):
    """Tracks, car body, rotating house with cab and counterweight, boom, arm, bucket."""
    P = np.array([pos_xz[0], 0.0, pos_xz[1]])
    k = scale
    f, r = _frame(yaw)
    dark = (38, 38, 42)
    body = tuple(color)
    body_dark = tuple(int(c * 0.55) for c in color)
    pairs = []
    for side in (-1, 1):
        pairs += painter.box(P + r * side * 1.1 * k + UP * 0.45 * k, _axes(f, UP, r), (2.3 * k, 0.45 * k, 0.38 * k), dark)
    pairs += painter.box(P + UP * 0.85 * k, _axes(f, UP, r), (1.4 * k, 0.25 * k, 0.8 * k), (70, 70, 75))
    hf, hr = _frame(yaw + pose.house_yaw)
    house = _axes(hf, UP, hr)
    pairs += painter.box(P + UP * 1.55 * k - hf * 0.4 * k, house, (1.6 * k, 0.5 * k, 1.25 * k), body)
    pairs += painter.box(P + UP * 1.5 * k - hf * 2.1 * k, house, (0.35 * k, 0.5 * k, 1.2 * k), body_dark)
    cab_c = P + hf * 0.55 * k - hr * 0.62 * k
    pairs += painter.box(cab_c + UP * 2.35 * k, house, (0.6 * k, 0.3 * k, 0.5 * k), body)
    pairs += painter.box(cab_c + UP * 3.0 * k, house, (0.58 * k, 0.36 * k, 0.48 * k), (70, 60, 50))
    a1 = np.radians(pose.boom)
    a2 = a1 + np.radians(pose.arm)
    a3 = a2 + np.radians(pose.bucket)
    b0 = P + UP * 1.9 * k + hf * 1.0 * k + hr * 0.25 * k
    segs = ((a1, 5.4 * k, 0.32 * k, 0.28 * k, body), (a2, 3.0 * k, 0.24 * k, 0.22 * k, body))
    pts = []
    start = b0
    for ang, length, th, wd, col in segs:
        d = hf * np.cos(ang) + UP * np.sin(ang)
        n = UP * np.cos(ang) - hf * np.sin(ang)
        pairs += painter.box(start + d * length / 2, _axes(d, n, hr), (length / 2 + th * 0.5, th, wd), col)
        start = start + d * length
        pts.append(start)
    d = hf * np.cos(a3) + UP * np.sin(a3)
    n = UP * np.cos(a3) - hf * np.sin(a3)
    pairs += painter.box(start + d * 0.55 * k - n * 0.2 * k, _axes(d, n, hr), (0.55 * k, 0.42 * k, 0.55 * k), body_dark)
    tip = start + d * 1.1 * k
    parts = order_parts(pairs)
    outline = np.stack([P + f * 2.3 * k + r * 1.5 * k, P - f * 2.3 * k + r * 1.5 * k, P - f * 2.3 * k - r * 1.5 * k,
                        P + f * 2.3 * k - r * 1.5 * k, P + UP * 3.4 * k, b0, *pts, tip])
    return parts, outline, tip


def truck_parts(painter: Painter, pos_xz: np.ndarray, yaw: float, tip_deg: float, color, bed_color, scale: float = 1.0):
    """Chassis, six wheels, cab, and a bed that tips about its rear hinge."""
    P = np.array([pos_xz[0], 0.0, pos_xz[1]])
    k = scale
    f, r = _frame(yaw)
    ax = _axes(f, UP, r)
    pairs = []
    pairs += painter.box(P + UP * 1.0 * k, ax, (3.9 * k, 0.22 * k, 0.95 * k), (45, 45, 50))
    for a in (2.7, -1.3, -2.8):
        for side in (-1, 1):
            pairs += painter.box(P + f * a * k + r * side * 1.0 * k + UP * 0.55 * k, ax, (0.55 * k, 0.55 * k, 0.3 * k), (25, 25, 28))
    pairs += painter.box(P + f * 3.0 * k + UP * 1.65 * k, ax, (0.85 * k, 0.45 * k, 1.2 * k), tuple(color))
    pairs += painter.box(P + f * 3.05 * k + UP * 2.45 * k, ax, (0.8 * k, 0.36 * k, 1.15 * k), (80, 70, 60))
    t = np.radians(tip_deg)
    hinge = P - f * 3.9 * k + UP * 1.25 * k
    d = f * np.cos(t) + UP * np.sin(t)
    n = UP * np.cos(t) - f * np.sin(t)
    bed_c = hinge + d * 2.85 * k + n * 0.8 * k
    pairs += painter.box(bed_c, _axes(d, n, r), (2.85 * k, 0.8 * k, 1.25 * k), tuple(bed_color))
    parts = order_parts(pairs)
    outline = np.stack([P + f * 3.9 * k + r * 1.25 * k, P - f * 3.9 * k + r * 1.25 * k, P - f * 3.9 * k - r * 1.25 * k,
                        P + f * 3.9 * k - r * 1.25 * k, P + f * 3.0 * k + UP * 2.8 * k, bed_c + n * 0.8 * k + d * 2.85 * k,
                        bed_c + n * 0.8 * k - d * 2.85 * k])
    return parts, outline


# ---- distractors (unlabelled) -------------------------------------------------------------

def container_item(painter: Painter, pos_xz, yaw: float, color) -> tuple[Item, np.ndarray]:
    P = np.array([pos_xz[0], 0.0, pos_xz[1]])
    f, r = _frame(yaw)
    pairs = painter.box(P + UP * 1.3, _axes(f, UP, r), (3.03, 1.3, 1.22), color)
    parts = order_parts(pairs)
    lines = []
    # corrugation: vertical ribs along the long sides
    for side in (-1, 1):
        face_n = r * side
        if np.dot(face_n, painter.cam.position - (P + face_n * 1.22)) <= 0:
            continue
        for x in np.linspace(-2.9, 2.9, 12):
            seg = np.stack([P + f * x + face_n * 1.23 + UP * 0.1, P + f * x + face_n * 1.23 + UP * 2.5])
            lines.append(Line(to_fixed(painter.cam.project(seg)), tuple(int(c * 0.75) for c in color), 1))
    outline = np.stack([P + f * 3 + r * 1.2, P - f * 3 + r * 1.2, P - f * 3 - r * 1.2, P + f * 3 - r * 1.2]) + UP * 2.6
    return Item(float(painter.cam.depth(P)), parts, lines=lines), outline


def pile_item(painter: Painter, pos_xz, radius: float, height: float, color) -> tuple[Item, np.ndarray]:
    P = np.array([pos_xz[0], 0.0, pos_xz[1]])
    parts = order_parts(painter.cone(P, radius, height, color, segments=12))
    return Item(float(painter.cam.depth(P)), parts), np.stack([P + UP * height])


def cone_item(painter: Painter, pos_xz) -> Item:
    P = np.array([pos_xz[0], 0.0, pos_xz[1]])
    parts = order_parts(painter.cone(P, 0.18, 0.72, (10, 90, 250), segments=8))
    parts += order_parts(painter.cone(P + UP * 0.35, 0.1, 0.2, (235, 235, 235), segments=8))
    return Item(float(painter.cam.depth(P)), parts)


def fence_item(painter: Painter, a_xz, b_xz) -> Item:
    a = np.array([a_xz[0], 0.0, a_xz[1]])
    b = np.array([b_xz[0], 0.0, b_xz[1]])
    length = float(np.linalg.norm(b - a))
    d = (b - a) / max(length, 1e-6)
    n = np.cross(UP, d)
    pairs = []
    k = max(int(length / 3.0), 1)
    lines = []
    col = (150, 150, 150)
    for i in range(k + 1):
        p = a + d * length * i / k
        pairs += painter.box(p + UP * 1.0, _axes(d, UP, n), (0.04, 1.0, 0.04), (120, 120, 125))
    pairs += painter.box((a + b) / 2 + UP * 1.95, _axes(d, UP, n), (length / 2, 0.03, 0.03), (120, 120, 125))
    cam = painter.cam
    for i in range(k * 6):
        p = a + d * length * i / (k * 6)
        q = p + d * 1.2
        lines.append(Line(to_fixed(cam.project(np.stack([p + UP * 0.1, q + UP * 1.9]))), col, 1))
        lines.append(Line(to_fixed(cam.project(np.stack([q + UP * 0.1, p + UP * 1.9]))), col, 1))
    return Item(float(cam.depth((a + b) / 2)), order_parts(pairs), lines=lines)


def goal_item(painter: Painter, x_line: float, z_centre: float, inward: float) -> Item:
    """Goal posts, crossbar and net at the goal line `x_line`; `inward` = +-1 towards the pitch."""
    cam = painter.cam
    X = np.array([1.0, 0, 0])
    Z = np.array([0, 0, 1.0])
    pairs = []
    w = 0.06
    for zz in (z_centre - 3.66, z_centre + 3.66):
        pairs += painter.box(np.array([x_line, 1.22, zz]), _axes(X, UP, Z), (w, 1.22, w), (245, 245, 245))
    pairs += painter.box(np.array([x_line, 2.44, z_centre]), _axes(X, UP, Z), (w, w, 3.72), (245, 245, 245))
    back = x_line - inward * 2.0
    lines = []
    col = (205, 205, 205)
    for zz in np.linspace(z_centre - 3.66, z_centre + 3.66, 15):
        lines.append(Line(to_fixed(cam.project(np.array([[x_line, 2.44, zz], [back, 1.5, zz], [back, 0.0, zz]]))), col, 1))
    for yy in np.linspace(0.2, 2.3, 6):
        xb = x_line - inward * 2.0 * min(1.0, 1.0 - (yy - 1.5) / 0.94 if yy > 1.5 else 1.0)
        lines.append(Line(to_fixed(cam.project(np.array([[xb, yy, z_centre - 3.66], [xb, yy, z_centre + 3.66]]))), col, 1))
    return Item(float(cam.depth(np.array([x_line, 0, z_centre]))), order_parts(pairs), lines=lines)
