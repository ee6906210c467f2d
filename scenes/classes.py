"""The one class list shared by every scene, the dataset export and the demo model.

Ids are fixed: the bundled 5-class model's output rows follow the first five; classes added
later go at the end (`cow`, id 5, comes with the 6-class model), so no existing id moves.
"""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = ("worker", "excavator", "dump_truck", "player", "ball", "cow")
CLASS_IDS: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}

WORKER = CLASS_IDS["worker"]
EXCAVATOR = CLASS_IDS["excavator"]
DUMP_TRUCK = CLASS_IDS["dump_truck"]
PLAYER = CLASS_IDS["player"]
BALL = CLASS_IDS["ball"]
COW = CLASS_IDS["cow"]

#: Classes each scene can contain.
SCENE_CLASSES: dict[str, tuple[str, ...]] = {
    "site": ("worker", "excavator", "dump_truck"),
    "pitch": ("player", "ball"),
    "farm": ("cow", "worker"),
}


#: The bundled demo model's classes: the first five.
BASE_CLASSES = 5


def names_for(scenes) -> tuple[str, ...]:
    """The class names a dataset of `scenes` declares: the bundled model's five, and beyond them CLASS_NAMES up
    to the highest id those scenes use. Ids stay fixed: a dataset of site and pitch (or either) keeps the five
    names it always had; one with the farm declares six (ids must run 0..n-1, so unused ones are named too)."""
    top = max((CLASS_IDS[c] for s in scenes for c in SCENE_CLASSES[s]), default=BASE_CLASSES - 1)
    return CLASS_NAMES[: max(top + 1, BASE_CLASSES)]
