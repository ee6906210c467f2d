"""Home Assistant MQTT discovery (``alerts.mqtt.homeassistant``): maskwatch's cameras, rules and zones appear
in Home Assistant (or anything that reads its discovery topics, such as Node-RED) by themselves.

Retained configs on ``<discovery_prefix>/<component>/<node_id>/<object_id>/config`` (Home Assistant's MQTT
discovery conventions), one ``device`` per camera with the maskwatch version, every entity ``available``
while ``<prefix>/status`` reads ``online``:

- per camera: a ``connectivity`` binary sensor on the existing ``<prefix>/<camera>/status``;
- per rule: a binary sensor, ``ON`` while any alert of the rule is active on the camera, on
  ``<prefix>/<camera>/rules/<rule>/active`` (retained, published on change);
- per zone and class: a sensor of the objects inside, read from the existing retained
  ``<prefix>/<camera>/zones/<zone>/occupancy`` JSON with a ``value_template``;
- switches (the remote switches of ``pipeline/controls.py``): per camera "alerts enabled"
  (``<prefix>/<camera>/enabled[/set]``), per rule "armed" (``<prefix>/<camera>/rules/<rule>[/set]``).

A rule or zone that a hot reload removed loses its entity: an empty retained config payload. Everything goes
through the MQTT sink's retained state, so it is sent again after a reconnect (a broker without persistence).
"""

from __future__ import annotations

import json
import logging
import re
import threading

from maskwatch.zones import ZoneFile

from .config import HomeAssistantConfig
from .mqtt import MqttSink, topic_level

log = logging.getLogger(__name__)
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def object_id(*parts: str) -> str:
    """An id Home Assistant accepts in topics and unique ids: letters, digits, '_' and '-'."""
    return "_".join(_ID_UNSAFE.sub("_", p) for p in parts)


class HomeAssistant:
    """Publishes discovery configs and rule states for one pipeline's cameras through ``sink``.

    ``camera()`` (at start and after each zone-file reload) and ``rule_active()`` (after each stored alert
    event) may be called from any thread."""

    def __init__(self, sink: MqttSink, cfg: HomeAssistantConfig, class_names: list[str], version: str) -> None:
        self.sink = sink
        self.prefix = cfg.discovery_prefix
        self.node_id = cfg.node_id or object_id("maskwatch", sink.prefix)
        self.class_names = class_names
        self.version = version
        self._lock = threading.Lock()
        self._configs: dict[str, set[str]] = {}  # camera -> discovery config topics published for it
        self.published = 0
        self.removed = 0

    # -- topics ---------------------------------------------------------------------------
    def config_topic(self, component: str, oid: str) -> str:
        return f"{self.prefix}/{component}/{self.node_id}/{oid}/config"

    def rule_topic(self, camera: str, rule: str) -> str:
        return f"{self.sink.prefix}/{topic_level(camera)}/rules/{topic_level(rule)}/active"

    # -- entities -------------------------------------------------------------------------
    def _device(self, camera: str) -> dict:
        return {"identifiers": [object_id(self.node_id, camera)], "name": f"maskwatch {camera}",
                "manufacturer": "maskwatch", "model": "camera", "sw_version": self.version}

    def _entity(self, camera: str, oid: str, name: str, **fields) -> dict:
        return {"name": name, "unique_id": object_id(self.node_id, oid), "object_id": oid,
                "device": self._device(camera),
                "availability": [{"topic": self.sink.status_topic, "payload_available": "online",
                                  "payload_not_available": "offline"}], **fields}

    def entities(self, camera: str, zone_file: ZoneFile | None) -> dict[str, dict]:
        """Discovery config topic -> payload of every entity of ``camera`` with these zones and rules."""
        out: dict[str, dict] = {}
        oid = object_id(camera, "online")
        out[self.config_topic("binary_sensor", oid)] = self._entity(
            camera, oid, "camera online", state_topic=self.sink.camera_status_topic(camera),
            payload_on="online", payload_off="offline", device_class="connectivity", entity_category="diagnostic")
        if zone_file is None:
            return out
        base = f"{self.sink.prefix}/{topic_level(camera)}"
        oid = object_id(camera, "enabled")
        out[self.config_topic("switch", oid)] = self._entity(  # arms / disarms every rule of the camera
            camera, oid, "alerts enabled", state_topic=f"{base}/enabled", command_topic=f"{base}/enabled/set",
            payload_on="ON", payload_off="OFF", icon="mdi:shield-check")
        for rule in zone_file.rules:
            oid = object_id(camera, "rule", rule.id)
            out[self.config_topic("binary_sensor", oid)] = self._entity(
                camera, oid, f"{rule.id} ({rule.severity})", state_topic=self.rule_topic(camera, rule.id),
                payload_on="ON", payload_off="OFF", device_class="problem")
            oid = object_id(camera, "armed", rule.id)
            out[self.config_topic("switch", oid)] = self._entity(
                camera, oid, f"{rule.id} armed", state_topic=f"{base}/rules/{topic_level(rule.id)}",
                command_topic=f"{base}/rules/{topic_level(rule.id)}/set", payload_on="ON", payload_off="OFF",
                icon="mdi:shield-outline")
        for zone in zone_file.zones:
            for cls in self.class_names:
                oid = object_id(camera, "zone", zone.id, cls)
                out[self.config_topic("sensor", oid)] = self._entity(
                    camera, oid, f"{zone.id} {cls}", state_topic=self.sink.occupancy_topic(camera, zone.id),
                    value_template=f"{{{{ value_json[{json.dumps(cls)}] | default(0) }}}}",
                    unit_of_measurement="objects", state_class="measurement", icon="mdi:account-group")
        return out

    def camera(self, camera: str, zone_file: ZoneFile | None, active_rules: set[str] = frozenset()) -> None:
        """Publish the camera's entities (and the states of its rules); clear those it no longer has."""
        configs = self.entities(camera, zone_file)
        with self._lock:
            stale = self._configs.get(camera, set()) - set(configs)
            self._configs[camera] = set(configs)
        for topic in stale:  # a removed rule or zone: Home Assistant deletes the entity
            self.sink.publish_retained(topic, "")
            self.removed += 1
        for topic, payload in configs.items():
            self.sink.publish_retained(topic, json.dumps(payload, sort_keys=True, separators=(",", ":")))
            self.published += 1
        for rule in zone_file.rules if zone_file is not None else ():
            self.rule_active(camera, rule.id, rule.id in active_rules)
        if stale:
            log.info("home assistant: camera %s: %d entities removed after a zone-file change", camera, len(stale))

    def rule_active(self, camera: str, rule: str, active: bool) -> None:
        """The rule's binary sensor: ``ON`` while any alert of it is active (sent only when it changes)."""
        self.sink.publish_retained(self.rule_topic(camera, rule), "ON" if active else "OFF")
