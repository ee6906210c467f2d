"""The one class list shared by every scene, the dataset export and the demo model.

Ids are fixed: the bundled model's output rows follow this order.
"""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = ("worker", "excavator", "dump_truck", "player", "ball")
CLASS_IDS: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}

WORKER = CLASS_IDS["worker"]
EXCAVATOR = CLASS_IDS["excavator"]
DUMP_TRUCK = CLASS_IDS["dump_truck"]
PLAYER = CLASS_IDS["player"]
BALL = CLASS_IDS["ball"]

#: Classes each scene can contain.
SCENE_CLASSES: dict[str, tuple[str, ...]] = {
    "site": ("worker", "excavator", "dump_truck"),
    "pitch": ("player", "ball"),
}
