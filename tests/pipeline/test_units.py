import numpy as np
import pytest

from maskwatch.engines.results import Detections, MaskSpace
from maskwatch.pipeline.outbox import Outbox
from maskwatch.pipeline.redact import redact_url
from maskwatch.pipeline.sinks import JsonlSink
from maskwatch.zones import AlertEvent


@pytest.mark.parametrize("url,expected", [
    ("rtsp://admin:s3cret@10.0.0.5:554/stream1", "rtsp://admin:***@10.0.0.5:554/stream1"),
    ("rtsp://admin@10.0.0.5/stream1", "rtsp://admin@10.0.0.5/stream1"),
    ("http://u:p%40ss@cam/x.mjpg", "http://u:***@cam/x.mjpg"),
    ("/videos/site.mp4", "/videos/site.mp4"),
])
def test_redact_url(url, expected):
    assert redact_url(url) == expected


MS = MaskSpace((8, 6), (80, 60))


def _dets(n):
    masks = np.zeros((n, 6, 8), bool)
    for i in range(n):
        masks[i, i % 6, i % 8] = True
    return Detections(np.tile([[0, 0, 10, 10]], (n, 1)), np.linspace(0.1, 0.9, n), np.arange(n) % 2, masks, MS,
                      data={"name": np.array([f"o{i}" for i in range(n)])})


def test_detections_indexing_keeps_arrays_parallel():
    d = _dets(5)
    sub = d[d.confidence > 0.5]
    assert len(sub) == 2 and sub.masks.shape == (2, 6, 8) and list(sub.data["name"]) == ["o3", "o4"]
    assert len(d[1:3]) == 2 and len(d[0]) == 1
    assert list(d.area) == [1] * 5


@pytest.mark.parametrize("kwargs,msg", [
    (dict(confidence=np.zeros(3)), "confidence"),
    (dict(class_id=np.zeros(2)), "class_id"),
    (dict(masks=np.zeros((3, 6, 8), bool)), "masks"),
    (dict(masks=np.zeros((4, 5, 8), bool)), "mask space"),
    (dict(tracker_id=np.zeros(5)), "tracker_id"),
])
def test_detections_shape_checks(kwargs, msg):
    base = dict(xyxy=np.zeros((4, 4)), confidence=np.zeros(4), class_id=np.zeros(4),
                masks=np.zeros((4, 6, 8), bool), mask_space=MS)
    base.update(kwargs)
    with pytest.raises(ValueError, match=msg):
        Detections(**base)


def test_mask_space_round_trip():
    xy = np.array([[0.0, 0.0], [7.0, 5.0], [3.5, 2.25]])
    assert np.allclose(MS.from_frame(MS.to_frame(xy)), xy)
    assert np.allclose(MS.to_frame([[-0.5, -0.5]]), [[-0.5, -0.5]])  # the frame's corner maps to the mask's corner
    assert MS.upsample(_dets(1).masks).shape == (1, 60, 80)


def _event(i):
    return AlertEvent(id=f"c:r:{i}:0", type="start", camera="c", rule="r", rule_type="intrusion", zone="z",
                      severity="warning", objects=[], frame_index=i, pts_s=i / 10, wall_time=1000 + i,
                      started_at=1000 + i, started_pts_s=i / 10)


def test_outbox_survives_reopen_and_acks_in_order(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")
    for i in range(5):
        ob.add(_event(i))
    ob.close()
    ob2 = Outbox(tmp_path / "o.sqlite")  # a new process would see the same rows
    rows = ob2.pending()
    assert [AlertEvent.from_dict(__import__("json").loads(r.payload)).frame_index for r in rows] == [0, 1, 2, 3, 4]
    sink = JsonlSink(tmp_path / "a.jsonl")
    sink.send(rows[:3])
    ob2.ack(sink.acked())
    assert ob2.count() == 2
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 3
