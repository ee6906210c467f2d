"""Synthetic scenes with exact ground truth: `site` (construction site), `pitch` (football) and
`farm` (a paddock with cows).

Frames are drawn from flat polygons in painter's order; each instance's mask is made from the
same polygons, so ground truth equals the drawn pixels after occlusion. Everything is a pure
function of (scene, seed, size, scenario, time): same seed, same bytes.

    from maskwatch.scenes import make_scene
    frame_bgr, instances = make_scene("site", seed=3).render(t=2.0)

Imports numpy, OpenCV and pycocotools only; PyAV is imported when a video is written.
"""

from .classes import CLASS_IDS, CLASS_NAMES, SCENE_CLASSES

_LAZY = {"EVAL_SEED_OFFSET", "VAL_SEED_OFFSET", "export_dataset", "make_scene"}


def __getattr__(name: str):
    # lazy: `maskwatch --help` imports maskwatch.scenes.cli and must not pay for OpenCV
    if name in _LAZY:
        from . import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'maskwatch.scenes' has no attribute {name!r}")


__all__ = ["CLASS_IDS", "CLASS_NAMES", "EVAL_SEED_OFFSET", "SCENE_CLASSES", "VAL_SEED_OFFSET", "export_dataset", "make_scene"]
