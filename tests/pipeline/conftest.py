"""Fixtures for the pipeline tests: a real mosquitto on a free loopback port, TLS material,
and a paho subscriber that records what arrives.

mosquitto comes from the Debian packages scripts/setup.sh installs. Under CI=true a
missing mosquitto fails the test; elsewhere it skips with the reason.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion




def _find(name: str) -> str | None:
    return shutil.which(name) or next((p for d in ("/usr/sbin", "/usr/local/sbin", "/usr/bin")
                                       if os.access(p := f"{d}/{name}", os.X_OK)), None)


def require_tool(name: str) -> str:
    path = _find(name)
    if path is None:
        msg = f"{name} is not installed (scripts/setup.sh installs mosquitto and mosquitto-clients)"
        pytest.fail(msg)  # scripts/test.sh installs it; a missing service fails, never skips
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout: float, interval: float = 0.05, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Broker:
    """One mosquitto process with a generated config in its own folder; start / stop / restart."""

    def __init__(self, root: Path, *, users: dict[str, str] | None = None, tls: "TlsFiles | None" = None,
                 require_certificate: bool = False) -> None:
        self.exe = require_tool("mosquitto")
        self.dir = root
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.users = users
        self.tls = tls
        self.proc: subprocess.Popen | None = None
        self.log_path = self.dir / "mosquitto.log"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence true",  # subscriber sessions and retained messages survive a restart
            f"persistence_location {self.dir}/",
            "log_dest stderr",
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            "connection_messages true",
            "max_queued_messages 100000",
            f"user {getpass.getuser()}",  # as root, mosquitto would switch to user 'mosquitto'
        ]
        if users is None:
            lines.append("allow_anonymous true")
        else:
            passwd = self.dir / "passwd"
            passwd.unlink(missing_ok=True)
            tool = require_tool("mosquitto_passwd")
            for i, (user, pw) in enumerate(users.items()):
                subprocess.run([tool, *(["-c"] if i == 0 else []), "-b", str(passwd), user, pw], check=True,
                               capture_output=True)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        if tls is not None:
            lines += [f"cafile {tls.ca}", f"certfile {tls.server_cert}", f"keyfile {tls.server_key}"]
            if require_certificate:
                lines.append("require_certificate true")
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> "Broker":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"mosquitto did not listen on {self.port}:\n{self.log_text()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Graceful (SIGTERM): mosquitto saves its persistence file and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def mqtt_config(self, **kw) -> dict:
        cfg = {"host": "127.0.0.1" if self.tls is None else "localhost", "port": self.port,
               "reconnect_min_s": 1, "reconnect_max_s": 2}
        cfg.update(kw)
        return cfg


@pytest.fixture
def broker_factory(tmp_path):
    """Make brokers (``broker_factory(users=..., tls=...)``); every one is stopped at teardown."""
    made: list[Broker] = []

    def make(name: str = "broker", **kw) -> Broker:
        b = Broker(tmp_path / name, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


@pytest.fixture
def broker(broker_factory) -> Broker:
    """A running anonymous broker."""
    return broker_factory().start()


# -- TLS material ---------------------------------------------------------------------------
@dataclass
class TlsFiles:
    ca: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: a client trusting it rejects the broker


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key, path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def _cert(subject_cn: str, key, issuer_cn: str, issuer_key, *, ca: bool, san: list | None = None,
          client: bool = False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                          content_commitment=False, key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
    else:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        b = b.add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _write_cert(cert, path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> TlsFiles:
    """A throw-away CA, a broker certificate for localhost / 127.0.0.1, a client certificate, and
    an unrelated CA (made with the ``cryptography`` package, a dev dependency)."""
    import ipaddress

    from cryptography import x509

    d = tmp_path_factory.mktemp("tls")
    ca_key, other_key, srv_key, cli_key = _key(), _key(), _key(), _key()
    ca = _cert("maskwatch test CA", ca_key, "maskwatch test CA", ca_key, ca=True)
    other = _cert("some other CA", other_key, "some other CA", other_key, ca=True)
    srv = _cert("localhost", srv_key, "maskwatch test CA", ca_key, ca=False,
                san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cli = _cert("maskwatch", cli_key, "maskwatch test CA", ca_key, ca=False, client=True)
    return TlsFiles(ca=_write_cert(ca, d / "ca.crt"), ca_key=_write_key(ca_key, d / "ca.key"),
                    server_cert=_write_cert(srv, d / "server.crt"), server_key=_write_key(srv_key, d / "server.key"),
                    client_cert=_write_cert(cli, d / "client.crt"), client_key=_write_key(cli_key, d / "client.key"),
                    other_ca=_write_cert(other, d / "other-ca.crt"))


# -- a subscriber ---------------------------------------------------------------------------------
@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool
    t: float

    def json(self):
        return json.loads(self.payload)


@dataclass
class Subscriber:
    """A paho client with a persistent session (QoS 1): what is published while it is away, or
    while the broker restarts, is queued for it. Records every message in arrival order.
    Its client id is new each time, so the first connect never resumes an old session."""

    broker: Broker
    topic: str = "maskwatch/#"
    username: str | None = None
    password: str | None = None
    tls: TlsFiles | None = None
    messages: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client_id = f"test-sub-{os.getpid()}-{id(self) % 100000}"
        # MQTT 3.1.1 with a persistent session: mosquitto 2.0 restores it from its persistence file after a
        # restart (a v5 session with an expiry interval comes back as "session not present" there)
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv311,
                        clean_session=False)
        if self.username:
            c.username_pw_set(self.username, self.password)
        if self.tls is not None:
            ctx = ssl.create_default_context(cafile=str(self.tls.ca))
            ctx.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
            c.tls_set_context(ctx)
        c.reconnect_delay_set(1, 1)
        c.on_connect = self._on_connect
        c.on_subscribe = lambda *a: self._subscribed.set()
        c.on_message = self._on_message
        self.client = c

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            client.subscribe(self.topic, qos=1)

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic()))

    def start(self) -> "Subscriber":
        host = "localhost" if self.tls is not None else "127.0.0.1"
        self.client.connect_async(host, self.broker.port, keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(10), f"subscriber did not subscribe:\n{self.broker.log_text()}"
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def snapshot(self) -> list[Message]:
        with self._lock:
            return list(self.messages)

    def on(self, suffix: str) -> list[Message]:
        return [m for m in self.snapshot() if m.topic.endswith(suffix)]

    def alerts(self) -> list[dict]:
        return [m.json() for m in self.snapshot() if m.topic.endswith("/alerts")]

    def last(self, topic: str) -> Message | None:
        got = [m for m in self.snapshot() if m.topic == topic]
        return got[-1] if got else None


@pytest.fixture
def subscriber_factory():
    made: list[Subscriber] = []

    def make(broker: Broker, **kw) -> Subscriber:
        s = Subscriber(broker, **kw).start()
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()
