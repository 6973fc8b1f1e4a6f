"""The edges of an image graph: which descriptors an index or manifest points at. GC, the
completeness check of set_image, save and load all walk the same edges."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from imagetool import digest as dg
from imagetool import mediatypes as mt
from imagetool.errors import ImagetoolError

MAX_JSON = 8 << 20  # a manifest or index bigger than this is not one we will parse


class GraphError(ImagetoolError, ValueError):
    """A manifest or index whose JSON or descriptors are malformed."""


def check_descriptor(desc: Any, where: str) -> dict[str, Any]:
    """Raise GraphError unless `desc` has a mediaType, a valid digest and a size."""
    if not isinstance(desc, dict):
        raise GraphError(f"{where}: descriptor is not an object")
    if not isinstance(desc.get("mediaType"), str) or not desc["mediaType"]:
        raise GraphError(f"{where}: descriptor has no mediaType")
    try:
        dg.parse(desc.get("digest"))  # type: ignore[arg-type]
    except dg.DigestError as e:
        raise GraphError(f"{where}: {e}") from None
    size = desc.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise GraphError(f"{where}: descriptor size {size!r} is not a non-negative integer")
    return desc


def parse_json(data: bytes, where: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise GraphError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise GraphError(f"{where}: not a JSON object")
    return obj


def is_parent(desc: dict[str, Any]) -> bool:
    """Whether the blob behind `desc` is an index or manifest whose children we follow."""
    return mt.is_index(desc.get("mediaType")) or mt.is_manifest(desc.get("mediaType"))


def children(desc: dict[str, Any], doc: dict[str, Any]) -> list[tuple[dict[str, Any], bool]]:
    """(child descriptor, required) pairs of an index or manifest. Children of an index are
    optional (a single-platform pull keeps one manifest of many); a manifest's config and
    distributable layers are required."""
    where = desc["digest"]
    out: list[tuple[dict[str, Any], bool]] = []
    if mt.is_index(desc.get("mediaType")):
        entries = doc.get("manifests", [])
        if not isinstance(entries, list):
            raise GraphError(f"{where}: manifests is not a list")
        for i, d in enumerate(entries):
            out.append((check_descriptor(d, f"{where} manifests[{i}]"), False))
    else:
        out.append((check_descriptor(doc.get("config"), f"{where} config"), True))
        layers = doc.get("layers", [])
        if not isinstance(layers, list):
            raise GraphError(f"{where}: layers is not a list")
        for i, d in enumerate(layers):
            check_descriptor(d, f"{where} layers[{i}]")
            out.append((d, not mt.is_nondistributable(d["mediaType"])))
    if doc.get("subject") is not None:
        out.append((check_descriptor(doc["subject"], f"{where} subject"), False))
    return out


def walk(roots: list[dict[str, Any]], read: Callable[[dict[str, Any]], bytes | None],
         has: Callable[[dict[str, Any]], bool]) -> Iterator[tuple[dict[str, Any], bool, bool]]:
    """Yield (descriptor, required, present) for every node reachable from `roots`, once per
    digest. `read(desc)` returns the verified bytes of an index or manifest, or None when it
    is absent; leaves (configs, layers) are never read, only looked for with `has(desc)`."""
    seen: set[str] = set()
    stack: list[tuple[dict[str, Any], bool]] = [(d, True) for d in reversed(roots)]
    while stack:
        desc, required = stack.pop()
        if desc["digest"] in seen:
            continue
        seen.add(desc["digest"])
        if not is_parent(desc):
            yield desc, required, has(desc)
            continue
        if desc["size"] > MAX_JSON:
            raise GraphError(f"{desc['digest']}: {desc['mediaType']} of {desc['size']} bytes "
                             "is too large")
        data = read(desc)
        if data is None:
            yield desc, required, False
            continue
        yield desc, required, True
        doc = parse_json(data, desc["digest"])
        stack.extend(reversed(children(desc, doc)))
