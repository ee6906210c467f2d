"""Saving a zone file edited in the console: validated like the loader, written atomically, comments kept.

The new content arrives as plain data (JSON). It is validated with the zone-file schema
(``parse_zone_file``: the same one-line errors as ``maskwatch check``) and the model's class names, then merged
into the file's existing YAML document (ruamel.yaml's round trip), so the user's comments, key order and flow
style stay where they were:

- a mapping keeps its keys' order and comments; keys that are gone are removed, new ones are appended;
- ``zones`` and ``rules`` items are matched by ``id`` (an edited rule keeps its comments even if it moved);
- a list of numbers or points (``polygon``, ``line``, ``calibration.image``) is replaced in place in its
  existing style (``[[x, y], ...]`` stays a flow list).

The previous file is kept beside it as ``<name>.prev``; the new one is written to a temporary file in the same
folder, fsync'ed, and moved over the old one (``os.replace``), so the hot reload never reads half a file.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from maskwatch.zones import ZoneFile, ZoneFileError, load_zone_file, parse_zone_file

ID_LISTS = ("zones", "rules")  # lists whose items are matched by their `id`


def _yaml() -> YAML:
    y = YAML()  # round trip
    y.preserve_quotes = True
    y.width = 4096  # never wrap a long polygon
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def _is_scalar(v) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _plain_seq(v) -> bool:
    """A list of scalars or of lists of scalars (points)."""
    return isinstance(v, list) and all(_is_scalar(x) or (isinstance(x, list) and all(_is_scalar(y) for y in x))
                                       for x in v)


def _new_node(value, flow: bool = False):
    """Plain data -> ruamel nodes; lists of points and numbers in flow style ([[x, y], ...])."""
    if isinstance(value, dict):
        m = CommentedMap()
        for k, v in value.items():
            m[k] = _new_node(v)
        return m
    if isinstance(value, list):
        seq = CommentedSeq(_new_node(x, flow=True) for x in value)
        if flow or _plain_seq(value):
            seq.fa.set_flow_style()
        return seq
    return value


def _merge_seq(old: CommentedSeq, new: list, key: str | None):
    if key in ID_LISTS and all(isinstance(x, dict) and "id" in x for x in new) \
            and all(isinstance(x, CommentedMap) and "id" in x for x in old):
        by_id = {x["id"]: x for x in old}
        items = [_merge(by_id[x["id"]], x) if x["id"] in by_id else _new_node(x) for x in new]
        # keep comments attached to surviving items: rebuild the sequence in the new order
        comments = {id(by_id[i]): old.ca.items.get(k) for k, i in enumerate(x["id"] for x in old)}
        old.clear()
        old.ca.items.clear()
        for k, item in enumerate(items):
            old.append(item)
            c = comments.get(id(item))
            if c is not None:
                old.ca.items[k] = c
        return old
    if _plain_seq(new):
        flow = old.fa.flow_style()
        if len(old) == len(new) and all(_same_number(o, n) or (isinstance(o, list) and isinstance(n, list)
                                        and len(o) == len(n) and all(_same_number(x, y) for x, y in zip(o, n)))
                                        for o, n in zip(old, new)):
            return old  # the same numbers: keep them as written
        old[:] = [_new_node(x, flow=True) for x in new]
        if flow:
            old.fa.set_flow_style()
        return old
    return _new_node(new)


def _merge(old, new, key: str | None = None):
    """``new`` (plain data) merged into ``old`` (ruamel nodes), keeping what can be kept."""
    if isinstance(old, CommentedMap) and isinstance(new, dict):
        for k in [k for k in old if k not in new]:
            del old[k]
        for k, v in new.items():
            old[k] = _merge(old[k], v, k) if k in old else _new_node(v)
        return old
    if isinstance(old, CommentedSeq) and isinstance(new, list):
        return _merge_seq(old, new, key)
    if _same_number(old, new):  # JSON cannot tell 1.0 from 1: a number nobody changed keeps its spelling
        return old
    return _new_node(new)


def _same_number(a, b) -> bool:
    num = (int, float)
    return isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool) and not isinstance(b, bool) \
        and a == b


def validate(data: object, names: set[str] | None, file: Path | None = None) -> ZoneFile:
    """The zone-file schema, then every class a rule names must be a model class (when ``names`` is known)."""
    zf = parse_zone_file(data, file)
    if names:
        for j, rule in enumerate(zf.rules):
            for field in ("classes", "near"):
                for cls in getattr(rule, field, None) or []:
                    if cls not in names:
                        raise ZoneFileError(file, f"rules[{j}].{field}",
                                            f"class {cls!r} is not a model class, expected one of {sorted(names)}")
    return zf


def read_plain(path: Path) -> dict:
    """The zone file as plain data (what GET /api/cameras/{id}/zones answers)."""
    import yaml

    with open(path) as f:
        return yaml.safe_load(f) or {}


def render(path: Path, data: dict) -> str:
    """The file's text after merging ``data`` into its current YAML document (a new document if none)."""
    y = _yaml()
    try:
        doc = y.load(path.read_text()) if path.is_file() else None
    except Exception:  # an unreadable old file: write a fresh document rather than refuse the save
        doc = None
    doc = _merge(doc, data) if isinstance(doc, CommentedMap) else _new_node(data)
    buf = io.StringIO()
    y.dump(doc, buf)
    return buf.getvalue()


def save(path: Path, data: object, names: set[str] | None = None) -> ZoneFile:
    """Validate ``data`` and write it to ``path`` (atomically, the previous file kept as ``.prev``).

    Raises ``ZoneFileError`` (nothing written) when the data or the resulting file is not a valid zone file.
    """
    path = Path(path)
    validate(data, names, path)
    text = render(path, data)  # type: ignore[arg-type]
    # the text must read back as the same zone file (a merge bug must never reach the disk)
    import yaml

    again = validate(yaml.safe_load(text), names, path)
    if again != parse_zone_file(data, path):
        raise ZoneFileError(path, "", "internal error: the merged file differs from the edit; nothing written")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if path.is_file():
            shutil.copy2(path, path.with_name(path.name + ".prev"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return load_zone_file(path)
