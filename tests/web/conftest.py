"""Fixtures for the console tests: a real pipeline (or preview backend) served on a free loopback port."""

from __future__ import annotations

import contextlib
from pathlib import Path

import httpx

from maskwatch.pipeline.config import load_config
from maskwatch.pipeline.factory import build_segmenter
from maskwatch.pipeline.stages import Pipeline
from maskwatch.web.backend import PipelineBackend
from maskwatch.web.server import start_console
from tests.pipeline.conftest import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
DEMO_MODEL = ROOT / "models" / "maskwatch-demo-seg.onnx"

__all__ = ["Served", "serve_pipeline", "free_port", "wait_for", "DEMO_MODEL"]


class Served:
    def __init__(self, pipe: Pipeline, console) -> None:
        self.pipe = pipe
        self.console = console
        self.base = console.url.rstrip("/")

    def get(self, path: str, **kw) -> httpx.Response:
        return httpx.get(self.base + path, timeout=30, **kw)

    def put(self, path: str, **kw) -> httpx.Response:
        return httpx.put(self.base + path, timeout=30, **kw)


@contextlib.contextmanager
def serve_pipeline(config: Path, *, loop: bool = False, wrap=None, start: bool = True, web: dict | None = None):
    """A Pipeline for ``config`` with its console on a free loopback port; stopped and joined on exit.
    ``wrap``: a function of the segmenter that returns the one to run (a failing one, say)."""
    cfg = load_config(config)
    cfg.web.listen = f"127.0.0.1:{free_port()}"
    for k, v in (web or {}).items():
        setattr(cfg.web, k, v)
    seg = build_segmenter(cfg.model, config, cfg.tracker)
    pipe = Pipeline(cfg, wrap(seg) if wrap is not None else seg, loop=loop)
    console = start_console(PipelineBackend(pipe), cfg.web, explicit=True, file=config)
    assert console is not None
    try:
        if start:
            pipe.start()
        yield Served(pipe, console)
    finally:
        if start:
            pipe.request_stop()  # a file that loops never ends by itself
            pipe.wait()
        console.stop()
