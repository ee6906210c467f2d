"""Home Assistant MQTT discovery against a real mosquitto: the configs Home Assistant reads, the state it
shows following the alerts, and entities removed by a zone-file reload."""

from __future__ import annotations

import json
import threading
import time

import yaml

from maskwatch.pipeline.config import load_config
from maskwatch.pipeline.factory import build_segmenter
from maskwatch.pipeline.stages import Pipeline
from tests.conftest import write_clip, write_config

from .conftest import wait_for

RULES = [{"id": "anything", "type": "intrusion", "zone": "all", "min_overlap": 0.01, "min_duration_s": 0.0,
          "clear_after_s": 0.2, "severity": "warning"},
         {"id": "second", "type": "intrusion", "zone": "all", "min_overlap": 0.01, "min_duration_s": 0.0,
          "clear_after_s": 0.2, "severity": "critical"}]
REQUIRED = {"name", "unique_id", "state_topic", "device", "availability"}


def test_discovery_configs_states_and_removal(tmp_path, model_path, model_names, broker, subscriber_factory):
    ha = subscriber_factory(broker, topic="homeassistant/#")
    mw = subscriber_factory(broker, topic="maskwatch/#")
    clip = write_clip(tmp_path / "clip.mp4", frames=60, seed=10)
    zones = {"units": "normalized", "zones": [{"id": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
             "rules": [dict(r, classes=model_names) for r in RULES]}
    cfg = load_config(write_config(tmp_path, model_path, clip, model_names, zones=zones, extra={
        "alerts": {"jsonl": "var/alerts.jsonl", "outbox": "var/outbox.sqlite",
                   "mqtt": broker.mqtt_config(homeassistant={"discovery_prefix": "homeassistant"})},
        "tracker": {"report_conf": 0.0}}))
    pipe = Pipeline(cfg, build_segmenter(cfg.model, None, cfg.tracker), loop=True)
    pipe.start()
    waiter = threading.Thread(target=pipe.wait, daemon=True)
    waiter.start()
    try:
        wait_for(lambda: sum(1 for e in _events(tmp_path) if e["rule"] == "second" and e["type"] == "end") >= 2,
                 60, 0.1, "alerts of both rules")
        configs = _configs(ha)
        # one connectivity sensor, the camera's switch, per rule a sensor and a switch, one occupancy sensor
        # per class of the one zone
        assert len(configs) == 1 + 1 + 2 * 2 + len(model_names), sorted(configs)
        uids = [c["unique_id"] for c in configs.values()]
        assert len(set(uids)) == len(uids)
        for topic, c in configs.items():
            assert REQUIRED <= set(c), (topic, c)
            parts = topic.split("/")
            assert parts[0] == "homeassistant" and parts[1] in ("binary_sensor", "sensor", "switch")
            assert parts[-1] == "config"
            assert parts[2] == "maskwatch_maskwatch" and parts[3] == c["object_id"]
            assert c["device"]["identifiers"] and c["device"]["sw_version"]
            assert c["availability"] == [{"topic": "maskwatch/status", "payload_available": "online",
                                          "payload_not_available": "offline"}]
            assert mw.last(c["state_topic"]) is not None, f"nothing on {c['state_topic']}"  # topics exist
        assert mw.last("maskwatch/status").payload == b"online"
        online = [c for c in configs.values() if c.get("device_class") == "connectivity"][0]
        assert online["state_topic"] == "maskwatch/cam1/status" and online["payload_on"] == "online"
        occ = [c for c in configs.values() if c["state_topic"].endswith("/occupancy")]
        payload = json.loads(mw.last("maskwatch/cam1/zones/all/occupancy").payload)
        assert all("value_json[" in c["value_template"] for c in occ) and isinstance(payload, dict)
        # the binary sensors follow the alerts: ON while any alert of the rule is active
        switch = [c for c in configs.values() if c["unique_id"].endswith("armed_anything")][0]
        assert switch["command_topic"] == "maskwatch/cam1/rules/anything/set"
        assert mw.last(switch["state_topic"]).payload == b"ON"  # armed
        rule = [c for c in configs.values() if c["unique_id"].endswith("rule_anything")][0]
        assert rule["state_topic"] == "maskwatch/cam1/rules/anything/active"
        wait_for(lambda: [m.payload.decode() for m in mw.on("/rules/anything/active")] == _expected(
            _events(tmp_path), "anything")[:len(mw.on("/rules/anything/active"))], 10, 0.1, "states in order")
        states = [m.payload.decode() for m in mw.on("/rules/anything/active")]
        assert "ON" in states and "OFF" in states[states.index("ON"):]

        # hot reload without rule "second": its entity goes (an empty retained config)
        second = next(t for t, c in configs.items() if c["unique_id"].endswith("rule_second"))
        second_switch = next(t for t, c in configs.items() if c["unique_id"].endswith("armed_second"))
        zones["rules"] = zones["rules"][:1]
        time.sleep(1.1)  # a new mtime for the watcher
        (tmp_path / "zones.yaml").write_text(yaml.safe_dump(zones))
        # both entities of the rule go; the two clears are separate publishes, so the test waits for both
        # (it once looked for the switch's a moment after seeing the sensor's, before it had arrived)
        cleared = lambda: {m.topic for m in ha.snapshot() if m.payload == b""}  # noqa: E731
        wait_for(lambda: {second, second_switch} <= cleared(), 30, 0.1, "the removed rule's configs cleared")
        assert all(json.loads(m.payload) for m in ha.snapshot() if m.topic not in (second, second_switch))
    finally:
        pipe.request_stop()
        waiter.join(60)
    # after the run every rule reads OFF (its alerts ended) and the availability topic offline
    late = subscriber_factory(broker, topic="maskwatch/#")
    wait_for(lambda: late.last("maskwatch/cam1/rules/anything/active") is not None
             and late.last("maskwatch/status") is not None, 5, what="retained states")  # one burst, any order
    assert late.last("maskwatch/cam1/rules/anything/active").payload == b"OFF"
    assert late.last("maskwatch/status").payload == b"offline"


def _events(tmp_path) -> list[dict]:
    p = tmp_path / "var/alerts.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


def _configs(sub) -> dict[str, dict]:
    out = {}
    for m in sub.snapshot():
        if m.topic.endswith("/config"):
            if m.payload:
                out[m.topic] = json.loads(m.payload)
            else:
                out.pop(m.topic, None)
    return out


def _expected(events: list[dict], rule: str) -> list[str]:
    """The rule's state after each of its events, as the alerts say: ON while one is active; changes only."""
    active: set[str] = set()
    out = ["OFF"]
    for e in events:
        if e["rule"] != rule:
            continue
        (active.discard if e["type"] == "end" else active.add)(e["id"])
        state = "ON" if active else "OFF"
        if state != out[-1]:
            out.append(state)
    return out
