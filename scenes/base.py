"""Scene base class: camera, static background, per-frame items, rendering with ground truth."""

from __future__ import annotations

import numpy as np

from .camera import Camera
from .render import Effects, Instance, Item, Painter, draw_items, draw_shadows, extract_instances, random_effects


class Scene:
    """A scene is fully determined by (name, seed, size, scenario); `render(t)` is a pure
    function of time. All randomness comes from one `numpy.random.Generator(seed)`."""

    name = "scene"
    scenarios: tuple[str, ...] = ()

    def __init__(self, seed: int, width: int = 1280, height: int = 720, scenario: str | None = None, *, jpeg: bool = True):
        if scenario is not None and scenario not in self.scenarios:
            raise ValueError(f"scene {self.name!r} has no scenario {scenario!r}; choose from {', '.join(self.scenarios)}")
        self.seed = int(seed)
        self.width, self.height = int(width), int(height)
        self.scenario = scenario
        self.rng = np.random.default_rng(self.seed)
        self.camera: Camera = self._make_camera()
        self.painter = Painter(self.camera, self._light_dir(), ambient=float(self.rng.uniform(0.45, 0.7)))
        self.background = self._make_background()
        self.static_items: list[Item] = []
        static_hulls: list[np.ndarray] = []
        self.effects: Effects = random_effects(self.rng, self.width, self.height, jpeg=jpeg)
        self._setup(static_hulls)
        draw_shadows(self.background, static_hulls, self.effects.shadow_strength)

    # --- to override ------------------------------------------------------------------
    def _make_camera(self) -> Camera:
        raise NotImplementedError

    def _make_background(self) -> np.ndarray:
        raise NotImplementedError

    def _setup(self, static_hulls: list[np.ndarray]) -> None:
        raise NotImplementedError

    def dynamic(self, t: float) -> tuple[list[Item], list[np.ndarray]]:
        """Moving items at time t and their ground shadows."""
        raise NotImplementedError

    def zone_file(self) -> dict | None:
        """Zone file content (the zone engine's YAML schema) for a scripted scenario."""
        return None

    # --- shared -------------------------------------------------------------------------
    def _light_dir(self) -> np.ndarray:
        az = self.rng.uniform(0, 2 * np.pi)
        el = np.radians(self.rng.uniform(25, 70))
        return np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])

    def sample_image_ground(self, rng: np.random.Generator, u_rng=(0.03, 0.97), v_rng=(0.0, 0.98), min_v_below_horizon: float = 20.0):
        """A ground point (X, Z) seen at a uniformly drawn image position."""
        hv = self.camera.horizon_v()
        v_lo = max(v_rng[0] * self.height, hv + min_v_below_horizon)
        v_hi = v_rng[1] * self.height
        u = rng.uniform(u_rng[0] * self.width, u_rng[1] * self.width)
        v = rng.uniform(v_lo, max(v_hi, v_lo + 1.0))
        return self.camera.ray_to_ground(np.array([u, v]))

    def render(self, t: float, frame_index: int = 0, *, gt: bool = True, effects: bool = True):
        """Frame (BGR uint8) and the visible instances (after occlusion) at time t."""
        frame = self.background.copy()
        items, hulls = self.dynamic(t)
        draw_shadows(frame, hulls, self.effects.shadow_strength)
        idmap = np.zeros((self.height, self.width), np.uint16) if gt else None
        labelled = draw_items(frame, idmap, self.static_items + items)
        instances: list[Instance] = extract_instances(idmap, labelled) if idmap is not None else []
        if effects:
            frame = self.effects.apply(frame, frame_index)
        return frame, instances
