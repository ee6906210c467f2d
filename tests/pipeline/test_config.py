"""Malformed configs and zone files: exit 2, one line naming file, field and expectation."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from maskwatch.cli import main
from maskwatch.pipeline.config import load_config

BASE = {
    "model": {"path": "model.onnx", "conf": 0.35, "iou": 0.6, "max_det": 100},
    "cameras": [{"id": "north", "source": "clip.mp4", "zones": "zones.yaml", "max_fps": 15}],
    "tracker": {"min_hits": 2, "max_lost_s": 1.0},
    "alerts": {"jsonl": "var/alerts.jsonl", "outbox": "var/outbox.sqlite"},
}
ZONES = {
    "units": "normalized",
    "zones": [{"id": "area", "polygon": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]}],
    "rules": [{"id": "r1", "type": "intrusion", "zone": "area", "classes": ["worker"], "min_overlap": 0.05}],
}


def _set(d, path, value):
    keys = path.split(".")
    for k in keys[:-1]:
        d = d[int(k)] if k.isdigit() else d[k]
    last = keys[-1]
    if value is _DELETE:
        del d[int(last) if last.isdigit() else last]
    else:
        d[int(last) if last.isdigit() else last] = value


_DELETE = object()

CONFIG_CASES = [
    # (id, path to change, new value, field named in the message, words expected)
    ("unknown-top-key", "extra", 1, "extra", "unknown field"),
    ("missing-model", "model", _DELETE, "model", "missing"),
    ("missing-model-path", "model.path", _DELETE, "model.path", "missing"),
    ("conf-too-high", "model.conf", 1.5, "model.conf", "less than 1"),
    ("conf-not-number", "model.conf", "high", "model.conf", "number"),
    ("iou-zero", "model.iou", 0, "model.iou", "greater than 0"),
    ("max-det-zero", "model.max_det", 0, "model.max_det", "greater than or equal to 1"),
    ("bad-backend", "model.backend", "tflite", "model.backend", "auto"),
    ("openvino-device-other-backend", "model", {"path": "model.onnx", "backend": "onnxruntime", "device": "gpu"},
     "model.device", "an OpenVINO device"),
    ("bad-device", "model.device", "gpu0", "model.device", "pattern"),
    ("unknown-model-key", "model.confidence", 0.3, "model.confidence", "unknown field"),
    ("no-cameras", "cameras", [], "cameras", "at least 1"),
    ("camera-id-spaces", "cameras.0.id", "north gate", "cameras[0].id", "pattern"),
    ("camera-missing-source", "cameras.0.source", _DELETE, "cameras[0].source", "missing"),
    ("max-fps-negative", "cameras.0.max_fps", -5, "cameras[0].max_fps", "greater than 0"),
    ("camera-typo", "cameras.0.zone", "x.yaml", "cameras[0].zone", "unknown field"),
    ("tracker-max-lost-negative", "tracker.max_lost_s", -1, "tracker.max_lost_s", "greater than or equal to 0"),
    ("tracker-bad-type", "tracker.type", "bytetrack", "tracker.type", "mask"),
    ("tracker-min-hits-zero", "tracker.min_hits", 0, "tracker.min_hits", "greater than or equal to 1"),
    ("alerts-unknown", "alerts.kafka", {}, "alerts.kafka", "unknown field"),
    ("outbox-max-rows-tiny", "alerts.outbox_max_rows", 0, "alerts.outbox_max_rows", "greater than or equal to 10"),
    ("outbox-max-age-negative", "alerts.outbox_max_age_s", -1, "alerts.outbox_max_age_s", "greater than 0"),
    ("mqtt-no-host", "alerts.mqtt", {"port": 1883}, "alerts.mqtt.host", "missing"),
    ("mqtt-port-range", "alerts.mqtt", {"host": "b", "port": 70000}, "alerts.mqtt.port", "less than or equal to 65535"),
    ("mqtt-qos-3", "alerts.mqtt", {"host": "b", "qos": 3}, "alerts.mqtt.qos", "0, 1 or 2"),
    ("mqtt-password-in-config", "alerts.mqtt", {"host": "b", "password": "x"}, "alerts.mqtt.password", "unknown field"),
    ("mqtt-prefix-wildcard", "alerts.mqtt", {"host": "b", "topic_prefix": "site/#"}, "alerts.mqtt.topic_prefix",
     "pattern"),
    ("mqtt-password-env-no-user", "alerts.mqtt", {"host": "b", "password_env": "MQTT_PW"}, "alerts.mqtt.password_env",
     "needs username"),
    ("mqtt-password-env-unset", "alerts.mqtt", {"host": "b", "username": "u", "password_env": "MASKWATCH_UNSET_9F3"},
     "alerts.mqtt.password_env", "environment variable MASKWATCH_UNSET_9F3 is not set"),
    ("mqtt-tls-typo", "alerts.mqtt", {"host": "b", "tls": {"ca": "ca.pem"}}, "alerts.mqtt.tls.ca", "unknown field"),
    ("mqtt-tls-file-missing", "alerts.mqtt", {"host": "b", "tls": {"ca_file": "nope.pem"}}, "alerts.mqtt.tls.ca_file",
     "file not found"),
    ("mqtt-persistent-session-no-id", "alerts.mqtt", {"host": "b", "clean_start": False}, "alerts.mqtt.clean_start",
     "needs a fixed client_id"),
    ("snapshots-no-dir", "alerts.snapshots", {"publish": False}, "alerts.snapshots.dir", "missing"),
    ("snapshots-publish-no-mqtt", "alerts.snapshots", {"dir": "snaps", "publish": True}, "alerts.snapshots.publish",
     "needs alerts.mqtt"),
    ("ring-slots-zero", "pipeline", {"frame_ring_slots": 0}, "pipeline.frame_ring_slots", "greater than or equal to 1"),
    ("cameras-not-list", "cameras", {"id": "x"}, "cameras", "list"),
    ("rtsp-transport-http", "cameras.0.rtsp_transport", "http", "cameras[0].rtsp_transport", "'tcp' or 'udp'"),
    ("decoder-unknown", "cameras.0.decoder", "nvdec", "cameras[0].decoder", "'cpu' or 'cuda'"),
    ("stall-timeout-zero", "cameras.0.stall_timeout_s", 0, "cameras[0].stall_timeout_s", "greater than or equal to 0.5"),
    ("reconnect-max-below-min", "cameras.0", {"id": "north", "source": "clip.mp4", "reconnect_min_s": 10,
                                              "reconnect_max_s": 5}, "cameras[0].reconnect_max_s", "must be >= reconnect_min_s"),
    ("source-env-unset", "cameras.0.source", "rtsp://u:${MASKWATCH_TEST_UNSET_PW}@h/x", "cameras[0].source",
     "environment variable MASKWATCH_TEST_UNSET_PW is not set"),
    ("batch-zero", "pipeline", {"batch": 0}, "pipeline.batch", "greater than or equal to 1"),
    ("batch-timeout-negative", "pipeline", {"batch_timeout_ms": -1}, "pipeline.batch_timeout_ms",
     "greater than or equal to 0"),
]

ZONE_CASES = [
    ("units-missing", "units", _DELETE, "units", "missing"),
    ("units-guess", "units", "percent", "units", "normalized"),
    ("pixels-no-frame-size", "units", "pixels", "frame_size", "required"),
    ("polygon-two-points", "zones.0.polygon", [[0, 0], [1, 1]], "zones[0].polygon", "at least 3 points, got 2"),
    ("polygon-out-of-range", "zones.0.polygon", [[0, 0], [1.5, 0], [1, 1]], "zones[0].polygon", "0..1"),
    ("rule-unknown-zone", "rules.0.zone", "pit", "rules[0].zone", "unknown zone 'pit'"),
    ("rule-unknown-type", "rules.0.type", "teleport", "rules[0]", "intrusion"),
    ("rule-overlap-zero", "rules.0.min_overlap", 0, "rules[0].min_overlap", "greater than 0"),
    ("rule-no-classes", "rules.0.classes", [], "rules[0].classes", "at least 1"),
    ("rule-unknown-key", "rules.0.overlap", 0.2, "rules[0].overlap", "unknown field"),
]


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    (tmp_path / "clip.mp4").write_bytes(b"not a video")
    return tmp_path


def _write(workdir: Path, cfg=None, zones=None) -> Path:
    (workdir / "zones.yaml").write_text(yaml.safe_dump(zones if zones is not None else ZONES))
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg if cfg is not None else BASE))
    return path


def _run_check(path, capsys):
    code = main(["check", str(path)])
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("name,path,value,field,words", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_malformed_config(workdir, capsys, name, path, value, field, words):
    cfg = copy.deepcopy(BASE)
    _set(cfg, path, value)
    code, err = _run_check(_write(workdir, cfg), capsys)
    assert code == 2
    assert err.count("\n") == 0, err  # one line
    assert "config.yaml" in err and f"{field}:" in err and words in err, err


@pytest.mark.parametrize("name,path,value,field,words", ZONE_CASES, ids=[c[0] for c in ZONE_CASES])
def test_malformed_zone_file(workdir, capsys, name, path, value, field, words):
    zones = copy.deepcopy(ZONES)
    _set(zones, path, value)
    code, err = _run_check(_write(workdir, zones=zones), capsys)
    assert code == 2
    assert err.count("\n") == 0, err
    assert "zones.yaml" in err and f"{field}" in err and words in err, err


@pytest.mark.parametrize("text,words", [
    ("model: [unclosed", "not valid YAML at line"),
    ("- just\n- a list\n", "expected a mapping"),
])
def test_unparseable_config(workdir, capsys, text, words):
    path = workdir / "config.yaml"
    path.write_text(text)
    code, err = _run_check(path, capsys)
    assert code == 2 and words in err and "config.yaml" in err


@pytest.mark.parametrize("missing,field", [
    ("model.onnx", "model.path"), ("clip.mp4", "cameras[0].source"), ("zones.yaml", "cameras[0].zones"),
])
def test_missing_files_name_the_field(workdir, capsys, missing, field):
    path = _write(workdir)
    (workdir / missing).unlink()
    code, err = _run_check(path, capsys)
    assert code == 2 and f"{field}:" in err and "not found" in err, err


def test_missing_config_file(tmp_path, capsys):
    code, err = _run_check(tmp_path / "nope.yaml", capsys)
    assert code == 2 and "nope.yaml" in err and "cannot read" in err


def test_relative_paths_resolve_against_config_folder(workdir):
    cfg = load_config(_write(workdir))
    assert cfg.model.path == workdir / "model.onnx"
    assert Path(cfg.cameras[0].source) == workdir / "clip.mp4"
    assert cfg.cameras[0].zones == workdir / "zones.yaml"
    assert cfg.alerts.outbox == workdir / "var/outbox.sqlite"


def test_tracker_report_conf_follows_the_model_threshold_unless_set(workdir):
    from maskwatch.pipeline.config import TrackerConfig

    assert TrackerConfig().params(0.35).report_conf == pytest.approx(0.6)  # the default deployment
    assert TrackerConfig().params(0.5).report_conf == pytest.approx(0.6)  # never above 0.6
    assert TrackerConfig().params(0.1).report_conf == pytest.approx(0.35)  # a lowered conf lowers it
    assert TrackerConfig(report_conf=0.8).params(0.1).report_conf == pytest.approx(0.8)
    assert TrackerConfig(report_conf=0).params(0.35).report_conf == 0  # off
    assert load_config(_write(workdir)).tracker.params(0.35).sole_inherit is True


def test_urls_are_not_resolved(workdir):
    cfg = copy.deepcopy(BASE)
    cfg["cameras"][0]["source"] = "rtsp://user:pw@127.0.0.1:8554/cam"
    loaded = load_config(_write(workdir, cfg))
    assert loaded.cameras[0].source == "rtsp://user:pw@127.0.0.1:8554/cam"


def test_source_password_from_environment(workdir, monkeypatch, capsys):
    cfg = copy.deepcopy(BASE)
    cfg["cameras"][0]["source"] = "rtsp://viewer:${CAM_PW}@127.0.0.1:8554/cam"
    monkeypatch.setenv("CAM_PW", "s3cret")
    loaded = load_config(_write(workdir, cfg))
    assert loaded.cameras[0].source == "rtsp://viewer:s3cret@127.0.0.1:8554/cam"


def test_console_script_exits_2_without_traceback(workdir):
    cfg = copy.deepcopy(BASE)
    cfg["model"]["conf"] = 7
    path = _write(workdir, cfg)
    proc = subprocess.run([sys.executable, "-m", "maskwatch", "check", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "model.conf" in proc.stderr
