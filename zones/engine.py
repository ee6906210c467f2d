"""Rule evaluation in mask space, with entry debounce, exit hysteresis and alert lifecycle.

Pure logic: one ZoneEngine per camera, owned by that camera's analytics thread.
Zones are rasterised once into the mask grid, so "fraction of a mask inside a zone"
is one boolean AND and a count per object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from .events import AlertEvent, AlertObject
from .schema import IntrusionRule, ZoneFile

EPS_S = 1e-6  # pts arithmetic is float: 1.4 - 0.4 must count as 1.0 s


def rasterize(polygon_px: list[tuple[float, float]], frame_wh: tuple[int, int], mask_wh: tuple[int, int]) -> np.ndarray:
    """Boolean raster (mask_h, mask_w) of a frame-pixel polygon on a grid covering the frame.

    A cell is inside when its centre (in frame pixels) is inside or on the polygon; done
    once per camera, so exactness beats speed here.
    """
    sx, sy = frame_wh[0] / mask_wh[0], frame_wh[1] / mask_wh[1]
    xs = (np.arange(mask_wh[0]) + 0.5) * sx
    ys = (np.arange(mask_wh[1]) + 0.5) * sy
    poly = shapely.Polygon(polygon_px)
    shapely.prepare(poly)
    gx, gy = np.meshgrid(xs, ys)
    return shapely.intersects_xy(poly, gx.ravel(), gy.ravel()).reshape(mask_wh[1], mask_wh[0])


@dataclass
class _AlertState:
    """One (rule, track) pair: pending -> active -> clearing -> ended."""

    first_true_pts: float | None = None  # start of the current run of "condition true"
    last_true_pts: float | None = None
    active_id: str | None = None
    seq: int = 0
    started_at: float = 0.0
    started_pts_s: float = 0.0
    last_object: AlertObject | None = None


class ZoneEngine:
    """Evaluates a camera's rules on tracked objects; returns AlertEvents."""

    def __init__(self, zone_file: ZoneFile, camera_id: str, frame_wh: tuple[int, int], mask_wh: tuple[int, int]):
        self.zone_file = zone_file
        self.camera_id = camera_id
        self.frame_wh = tuple(frame_wh)
        self.mask_wh = tuple(mask_wh)
        self.rasters = {
            z.id: rasterize(zone_file.polygon_px(z.id, frame_wh), frame_wh, mask_wh) for z in zone_file.zones
        }
        self.rules = list(zone_file.rules)
        self._states: dict[tuple[str, int], _AlertState] = {}
        self.active_zones: set[str] = set()  # zones with an active alert (for drawing)

    def _alert_id(self, rule: str, track_id: int, frame_index: int) -> str:
        return f"{self.camera_id}:{rule}:{track_id}:{frame_index}"

    def update(
        self,
        frame_index: int,
        pts_s: float,
        wall_s: float,
        track_ids: np.ndarray,
        class_names: list[str] | np.ndarray,
        confidences: np.ndarray,
        xyxy: np.ndarray,
        masks: np.ndarray | None,
    ) -> list[AlertEvent]:
        events: list[AlertEvent] = []
        n = len(track_ids)
        if masks is not None and n:
            flat = masks.reshape(n, -1)
            areas = flat.sum(axis=1)
        for rule in self.rules:
            if not isinstance(rule, IntrusionRule):  # other rule types arrive with the zone-rule issue
                continue
            zone_raster = self.rasters[rule.zone].reshape(-1)
            seen: set[int] = set()
            for i in range(n):
                if class_names[i] not in rule.classes or masks is None or areas[i] == 0:
                    continue
                overlap = float(np.count_nonzero(flat[i] & zone_raster)) / float(areas[i])
                if overlap < rule.min_overlap:
                    continue
                tid = int(track_ids[i])
                seen.add(tid)
                obj = AlertObject(tid, str(class_names[i]), float(confidences[i]),
                                  [round(float(v), 2) for v in xyxy[i]], round(overlap, 4))
                st = self._states.setdefault((rule.id, tid), _AlertState())
                if st.first_true_pts is None:
                    st.first_true_pts = pts_s
                st.last_true_pts = pts_s
                st.last_object = obj
                if st.active_id is None and pts_s - st.first_true_pts >= rule.min_duration_s - EPS_S:
                    st.active_id = self._alert_id(rule.id, tid, frame_index)
                    st.seq = 0
                    st.started_at, st.started_pts_s = wall_s, pts_s
                    events.append(self._event(st, rule, "start", frame_index, pts_s, wall_s))
            # pairs whose condition is false this frame: debounce resets, active alerts clear after a hold
            for (rule_id, tid), st in list(self._states.items()):
                if rule_id != rule.id or tid in seen:
                    continue
                if st.active_id is None:
                    del self._states[(rule_id, tid)]
                elif pts_s - st.last_true_pts >= rule.clear_after_s - EPS_S:
                    events.append(self._event(st, rule, "end", frame_index, pts_s, wall_s))
                    del self._states[(rule_id, tid)]
                else:
                    st.first_true_pts = None
        self.active_zones = {
            r.zone for r in self.rules for (rid, _), st in self._states.items() if rid == r.id and st.active_id
        }
        return events

    def close(self, frame_index: int, pts_s: float, wall_s: float) -> list[AlertEvent]:
        """End every active alert (end of stream or shutdown)."""
        rules = {r.id: r for r in self.rules}
        events = [
            self._event(st, rules[rid], "end", frame_index, pts_s, wall_s)
            for (rid, _), st in self._states.items()
            if st.active_id is not None
        ]
        self._states.clear()
        self.active_zones = set()
        return events

    def _event(self, st: _AlertState, rule, kind: str, frame_index: int, pts_s: float, wall_s: float) -> AlertEvent:
        ev = AlertEvent(
            id=st.active_id,
            type=kind,
            camera=self.camera_id,
            rule=rule.id,
            rule_type=rule.type,
            zone=getattr(rule, "zone", None),
            severity=rule.severity,
            objects=[st.last_object] if st.last_object else [],
            frame_index=frame_index,
            pts_s=pts_s,
            wall_time=wall_s,
            started_at=st.started_at,
            started_pts_s=st.started_pts_s,
            ended_at=wall_s if kind == "end" else None,
            seq=st.seq,
        )
        st.seq += 1
        return ev
