"""Engine files in Ultralytics' layout (4-byte little-endian length + JSON + plan) and the engine cache key."""

from __future__ import annotations

import json

import pytest

from maskwatch.engines.engine_file import (
    cache_key,
    cached_engine_path,
    default_cache_dir,
    read_engine_file,
    split_engine_bytes,
    write_engine_file,
)

PLAN = b"ftrt\x00\x01\x02\x03" + bytes(range(256)) * 4  # stands in for a serialized TensorRT plan
META = {
    "description": "Ultralytics YOLO11n-seg model",
    "stride": 32,
    "task": "segment",
    "batch": 1,
    "imgsz": [384, 640],
    "names": {"0": "worker", "1": "excavator"},
    "args": {"batch": 1, "half": True, "dynamic": False},
    "maskwatch": {"fp16": True, "batch": 1, "dynamic": False, "workspace_gib": None},
}


def test_header_round_trip(tmp_path):
    path = write_engine_file(tmp_path / "m.engine", PLAN, META)
    meta, plan = read_engine_file(path)
    assert meta == META and plan == PLAN
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_reads_ultralytics_layout_written_by_hand(tmp_path):
    # exactly what ultralytics/utils/export/engine.py onnx2engine writes
    metadata = {"author": "Ultralytics", "stride": 32, "task": "segment", "batch": 2, "imgsz": [640, 640],
                "names": {0: "person", 1: "bicycle"}, "end2end": False}
    path = tmp_path / "yolo.engine"
    with open(path, "wb") as t:
        meta = json.dumps(metadata)
        t.write(len(meta).to_bytes(4, byteorder="little", signed=True))
        t.write(meta.encode())
        t.write(PLAN)
    got, plan = read_engine_file(path)
    assert plan == PLAN
    assert got == {**metadata, "names": {"0": "person", "1": "bicycle"}}  # JSON keys are strings


def test_our_bytes_are_ultralytics_bytes(tmp_path):
    path = write_engine_file(tmp_path / "m.engine", PLAN, META)
    meta = json.dumps(META)
    assert path.read_bytes() == len(meta).to_bytes(4, "little", signed=True) + meta.encode() + PLAN


@pytest.mark.parametrize("plan", [PLAN, b"\x00\x00\x00\x00" + PLAN, b"\xff\xff\xff\x7f" + PLAN, b"\x10\x00\x00\x00abc" + PLAN])
def test_plain_plan_without_header(tmp_path, plan):
    path = tmp_path / "plain.plan"
    write_engine_file(path, plan, None)
    assert path.read_bytes() == plan
    assert read_engine_file(path) == (None, plan)


@pytest.mark.parametrize(
    "data, match",
    [
        (b"\x40\x00\x00\x00" + b'{"names": {"0": "a"}', "truncated or corrupt metadata header"),  # length > file
        (b"\x08\x00\x00\x00" + b'{"names"' + PLAN, "corrupt metadata header"),  # JSON cut off inside the length
        (b"\x02\x00\x00\x00" + b"[]" + PLAN, "must be a JSON object"),
        (b"\x02\x00\x00\x00" + b"{}", "no TensorRT plan after it"),
        (b"\x01\x00", "too short"),
    ],
)
def test_corrupt_headers_are_clear_errors(tmp_path, data, match):
    path = tmp_path / "bad.engine"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=match) as err:
        read_engine_file(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_empty_plan_is_refused(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        write_engine_file(tmp_path / "m.engine", b"", META)


def test_split_engine_bytes_matches_file_reader(tmp_path):
    path = write_engine_file(tmp_path / "m.engine", PLAN, META)
    assert split_engine_bytes(path.read_bytes()) == read_engine_file(path)


# ------------------------------------------------------------------------------------------ cache key

BASE = dict(model=b"onnx model bytes", trt_version="10.16.0", gpu_name="NVIDIA H100 80GB HBM3",
            options={"fp16": True, "batch": 1, "dynamic": False, "workspace_gib": None})


def key(**change):
    args = {**BASE, **change}
    return cache_key(args["model"], args["trt_version"], args["gpu_name"], args["options"])


@pytest.mark.parametrize(
    "change",
    [
        {"model": b"onnx model bytes!"},
        {"trt_version": "11.4.0"},
        {"trt_version": "10.16.1"},
        {"gpu_name": "NVIDIA GeForce RTX 4090"},
        {"options": {**BASE["options"], "fp16": False}},
        {"options": {**BASE["options"], "batch": 4}},
        {"options": {**BASE["options"], "dynamic": True}},
        {"options": {**BASE["options"], "workspace_gib": 4.0}},
        {"options": {**BASE["options"], "strongly_typed": True}},  # a new option
    ],
    ids=["model", "trt-major", "trt-patch", "gpu", "fp16", "batch", "dynamic", "workspace", "new-option"],
)
def test_cache_key_changes_with_every_input(change):
    assert key(**change) != key()


def test_cache_key_is_stable_and_ignores_dict_order(tmp_path):
    reordered = dict(reversed(list(BASE["options"].items())))
    assert key() == key() == key(options=reordered)
    assert len(key()) == 64 and int(key(), 16) >= 0
    model = tmp_path / "m.onnx"
    model.write_bytes(BASE["model"])
    assert key(model=model) == key() == key(model=str(model))  # a path hashes the file's bytes


def test_cached_engine_path(tmp_path, monkeypatch):
    k = key()
    assert cached_engine_path(tmp_path, k) == tmp_path / f"{k}.engine"
    monkeypatch.setenv("MASKWATCH_CACHE_DIR", str(tmp_path / "cache"))
    assert default_cache_dir() == tmp_path / "cache"
    assert cached_engine_path(None, k) == tmp_path / "cache" / f"{k}.engine"
    monkeypatch.delenv("MASKWATCH_CACHE_DIR")
    assert default_cache_dir().parts[-3:] == (".cache", "maskwatch", "engines")
    with pytest.raises(ValueError, match="hex digest"):
        cached_engine_path(tmp_path, "../escape")
