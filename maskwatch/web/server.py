"""The console's HTTP server: uvicorn in a thread of the maskwatch process, on a socket bound up front.

Binding before the thread starts lets a taken port be reported at once: an error (exit 2) when the address was
asked for (``--web`` or ``web.listen``), a warning and no console when it was the default. uvicorn installs no
signal handlers off the main thread, so ``maskwatch run`` keeps its own SIGINT/SIGTERM handling.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
import time

from maskwatch.pipeline.config import WebConfig, is_loopback, split_listen
from maskwatch.zones import ConfigError

from .backend import Backend

log = logging.getLogger(__name__)


class Console:
    def __init__(self, server, thread: threading.Thread, sock: socket.socket, url: str, app=None) -> None:
        self.app = app
        self.server = server
        self.thread = thread
        self.sock = sock
        self.url = url

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def stop(self, timeout_s: float = 5.0) -> None:
        # live streams never end by themselves: end them, then stop (else uvicorn's graceful shutdown times out)
        if self.app is not None:
            self.app.state.closing.set()
            time.sleep(0.3)
        self.server.should_exit = True
        self.thread.join(timeout_s)
        try:
            self.sock.close()
        except OSError:
            pass


def console_token(web: WebConfig, file=None) -> str | None:
    """The token from ``web.token_env``; a non-loopback address without one is refused (ConfigError)."""
    host, _ = split_listen(web.listen)
    token = None
    if web.token_env is not None:
        token = os.environ.get(web.token_env)
        if not token:
            raise ConfigError(file, "web.token_env", f"environment variable {web.token_env} is not set "
                                                     f"(it should hold the console's access token)")
    if token is None and not is_loopback(host):
        raise ConfigError(file, "web.token_env", f"listening on {web.listen} (not loopback) needs a token: set "
                                                 f"web.token_env to the name of an environment variable holding it")
    return token


def _bind(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
        sock.listen(128)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def start_console(backend: Backend, web: WebConfig, *, explicit: bool, file=None) -> Console | None:
    """Serve the console for ``backend``; None (after a warning) when the default port is taken."""
    import uvicorn

    from .app import create_app

    token = console_token(web, file)
    host, port = split_listen(web.listen)
    try:
        sock = _bind(host, port)
    except OSError as exc:
        taken = exc.errno in (errno.EADDRINUSE, errno.EACCES)
        why = "the address is in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        if explicit or not taken:
            raise ConfigError(file, "web.listen", f"cannot listen on {web.listen}: {why}") from None
        log.warning("web console not started: cannot listen on %s (%s); set web.listen or --web HOST:PORT",
                    web.listen, why)
        return None
    tls = web.tls_cert is not None
    app = create_app(backend, token=token, preview_fps=web.preview_fps, jpeg_quality=web.jpeg_quality,
                     secure_cookie=tls)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=2,
                            ssl_certfile=str(web.tls_cert) if tls else None,
                            ssl_keyfile=str(web.tls_key) if tls else None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="web", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    shown = f"[{host}]" if ":" in host else host
    url = f"{'https' if tls else 'http'}://{shown}:{sock.getsockname()[1]}/"
    log.info("web console: %s%s", url, " (token required)" if token else "")
    return Console(server, thread, sock, url, app)
