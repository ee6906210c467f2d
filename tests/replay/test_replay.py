"""``maskwatch replay`` (issue 24): a scripted site clip replayed with the bundled demo model and the demo camera's
zones, a what-if variant and the clip's ground truth; the report's rows, its figures, that nothing is published, the
``--set`` errors, and the report in headless Chromium (the ``driver`` fixture of tests/conftest.py, shared with the
web console's browser tests: a missing browser fails, never skips)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from maskwatch.cli import main
from maskwatch.replay.run import AlertRecord, apply_sets, rule_stats
from tests.conftest import assert_clean_console

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "maskwatch-demo-seg.onnx"
INTRUSION = "machine-in-worker-area"  # the clip's scripted event: from 7.13 s to the end of the 9 s clip (seed 7)
PROXIMITY = "machine-near-worker"
CROWDING = "crowding"
# the what-if: the intrusion must hold 5 s before it alerts, which the clip's 1.9 s of intrusion never does
WHAT_IF = [f"rules.{INTRUSION}.min_duration_s=5", f"rules.{PROXIMITY}.max_distance=5"]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict:
    """A 9 s scripted `site` clip (excavator_swing, seed 7) and configs/demo.yaml pointed at it, the model and tmp
    paths for everything the config would publish to."""
    from maskwatch.scenes.clip import write_clip

    if not MODEL.is_file():
        pytest.fail(f"the demo model is missing: {MODEL}")
    root = tmp_path_factory.mktemp("replay")
    clip = root / "clip"
    write_clip("site", 7, 9.0, clip, scenario="excavator_swing")
    cfg = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    zones = root / "site-demo.yaml"
    zones.write_bytes((ROOT / "configs" / "zones" / "site-demo.yaml").read_bytes())
    cfg["model"]["path"] = str(MODEL)
    (cam,) = cfg["cameras"]
    cam.update(source=str(clip / "video.mp4"), zones=str(zones))
    published = {"jsonl": root / "out" / "alerts.jsonl", "outbox": root / "out" / "outbox.sqlite",
                 "snapshots": root / "out" / "snapshots"}
    cfg["alerts"] = {"jsonl": str(published["jsonl"]), "outbox": str(published["outbox"]),
                     "snapshots": {"dir": str(published["snapshots"])}}
    config = root / "demo.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return {"root": root, "clip": clip, "config": config, "zones": zones, "published": published,
            "gt": json.loads((clip / "events.json").read_text())}


@pytest.fixture(scope="module")
def replayed(site) -> dict:
    """``maskwatch replay`` as users run it (a subprocess): the rules as they are, the what-if and the ground truth."""
    report = site["root"] / "report" / "replay.html"
    cmd = [sys.executable, "-m", "maskwatch", "replay", str(site["config"]),
           "--source", str(site["clip"] / "video.mp4"), "--report", str(report), "--gt", str(site["clip"] / "events.json")]
    for s in WHAT_IF:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, cwd=site["root"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"proc": proc, "report": report, "html": report.read_text(), "doc": parse(report.read_text())}


# -- a small reader of the report's marked elements ------------------------------------------------------------------
class _Elements(HTMLParser):
    """Every element with a ``class``: (tag, attributes, its text), nested text included."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[dict] = []
        self._open: list[tuple[str, dict | None]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        el = {"tag": tag, "attrs": a, "classes": set((a.get("class") or "").split()), "text": ""} if "class" in a \
            else None
        if el is not None:
            self.elements.append(el)
        if tag not in ("img", "br", "meta", "link", "input"):  # void elements: no end tag
            self._open.append((tag, el))

    def handle_startendtag(self, tag, attrs):
        a = dict(attrs)
        if "class" in a:
            self.elements.append({"tag": tag, "attrs": a, "classes": set(a["class"].split()), "text": ""})

    def handle_endtag(self, tag):
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i][0] == tag:
                del self._open[i:]
                break

    def handle_data(self, data):
        for _, el in self._open:
            if el is not None:
                el["text"] += data


def parse(html: str) -> list[dict]:
    p = _Elements()
    p.feed(html)
    return p.elements


def find(doc: list[dict], cls: str, **attrs) -> list[dict]:
    return [e for e in doc if cls in e["classes"]
            and all(e["attrs"].get(k.replace("_", "-")) == v for k, v in attrs.items())]


