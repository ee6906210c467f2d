"""MQTT sink (paho-mqtt 2.x, MQTT v5): alerts from the outbox, presence, occupancy, snapshots.

Topics (``<prefix>`` = ``alerts.mqtt.topic_prefix``):

- ``<prefix>/<camera>/alerts``: AlertEvent JSON, QoS ``qos`` (default 1), not retained.
- ``<prefix>/<camera>/zones/<zone>/occupancy``: retained JSON counts per class.
- ``<prefix>/status``: retained ``online`` after connect; last will (retained) ``offline``.
- ``<prefix>/<camera>/status``: retained ``online`` / ``offline``.
- ``<prefix>/<camera>/alerts/<id>/snapshot``: JPEG bytes (with ``snapshots.publish``).

Delivery: ``connect_async`` + ``loop_start``; only paho's network thread writes to the socket (other
threads' publishes queue); paho reconnects with backoff
(``reconnect_delay_set``). An alert row is acknowledged to the outbox only when the broker
acknowledged it (PUBACK for QoS 1, PUBCOMP for QoS 2; QoS 0: once written to the socket).
While disconnected the sink takes no rows, so they wait in the outbox, not in memory. Rows
in flight when the connection drops stay in paho's session and are re-sent (DUP) after the
reconnect with the same payload: receivers may see such an alert twice, with the same
``id`` + ``seq``. A row is never published twice while connected.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from maskwatch.zones.errors import ConfigError

from .config import MqttConfig
from .outbox import Row
from .redact import redact_url

log = logging.getLogger(__name__)
REPEAT_LOG_S = 60.0  # the same connection error is logged again at most this often
SESSION_EXPIRY_S = 86400  # with clean_start: false, the broker keeps the session this long
_TOPIC_UNSAFE = re.compile(r"[+#/\x00]")


class _QuietReconnects(logging.Filter):
    """paho 2.2 logs "Client is not connected" at ERROR on every reconnect attempt and while it winds
    down; the sink reports connection state itself (once, with the reason)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


_PAHO_LOG = logging.getLogger(__name__ + ".paho")
_PAHO_LOG.addFilter(_QuietReconnects())


def topic_level(s: str) -> str:
    """One topic level: MQTT wildcards and '/' replaced by '_'."""
    return _TOPIC_UNSAFE.sub("_", s) or "_"


def _password(cfg: MqttConfig, env: dict[str, str] | os._Environ) -> str | None:
    if cfg.password_env is None:
        return None
    value = env.get(cfg.password_env)
    if value is None:
        raise ConfigError(None, "alerts.mqtt.password_env",
                          f"environment variable {cfg.password_env} is not set (it should hold the broker password)")
    return value


def _tls_context(cfg: MqttConfig) -> ssl.SSLContext:
    tls = cfg.tls
    assert tls is not None
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca_file) if tls.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(None, "alerts.mqtt.tls.ca_file", f"cannot load CA certificates from {tls.ca_file}: {exc}") from None
    if tls.cert_file is not None:
        try:
            ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(None, "alerts.mqtt.tls.cert_file",
                              f"cannot load client certificate {tls.cert_file} / key {tls.key_file}: {exc}") from None
    return ctx


