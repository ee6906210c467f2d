"""The console's pages in a real browser: the real server (``maskwatch run`` / ``maskwatch edit``) in a subprocess
on a free loopback port, driven by headless Debian Chromium through Selenium 4.

A missing chromium, chromedriver or selenium fails these tests (scripts/setup.sh installs them), never skips them.
MASKWATCH_SCREENSHOTS=1 also writes docs/console-overview.png and docs/console-editor.png (nothing else writes
into the repository: configs, zone file, clip and alert files live in tmp_path).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import assert_clean_console  # the `driver` fixture (headless Chromium) is there too
from tests.pipeline.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = os.environ.get("MASKWATCH_SCREENSHOTS") == "1"
MODEL = ROOT / "models" / "maskwatch-demo-seg.onnx"
CAMERA = "site-demo"
INTRUSION = "machine-in-worker-area"  # the clip's scripted event (from 7.1 s on, seed 7)
WAIT = 30  # seconds: the longest explicit wait for a page to show something


# -- the server --------------------------------------------------------------------------------------------------


class Server:
    """``maskwatch <command> CONFIG --web 127.0.0.1:PORT ...`` in a subprocess; stopped with SIGINT."""

    def __init__(self, command: str, config: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = config.parent / f"{command}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "maskwatch", command, str(config), "--web",
                                      f"127.0.0.1:{self.port}", *extra], cwd=config.parent, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def request(self, path: str, data: bytes | None = None, method: str = "GET") -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data is not None else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def json(self, path: str):
        status, body = self.request(path)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)

    def wait_ready(self, timeout: float = 60) -> dict:
        """Until /api/cameras answers and every camera has a frame."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"maskwatch exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                data = self.json("/api/cameras")
                if data["cameras"] and all(c["frame_wh"] for c in data["cameras"]):
                    return data
            except (OSError, AssertionError):
                pass
            time.sleep(0.1)
        pytest.fail(f"the console did not answer with a frame within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        self._log.close()


@pytest.fixture(scope="module")
def site_clip(tmp_path_factory) -> Path:
    """A 9 s `site` clip (excavator_swing, seed 7): its intrusion starts at 7.1 s."""
    from maskwatch.scenes.clip import write_clip

    out = tmp_path_factory.mktemp("site")
    write_clip("site", 7, 9.0, out, scenario="excavator_swing")
    return out / "video.mp4"


def make_config(folder: Path, clip: Path) -> tuple[Path, Path]:
    """configs/demo.yaml and its zone file, copied into ``folder`` and pointed at the clip, the model and tmp paths."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    zones = folder / "site-demo.yaml"
    zones.write_bytes((ROOT / "configs" / "zones" / "site-demo.yaml").read_bytes())  # comments and all
    cfg["model"]["path"] = str(MODEL)
    (cam,) = cfg["cameras"]
    cam.update(source=str(clip), zones=str(zones))
    cfg["alerts"] = {"jsonl": str(folder / "alerts.jsonl"), "outbox": str(folder / "outbox.sqlite"),
                     "snapshots": {"dir": str(folder / "snapshots")}}
    path = folder / "demo.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path, zones


# -- the browser ---------------------------------------------------------------------------------------------------


@pytest.fixture
def browser(driver):
    driver.get_log("browser")  # drop what an earlier test left
    yield driver
    driver.get("about:blank")  # closes the live streams before the server stops


def wait(drv, what: str, pred, timeout: float = WAIT):
    """Until ``pred(driver)`` is truthy (its value); a page that redraws meanwhile only means trying again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(drv, timeout, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,)).until(pred, message=what)


def css(drv, selector: str):
    from selenium.webdriver.common.by import By

    return drv.find_element(By.CSS_SELECTOR, selector)


def css_all(drv, selector: str):
    from selenium.webdriver.common.by import By

    return drv.find_elements(By.CSS_SELECTOR, selector)


def natural_width(drv, element) -> int:
    return drv.execute_script("return arguments[0].naturalWidth", element) or 0


def screenshot(drv, name: str) -> None:
    """docs/<name> at 1280 px wide (only with MASKWATCH_SCREENSHOTS=1)."""
    if not SCREENSHOTS:
        return
    size = drv.get_window_size()
    drv.set_window_size(1280, 900)
    try:
        time.sleep(0.6)  # let the layout and the live view settle at the new size
        png = drv.get_screenshot_as_png()
    finally:
        drv.set_window_size(size["width"], size["height"])
    out = ROOT / "docs" / name
    try:  # a palette PNG is a third of the size; without Pillow the PNG is kept as it is
        import io

        from PIL import Image

        with Image.open(io.BytesIO(png)) as im:
            buf = io.BytesIO()
            im.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(buf, "PNG", optimize=True)
            png = buf.getvalue()
    except ImportError:
        pass
    out.write_bytes(png)


