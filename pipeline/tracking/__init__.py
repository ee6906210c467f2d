"""Multi-object tracking by mask."""

from .tracker import MaskTracker, TrackerParams, box_iou, mask_iou

__all__ = ["MaskTracker", "TrackerParams", "box_iou", "mask_iou"]