class MqttSink:
    """Alert sink and presence / occupancy publisher for one broker.

    ``send`` / ``acked`` / ``returned`` / ``capacity`` / ``in_flight`` are for the publisher
    thread only; ``publish_occupancy``, ``publish_camera_status`` and ``publish_snapshot``
    may be called from any thread.
    """

    name = "mqtt"

    def __init__(self, cfg: MqttConfig, env: dict[str, str] | None = None, status_topic: str | None = None) -> None:
        """``status_topic``: this client's presence topic (``online``; ``offline`` as its will), default
        ``<prefix>/status``; a cluster worker uses ``<prefix>/workers/<worker>/status``, the driver the default."""
        self.cfg = cfg
        self.prefix = cfg.topic_prefix
        self._status_topic = status_topic or f"{self.prefix}/status"
        self.qos = cfg.qos
        self.state_qos = min(1, cfg.qos)  # retained state: latest value wins, QoS 2 buys nothing
        password = _password(cfg, os.environ if env is None else env)
        self.client_id = cfg.client_id or f"maskwatch-{socket.gethostname()[:32]}-{secrets.token_hex(3)}"
        scheme = "mqtts" if cfg.tls is not None else "mqtt"
        user = f"{cfg.username}@" if cfg.username else ""
        self.url = redact_url(f"{scheme}://{user}{cfg.host}:{cfg.effective_port}")
        self._auth_hint = (f"user {cfg.username!r}" + (f", password from ${cfg.password_env}" if cfg.password_env else "")
                           if cfg.username else "no user name")

        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        c.enable_logger(_PAHO_LOG)
        if cfg.username is not None:
            c.username_pw_set(cfg.username, password)
        if cfg.tls is not None:
            c.tls_set_context(_tls_context(cfg))
            c.tls_insecure_set(cfg.tls.insecure)
        c.will_set(self.status_topic, "offline", qos=1, retain=True)
        c.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)
        c.max_inflight_messages_set(0)  # no paho-side queueing; ``max_inflight`` bounds alerts, see capacity()
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        # Only paho's network thread writes to the socket. Without this, publish() from another thread writes
        # itself whenever paho has no network thread (between loop_stop and loop_start in _kick), concurrently
        # with the new one: interleaved packets, and the broker resets the connection. With it, publish() only
        # queues and wakes the network thread (paho's documented external-loop hook, here a no-op).
        c.on_socket_register_write = lambda client, userdata, sock: None
        self.client = c

        self._wake: Callable[[], None] = lambda: None
        self._connected = threading.Event()
        self._started = False
        self._commands: list[tuple[str, Callable[[str, bytes], None]]] = []  # (topic filter, handler)
        self._hurried = False  # the reconnect backoff is capped for waiting alerts
        self._kicking = threading.Event()
        self._loop_lock = threading.Lock()  # a kick and close never restart / stop paho's thread at once
        self._receive_max = 65535
        self._online_mid: int | None = None  # mid of the "online" status publish after a connect
        self._inflight: dict[int, mqtt.MQTTMessageInfo] = {}  # row -> paho message info (publisher thread)
        self._returned: list[int] = []
        self._refused_mids: set[int] = set()  # PUBACK / PUBCOMP with a failure reason (paho thread adds)
        self._acked_mids: set[int] = set()  # every PUBACK / PUBCOMP (paho thread adds, publisher takes)
        self._mids_lock = threading.Lock()  # the two sets above: one thread adds while the other prunes
        self._state_lock = threading.Lock()
        self._retained: dict[str, str] = {}  # topic -> latest retained payload (re-published on connect)
        self._session_up = False  # connected at the MQTT level (under _state_lock; _connected waits for "online")
        self._last_error: tuple[str, float, int] = ("", 0.0, 0)  # message, when logged, repeats since
        self._down_since: float | None = None
        self.connects = 0
        self.published = 0  # alert rows acknowledged by the broker
        self.snapshots_published = 0

    # -- topics ---------------------------------------------------------------------------
    @property
    def status_topic(self) -> str:
        return self._status_topic

    def alerts_topic(self, camera: str) -> str:
        return f"{self.prefix}/{topic_level(camera)}/alerts"

    def occupancy_topic(self, camera: str, zone: str) -> str:
        return f"{self.prefix}/{topic_level(camera)}/zones/{topic_level(zone)}/occupancy"

    def camera_status_topic(self, camera: str) -> str:
        return f"{self.prefix}/{topic_level(camera)}/status"

    def snapshot_topic(self, camera: str, alert_id: str) -> str:
        return f"{self.prefix}/{topic_level(camera)}/alerts/{topic_level(alert_id)}/snapshot"

    # -- connection -----------------------------------------------------------------------
    def start(self, wake: Callable[[], None] = lambda: None) -> None:
        self._wake = wake
        props = None
        if not self.cfg.clean_start:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = SESSION_EXPIRY_S
        log.info("mqtt: connecting to %s as %s (%s)", self.url, self.client_id, self._auth_hint)
        self._down_since = time.monotonic()
        self.client.connect_async(self.cfg.host, self.cfg.effective_port, keepalive=self.cfg.keepalive_s,
                                  clean_start=self.cfg.clean_start, properties=props)
        self.client.loop_start()
        self._started = True

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def hurry(self, waiting: bool, now: bool = False) -> None:
        """Alerts wait in the outbox (``waiting``): the reconnect backoff is capped at
        ``reconnect_max_pending_s`` and, when that starts (or ``now``: the run's final drain) while
        disconnected, paho's current backoff wait is cut short; nothing waits: ``reconnect_max_s`` again.
        Publisher thread."""
        if not self._started or (waiting == self._hurried and not now):
            return
        self._hurried = waiting
        cap = min(self.cfg.reconnect_max_pending_s, self.cfg.reconnect_max_s) if waiting else self.cfg.reconnect_max_s
        self.client.reconnect_delay_set(self.cfg.reconnect_min_s, cap)
        if waiting and not self.connected and not self._kicking.is_set():
            self._kicking.set()
            threading.Thread(target=self._kick, name="mqtt-reconnect", daemon=True).start()

    def _kick(self) -> None:
        """Restart paho's network thread: its backoff wait (up to ``reconnect_max_s``) ends within a second,
        and the new loop tries again after ``reconnect_min_s``."""
        try:
            with self._loop_lock:
                if self._started and not self.connected:
                    log.info("mqtt: alerts wait in the outbox; trying %s again now", self.url)
                    self.client.loop_stop()
                    if self._started:
                        self.client.loop_start()
        finally:
            self._kicking.clear()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def _error(self, message: str) -> None:
        """Log a connection error; the same one again only every REPEAT_LOG_S (with a count)."""
        last, when, repeats = self._last_error
        now = time.monotonic()
        if message != last:
            log.error("%s", message)
            self._last_error = (message, now, 0)
        elif now - when >= REPEAT_LOG_S:
            log.error("%s (%d more failed attempts)", message, repeats + 1)
            self._last_error = (message, now, 0)
        else:
            self._last_error = (last, when, repeats + 1)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            hint = ""
            if reason_code.value in (0x86, 0x87):  # bad user name or password / not authorized
                hint = f" (wrong user name or password?); check alerts.mqtt.username and the password ({self._auth_hint})"
            self._error(f"mqtt: broker {self.url} refused the connection: {reason_code}{hint}; "
                        f"alerts wait in the outbox, retrying")
            return
        self._receive_max = int(getattr(properties, "ReceiveMaximum", 65535) or 65535)
        self.connects += 1
        down = time.monotonic() - self._down_since if self._down_since is not None else 0.0
        self._down_since = None
        self._last_error = ("", 0.0, 0)
        log.info("mqtt: connected to %s as %s%s", self.url, self.client_id,
                 f" after {down:.1f} s" if self.connects > 1 else "")
        with self._state_lock:  # the latest retained state, lost if the broker restarted without persistence
            self._session_up = True
            for topic, payload in self._retained.items():
                client.publish(topic, payload, qos=self.state_qos, retain=True)
        for topic, _ in self._commands:  # commands (switches, feedback); the session may have them already
            client.subscribe(topic, qos=1)
        # Take new rows only once the broker acknowledged "online": paho re-sends the rows in flight at the
        # disconnect right after this callback returns, before it reads that PUBACK, so new rows never
        # overtake them (order per camera holds across reconnects).
        self._online_mid = client.publish(self.status_topic, "online", qos=1, retain=True).mid

    # -- commands -------------------------------------------------------------------------
    def on_command(self, topic_filter: str, handler: Callable[[str, bytes], None]) -> None:
        """Subscribe to ``topic_filter`` (wildcards allowed) from the next connect on, and whenever connected;
        ``handler(topic, payload)`` runs on paho's thread (keep it short; errors are logged, never raised).
        Call before ``start``."""
        self._commands.append((topic_filter, handler))

    def _on_message(self, client, userdata, msg) -> None:
        for topic_filter, handler in self._commands:
            if mqtt.topic_matches_sub(topic_filter, msg.topic):
                try:
                    handler(msg.topic, bytes(msg.payload))
                except Exception as exc:  # noqa: BLE001 - a bad command must not stop the connection
                    log.warning("mqtt: command on %s not applied: %s", msg.topic, exc)

    def _on_connect_fail(self, client, userdata) -> None:
        exc = sys.exc_info()[1]  # paho calls this inside its ``except OSError``
        if isinstance(exc, ssl.SSLCertVerificationError):
            what = (f"TLS: the broker's certificate was not accepted ({exc.verify_message}); "
                    f"check alerts.mqtt.tls.ca_file and that host {self.cfg.host!r} is named in the certificate")
        elif isinstance(exc, ssl.SSLError):
            what = f"TLS handshake failed ({exc.reason or exc}); check alerts.mqtt.tls and the broker's TLS listener"
        elif isinstance(exc, ConnectionRefusedError):
            what = "connection refused (is the broker running and listening on that port?)"
        elif isinstance(exc, (TimeoutError, socket.timeout)):
            what = "timed out"
        elif exc is not None:
            what = f"{type(exc).__name__}: {exc}"
        else:
            what = "connection failed"
        self._error(f"mqtt: cannot connect to {self.url}: {what}; alerts wait in the outbox, retrying")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        with self._state_lock:
            self._session_up = False
        if was:
            self._down_since = time.monotonic()
            if self._started:
                log.warning("mqtt: lost the connection to %s (%s); reconnecting with backoff (%d..%d s), "
                            "alerts wait in the outbox", self.url, reason_code, self.cfg.reconnect_min_s,
                            self.cfg.reconnect_max_s)
        self._wake()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        if mid == self._online_mid and not self._connected.is_set():
            self._online_mid = None
            self._connected.set()
            if reason_code.is_failure:
                self._error(f"mqtt: broker {self.url} refused {self.status_topic}: {reason_code}; check its ACL")
            self._wake()
            return
        with self._mids_lock:
            self._acked_mids.add(mid)
            if reason_code.is_failure:
                self._refused_mids.add(mid)
        if reason_code.is_failure:
            self._error(f"mqtt: broker {self.url} refused a publish: {reason_code}; check the broker's ACL for "
                        f"{self.prefix}/#")
        self._wake()

    # -- the sink interface (publisher thread) ---------------------------------------------
    def capacity(self) -> int:
        if not self._connected.is_set():
            return 0
        window = min(self.cfg.max_inflight, max(1, self._receive_max - 8))  # leave room for status messages
        return max(0, window - len(self._inflight))

    def send(self, rows: list[Row]) -> int:
        taken = 0
        for r in rows:
            if not self._connected.is_set():
                break
            info = self.client.publish(self.alerts_topic(r.camera), r.payload, qos=self.qos)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS and (self.qos == 0 or info.rc != MQTTErrorCode.MQTT_ERR_NO_CONN):
                break  # not queued anywhere: stays in the outbox (QoS >= 1 with NO_CONN is kept by paho)
            self._inflight[r.row] = info
            taken += 1
        return taken

    def acked(self) -> list[int]:
        done: list[int] = []
        for row, info in list(self._inflight.items()):
            if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and self.qos > 0:
                # published in the moment the connection dropped: paho kept the message and sends it after the
                # reconnect, but its info keeps the error (is_published() would raise): its PUBACK tells
                if info.mid not in self._acked_mids:
                    continue
            elif not info.is_published():
                continue
            with self._mids_lock:
                self._acked_mids.discard(info.mid)
            del self._inflight[row]
            lost = self.qos == 0 and info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS  # QoS 0 dropped on disconnect
            if lost or info.mid in self._refused_mids:
                self._refused_mids.discard(info.mid)
                self._returned.append(row)
            else:
                done.append(row)
        if self._refused_mids or self._acked_mids:  # acknowledgements of other messages (status, snapshots)
            live = {info.mid for info in self._inflight.values()}
            with self._mids_lock:
                self._refused_mids &= live
                self._acked_mids &= live
        self.published += len(done)
        return done

    def returned(self) -> list[int]:
        out, self._returned = self._returned, []
        return out

    def in_flight(self) -> set[int]:
        return set(self._inflight)

    # -- state and side messages (any thread) ---------------------------------------------
    def _publish_retained(self, topic: str, payload: str) -> None:
        with self._state_lock:
            if self._retained.get(topic) == payload:
                return
            self._retained[topic] = payload
            if self._session_up:  # else on_connect publishes it
                self.client.publish(topic, payload, qos=self.state_qos, retain=True)

    def publish_retained(self, topic: str, payload: str) -> None:
        """Retained state on any topic (sent when it changes, and again after each reconnect); any thread."""
        self._publish_retained(topic, payload)

    def publish_occupancy(self, camera: str, zone: str, counts: dict[str, int]) -> None:
        """Retained ``{"class": count, ...}`` on ``<prefix>/<camera>/zones/<zone>/occupancy`` (sent when it changes)."""
        payload = json.dumps({str(k): int(v) for k, v in counts.items()}, sort_keys=True, separators=(",", ":"))
        self._publish_retained(self.occupancy_topic(camera, zone), payload)

    def publish_camera_status(self, camera: str, online: bool) -> None:
        """Retained ``online`` / ``offline`` on ``<prefix>/<camera>/status``."""
        self._publish_retained(self.camera_status_topic(camera), "online" if online else "offline")

    def publish_snapshot(self, camera: str, alert_id: str, jpeg: bytes) -> bool:
        """Best effort (not through the outbox): False when not connected."""
        if not self._connected.is_set():
            return False
        info = self.client.publish(self.snapshot_topic(camera, alert_id), jpeg, qos=self.state_qos)
        ok = info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS
        self.snapshots_published += ok
        return ok

    def stats(self) -> dict:
        return {"connected": self.connected, "connects": self.connects, "published": self.published,
                "in_flight": len(self._inflight), "snapshots_published": self.snapshots_published}

    def close(self, timeout_s: float = 2.0) -> None:
        """Graceful: cameras and ``<prefix>/status`` read ``offline`` (retained), then disconnect."""
        if not self._started:
            return
        self._started = False
        if self._connected.is_set():
            infos = []
            with self._state_lock:
                for topic, payload in list(self._retained.items()):
                    if topic.endswith("/status") and payload == "online":
                        self._retained[topic] = "offline"
                        infos.append(self.client.publish(topic, "offline", qos=1, retain=True))
            infos.append(self.client.publish(self.status_topic, "offline", qos=1, retain=True))
            deadline = time.monotonic() + timeout_s
            for info in infos:
                try:
                    info.wait_for_publish(max(0.0, deadline - time.monotonic()))
                except (RuntimeError, ValueError):  # the connection went away meanwhile
                    break
        self.client.disconnect()
        with self._loop_lock:
            self.client.loop_stop()
        self._connected.clear()
