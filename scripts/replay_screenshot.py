"""The README's picture of a replay report: docs/replay-report.png.

Makes a scripted site clip (excavator_swing, seed 7, the demo's scene), replays it with configs/demo.yaml's model
and the demo camera's zones, a what-if (the issue's `--set rules.machine-near-worker.max_distance=5`, and a longer
debounce of the intrusion) and the clip's ground truth, then takes a headless-Chromium screenshot of the report's
top. Everything but the PNG lives in a temporary folder (--keep DIR keeps clip, config and report there).

    .venv/bin/python scripts/replay_screenshot.py [--seconds 14] [--out docs/replay-report.png] [--keep DIR]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout's maskwatch, installed or not

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WHAT_IF = ["rules.machine-near-worker.max_distance=5", "rules.machine-in-worker-area.min_duration_s=1.0"]


def make_report(work: Path, seconds: float) -> Path:
    from maskwatch.scenes.clip import write_clip

    clip = work / "clip"
    if not (clip / "events.json").is_file():
        write_clip("site", 7, seconds, clip, scenario="excavator_swing")
    cfg = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    cfg["model"]["path"] = str(ROOT / "models" / "maskwatch-demo-seg.onnx")
    (cam,) = cfg["cameras"]
    cam.update(source=str(clip / "video.mp4"), zones=str(ROOT / "configs" / "zones" / "site-demo.yaml"))
    cfg["alerts"] = {"jsonl": str(work / "never" / "alerts.jsonl"), "outbox": str(work / "never" / "outbox.sqlite")}
    config = work / "demo.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    report = work / "replay.html"
    cmd = [sys.executable, "-m", "maskwatch", "replay", str(config), "--report", str(report),
           "--gt", str(clip / "events.json")]
    for s in WHAT_IF:
        cmd += ["--set", s]
    subprocess.run(cmd, check=True, cwd=ROOT)
    return report


def screenshot(report: Path, out: Path, width: int = 1280, height: int = 1500) -> int:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        drv.get(report.resolve().as_uri())
        time.sleep(0.5)
        png = drv.get_screenshot_as_png()
    finally:
        drv.quit()
    try:  # a palette PNG is a third of the size
        from PIL import Image

        with Image.open(io.BytesIO(png)) as im:
            buf = io.BytesIO()
            im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
                buf, "PNG", optimize=True)
            png = buf.getvalue()
    except ImportError:
        pass
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png)
    return len(png)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=14.0, help="clip length (the intrusion runs from 7.1 s)")
    p.add_argument("--out", default=str(ROOT / "docs" / "replay-report.png"))
    p.add_argument("--keep", metavar="DIR", help="keep clip, config and report in DIR")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="maskwatch-replay-shot-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        report = make_report(work, args.seconds)
        size = screenshot(report, Path(args.out))
    print(f"wrote {args.out} ({size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
