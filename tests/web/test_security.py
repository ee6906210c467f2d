"""The console's security: tokens off loopback, every endpoint behind it, snapshot names looked up, no secrets."""

from __future__ import annotations

import ssl
import subprocess
import sys

import httpx
import pytest
import yaml

from tests.conftest import write_clip, write_config
from tests.pipeline.conftest import free_port
from tests.web.conftest import serve_pipeline, wait_for

TOKEN = "t0ken-for-the-console-tests"
ENDPOINTS = [  # (method, path)
    ("GET", "/"), ("GET", "/alerts"), ("GET", "/health"), ("GET", "/cameras/cam1"), ("GET", "/static/app.js"),
    ("GET", "/api/cameras"), ("GET", "/api/cameras/cam1/frame.jpg"), ("GET", "/api/cameras/cam1/stream.mjpg"),
    ("GET", "/api/cameras/cam1/zones"), ("PUT", "/api/cameras/cam1/zones"), ("GET", "/api/alerts"),
    ("GET", "/api/snapshots/x.jpg"), ("GET", "/api/health"), ("GET", "/healthz"), ("GET", "/metrics"),
]


def _maskwatch(*args, env=None):
    return subprocess.run([sys.executable, "-m", "maskwatch", *args], capture_output=True, text=True, timeout=120,
                          env=env)


