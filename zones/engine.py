"""Rule evaluation in mask space, with entry debounce, exit hysteresis and alert lifecycle.

Pure logic: one ZoneEngine per camera, owned by that camera's analytics thread.
Zones are rasterised once into the mask grid, so "fraction of a mask inside a zone" is
one matrix product for all objects and zones.

Every rule turns a frame into *conditions*, each under a key: (rule, track) for
intrusion, dwell and line crossing, (rule, track, other track) for proximity and
(rule, zone) for occupancy; speed keeps each track's ground point over a window. Each key runs the same
state machine:

    idle -> pending (condition holds < min_duration_s) -> active: emit ``start``
         -> active, emit ``update`` when the object set changes or the worst value gets
            worse, at most every update_interval_s
         -> clearing (condition false < clear_after_s; true again: back to active)
         -> idle: emit ``end``; no new start for the key during cooldown_s
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .events import AlertEvent, AlertObject
from .geometry import boundary_points, convex_gap_bound, ground_quads, mask_gap, project, rasterize, segments_intersect
from .schema import DwellRule, IntrusionRule, LineCrossingRule, OccupancyRule, ProximityRule, SpeedRule, ZoneFile

EPS_S = 1e-6  # pts arithmetic is float: 1.4 - 0.4 must count as 1.0 s
SPEED_SAMPLES = 900  # speeds kept per speed alert (its median and top): a minute at 15 fps
FORGET_S = 30.0  # per-track memory (line sides, dwell clocks) of tracks unseen this long is dropped


@dataclass
class Condition:
    key: tuple
    value: float  # overlap, distance, count or dwell seconds
    objects: list[AlertObject]
    zone: str | None = None
    blocked: bool = False  # may continue an alert but not start one (stationary objects)
    extra: dict = field(default_factory=dict)


@dataclass
class _State:
    first_true: float | None = None
    last_true: float = 0.0
    active_id: str | None = None
    seq: int = 0
    started_at: float = 0.0
    started_pts_s: float = 0.0
    last_event_pts: float = 0.0
    reported_value: float = 0.0
    reported_ids: frozenset = frozenset()
    cond: Condition | None = None


class _Frame:
    """Per-frame arrays shared by all rules (computed lazily)."""

    def __init__(self, eng: "ZoneEngine", track_ids, class_names, confidences, xyxy, masks, stationary_s):
        self.eng = eng
        self.n = len(track_ids)
        self.track_ids = np.asarray(track_ids, np.int64)
        self.class_names = [str(c) for c in class_names]
        self.conf = np.asarray(confidences, np.float64)
        self.xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
        self.masks = masks
        self.stationary_s = None if stationary_s is None else np.asarray(stationary_s, np.float64)
        if masks is not None and self.n:
            flat = masks.reshape(self.n, -1)
            self.area = np.count_nonzero(flat, axis=1).astype(np.float64)
            inter = flat.astype(np.float32) @ eng._zone_stack  # (n, zones)
            self.overlap = np.where(self.area[:, None] > 0, inter / np.maximum(self.area[:, None], 1), 0.0)
        else:
            self.area = np.zeros(self.n)
            self.overlap = np.zeros((self.n, len(eng.zone_ids)))
        self._boundary: dict[int, np.ndarray] = {}

    def select(self, rule) -> np.ndarray:
        ok = np.array([c in rule.classes for c in self.class_names], bool) & (self.conf >= rule.min_confidence)
        return np.flatnonzero(ok & (self.area > 0))

    def stationary(self, i: int, rule) -> bool:
        return (rule.ignore_stationary is not None and self.stationary_s is not None
                and self.stationary_s[i] >= rule.ignore_stationary)

    def obj(self, i: int, **kw) -> AlertObject:
        return AlertObject(int(self.track_ids[i]), self.class_names[i], round(float(self.conf[i]), 4),
                           [round(float(v), 2) for v in self.xyxy[i]], **kw)

    def boundary_px(self, i: int) -> np.ndarray:
        if i not in self._boundary:
            self._boundary[i] = boundary_points(self.masks[i]) * self.eng.cell_px
        return self._boundary[i]

    def anchor_px(self, i: int, kind: str) -> np.ndarray:
        ys, xs = np.nonzero(self.masks[i])
        if kind == "bottom":
            low = ys == ys.max()
            return np.array([xs[low].mean() + 0.5, ys.max() + 1.0]) * self.eng.cell_px
        if kind == "foot":  # under the mask's centre, on its lowest row: moves smoothly as the object does
            return np.array([xs.mean() + 0.5, ys.max() + 1.0]) * self.eng.cell_px
        return np.array([xs.mean() + 0.5, ys.mean() + 0.5]) * self.eng.cell_px


class ZoneEngine:
    """Evaluates a camera's rules on tracked objects; returns AlertEvents."""

    def __init__(self, zone_file: ZoneFile, camera_id: str, frame_wh: tuple[int, int], mask_wh: tuple[int, int],
                 run_id: str = ""):
        self.camera_id = camera_id
        # track ids and frame numbers restart with the process: the run id keeps alert ids unique across runs
        self.run_id = run_id
        self.frame_wh = tuple(frame_wh)
        self.mask_wh = tuple(mask_wh)
        self.cell_px = np.array([frame_wh[0] / mask_wh[0], frame_wh[1] / mask_wh[1]])
        self._states: dict[tuple, _State] = {}
        self._cooldown_until: dict[tuple, float] = {}
        self._line_side: dict[tuple, tuple[np.ndarray, int, float]] = {}  # (rule, track) -> point, side, pts
        self._inside_since: dict[tuple, tuple[float, float]] = {}  # (rule, track) -> since, last inside
        self._ground_track: dict[tuple, deque] = {}  # (rule, track) -> (pts, ground x, ground y) over window_s
        self._held: dict[tuple, tuple[float, AlertObject]] = {}  # (occupancy rule, track) -> last seen inside, object
        self.active_zones: set[str] = set()
        self.occupancy: dict[str, dict[str, int]] = {}
        # remote switches: rule id (None: the whole camera) -> (on, expires at wall s or None, set at wall s)
        self.switches: dict[str | None, tuple[bool, float | None, float]] = {}
        self.armed_rules: dict[str, bool] = {}  # rule id -> armed in the latest frame
        self.armed_camera = True  # the camera armed in the latest frame (its switch, else its schedule)
        self._load(zone_file)

    def _load(self, zone_file: ZoneFile) -> None:
        self.zone_file = zone_file
        self.zone_ids = [z.id for z in zone_file.zones]
        self.rasters = {z.id: rasterize(zone_file.polygon_px(z.id, self.frame_wh), self.frame_wh, self.mask_wh)
                        for z in zone_file.zones}
        stack = [self.rasters[z].reshape(-1) for z in self.zone_ids]
        self._zone_stack = (np.stack(stack, axis=1).astype(np.float32) if stack
                            else np.zeros((self.mask_wh[0] * self.mask_wh[1], 0), np.float32))
        self.ground = zone_file.ground_homography(self.frame_wh)
        if self.ground is not None:  # the sign of w on the visible ground, from the calibration points
            img = np.array(zone_file.to_px(zone_file.calibration.image, self.frame_wh), np.float64)
            self._ground_sign = float(np.sign(np.median(np.c_[img, np.ones(len(img))] @ self.ground[2])))
        self.rules = [r for r in zone_file.rules if r.enabled]
        self.lines = {r.id: np.array(zone_file.to_px(r.line, self.frame_wh)) for r in self.rules
                      if isinstance(r, LineCrossingRule)}

    def replace(self, zone_file: ZoneFile, frame_index: int, pts_s: float, wall_s: float) -> list[AlertEvent]:
        """Hot reload: swap in new zones and rules. Alerts of rules that are gone or changed end now;
        alerts of unchanged rules (same definition, same zone polygon) carry on."""
        old_rules = {r.id: r for r in self.rules}
        old_zones = {z.id: z for z in self.zone_file.zones}
        self._load(zone_file)
        new_rules = {r.id: r for r in self.rules}

        def same(rid: str) -> bool:
            r = new_rules.get(rid)
            if r is None or r != old_rules[rid]:
                return False
            z = getattr(r, "zone", None)
            return z is None or (z in old_zones and old_zones[z] == zone_file.zone(z))

        keep = {rid for rid in old_rules if same(rid)}
        events = []
        for key, st in list(self._states.items()):
            if key[0] not in keep:
                if st.active_id is not None:
                    events.append(self._event(st, old_rules[key[0]], "end", frame_index, pts_s, wall_s))
                del self._states[key]
        for d in (self._cooldown_until, self._line_side, self._inside_since, self._ground_track, self._held):
            for key in [k for k in d if k[0] not in keep]:
                del d[key]
        return events

    # -- per frame ------------------------------------------------------------------------
    def update(self, frame_index: int, pts_s: float, wall_s: float, track_ids, class_names, confidences, xyxy,
               masks: np.ndarray | None, stationary_s=None) -> list[AlertEvent]:
        f = _Frame(self, track_ids, class_names, confidences, xyxy, masks, stationary_s)
        self._update_occupancy(f)
        events: list[AlertEvent] = []
        self.armed_camera = self.camera_armed(wall_s)  # once per frame, not once per rule
        for rule in self.rules:
            armed = self.armed_camera and self._rule_armed(rule, wall_s)
            self.armed_rules[rule.id] = armed
            if not armed:
                events += self._disarm(rule, frame_index, pts_s, wall_s)
                continue
            if isinstance(rule, IntrusionRule):
                conds = self._intrusion(rule, f)
            elif isinstance(rule, ProximityRule):
                conds = self._proximity(rule, f)
            elif isinstance(rule, OccupancyRule):
                conds = self._occupancy(rule, f, pts_s)
            elif isinstance(rule, DwellRule):
                conds = self._dwell(rule, f, pts_s)
            elif isinstance(rule, SpeedRule):
                conds = self._speed(rule, f, pts_s)
            else:
                conds = self._line(rule, f, pts_s)
            events += self._step(rule, conds, frame_index, pts_s, wall_s)
        self._forget(pts_s)
        self.active_zones = {st.cond.zone for st in self._states.values() if st.active_id and st.cond and st.cond.zone}
        return events

    # -- arming: schedules and remote switches ---------------------------------------------
    def set_switch(self, rule_id: str | None, on: bool | None, wall_s: float) -> float | None:
        """A remote switch for a rule (``rule_id``) or the whole camera (None); ``on=None`` hands control back
        to the schedule. It holds until the schedule's next boundary (``switch_override: next_boundary``, when
        there is a schedule) or until switched again; returns when it expires (None: never)."""
        if on is None:
            self.switches.pop(rule_id, None)
            return None
        rule = next((r for r in self.zone_file.rules if r.id == rule_id), None) if rule_id is not None else None
        schedule = self.zone_file.schedule if rule_id is None else (rule.schedule if rule is not None else None)
        expires = None
        if self.zone_file.switch_override == "next_boundary" and schedule is not None:
            expires = schedule.next_boundary(wall_s)
        self.switches[rule_id] = (bool(on), expires, wall_s)
        return expires

    def _switch(self, rule_id: str | None, wall_s: float) -> bool | None:
        sw = self.switches.get(rule_id)
        if sw is None:
            return None
        if sw[1] is not None and wall_s >= sw[1]:  # the schedule's boundary passed: the schedule rules again
            del self.switches[rule_id]
            return None
        return sw[0]

    def camera_armed(self, wall_s: float) -> bool:
        """The camera's switch, else its schedule (no schedule: armed)."""
        cam = self._switch(None, wall_s)
        if cam is None:
            cam = self.zone_file.schedule.armed(wall_s) if self.zone_file.schedule is not None else True
        return cam

    def _rule_armed(self, rule, wall_s: float) -> bool:
        """The rule's own arming: its switch, else its schedule (the camera's is ``camera_armed``)."""
        own = self._switch(rule.id, wall_s)
        if own is None:
            own = rule.schedule.armed(wall_s) if rule.schedule is not None else True
        return own

    def _disarm(self, rule, frame_index: int, pts_s: float, wall_s: float) -> list[AlertEvent]:
        """A disarmed rule starts nothing, and its active alerts end now (``extra.reason: disarmed``)."""
        events = []
        for key in [k for k in self._states if k[0] == rule.id]:
            st = self._states.pop(key)
            if st.active_id is not None:
                ev = self._event(st, rule, "end", frame_index, pts_s, wall_s)
                ev.extra["reason"] = "disarmed"
                events.append(ev)
        return events

    def close(self, frame_index: int, pts_s: float, wall_s: float) -> list[AlertEvent]:
        """End every active alert (end of stream or shutdown)."""
        rules = {r.id: r for r in self.rules}
        events = [self._event(st, rules[key[0]], "end", frame_index, pts_s, wall_s)
                  for key, st in self._states.items() if st.active_id is not None]
        self._states.clear()
        self.active_zones = set()
        return events

    def _update_occupancy(self, f: _Frame) -> None:
        occ: dict[str, dict[str, int]] = {}
        for zi, zid in enumerate(self.zone_ids):
            counts: dict[str, int] = {}
            for i in np.flatnonzero(f.overlap[:, zi] >= 0.5) if f.n else []:
                counts[f.class_names[i]] = counts.get(f.class_names[i], 0) + 1
            occ[zid] = counts
        self.occupancy = occ

    # -- rules ----------------------------------------------------------------------------
    def _intrusion(self, rule: IntrusionRule, f: _Frame) -> list[Condition]:
        zi = self.zone_ids.index(rule.zone)
        out = []
        for i in f.select(rule):
            ov = float(f.overlap[i, zi])
            if ov + 1e-9 >= rule.min_overlap:
                out.append(Condition((rule.id, int(f.track_ids[i])), ov, [f.obj(i, overlap=round(ov, 4))],
                                     rule.zone, f.stationary(i, rule)))
        return out

    def _proximity(self, rule: ProximityRule, f: _Frame) -> list[Condition]:
        a_idx = f.select(rule)
        b_idx = np.flatnonzero(np.array([c in rule.near for c in f.class_names], bool) & (f.area > 0)
                               & (f.conf >= rule.min_confidence)) if f.n else np.zeros(0, int)
        if rule.zone is not None:
            zi = self.zone_ids.index(rule.zone)
            a_idx = [i for i in a_idx if f.overlap[i, zi] > 0]
            b_idx = [j for j in b_idx if f.overlap[j, zi] > 0]
        out = []
        far = None
        if rule.units == "m" and len(a_idx) and len(b_idx):
            # exact pruning: every point of a box lands inside the box's ground quad, so pairs whose
            # quads are further apart than the limit cannot have closer edge points
            a_idx, b_idx = np.asarray(a_idx, int), np.asarray(b_idx, int)
            quads, ok = ground_quads(self.ground, f.xyxy, self._ground_sign)
            ii, jj = np.meshgrid(a_idx, b_idx, indexing="ij")
            bound = convex_gap_bound(quads[ii.ravel()], quads[jj.ravel()]).reshape(ii.shape)
            far = (bound > rule.max_distance + 1e-6) & ok[ii] & ok[jj]
        for ai, i in enumerate(a_idx):
            for bj, j in enumerate(b_idx):
                if i == j or (far is not None and far[ai, bj]):
                    continue
                if rule.units == "px":
                    # boxes further apart than the limit cannot have masks closer than it
                    gap = np.maximum(0, np.maximum(f.xyxy[i, :2] - f.xyxy[j, 2:], f.xyxy[j, :2] - f.xyxy[i, 2:]))
                    if np.hypot(*gap) > rule.max_distance + 2 * self.cell_px.max():
                        continue
                    d, _, _ = mask_gap(f.boundary_px(i), f.boundary_px(j), self.cell_px)
                    kw = {"distance_px": round(d, 2)}
                else:
                    # nearest edge points in the image, then their ground distance
                    _, pa, pb = mask_gap(f.boundary_px(i), f.boundary_px(j), self.cell_px)
                    ga, gb = project(self.ground, np.stack([pa, pb]))
                    d = float(np.hypot(*(gb - ga)))
                    kw = {"distance_m": round(d, 3)}
                if d <= rule.max_distance + 1e-9:
                    out.append(Condition((rule.id, int(f.track_ids[i]), int(f.track_ids[j])), d,
                                         [f.obj(i, **kw), f.obj(j, **kw)], rule.zone, f.stationary(i, rule)))
        return out

    def _occupancy(self, rule: OccupancyRule, f: _Frame, pts_s: float) -> list[Condition]:
        zi = self.zone_ids.index(rule.zone)
        inside = [i for i in f.select(rule) if f.overlap[i, zi] + 1e-9 >= rule.min_overlap
                  and not f.stationary(i, rule)]
        if rule.hold_s == 0 and len(inside) <= rule.max_count:
            return []
        objs = [f.obj(i, overlap=round(float(f.overlap[i, zi]), 4)) for i in inside]
        held: list[AlertObject] = []
        if rule.hold_s > 0:
            # an object seen inside is held for hold_s; seen anywhere else this frame (outside, or inside but
            # not counted), it is let go at once; unseen, it counts until its hold runs out
            seen = {int(t) for t in f.track_ids} if f.n else set()
            for i, o in zip(inside, objs):
                self._held[(rule.id, int(f.track_ids[i]))] = (pts_s, o)
            counted = {int(f.track_ids[i]) for i in inside}
            for key in [k for k in self._held if k[0] == rule.id]:
                last, o = self._held[key]
                if key[1] in counted:
                    continue
                if key[1] in seen or pts_s - last > rule.hold_s + EPS_S:
                    del self._held[key]
                else:
                    held.append(o)
        n = len(objs) + len(held)
        if n <= rule.max_count:
            return []
        extra = {"count": n, "held": len(held)} if rule.hold_s > 0 else {"count": n}
        return [Condition((rule.id, rule.zone), float(n), objs + held, rule.zone, False, extra)]

    def _dwell(self, rule: DwellRule, f: _Frame, pts_s: float) -> list[Condition]:
        zi = self.zone_ids.index(rule.zone)
        out = []
        for i in f.select(rule):
            if f.overlap[i, zi] + 1e-9 < rule.min_overlap:
                continue
            key = (rule.id, int(f.track_ids[i]))
            since, last = self._inside_since.get(key, (pts_s, pts_s))
            if pts_s - last > rule.clear_after_s + EPS_S:  # left for longer than the hysteresis: the clock restarts
                since = pts_s
            self._inside_since[key] = (since, pts_s)
            dwell = pts_s - since
            if dwell + EPS_S >= rule.max_duration_s:
                out.append(Condition(key, dwell, [f.obj(i, overlap=round(float(f.overlap[i, zi]), 4))], rule.zone,
                                     f.stationary(i, rule), {"dwell_s": round(dwell, 3)}))
        return out

    def _speed(self, rule: SpeedRule, f: _Frame, pts_s: float) -> list[Condition]:
        """Ground speed of each object: the slope of a least-squares line through its ground point (below the
        mask's centroid on its lowest row, through the calibration) over the last ``window_s``; judged once the
        samples span 3/4 of it. The lowest row's own middle would jump between a vehicle's wheels."""
        zi = self.zone_ids.index(rule.zone) if rule.zone is not None else None
        out = []
        for i in f.select(rule):
            key = (rule.id, int(f.track_ids[i]))
            x0, _, x1, y1 = f.xyxy[i]
            bottom = np.array([(x0 + x1) / 2, y1])
            if float(np.r_[bottom, 1.0] @ self.ground[2]) * self._ground_sign <= 0:
                continue  # at or above the horizon: not on the ground
            g = project(self.ground, bottom[None])[0]
            hist = self._ground_track.setdefault(key, deque())
            hist.append((pts_s, float(g[0]), float(g[1])))
            while hist and hist[0][0] < pts_s - rule.window_s - EPS_S:
                hist.popleft()
            if len(hist) < 3 or pts_s - hist[0][0] + EPS_S < 0.75 * rule.window_s:
                continue
            if zi is not None and f.overlap[i, zi] + 1e-9 < rule.min_overlap:
                continue
            a = np.asarray(hist)
            t = a[:, 0] - a[:, 0].mean()
            v = (t @ (a[:, 1:] - a[:, 1:].mean(axis=0))) / max(float(t @ t), 1e-12)  # m/s along x and y
            kmh = float(np.hypot(*v)) * 3.6
            if kmh > rule.max_kmh:
                st = self._states.get(key)
                seen = st.cond.extra.get("_speeds", []) if st is not None and st.cond else []
                speeds = (seen + [kmh])[-SPEED_SAMPLES:]
                out.append(Condition(key, kmh, [f.obj(i)], rule.zone, f.stationary(i, rule),
                                     {"speed_kmh": round(kmh, 1), "median_kmh": round(float(np.median(speeds)), 1),
                                      "top_kmh": round(max(speeds), 1), "max_kmh": rule.max_kmh,
                                      "_speeds": speeds}))
        return out

    def _line(self, rule: LineCrossingRule, f: _Frame, pts_s: float) -> list[Condition]:
        a, b = self.lines[rule.id]
        vertical = abs(b[1] - a[1]) >= abs(b[0] - a[0])
        normal = np.array([1.0, 0.0]) if vertical else np.array([0.0, 1.0])  # +: right of / below the line
        tangent = b - a
        n_perp = np.array([-tangent[1], tangent[0]])
        if n_perp @ normal < 0:
            n_perp = -n_perp
        out = []
        for i in f.select(rule):
            key = (rule.id, int(f.track_ids[i]))
            p = f.anchor_px(i, rule.anchor)
            s = float((p - a) @ n_perp) / float(np.hypot(*n_perp))
            band = 0.5 * float(self.cell_px.max())  # dead band: jitter on the line is not a crossing
            side = 1 if s > band else (-1 if s < -band else 0)
            prev = self._line_side.get(key)
            self._line_side[key] = (p, side if side else (prev[1] if prev else 0), pts_s)
            if prev is None or side == 0 or prev[1] == 0 or side == prev[1]:
                continue
            if not segments_intersect(prev[0], p, a, b):
                continue  # changed sides beyond the segment's ends
            moved = ("left_to_right" if side > 0 else "right_to_left") if vertical else \
                ("top_to_bottom" if side > 0 else "bottom_to_top")
            if rule.direction not in ("any", moved):
                continue
            out.append(Condition(key, 1.0, [f.obj(i)], None, f.stationary(i, rule), {"direction": moved}))
        return out

    # -- lifecycle --------------------------------------------------------------------------
    def _step(self, rule, conds: list[Condition], frame_index: int, pts_s: float, wall_s: float) -> list[AlertEvent]:
        events = []
        instantaneous = isinstance(rule, LineCrossingRule)  # a crossing happens in one frame: no debounce
        seen = set()
        for c in conds:
            seen.add(c.key)
            st = self._states.get(c.key)
            if st is None:
                if pts_s < self._cooldown_until.get(c.key, -np.inf) or c.blocked:
                    continue
                st = self._states[c.key] = _State()
            st.last_true = pts_s
            if st.active_id is None:
                if c.blocked:
                    del self._states[c.key]
                    continue
                if st.first_true is None:
                    st.first_true = pts_s
                st.cond = c
                if instantaneous or pts_s - st.first_true + EPS_S >= rule.min_duration_s:
                    events.append(self._start(st, rule, c, frame_index, pts_s, wall_s))
            elif instantaneous:  # a new crossing while the last one is still clearing: end it, start anew
                events.append(self._event(st, rule, "end", frame_index, pts_s, wall_s))
                st = self._states[c.key] = _State(last_true=pts_s, first_true=pts_s, cond=c)
                events.append(self._start(st, rule, c, frame_index, pts_s, wall_s))
            else:
                st.cond = c
                ids = frozenset(o.track_id for o in c.objects)
                if (rule.update_interval_s > 0 and pts_s - st.last_event_pts + EPS_S >= rule.update_interval_s
                        and (ids != st.reported_ids or self._worse(rule, c.value, st.reported_value))):
                    events.append(self._event(st, rule, "update", frame_index, pts_s, wall_s))
        for key in [k for k in self._states if k[0] == rule.id and k not in seen]:
            st = self._states[key]
            if st.active_id is None:
                del self._states[key]
            elif pts_s - st.last_true + EPS_S >= rule.clear_after_s:
                events.append(self._event(st, rule, "end", frame_index, pts_s, wall_s))
                del self._states[key]
                if rule.cooldown_s > 0:
                    self._cooldown_until[key] = pts_s + rule.cooldown_s
        return events

    def _start(self, st: _State, rule, c: Condition, frame_index: int, pts_s: float, wall_s: float) -> AlertEvent:
        # stable, unique per camera: rule, the key's objects (or zone), and the start frame
        st.active_id = f"{self.camera_id}:{rule.id}:{':'.join(map(str, c.key[1:]))}:{frame_index}"
        if self.run_id:
            st.active_id += f"@{self.run_id}"
        st.started_at, st.started_pts_s = wall_s, pts_s
        return self._event(st, rule, "start", frame_index, pts_s, wall_s)

    @staticmethod
    def _worse(rule, value: float, reported: float) -> bool:
        if isinstance(rule, ProximityRule):
            return value < reported * 0.9  # 10 % closer
        if isinstance(rule, IntrusionRule):
            return value > reported + 0.05
        if isinstance(rule, DwellRule):
            return False  # the dwell clock always grows; the start said it all
        if isinstance(rule, SpeedRule):
            return value > reported * 1.1  # 10 % faster
        return value != reported

    def _forget(self, pts_s: float) -> None:
        for d in (self._line_side, self._inside_since):
            stale = [k for k, v in d.items() if pts_s - v[-1] > FORGET_S or pts_s < v[-1] - FORGET_S]
            for k in stale:
                del d[k]
        for k in [k for k, h in self._ground_track.items() if not h or abs(pts_s - h[-1][0]) > FORGET_S]:
            del self._ground_track[k]
        for k in [k for k, until in self._cooldown_until.items() if pts_s >= until]:
            del self._cooldown_until[k]

    def _event(self, st: _State, rule, kind: str, frame_index: int, pts_s: float, wall_s: float) -> AlertEvent:
        c = st.cond
        ev = AlertEvent(
            id=st.active_id,
            type=kind,
            camera=self.camera_id,
            rule=rule.id,
            rule_type=rule.type,
            zone=c.zone if c else getattr(rule, "zone", None),
            severity=rule.severity,
            objects=list(c.objects) if c else [],
            frame_index=frame_index,
            pts_s=pts_s,
            wall_time=wall_s,
            started_at=st.started_at,
            started_pts_s=st.started_pts_s,
            ended_at=wall_s if kind == "end" else None,
            seq=st.seq,
            extra={k: v for k, v in c.extra.items() if not k.startswith("_")} if c else {},
        )
        st.seq += 1
        st.last_event_pts = pts_s
        if c:
            st.reported_value = c.value
            st.reported_ids = frozenset(o.track_id for o in c.objects)
        return ev