# -- the report --------------------------------------------------------------------------------------------------
def test_report_holds_the_alert_rows_and_the_ground_truth_row(replayed, site):
    doc = replayed["doc"]
    rows = {(e["attrs"]["data-rule"], e["attrs"]["data-row"]): int(e["attrs"]["data-count"])
            for e in find(doc, "timeline-row")}
    # a row per variant for every rule of the zone file, and the ground truth's row where the clip scripts the rule
    assert set(rows) == {(r, v) for r in (INTRUSION, PROXIMITY, CROWDING) for v in ("baseline", "what-if")} | {
        (INTRUSION, "ground-truth")}, sorted(rows)
    assert rows[(INTRUSION, "ground-truth")] == len(site["gt"]["intervals"]) == 1
    assert rows[(INTRUSION, "baseline")] >= 1  # the scripted intrusion, found (below)
    assert rows[(INTRUSION, "what-if")] == 0  # 5 s of debounce: never
    gt_bars = [e["attrs"]["data-gt-id"] for e in doc if "data-gt-id" in e["attrs"]]
    assert gt_bars == [iv["id"] for iv in site["gt"]["intervals"]]
    # one listed alert (with its thumbnail) for every bar, per rule and variant
    for (rule, row), n in rows.items():
        if row != "ground-truth":
            listed = find(doc, "alert-row", data_rule=rule, data_variant=row)
            assert len(listed) == n, (rule, row, n, len(listed))
    gt_start = site["gt"]["intervals"][0]["start_pts_s"]
    listed = find(doc, "alert-row", data_rule=INTRUSION, data_variant="baseline")
    starts = [float(re.search(r"([\d.]+) to [\d.]+ s", a["text"]).group(1)) for a in listed]
    k = min(range(len(starts)), key=lambda i: abs(starts[i] - gt_start))
    alert = listed[k]
    assert abs(starts[k] - gt_start) <= 0.4, alert["text"]
    assert "excavator #" in alert["text"] and "critical" in alert["text"], alert["text"]
    bars = [e for e in doc if e["attrs"].get("data-alert-id") == alert["attrs"]["data-alert-id"] and e["tag"] == "rect"]
    assert len(bars) == 1 and bars[0]["attrs"]["fill"] == "#dc2626"  # critical red


def test_rules_table_shows_the_variants_side_by_side(replayed):
    doc = replayed["doc"]

    def cells(rule: str, variant: str) -> list[str]:
        (row,) = find(doc, "rule-row", data_rule=rule, data_variant=variant)
        return row["text"]

    base, what_if = cells(INTRUSION, "baseline"), cells(INTRUSION, "what-if")
    assert "1.000" in base and "0.000" in what_if, (base, what_if)  # recall 1 against 0
    for rule in (PROXIMITY, CROWDING):
        assert "no ground truth" in cells(rule, "baseline")
    html = replayed["html"]
    for s in WHAT_IF:
        assert f"--set {s}" in html
    # figures of the run: frames, detections per class, tracks, fps
    run = find(doc, "run-figures")[0]["text"]
    assert "frames analysed135" in run and "frames/s" in run and "inference" in run, run
    classes = find(doc, "class-figures")[0]["text"]
    for name in ("worker", "excavator", "tracks, baseline", "tracks, what-if"):
        assert name in classes, classes


def test_occupancy_is_a_plot_per_zone(replayed):
    doc = replayed["doc"]
    plots = find(doc, "plot", data_zone="worker-area")
    # only rules change in the what-if: one plot serves both variants
    assert [p["attrs"]["data-variant"] for p in plots] == ["baseline what-if"]
    svg = re.search(r'<figure class="plot" data-zone="worker-area"[^>]*>(<svg.*?</svg>)', replayed["html"], re.S)
    assert svg, "the plot is an inline SVG"
    assert ">worker<" in svg.group(1) and "<path" in svg.group(1)  # the legend names the class; the step line


def test_the_report_is_self_contained(replayed):
    html = replayed["html"]
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html, re.I), "the report must not load from the web"
    assert "<script" not in html and 'rel="stylesheet"' not in html
    images = re.findall(r'<img src="([^"]+)"', html)
    assert images and all(src.startswith("data:image/jpeg;base64,") for src in images)
    assert all(base64.b64decode(src.split(",", 1)[1])[:3] == b"\xff\xd8\xff" for src in images)  # JPEG


def test_the_summary_and_nothing_published(replayed, site):
    out = replayed["proc"].stdout
    lines = out.splitlines()
    counts = {ln.split()[0]: ln.split()[1:] for ln in lines if ln.startswith("  ") and len(ln.split()) == 3}
    assert int(counts[INTRUSION][0]) >= 1 and counts[INTRUSION][1] == "0" and counts[CROWDING] == ["0", "0"], out
    assert re.search(rf"{INTRUSION} baseline: recall 1\.000  precision (1\.000|0\.500)  \(1 of 1 ground truth, "
                     rf"{counts[INTRUSION][0]} predicted\)  start latency s \[", out), out
    assert re.search(rf"{INTRUSION} what-if: recall 0\.000  precision 1\.000  \(0 of 1 ground truth, 0 predicted\)",
                     out), out
    assert lines[-1] == f"report: {replayed['report'].resolve()}"
    for what, path in site["published"].items():
        assert not path.exists(), f"replay published to {what}: {path}"


