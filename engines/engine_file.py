"""TensorRT engine files in Ultralytics' layout, and the engine cache's keys and paths.

An Ultralytics ``.engine`` file is a 4-byte little-endian length, that many bytes of UTF-8 JSON
metadata (names, imgsz, stride, batch, task, ...), then the serialized TensorRT plan. A plain plan
(``trtexec --saveEngine``) has no header; it is told apart the way Ultralytics' ``engine_header``
does: the first four bytes are a header length only when they fit inside the file and the bytes they
cover parse as JSON.

No TensorRT import here: this module is pure file handling and hashing, tested on any machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CACHE_ENV = "MASKWATCH_CACHE_DIR"
CACHE_FORMAT = 1  # bump when the way maskwatch builds engines changes, so old cache entries are not reused
_LEN_BYTES = 4


def write_engine_file(path: str | Path, plan: bytes, metadata: Mapping[str, Any] | None) -> Path:
    """Write ``plan`` with a JSON metadata header (None: a plain plan); atomic (temp file + rename)."""
    path = Path(path)
    plan = bytes(plan)
    if not plan:
        raise ValueError(f"{path}: refusing to write an empty TensorRT plan")
    header = b""
    if metadata is not None:
        # ensure_ascii (json's default, as Ultralytics writes it): characters == bytes, so readers that
        # count either agree on the length.
        meta = json.dumps(dict(metadata), default=str).encode("utf-8")
        header = len(meta).to_bytes(_LEN_BYTES, byteorder="little", signed=True) + meta
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header)
            f.write(plan)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def split_engine_bytes(data: bytes, source: str = "engine") -> tuple[dict[str, Any] | None, bytes]:
    """``(metadata or None, plan)`` from the bytes of an engine file (see ``read_engine_file``)."""
    if len(data) <= _LEN_BYTES:
        raise ValueError(f"{source}: {len(data)} bytes is too short to be a TensorRT engine file")
    n = int.from_bytes(data[:_LEN_BYTES], byteorder="little")
    body = data[_LEN_BYTES:]
    looks_like_header = body[:1] == b"{"  # Ultralytics' and maskwatch's metadata are JSON objects
    if 0 < n <= len(body):
        try:
            meta = json.loads(body[:n].decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            if looks_like_header:
                raise ValueError(
                    f"{source}: corrupt metadata header: {n} bytes of JSON expected after the length, "
                    f"but they do not parse ({exc})"
                ) from None
        else:
            if not isinstance(meta, dict):
                raise ValueError(f"{source}: metadata header must be a JSON object, got {type(meta).__name__}")
            plan = body[n:]
            if not plan:
                raise ValueError(f"{source}: metadata header ({n} bytes) but no TensorRT plan after it (truncated file?)")
            return meta, plan
    elif looks_like_header:
        raise ValueError(
            f"{source}: truncated or corrupt metadata header: its length field says {n} bytes of JSON, "
            f"but only {len(body)} bytes follow"
        )
    return None, data


def read_engine_file(path: str | Path) -> tuple[dict[str, Any] | None, bytes]:
    """``(metadata, plan)`` of a ``.engine``/``.plan`` file; metadata is None for a plain plan.

    Raises ``ValueError`` for a header that starts like JSON metadata but is cut short or does not parse.
    """
    path = Path(path)
    return split_engine_bytes(path.read_bytes(), str(path))


# ------------------------------------------------------------------------------------------ cache


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cache_key(
    model: bytes | str | Path, trt_version: str, gpu_name: str, options: Mapping[str, Any]
) -> str:
    """sha256 (hex) over a canonical JSON of the model file's sha256, TensorRT version, GPU and build options.

    ``model``: the ONNX file's bytes or its path. Dict order in ``options`` does not matter; any change of
    a value (``fp16``, ``batch``, ``dynamic``, ``workspace_gib``, ...) gives another key.
    """
    model_sha = hashlib.sha256(model).hexdigest() if isinstance(model, (bytes, bytearray)) else file_sha256(model)
    doc = {
        "format": CACHE_FORMAT,
        "model_sha256": model_sha,
        "tensorrt": str(trt_version),
        "gpu": str(gpu_name),
        "options": dict(options),
    }
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def default_cache_dir() -> Path:
    """``$MASKWATCH_CACHE_DIR`` when set, else ``~/.cache/maskwatch/engines``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "maskwatch" / "engines"


def cached_engine_path(cache_dir: str | Path | None, key: str) -> Path:
    """Where the engine for ``key`` lives in ``cache_dir`` (None: ``default_cache_dir()``)."""
    if not key or not all(c in "0123456789abcdef" for c in key):
        raise ValueError(f"cache key must be a lower-case hex digest, got {key!r}")
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"{key}.engine"