@pytest.mark.parametrize("web, expect", [
    ({"listen": "0.0.0.0:{port}"}, "web.token_env: listening on 0.0.0.0:{port} (not loopback) needs a token"),
    ({"listen": "127.0.0.1:{port}", "token_env": "MASKWATCH_TEST_UNSET"},
     "web.token_env: environment variable MASKWATCH_TEST_UNSET is not set"),
    ({"listen": "nohost"}, "web.listen: expected HOST:PORT"),
    ({"tls_cert": "cert.pem"}, "web.tls_key: tls_cert and tls_key go together"),
], ids=["no-token-off-loopback", "token-env-unset", "bad-listen", "tls-half"])
def test_refused_to_start(tmp_path, model_path, model_names, web, expect):
    port = free_port()
    clip = write_clip(tmp_path / "clip.mp4", frames=5)
    cfg = write_config(tmp_path, model_path, clip, model_names,
                       extra={"web": {k: v.format(port=port) for k, v in web.items()}})
    proc = _maskwatch("run", str(cfg))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expect.format(port=port) in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_web_flag_off_loopback_needs_a_token(tmp_path, model_path, model_names):
    clip = write_clip(tmp_path / "clip.mp4", frames=5)
    cfg = write_config(tmp_path, model_path, clip, model_names)
    proc = _maskwatch("run", str(cfg), "--web", f"0.0.0.0:{free_port()}")
    assert proc.returncode == 2 and "needs a token" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_taken_port(tmp_path, model_path, model_names):
    """Asked for explicitly: exit 2 naming the address; the default address taken: a warning, the run goes on."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        clip = write_clip(tmp_path / "clip.mp4", frames=5)
        cfg = write_config(tmp_path, model_path, clip, model_names)
        proc = _maskwatch("run", str(cfg), "--web", f"127.0.0.1:{port}")
        assert proc.returncode == 2 and f"cannot listen on 127.0.0.1:{port}: the address is in use" in proc.stderr
        from maskwatch.pipeline.config import load_config
        from maskwatch.web.server import start_console

        conf = load_config(cfg)
        conf.web.listen = f"127.0.0.1:{port}"
        assert start_console(object(), conf.web, explicit=False) is None  # the default: warned, not started


@pytest.fixture
def guarded(tmp_path, model_path, model_names, monkeypatch):
    monkeypatch.setenv("MASKWATCH_TEST_TOKEN", TOKEN)
    clip = write_clip(tmp_path / "clip.mp4", frames=60)
    cfg = write_config(tmp_path, model_path, clip, model_names)
    with serve_pipeline(cfg, web={"token_env": "MASKWATCH_TEST_TOKEN"}) as s:
        yield s


@pytest.mark.parametrize("method, path", ENDPOINTS, ids=[p for _, p in ENDPOINTS])
def test_every_endpoint_needs_the_token(guarded, method, path):
    s = guarded
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Cookie": f"maskwatch_session={TOKEN}"}):
        r = httpx.request(method, s.base + path, headers=headers, timeout=10, json={} if method == "PUT" else None)
        assert r.status_code == 401, (path, headers, r.status_code)
        assert TOKEN not in r.text


def test_the_token_and_the_login_cookie(guarded):
    s = guarded
    ok = httpx.get(s.base + "/api/cameras", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert ok.status_code == 200 and ok.json()["cameras"][0]["id"] == "cam1"
    page = httpx.get(s.base + "/", headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 401 and 'name="token"' in page.text  # a browser gets the login form
    bad = httpx.post(s.base + "/login", data={"token": "nope"}, timeout=10)
    assert bad.status_code == 401 and "set-cookie" not in bad.headers
    login = httpx.post(s.base + "/login", data={"token": TOKEN}, timeout=10)
    assert login.status_code == 303
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and TOKEN not in cookie
    value = cookie.split(";")[0]
    r = httpx.get(s.base + "/api/cameras", headers={"Cookie": value}, timeout=10)
    assert r.status_code == 200
    assert "access-control-allow-origin" not in {k.lower() for k in r.headers}  # no CORS


def test_snapshot_names_are_looked_up_not_joined(tmp_path, model_path, model_names):
    clip = write_clip(tmp_path / "clip.mp4", frames=45)
    cfg = write_config(tmp_path, model_path, clip, model_names,
                       extra={"alerts": {"jsonl": "var/alerts.jsonl", "outbox": "var/outbox.sqlite",
                                         "snapshots": {"dir": "var/snaps"}}})
    (tmp_path / "secret.txt").write_text("do not serve")
    with serve_pipeline(cfg) as s:
        s.pipe.wait()
        alerts = s.get("/api/alerts").json()["alerts"]
        urls = [a["snapshot_url"] for a in alerts if "snapshot_url" in a]
        assert urls, "the run's alerts have snapshots"
        wait_for(lambda: s.get(urls[-1]).status_code == 200, 20, what="the snapshot file")
        r = s.get(urls[-1])
        assert r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
        assert all("snapshot" not in (a.get("extra") or {}) for a in alerts)  # no server paths in answers
        for trick in ["../secret.txt", "..%2Fsecret.txt", "..%2F..%2Fsecret.txt", "%2Fetc%2Fpasswd",
                      "....//secret.txt", "/etc/passwd", "%2e%2e%2fsecret.txt", "secret.txt",
                      urls[-1].rsplit("/", 1)[1] + "%00", "..\\secret.txt"]:
            r = httpx.get(s.base + "/api/snapshots/" + trick, timeout=10)
            assert r.status_code == 404, (trick, r.status_code)
            assert "do not serve" not in r.text


def test_no_password_in_pages_answers_or_metrics(tmp_path, model_path, model_names):
    clip = write_clip(tmp_path / "clip.mp4", frames=30)
    dead = free_port()  # nothing listens: the camera stays offline and keeps retrying
    cfg = write_config(tmp_path, model_path, clip, model_names, cameras=[
        {"id": "cam1", "source": str(clip), "zones": "zones.yaml"},
        {"id": "gate", "source": f"rtsp://admin:s3cretPW@127.0.0.1:{dead}/stream", "zones": "zones.yaml",
         "open_timeout_s": 1, "reconnect_min_s": 0.2, "reconnect_max_s": 0.5}])
    with serve_pipeline(cfg) as s:
        wait_for(lambda: s.pipe.cameras[0].stats.analysed >= 30, 60, what="the file camera")
        bodies = {p: s.get(p).text for p in ["/", "/cameras/gate", "/alerts", "/health", "/api/cameras",
                                              "/api/alerts", "/api/health", "/metrics", "/healthz",
                                              "/api/cameras/gate/zones"]}
        cams = {c["id"]: c for c in s.get("/api/cameras").json()["cameras"]}
        assert cams["gate"]["source"] == f"rtsp://admin:***@127.0.0.1:{dead}/stream"
        assert cams["gate"]["online"] is False
        for path, body in bodies.items():
            assert "s3cretPW" not in body, path


def test_listeners_bind_loopback_by_default():
    from maskwatch.pipeline.config import WebConfig

    assert WebConfig().listen == "127.0.0.1:8080"
    assert yaml.safe_load("web: {}")["web"] == {}


from tests.pipeline.conftest import tls_files  # noqa: E402, F401  (the throw-away CA and server certificate)


def test_https_with_tls_cert_and_key(tmp_path, model_path, model_names, tls_files, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MASKWATCH_TEST_TOKEN", TOKEN)
    clip = write_clip(tmp_path / "clip.mp4", frames=5)
    cfg = write_config(tmp_path, model_path, clip, model_names)
    web = {"tls_cert": tls_files.server_cert, "tls_key": tls_files.server_key, "token_env": "MASKWATCH_TEST_TOKEN"}
    trusted, other = (ssl.create_default_context(cafile=str(f)) for f in (tls_files.ca, tls_files.other_ca))
    with serve_pipeline(cfg, start=False, web=web) as s:
        assert s.base.startswith("https://127.0.0.1:")
        ok = httpx.get(s.base + "/api/cameras", headers={"Authorization": f"Bearer {TOKEN}"},
                       verify=trusted, timeout=10)
        assert ok.status_code == 200 and ok.json()["cameras"][0]["id"] == "cam1"
        with pytest.raises(httpx.HTTPError):  # an unknown CA is refused by the client, as it should be
            httpx.get(s.base + "/healthz", verify=other, timeout=10)
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets no answer
            httpx.get(s.base.replace("https://", "http://") + "/healthz", timeout=10)
        login = httpx.post(s.base + "/login", data={"token": TOKEN}, verify=trusted, timeout=10)
        assert login.status_code == 303 and "Secure" in login.headers["set-cookie"]
