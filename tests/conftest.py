"""Shared fixtures: real H.264 clips made with PyAV, the test model, config writers."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
IN_CI = os.environ.get("CI", "").lower() == "true"


def write_clip(path: Path, frames: int = 30, fps: int = 15, size: tuple[int, int] = (640, 360), seed: int = 0,
               gop: int | None = None) -> Path:
    """A real H.264 clip: textured background with a few moving filled shapes (a keyframe every ``gop`` frames)."""
    rng = np.random.default_rng(seed)
    w, h = size
    bg = (rng.integers(90, 140, (h, w, 3))).astype(np.uint8)
    shapes = [(rng.integers(0, w - 80), rng.integers(0, h - 80), rng.integers(-6, 7), rng.integers(-4, 5),
               tuple(int(c) for c in rng.integers(0, 255, 3))) for _ in range(4)]
    with av.open(str(path), mode="w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "ultrafast", **({"g": str(gop)} if gop else {})}
        for i in range(frames):
            img = bg.copy()
            for x, y, dx, dy, col in shapes:
                cx, cy = int(x + dx * i) % (w - 60), int(y + dy * i) % (h - 60)
                img[cy:cy + 50, cx:cx + 40] = col
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            vf.pts = i
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


def find_test_model() -> Path:
    """The ONNX model the mechanics tests run: the small random-weight fixture.

    It is fast and, at a low threshold, detects something on any clip, which is what tests
    of rings, stages, delivery and sources need. Accuracy is tested with the bundled demo
    model (models/) in tests/evaluation/test_model_gate.py.
    """
    path = FIXTURES / "models" / "yolo11-tiny-seg-random-dynamic.onnx"
    assert path.is_file(), f"missing test model {path}"
    return path


@pytest.fixture(scope="session")
def model_path() -> Path:
    return find_test_model()


@pytest.fixture(scope="session")
def model_names(model_path) -> list[str]:
    from maskwatch.engines import load_engine

    eng = load_engine(model_path)
    try:
        return list(eng.meta.names.values())
    finally:
        eng.close()


def write_config(dirpath: Path, model: Path, source: Path | str, names: list[str], *, conf: float = 0.05,
                 zones: dict | None = None, extra: dict | None = None, cameras: list[dict] | None = None) -> Path:
    """A config whose one zone covers the whole frame, so any detection of any class alerts."""
    zones = zones or {
        "units": "normalized",
        "zones": [{"id": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
        "rules": [{"id": "anything", "type": "intrusion", "zone": "all", "classes": names,
                   "min_overlap": 0.01, "min_duration_s": 0.0, "clear_after_s": 0.2}],
    }
    (dirpath / "zones.yaml").write_text(yaml.safe_dump(zones))
    cfg = {
        "model": {"path": str(model), "conf": conf, "iou": 0.6, "max_det": 50},
        "cameras": cameras or [{"id": "cam1", "source": str(source), "zones": "zones.yaml"}],
        "alerts": {"jsonl": "var/alerts.jsonl", "outbox": "var/outbox.sqlite"},
        # the test models are random: their detections never reach a trained model's confidence
        "tracker": {"report_conf": 0.0},
    }
    for k, v in (extra or {}).items():
        cfg[k] = v
    path = dirpath / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# -- headless Chromium (Selenium 4): the web console's pages and the replay report ------------------------------------
# A missing chromium, chromedriver or selenium fails the tests that use the browser (scripts/setup.sh installs them),
# never skips them.
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def unavailable(reason: str):
    pytest.fail(f"{reason} (scripts/setup.sh installs Debian's chromium and chromium-driver; selenium is in [dev])")


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        unavailable(f"selenium is not installed ({exc}); pip install -e .[dev]")
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            unavailable(f"{path} is missing (apt-get install {package})")
    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1400,1000",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.page_load_strategy = "eager"  # a page with a live MJPEG stream never finishes loading
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()


def console_errors(drv) -> list[dict]:
    return [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]


def assert_clean_console(drv, expected: tuple[str, ...] = ()) -> None:
    """No SEVERE entry in the browser console, but for the ``expected`` ones (Chromium logs every 4xx answer to a
    fetch as "Failed to load resource", even one the page asked for and handles)."""
    errors = [e for e in console_errors(drv) if not any(x in e["message"] for x in expected)]
    assert not errors, "browser console errors:\n" + "\n".join(e["message"] for e in errors)


class FailingSegmenter:
    """Wraps the real segmenter and raises on its 5th call: an error inside the inference stage."""

    def __init__(self, inner):
        self.inner, self.meta, self.input_hw, self.calls = inner, inner.meta, inner.input_hw, 0

    def __call__(self, *a, **kw):
        self.calls += 1
        if self.calls == 5:
            raise RuntimeError("engine exploded")
        return self.inner(*a, **kw)