def test_the_report_renders_in_chromium(replayed, driver):
    driver.get_log("browser")
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(replayed["report"].resolve().as_uri())
    # the shared driver returns at DOMContentLoaded (live pages never finish loading): wait for the images
    WebDriverWait(driver, 30, poll_frequency=0.1).until(
        lambda d: d.execute_script("return document.readyState") == "complete", message="the report did not load")
    figures = driver.execute_script("""
        const imgs = [...document.images];
        return {
          images: imgs.length,
          loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
          timelines: [...document.querySelectorAll('svg.timeline')].map(s => s.getBoundingClientRect().width),
          bars: document.querySelectorAll('svg.timeline rect.bar').length,
          plots: [...document.querySelectorAll('figure.plot svg')].map(s => s.getBoundingClientRect().height),
          resources: performance.getEntriesByType('resource').map(r => r.name),
        };""")
    assert figures["images"] > 0 and figures["loaded"] == figures["images"], figures
    assert len(figures["timelines"]) == 3 and min(figures["timelines"]) > 500, figures
    assert figures["bars"] >= 3 and figures["plots"] and min(figures["plots"]) > 100, figures
    assert not [r for r in figures["resources"] if not r.startswith("data:")], figures["resources"]
    assert_clean_console(driver)


# -- options and their errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("option, expected", [
    ("model.conf=0.5", "model.* cannot change in a what-if"),
    ("rules.nope.min_overlap=0.2", "unknown rule 'nope', expected one of"),
    (f"rules.{INTRUSION}.min_overlap=2", "rules[0].min_overlap: Input should be less than or equal to 1"),
    (f"rules.{INTRUSION}.id=other", "id names it in both variants"),
    (f"rules.{PROXIMITY}.max_distance=[1", "VALUE is not valid YAML"),
    ("zones.worker-area.polygon=[[0, 0], [1, 1]]", "polygon needs at least 3 points"),
    ("tracker.low_conf=high", "tracker.low_conf: Input should be a valid number"),
    ("tracker.nope=1", "expected tracker.<field>"),
    (f"rules.{INTRUSION}", "expected PATH=VALUE"),
    ("colour=red", "unknown PATH 'colour'"),
])
def test_a_bad_set_exits_2_naming_the_option(site, capsys, option, expected):
    report = site["root"] / "never.html"
    rc = main(["replay", str(site["config"]), "--report", str(report), "--set", f"rules.{PROXIMITY}.max_distance=4",
               "--set", option])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith(f"maskwatch: error: --set {option}: "), err
    assert expected in err[0], err
    assert not report.exists()


