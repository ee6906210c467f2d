"""The console's HTTP app (FastAPI): JSON API, live views, /metrics, /healthz, and the pages that use them.

The API is the contract; the pages (``static/``) are thin clients of it. Paths:

    GET  /api/cameras                      every camera: id, redacted source, status, figures, active alerts
    GET  /api/cameras/{id}/frame.jpg       latest frame, annotated (?raw=1: without overlays)
    GET  /api/cameras/{id}/stream.mjpg     the same as an MJPEG stream, at most web.preview_fps
    GET  /api/cameras/{id}/zones           the camera's zone file as JSON
    PUT  /api/cameras/{id}/zones           replace it (JSON body): 200 + the stored file, 422 {"error": ...}, 413
    GET  /api/alerts?camera=&rule=&severity=&limit=   recent alert events, newest first
    GET  /api/snapshots/{name}             an alert's snapshot, by the name a recent alert gave it
    GET  /api/clips/{name}                 an alert's clip (MP4), by the name a recent alert's end gave it
    GET  /api/health                       the /metrics figures as JSON, and the health verdict
    GET  /healthz                          200 while every stage runs, 503 and the reason once one failed
    GET  /metrics                          Prometheus text format
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import threading
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles

from maskwatch import __version__
from maskwatch.pipeline.metrics import CONTENT_TYPE
from maskwatch.zones import ZoneFileError

from . import zonefile
from .backend import Backend
from .preview import Previews

log = logging.getLogger(__name__)
STATIC = Path(str(resources.files(__package__) / "static"))
MAX_BODY = 1 << 20  # a zone file is a few kB; 1 MiB is generous
COOKIE = "maskwatch_session"
PAGES = {"/": "index.html", "/alerts": "alerts.html", "/health": "health.html"}
PUBLIC = ("/login", "/static/app.css")  # reachable without a token (the login page and its style)


def session_value(token: str) -> str:
    """The cookie a login sets: derived from the token, so the token itself is never stored in the browser."""
    return hmac.new(token.encode(), b"maskwatch-console-session", hashlib.sha256).hexdigest()


class TokenAuth:
    """Every request needs the token: ``Authorization: Bearer <token>``, or the cookie a login set. Compared in
    constant time. Without either: 401 (a page request gets the login form with it)."""

    def __init__(self, app, token: str, secure_cookie: bool) -> None:
        self.app = app
        self.token = token.encode()
        self.session = session_value(token).encode()
        self.secure_cookie = secure_cookie

    def _authorized(self, scope) -> bool:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and hmac.compare_digest(auth[7:].strip().encode(), self.token):
            return True
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and hmac.compare_digest(value.encode(), self.session):
                return True
        return False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in PUBLIC or self._authorized(scope):
            return await self.app(scope, receive, send)
        accept = dict(scope.get("headers", [])).get(b"accept", b"").decode("latin-1")
        if "text/html" in accept:
            response: Response = HTMLResponse((STATIC / "login.html").read_text(), status_code=401)
        else:
            response = JSONResponse({"error": "authentication required (Authorization: Bearer <token>)"},
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


def create_app(backend: Backend, *, token: str | None = None, preview_fps: float = 5.0, jpeg_quality: int = 80,
               secure_cookie: bool = False) -> FastAPI:
    app = FastAPI(title="maskwatch console", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    previews = Previews(backend, jpeg_quality)
    app.state.backend = backend
    app.state.previews = previews
    app.state.closing = threading.Event()  # set by the server before it stops: live streams end first
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def camera_or_404(cid: str) -> str:
        if cid not in backend.camera_ids():  # ids come from the config; the request's id is only compared
            raise HTTPException(404, f"no camera {cid!r}")
        return cid

    # -- pages --------------------------------------------------------------------------------------------
    for path, page in PAGES.items():
        app.add_api_route(path, lambda page=page: FileResponse(STATIC / page, media_type="text/html"),
                          methods=["GET"], include_in_schema=False)

    @app.get("/cameras/{cid}", include_in_schema=False)
    def camera_page(cid: str):
        camera_or_404(cid)
        return FileResponse(STATIC / "camera.html", media_type="text/html")

    @app.get("/login", include_in_schema=False)
    def login_page():
        return FileResponse(STATIC / "login.html", media_type="text/html")

    @app.post("/login", include_in_schema=False)
    async def login(request: Request):
        if not token:
            return RedirectResponse("/", status_code=303)
        body = (await request.body())[:4096].decode("utf-8", "replace")
        from urllib.parse import parse_qs

        given = (parse_qs(body).get("token") or [""])[0]
        if not hmac.compare_digest(given.encode(), token.encode()):
            return HTMLResponse((STATIC / "login.html").read_text().replace("<!--error-->", "wrong token"),
                                status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, session_value(token), httponly=True, samesite="strict", secure=secure_cookie,
                            path="/")
        return response

    # -- API ----------------------------------------------------------------------------------------------
    @app.get("/api/cameras")
    def cameras():
        return {"mode": backend.mode, "version": __version__,
                "classes": sorted(set(backend.names.values())),
                "cameras": [backend.camera(cid) for cid in backend.camera_ids()]}

    @app.get("/api/cameras/{cid}/frame.jpg")
    async def frame(cid: str, raw: int = 0):
        camera_or_404(cid)
        got = await run_in_threadpool(previews.jpeg, cid, bool(raw))
        if got is None:
            raise HTTPException(503, "no frame yet")
        return Response(got[1], media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/api/cameras/{cid}/stream.mjpg")
    async def stream(cid: str, request: Request, raw: int = 0):
        camera_or_404(cid)
        period = 1.0 / preview_fps

        async def parts():
            sent = None
            loop = asyncio.get_running_loop()
            while not app.state.closing.is_set() and not await request.is_disconnected():
                t0 = loop.time()
                got = await run_in_threadpool(previews.jpeg, cid, bool(raw))
                if got is not None and got[0] != sent:
                    sent = got[0]
                    yield (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(got[1])).encode()
                           + b"\r\n\r\n" + got[1] + b"\r\n")
                await asyncio.sleep(max(0.0, period - (loop.time() - t0)))

        return StreamingResponse(parts(), media_type="multipart/x-mixed-replace; boundary=frame",
                                 headers={"Cache-Control": "no-store"})

    @app.get("/api/cameras/{cid}/zones")
    def get_zones(cid: str):
        camera_or_404(cid)
        path = backend.zone_path(cid)
        if path is None:
            raise HTTPException(404, f"camera {cid!r} has no zone file (set cameras[].zones in the config)")
        try:
            return zonefile.read_plain(path)
        except (OSError, ValueError) as exc:
            raise HTTPException(500, f"cannot read the zone file: {exc}") from None

    @app.put("/api/cameras/{cid}/zones")
    async def put_zones(cid: str, request: Request):
        camera_or_404(cid)
        path = backend.zone_path(cid)
        if path is None:
            return JSONResponse({"error": f"camera {cid!r} has no zone file (set cameras[].zones in the config)"},
                                status_code=409)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
            return JSONResponse({"error": f"body: larger than {MAX_BODY} bytes"}, status_code=413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return JSONResponse({"error": f"body: larger than {MAX_BODY} bytes"}, status_code=413)
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return JSONResponse({"error": f"body: expected a JSON zone file ({exc})"}, status_code=422)
        if not _finite(data):
            return JSONResponse({"error": "body: numbers must be finite"}, status_code=422)
        names = set(backend.names.values()) or None
        try:
            await run_in_threadpool(zonefile.save, path, data, names)
        except ZoneFileError as exc:
            field = f"{exc.field}: " if exc.field else ""
            return JSONResponse({"error": f"{field}{exc.message}"}, status_code=422)
        log.info("camera %s: zone file saved from the console: %s", cid, path)
        return {"zones": zonefile.read_plain(path)}

    @app.get("/api/alerts")
    def alerts(camera: str | None = None, rule: str | None = None, severity: str | None = None, limit: int = 100):
        limit = max(1, min(limit, 1000))
        out = []
        for ev in reversed(backend.alerts()):
            if (camera and ev.get("camera") != camera) or (rule and ev.get("rule") != rule) \
                    or (severity and ev.get("severity") != severity):
                continue
            ev = dict(ev)
            snap = (ev.get("extra") or {}).get("snapshot")
            if snap:
                ev["snapshot_url"] = f"/api/snapshots/{Path(snap).name}"
                ev["extra"] = {k: v for k, v in ev["extra"].items() if k != "snapshot"}  # no server paths
            clip = (ev.get("extra") or {}).get("clip")
            if clip:
                if Path(clip).is_file():  # it appears about post_s after the end (and may be deleted by max_gb)
                    ev["clip_url"] = f"/api/clips/{Path(clip).name}"
                ev["extra"] = {k: v for k, v in ev["extra"].items() if k != "clip"}
            verdict = backend.verdict(ev.get("id", ""))
            if verdict:
                ev["feedback"] = verdict
            out.append(ev)
            if len(out) >= limit:
                break
        return {"alerts": out}

    @app.post("/api/alerts/{alert_id}/{verdict}")
    def feedback(alert_id: str, verdict: str):
        """Mark an alert acknowledged (``ack``) or a false positive (``false_positive``); the last mark wins."""
        if verdict not in ("ack", "false_positive"):
            raise HTTPException(404, "expected /ack or /false_positive")
        try:
            backend.feedback(alert_id, verdict)
        except KeyError as exc:
            raise HTTPException(404, str(exc).strip("'")) from None
        except NotImplementedError:
            raise HTTPException(409, f"no alerts in {backend.mode} mode") from None
        return {"id": alert_id, "feedback": verdict}

    @app.get("/api/snapshots/{name}")
    def snapshot(name: str):
        path = backend.snapshot(name)
        if path is None or not path.is_file():
            raise HTTPException(404, "no such snapshot")
        return FileResponse(path, media_type="image/jpeg")

    @app.get("/api/clips/{name}")
    def clip(name: str):
        path = backend.clip(name)
        if path is None or not path.is_file():
            raise HTTPException(404, "no such clip")
        return FileResponse(path, media_type="video/mp4")

    @app.get("/api/health")
    def health():
        ok, reason = backend.health()
        families = []
        for fam in backend.registry.collect():
            families.append({"name": fam.name, "type": fam.type, "help": fam.documentation,
                             "samples": [{"name": s.name, "labels": s.labels, "value": s.value}
                                         for s in fam.samples if math.isfinite(s.value)]})
        return {"ok": ok, "reason": reason, "mode": backend.mode, "metrics": families}

    @app.get("/healthz")
    def healthz():
        ok, reason = backend.health()
        return Response(("ok" if ok else reason) + "\n", status_code=200 if ok else 503, media_type="text/plain")

    @app.get("/metrics")
    def metrics():
        return Response(backend.metrics_text(), media_type=CONTENT_TYPE)

    if token:
        app.add_middleware(TokenAuth, token=token, secure_cookie=secure_cookie)
    return app


def _finite(v) -> bool:
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, dict):
        return all(_finite(x) for x in v.values())
    if isinstance(v, list):
        return all(_finite(x) for x in v)
    return True