# -- run mode: overview, alerts, health ------------------------------------------------------------------------------


@pytest.fixture(scope="class")
def run_server(site_clip, tmp_path_factory):
    """``maskwatch run --loop`` on the clip, for the tests of one class."""
    if not MODEL.is_file():
        pytest.fail(f"the demo model is missing: {MODEL}")
    config, _ = make_config(tmp_path_factory.mktemp("run"), site_clip)
    srv = Server("run", config, "--loop", "--no-progress")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="class")
def edit_server(site_clip, tmp_path_factory):
    """``maskwatch edit`` on the clip, for the tests of one class; ``zones``: its zone file."""
    config, zones = make_config(tmp_path_factory.mktemp("edit"), site_clip)
    srv = Server("edit", config)
    srv.zones = zones
    srv.original = zones.read_bytes()
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


class TestRun:
    @pytest.fixture
    def server(self, run_server):
        return run_server

    def test_overview_shows_live_tiles(self, browser, server):
        browser.get(server.url + "/")
        tile = f'.tile[data-camera="{CAMERA}"]'
        img = wait(browser, "a tile", lambda d: css_all(d, f"{tile} img") and css(d, f"{tile} img"))
        wait(browser, "a live frame in the tile", lambda d: natural_width(d, img) > 0)
        text = wait(browser, "the tile's figures", lambda d: "analysed fps" in css(d, tile).text and css(d, tile).text)
        assert CAMERA in text and "online" in text
        assert "frame\u2192alert p50/p99" in text
        assert css(browser, tile).get_attribute("href").endswith(f"/cameras/{CAMERA}")
        assert css(browser, "#mode").text.startswith("running")
        assert css(browser, f'#nav-cameras a[href="/cameras/{CAMERA}"]').text == CAMERA
        if SCREENSHOTS:  # masks and an active alert in view
            wait(browser, "an active alert", lambda d: INTRUSION in css(d, tile).text, timeout=60)
            screenshot(browser, "console-overview.png")
        assert_clean_console(browser)

    def test_alerts_page_lists_the_intrusion(self, browser, server):
        browser.get(server.url + "/alerts")

        def intrusion_start(d):  # read at once: the table is redrawn when new events arrive
            return d.execute_script("""
                for (const r of document.querySelectorAll('#alerts tbody tr[data-type="start"]')) {
                  if (!r.textContent.includes(arguments[0])) continue;
                  const img = r.querySelector("img.thumb");
                  return {text: r.innerText, thumb: img ? img.naturalWidth : 0};
                }
                return null;""", INTRUSION)

        start = wait(browser, f"the {INTRUSION} start with its snapshot",
                     lambda d: (row := intrusion_start(d)) and row["thumb"] > 0 and row, timeout=60)
        assert CAMERA in start["text"] and "critical" in start["text"] and "excavator" in start["text"]
        # filters come from the data and query the server
        from selenium.webdriver.support.ui import Select

        wait(browser, "the rule filter", lambda d: INTRUSION in [o.get_attribute("value") for o in
                                                                 css_all(d, "#f-rule option")])
        Select(css(browser, "#f-rule")).select_by_value(INTRUSION)
        wait(browser, "the filtered list", lambda d: "rule=" + INTRUSION in d.current_url and all(
            INTRUSION in r.text for r in css_all(d, "#alerts tbody tr")))
        Select(css(browser, "#f-severity")).select_by_value("info")
        wait(browser, "an empty list", lambda d: "No alert matches" in css(d, "#alerts tbody").text)
        assert_clean_console(browser)

    def test_health_page_shows_the_figures(self, browser, server):
        browser.get(server.url + "/health")

        def analytics_frames(d):
            for r in css_all(d, "#stages tbody tr"):
                cells = [c.text for c in r.find_elements("css selector", "td")]
                if cells[:2] == [CAMERA, "analytics"] and cells[2].replace(",", "").isdigit() and int(
                        cells[2].replace(",", "")) > 0:
                    return cells
            return None

        cells = wait(browser, "the frames table", analytics_frames)
        assert cells[3].endswith("ms")  # the stage's mean latency
        assert "Every stage runs" in css(browser, "#verdict").text
        cams = css(browser, "#cameras").text
        assert CAMERA in cams and "online" in cams and "Frame\u2192alert mean" in cams
        assert "outbox: jsonl" in css(browser, "#delivery").text
        assert_clean_console(browser)


