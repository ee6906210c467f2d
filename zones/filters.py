"""False-positive filters of a zone file (``filters``, ``ignore``): which detections reach the tracker.

Judged in mask space, like the rules: a detection's area is its mask's (cells x the cell's frame pixels; in
m2 through the calibration at the object's ground point), its overlap with an ignore region the fraction of
its mask cells inside the region's raster. Pure logic; the pipeline counts what is dropped.
"""

from __future__ import annotations

import numpy as np

from .geometry import rasterize
from .schema import ObjectFilter, ZoneFile


class DetectionFilter:
    """One camera's filters for frames of ``frame_wh`` and masks of ``mask_wh``."""

    def __init__(self, zone_file: ZoneFile, frame_wh: tuple[int, int], mask_wh: tuple[int, int]) -> None:
        self.zone_file = zone_file
        self.frame_wh = tuple(frame_wh)
        self.cell_px = np.array([frame_wh[0] / mask_wh[0], frame_wh[1] / mask_wh[1]])
        self.filters = dict(zone_file.filters)
        self.ignore = [(r, rasterize(zone_file.to_px(r.polygon, frame_wh), frame_wh, mask_wh).reshape(-1)
                        .astype(np.float32)) for r in zone_file.ignore]
        self.ground = zone_file.ground_homography(frame_wh)

    @property
    def active(self) -> bool:
        return bool(self.filters or self.ignore)

    def _area(self, flt: ObjectFilter, cells: float, box: np.ndarray) -> float:
        px = cells * float(self.cell_px[0] * self.cell_px[1])
        if flt.area_units == "px":
            return px
        if flt.area_units == "fraction":
            return px / float(self.frame_wh[0] * self.frame_wh[1])
        # m2: the homography's local scale at the object's ground point, |det H| / w^3
        h = self.ground
        w = float(np.array([(box[0] + box[2]) / 2, box[3], 1.0]) @ h[2])
        return px * abs(float(np.linalg.det(h))) / max(abs(w) ** 3, 1e-12)

    def reasons(self, class_names: list[str], confidence, xyxy, masks: np.ndarray | None) -> list[str | None]:
        """Per detection: None to keep it, else why it is dropped (``min_score``, ``max_area``, ...,
        ``ignore:<region id>``)."""
        n = len(class_names)
        out: list[str | None] = [None] * n
        if not self.active or n == 0:
            return out
        flat = masks.reshape(n, -1) if masks is not None else None
        cells = np.count_nonzero(flat, axis=1).astype(np.float64) if flat is not None else np.zeros(n)
        default = self.filters.get("default")
        for i, cls in enumerate(class_names):
            flt = self.filters.get(cls, default)
            if flt is not None:
                out[i] = self._check(flt, float(confidence[i]), cells[i], np.asarray(xyxy[i], np.float64))
            if out[i] is None and flat is not None and cells[i] > 0:
                for region, raster in self.ignore:
                    if region.classes is not None and cls not in region.classes:
                        continue
                    if float(flat[i].astype(np.float32) @ raster) / cells[i] + 1e-9 >= region.min_overlap:
                        out[i] = f"ignore:{region.id}"
                        break
        return out

    def _check(self, flt: ObjectFilter, conf: float, cells: float, box: np.ndarray) -> str | None:
        if flt.min_score is not None and conf < flt.min_score:
            return "min_score"
        if flt.min_area is not None or flt.max_area is not None:
            area = self._area(flt, cells, box)
            if flt.min_area is not None and area < flt.min_area:
                return "min_area"
            if flt.max_area is not None and area > flt.max_area:
                return "max_area"
        if flt.min_ratio is not None or flt.max_ratio is not None:
            w, h = box[2] - box[0], box[3] - box[1]
            ratio = w / h if h > 0 else float("inf")
            if flt.min_ratio is not None and ratio < flt.min_ratio:
                return "min_ratio"
            if flt.max_ratio is not None and ratio > flt.max_ratio:
                return "max_ratio"
        return None