def test_camera_and_files_are_checked(site, tmp_path, capsys):
    cfg = yaml.safe_load(site["config"].read_text())
    cfg["cameras"].append({**cfg["cameras"][0], "id": "gate"})
    two = tmp_path / "two.yaml"
    two.write_text(yaml.safe_dump(cfg))
    report = tmp_path / "r.html"
    cases = [
        (["replay", str(two), "--report", str(report)], "--camera: the config has 2 cameras"),
        (["replay", str(two), "--camera", "north", "--report", str(report)], "--camera: unknown camera 'north'"),
        (["replay", str(site["config"]), "--source", str(tmp_path / "no.mp4"), "--report", str(report)],
         "--source: video file not found"),
        (["replay", str(site["config"]), "--source", "rtsp://cam/stream", "--report", str(report)],
         "--source: replay runs on a recorded file"),
        (["replay", str(site["config"]), "--zones", str(tmp_path / "no.yaml"), "--report", str(report)],
         "--zones: zone file not found"),
        (["replay", str(site["config"]), "--gt", str(tmp_path / "no.json"), "--report", str(report)],
         "--gt: file not found"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], (argv, err)
    assert not report.exists()


def test_sets_make_one_validated_variant(site):
    from maskwatch.pipeline.config import TrackerConfig

    doc = yaml.safe_load(site["zones"].read_text())
    zf, tracker = apply_sets([f"rules.{PROXIMITY}.max_distance=5", "tracker.min_hits=3",
                              "zones.worker-area.name=Pit", f"rules.{INTRUSION}.enabled=false"],
                             doc, site["zones"], TrackerConfig())
    rules = {r.id: r for r in zf.rules}
    assert rules[PROXIMITY].max_distance == 5.0 and rules[INTRUSION].enabled is False
    assert zf.zone("worker-area").name == "Pit" and tracker.min_hits == 3
    assert next(r for r in doc["rules"] if r["id"] == PROXIMITY)["max_distance"] == 3.0  # the baseline is untouched


def _alert(start: float, end: float, key=(1,), open_at_end: bool = False) -> AlertRecord:
    return AlertRecord(f"a{start}", "r", "intrusion", "z", "warning", int(start * 15), start, int(end * 15), end,
                       key=key, open_at_end=open_at_end)


def test_rule_figures_and_flapping():
    alerts = [
        _alert(0.0, 1.5),              # short: flapping
        _alert(5.0, 10.0),             # long, fine
        _alert(11.5, 16.0),            # the same object again 1.5 s after its end, within 2 x clear_after_s: flapping
        _alert(12.0, 15.0, key=(2,)),  # another object: fine
        _alert(30.0, 31.0, key=(3,), open_at_end=True),  # short only because the footage ended: fine
    ]
    st = rule_stats(alerts, clear_after_s=1.0)
    assert st["alerts"] == 5
    assert st["shortest_s"] == 1.0 and st["longest_s"] == 5.0
    assert st["active_s"] == pytest.approx(1.5 + 5.0 + 4.5 + 1.0)  # union: 11.5-16 covers 12-15
    assert set(st["flapping_ids"]) == {"a0.0", "a11.5"}, st["flapping_ids"]
    assert st["flapping"] == 2
    assert rule_stats(alerts, clear_after_s=0.5)["flapping"] == 1  # 1.5 s is beyond 2 x 0.5 s
    assert rule_stats([], 1.0) == {"alerts": 0, "active_s": 0.0, "shortest_s": None, "longest_s": None,
                                   "flapping": 0, "flapping_ids": {}}


def test_alerts_overlapping_in_time_get_lanes(replayed):
    """Concurrent alerts of a rule (proximity: one per machine-worker pair) are drawn one above the other."""
    overlapping = 0
    for row in re.findall(r'<g class="timeline-row"(.*?)</g>', replayed["html"], re.S):
        bars = [(float(x), float(x) + float(w), float(y)) for x, y, w in
                re.findall(r'<rect class="bar"[^>]* x="([\d.]+)" y="([\d.]+)" width="([\d.]+)"', row)]
        for i, a in enumerate(bars):
            for b in bars[:i]:
                if a[0] < b[1] and b[0] < a[1]:
                    overlapping += 1
                    assert a[2] != b[2], (row[:120], a, b)
    assert overlapping >= 1  # the clip has concurrent proximity alerts (two workers near the excavator)


def test_replay_shows_what_filters_and_ignore_regions_removed(site, tmp_path):
    """A zone file with an ignore region over the worker area and a score filter: the report counts the removed
    detections per class and reason and shows a frame of each, and the intrusion no longer fires (the
    excavator's arm inside the region is removed before the tracker)."""
    zones = yaml.safe_load(site["zones"].read_text())
    area = next(z for z in zones["zones"] if z["id"] == "worker-area")
    zones["ignore"] = [{"id": "area", "polygon": area["polygon"], "classes": ["excavator"], "min_overlap": 0.05}]
    zones["filters"] = {"worker": {"min_score": 0.99}}
    filtered = tmp_path / "filtered.yaml"
    filtered.write_text(yaml.safe_dump(zones))
    report = tmp_path / "report.html"
    proc = subprocess.run([sys.executable, "-m", "maskwatch", "replay", str(site["config"]), "--source",
                           str(site["clip"] / "video.mp4"), "--zones", str(filtered), "--report", str(report)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = report.read_text()
    assert 'id="filtered"' in text and "ignore:area" in text and "min_score" in text
    counts = {(m.group(1), m.group(2)): int(m.group(3)) for m in re.finditer(
        r'<tr><td class="l">(\w+)</td><td class="">([\w:]+)</td><td class="">(\d+)</td></tr>', text)}
    assert counts[("excavator", "ignore:area")] > 0 and counts[("worker", "min_score")] > 0, counts
    assert len(re.findall(r'alt="\w+ removed: [\w:]+"', text)) >= 2
    line = next(ln for ln in proc.stdout.splitlines() if ln.strip().startswith(INTRUSION))
    assert line.split()[-1] == "0", proc.stdout  # the intrusion is gone with the excavator's arm
    assert "removed before the tracker (baseline): " in proc.stdout and "excavator ignore:area" in proc.stdout