# -- edit mode: the zone editor ----------------------------------------------------------------------------------------


class TestEditor:
    PUT_422 = f"/api/cameras/{CAMERA}/zones - Failed to load resource: the server responded with a status of 422"

    @pytest.fixture
    def server(self, edit_server):
        return edit_server

    @pytest.fixture
    def zones(self, server) -> Path:
        server.zones.write_bytes(server.original)  # every test starts from the demo file
        return server.zones

    def open_editor(self, server, drv):
        drv.get(f"{server.url}/cameras/{CAMERA}")
        wait(drv, "the zone file", lambda d: css(d, "#status").get_attribute("data-state") == "clean")
        view = css(drv, "#view")
        wait(drv, "a live frame", lambda d: natural_width(d, view) > 0)
        wait(drv, "the overlay at the image size", lambda d: d.execute_script(
            "return arguments[0].getAttribute('viewBox')", css(d, "#overlay")) == "0 0 {} {}".format(
            *d.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", view)))
        assert "raw=1" in view.get_attribute("src")  # edit mode: the editor draws the zones itself
        return view

    def test_add_a_zone_and_save(self, browser, server, zones):
        from selenium.webdriver.common.action_chains import ActionChains

        view = self.open_editor(server, browser)
        assert css(browser, "#mode").text == "zone editor only: no model, no alerts"
        assert css_all(browser, '#overlay polygon.zone[data-zone="worker-area"]')

        # drag a vertex of the demo zone, then undo it
        css(browser, '#zone-list button[data-zone-id="worker-area"]').click()
        vertex = css(browser, '#overlay circle.vertex[data-vertex="0"]')
        before = (vertex.get_attribute("cx"), vertex.get_attribute("cy"))
        ActionChains(browser).click_and_hold(vertex).move_by_offset(40, 25).release().perform()
        wait(browser, "the moved vertex", lambda d: css(d, "#status").get_attribute("data-state") == "dirty")
        moved = css(browser, '#overlay circle.vertex[data-vertex="0"]')
        assert (moved.get_attribute("cx"), moved.get_attribute("cy")) != before
        css(browser, "#undo").click()
        wait(browser, "the undone drag", lambda d: css(d, "#status").get_attribute("data-state") == "clean")
        back = css(browser, '#overlay circle.vertex[data-vertex="0"]')
        assert (back.get_attribute("cx"), back.get_attribute("cy")) == before

        # a new zone: four clicks on the image, Finish, Save
        css(browser, "#add-zone").click()
        zone_id = css(browser, "#new-zone-id")
        zone_id.clear()
        zone_id.send_keys("gate")
        css(browser, "#new-zone-name").send_keys("Gate")
        rect = view.rect
        w, h = rect["width"], rect["height"]
        offsets = [(round(fx * w), round(fy * h)) for fx, fy in ((-0.38, -0.33), (-0.08, -0.36), (-0.02, -0.1),
                                                                  (-0.35, -0.05))]
        for dx, dy in offsets:
            ActionChains(browser).move_to_element_with_offset(view, dx, dy).click().perform()
        wait(browser, "the four vertices", lambda d: len(css_all(d, "#overlay circle.draft-pt")) == 4)
        css(browser, "#finish").click()
        wait(browser, "the new zone in the list", lambda d: css_all(d, '#zone-list button[data-zone-id="gate"]'))
        css(browser, "#save").click()
        wait(browser, "saved", lambda d: css(d, "#status").get_attribute("data-state") == "saved")
        assert css(browser, "#status").text.startswith("Saved")
        assert not css(browser, "#error").is_displayed()
        screenshot(browser, "console-editor.png")

        text = zones.read_text()
        assert "# Zones of the demo camera" in text  # the server kept the file's comments
        assert "# the scripted event" in text
        saved = yaml.safe_load(text)
        original = yaml.safe_load(server.original)
        gate = next(z for z in saved["zones"] if z["id"] == "gate")
        assert gate["name"] == "Gate"
        expected = [((w / 2 + dx) / w, (h / 2 + dy) / h) for dx, dy in offsets]
        assert len(gate["polygon"]) == 4
        for (x, y), (ex, ey) in zip(gate["polygon"], expected):
            assert abs(x - ex) < 0.01 and abs(y - ey) < 0.01, (gate["polygon"], expected)
        assert [z for z in saved["zones"] if z["id"] != "gate"] == original["zones"]  # the undone drag
        assert saved["rules"] == original["rules"] and saved["calibration"] == original["calibration"]
        assert_clean_console(browser)

    def test_a_wrong_edit_shows_the_server_error(self, browser, server, zones):
        self.open_editor(server, browser)
        css(browser, "#rule-0 summary").click()
        field = css(browser, "#rule-0-min_overlap")
        assert field.get_attribute("value") == "0.05"
        field.clear()
        field.send_keys("5")
        css(browser, "#save").click()
        error = css(browser, "#error")
        wait(browser, "the error", lambda d: error.is_displayed() and error.text)
        # the server's own words, verbatim
        edited = yaml.safe_load(server.original)
        edited["rules"][0]["min_overlap"] = 5
        status, body = server.request(f"/api/cameras/{CAMERA}/zones", json.dumps(edited).encode(), "PUT")
        assert status == 422
        assert error.text == json.loads(body)["error"]
        assert "min_overlap" in error.text
        assert zones.read_bytes() == server.original  # nothing written
        # the edit stays in the page, marked
        assert css(browser, "#rule-0-min_overlap").get_attribute("value") == "5"
        assert css(browser, "#rule-0-min_overlap").get_attribute("aria-invalid") == "true"
        assert css(browser, "#status").get_attribute("data-state") == "error"

        # a self-crossing polygon: swap two vertices of the demo zone by dragging one across
        from selenium.webdriver.common.action_chains import ActionChains

        field = css(browser, "#rule-0-min_overlap")
        field.clear()
        field.send_keys("0.05")
        css(browser, '#zone-list button[data-zone-id="worker-area"]').click()
        v0 = css(browser, '#overlay circle.vertex[data-vertex="0"]')
        v1 = css(browser, '#overlay circle.vertex[data-vertex="1"]')
        v3 = css(browser, '#overlay circle.vertex[data-vertex="3"]')
        # vertex 0 (bottom left) to beyond vertex 1 (bottom right), level with vertex 3: the edges cross
        dx = v1.rect["x"] - v0.rect["x"] + 30
        dy = v3.rect["y"] - v0.rect["y"] + 40
        ActionChains(browser).click_and_hold(v0).move_by_offset(dx // 2, dy // 2).move_by_offset(
            dx - dx // 2, dy - dy // 2).release().perform()
        css(browser, "#save").click()
        wait(browser, "the polygon error", lambda d: error.text.startswith("zones[0].polygon"))
        assert "self-intersecting" in error.text
        assert zones.read_bytes() == server.original
        assert_clean_console(browser, expected=(self.PUT_422,))  # the two answers shown above


class TestSiteControlsPanel:
    """Filters, ignore regions and the schedule edited as JSON in the camera page, saved by the server's checks."""

    @pytest.fixture
    def server(self, edit_server):
        return edit_server

    def test_edit_site_controls_and_save(self, browser, server):
        server.zones.write_bytes(server.original)
        TestEditor.open_editor(None, server, browser)
        box = css(browser, "#controls")
        assert json.loads(box.get_attribute("value")) == {}
        controls = {"filters": {"worker": {"min_score": 0.5}},
                    "ignore": [{"id": "cones", "polygon": [[0.05, 0.8], [0.2, 0.8], [0.2, 0.95], [0.05, 0.95]]}],
                    "schedule": {"timezone": "Europe/Berlin", "windows": [{"days": "weekdays", "start": "06:30",
                                                                           "end": "19:00"}]}}
        browser.execute_script("arguments[0].value = arguments[1]", box, json.dumps(controls))
        css(browser, "#apply-controls").click()
        wait(browser, "the ignore region drawn", lambda d: css_all(d, '#overlay polygon.ignore[data-ignore="cones"]'))
        css(browser, "#save").click()
        wait(browser, "saved", lambda d: css(d, "#status").get_attribute("data-state") == "saved")
        saved = yaml.safe_load(server.zones.read_text())
        assert saved["filters"] == controls["filters"] and saved["ignore"][0]["id"] == "cones"
        assert saved["schedule"]["windows"][0]["days"] == ["mon", "tue", "wed", "thu", "fri"] or \
            saved["schedule"]["windows"][0]["days"] == "weekdays"
        assert "# Zones of the demo camera" in server.zones.read_text()  # comments kept
        # a wrong value: the server's error names the field and the box is marked
        bad = dict(controls, filters={"worker": {"min_score": 5}})
        browser.execute_script("arguments[0].value = arguments[1]", css(browser, "#controls"), json.dumps(bad))
        css(browser, "#apply-controls").click()
        css(browser, "#save").click()
        error = css(browser, "#error")
        wait(browser, "the error", lambda d: error.is_displayed() and "filters.worker.min_score" in error.text)
        assert "invalid" in css(browser, "#controls").get_attribute("class")
        assert yaml.safe_load(server.zones.read_text())["filters"] == controls["filters"]  # nothing written
