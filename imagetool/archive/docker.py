"""The `docker save` format: manifest.json ([{Config, RepoTags, Layers}]), repositories
({repo: {tag: top layer id}}), <config hex>.json, and one <v1 id>/ directory per layer holding
layer.tar (uncompressed), json (the legacy v1 image JSON) and VERSION. Docker 20.10 loads it
through manifest.json; without manifest.json (docker < 1.10) the repositories file and the
v1 JSON chain are all there is, and we can load that too."""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from typing import Any

from imagetool import compression, reference
from imagetool import digest as dg
from imagetool import mediatypes as mt
from imagetool.archive.tarreader import ArchiveError, TarReader
from imagetool.archive.tarwriter import TarWriter
from imagetool.store import Store, graph

MAX_JSON = 32 << 20
_V1_ID = re.compile(r"[a-f0-9]{64}\Z")
# Keys of a v1 layer JSON that are about the layer, not the image (dropped from the config).
_V1_ONLY = ("id", "parent", "Size", "parent_id", "layer_id", "throwaway")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- save ------------------------------------------------------------------------------------
def _manifest_for(store: Store, name: str, desc: dict[str, Any]) -> dict[str, Any]:
    """The image manifest to save for `name`: an index resolves to this host's platform."""
    if mt.is_manifest(desc["mediaType"]):
        return desc
    if mt.is_index(desc["mediaType"]):
        from imagetool.platform import PlatformError, host, select
        index = store.read_json(desc)
        present = [d for d in index.get("manifests", [])
                   if isinstance(d, dict) and store.has_blob(d.get("digest", ""))]
        try:
            child = select(present, host(), f"image {name}")
        except PlatformError as e:
            raise ArchiveError(f"cannot save {name} in docker format: {e}") from None
        return _manifest_for(store, name, child)
    raise ArchiveError(f"cannot save {name}: {desc['mediaType']} is not an image")


def _write_layer(store: Store, ldesc: dict[str, Any], diff_id: str, path: str, tw: TarWriter,
                 spool_dir: str | None) -> None:
    """Decompress a layer into `path`, checking it against the config's diff_id on the way."""
    try:
        kind = mt.compression(ldesc["mediaType"])
    except ValueError as e:
        raise ArchiveError(f"cannot save layer {ldesc['digest']}: {e}") from None
    with store.open_blob(ldesc["digest"], ldesc["size"]) as raw, \
            tempfile.TemporaryFile(dir=spool_dir) as tmp:
        plain = compression.decompressed(raw, kind)  # type: ignore[arg-type]
        h, n = hashlib.sha256(), 0
        while chunk := plain.read(dg.CHUNK):
            h.update(chunk)
            tmp.write(chunk)
            n += len(chunk)
        raw.verify_rest()
        if f"sha256:{h.hexdigest()}" != diff_id:
            raise ArchiveError(f"layer {ldesc['digest']} uncompresses to sha256:{h.hexdigest()}"
                               f", but the image config says {diff_id}")
        tmp.seek(0)
        tw.file(path, tmp, n)


def save_docker(store: Store, images: list[tuple[str, dict[str, Any]]], tw: TarWriter,
                spool_dir: str | None = None) -> None:
    groups: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for name, desc in images:
        mdesc = _manifest_for(store, name, desc)
        groups.setdefault(mdesc["digest"], (mdesc, []))[1].append(name)
    layer_paths: dict[str, str] = {}   # diff_id -> first layer.tar written with it
    ids: set[str] = set()
    entries: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    for mdesc, names in groups.values():
        manifest = store.read_json(mdesc)
        cdesc = manifest.get("config") or {}
        config_bytes = store.read_blob(cdesc["digest"], cdesc.get("size"))
        cfg = graph.parse_json(config_bytes, f"config {cdesc['digest']}")
        diff_ids = (cfg.get("rootfs") or {}).get("diff_ids") or []
        layers = manifest.get("layers") or []
        if len(diff_ids) != len(layers):
            raise ArchiveError(f"cannot save {names[0]}: {len(layers)} layers but "
                               f"{len(diff_ids)} diff_ids in its config")
        chain, parent, paths = "", "", []
        for i, (ldesc, diff_id) in enumerate(zip(layers, diff_ids, strict=True)):
            chain = diff_id if not chain else f"sha256:{_sha(chain + ' ' + diff_id)}"
            top = i == len(layers) - 1
            v1id = _sha(json.dumps([chain, parent, cdesc["digest"] if top else ""]))
            path = f"{v1id}/layer.tar"
            if v1id not in ids:
                ids.add(v1id)
                v1: dict[str, Any] = {"id": v1id}
                if parent:
                    v1["parent"] = parent
                v1["created"] = cfg.get("created") or "1970-01-01T00:00:00Z"
                if top:
                    v1.update({k: v for k, v in cfg.items() if k not in ("rootfs", "history")})
                    v1["id"] = v1id
                tw.bytes(f"{v1id}/VERSION", b"1.0")
                tw.bytes(f"{v1id}/json", json.dumps(v1).encode())
                if diff_id in layer_paths:
                    tw.symlink(path, f"../{layer_paths[diff_id]}")
                else:
                    _write_layer(store, ldesc, diff_id, path, tw, spool_dir)
                    layer_paths[diff_id] = path
            paths.append(path)
            parent = v1id
        config_name = f"{dg.parse(cdesc['digest'])[1]}.json"
        tw.bytes(config_name, config_bytes)
        tags = []
        for name in names:
            try:
                ref = reference.parse(name)
            except reference.ReferenceError:
                continue
            if ref.tag and not ref.digest:
                tags.append(ref.familiar())
                if parent:
                    repositories.setdefault(ref.with_tag(None).familiar(), {})[ref.tag] = parent
        entries.append({"Config": config_name, "RepoTags": tags or None, "Layers": paths})
    tw.bytes("manifest.json", json.dumps(entries).encode())
    if repositories:
        tw.bytes("repositories", json.dumps(repositories).encode())


# -- load ------------------------------------------------------------------------------------
def _ingest_layer(store: Store, tr: TarReader, member: str) -> tuple[dict[str, Any], str]:
    """Store one layer file of the archive; return (descriptor, diff_id). gzip and zstd layers
    are kept as they are; plain (and xz/bzip2) layers are gzipped."""
    with tr.open(member) as f:
        kind = mt.sniff_compression(f.read(8))
    if kind in ("gzip", "zstd"):
        with store.ingest() as w, tr.open(member) as f:
            while chunk := f.read(dg.CHUNK):
                w.write(chunk)
            digest, size = w.commit(), w.size
        h = hashlib.sha256()
        with store.open_blob(digest, size) as raw:
            plain = compression.decompressed(raw, kind)  # type: ignore[arg-type]
            while chunk := plain.read(dg.CHUNK):
                h.update(chunk)
        media = mt.OCI_LAYER_GZIP if kind == "gzip" else mt.OCI_LAYER_ZSTD
    else:
        h = hashlib.sha256()
        gz = compression.GzipWriter()
        with store.ingest() as w, tr.open(member) as f:
            plain = compression.decompressed(f, kind)
            while chunk := plain.read(dg.CHUNK):
                h.update(chunk)
                w.write(gz.compress(chunk))
            w.write(gz.flush())
            digest, size = w.commit(), w.size
        media = mt.OCI_LAYER_GZIP
    return {"mediaType": media, "digest": digest, "size": size}, f"sha256:{h.hexdigest()}"


def _layers(store: Store, tr: TarReader, members: list[str | None], where: str,
            cache: dict[str, tuple[dict[str, Any], str]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Ingest the layer files (None: an empty v1 layer without one), each real file once."""
    descs, diff_ids = [], []
    for member in members:
        if member is None:
            continue
        real = tr.real_name(member)
        if real not in cache:
            try:
                cache[real] = _ingest_layer(store, tr, real)
            except (OSError, EOFError, ValueError) as e:
                raise ArchiveError(f"{where}: layer {member}: {e}") from None
        descs.append(cache[real][0])
        diff_ids.append(cache[real][1])
    return descs, diff_ids


def _publish(store: Store, config_bytes: bytes, cfg: dict[str, Any],
             layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Store config (verbatim, so the image ID stays docker's) and an OCI manifest."""
    cdigest = store.put_bytes(config_bytes)
    manifest = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                "config": {"mediaType": mt.OCI_CONFIG, "digest": cdigest,
                           "size": len(config_bytes)},
                "layers": layers}
    desc = store.put_json(manifest, mt.OCI_MANIFEST)
    if isinstance(cfg.get("os"), str) and isinstance(cfg.get("architecture"), str):
        desc["platform"] = {"architecture": cfg["architecture"], "os": cfg["os"]}
        if isinstance(cfg.get("variant"), str) and cfg["variant"]:
            desc["platform"]["variant"] = cfg["variant"]
    return desc


def _names(tags: Any, where: str) -> list[str]:
    if not tags:
        raise ArchiveError(f"{where}: image has no RepoTags; cannot load an image without a name")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ArchiveError(f"{where}: RepoTags is not a list of strings")
    try:
        return [reference.normalize(t) for t in tags]
    except reference.ReferenceError as e:
        raise ArchiveError(f"{where}: {e}") from None


def load_docker(store: Store, tr: TarReader) -> list[tuple[str, dict[str, Any]]]:
    """Load every image of manifest.json. Everything is checked before the first blob is
    written; the caller holds a lease and publishes the returned (name, descriptor) pairs."""
    try:
        entries = json.loads(tr.read("manifest.json", MAX_JSON))
    except (ValueError, UnicodeDecodeError) as e:
        raise ArchiveError(f"{tr.label}: manifest.json is not valid JSON ({e})") from None
    if not isinstance(entries, list) or not entries:
        raise ArchiveError(f"{tr.label}: manifest.json lists no images")
    plans = []
    for i, entry in enumerate(entries):
        where = f"{tr.label}: manifest.json[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
                or not isinstance(entry.get("Layers"), list) \
                or not all(isinstance(p, str) for p in entry["Layers"]):
            raise ArchiveError(f"{where}: want an object with Config (string) and Layers "
                               "(list of strings)")
        names = _names(entry.get("RepoTags"), where)
        config_bytes = tr.read(entry["Config"], MAX_JSON)
        try:
            cfg = graph.parse_json(config_bytes, f"{where} Config {entry['Config']}")
        except graph.GraphError as e:
            raise ArchiveError(str(e)) from None
        want = (cfg.get("rootfs") or {}).get("diff_ids")
        if not isinstance(want, list) or len(want) != len(entry["Layers"]):
            raise ArchiveError(f"{where}: config has {len(want or [])} diff_ids for "
                               f"{len(entry['Layers'])} Layers")
        for p in entry["Layers"]:
            if not tr.has(p):
                raise ArchiveError(f"{where}: layer {p} is not in the archive")
        plans.append((where, names, config_bytes, cfg, entry["Layers"], want))
    cache: dict[str, tuple[dict[str, Any], str]] = {}
    out: list[tuple[str, dict[str, Any]]] = []
    for where, names, config_bytes, cfg, members, want in plans:
        descs, got = _layers(store, tr, members, where, cache)
        for member, g, w in zip(members, got, want, strict=True):
            if g != w:
                raise ArchiveError(f"{where}: layer {member} has diff_id {g}, but the "
                                   f"config says {w}")
        desc = _publish(store, config_bytes, cfg, descs)
        out.extend((n, dict(desc)) for n in names)
    return out


def _v1_chain(tr: TarReader, top: str, where: str) -> list[tuple[str, dict[str, Any]]]:
    """(id, v1 JSON) from the base layer up to `top`, following `parent`."""
    chain: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    cur: str | None = top
    while cur:
        if not isinstance(cur, str) or not _V1_ID.match(cur) or cur in seen:
            raise ArchiveError(f"{where}: bad or looping layer id {cur!r}")
        seen.add(cur)
        try:
            v1 = graph.parse_json(tr.read(f"{cur}/json", MAX_JSON), f"{where}: {cur}/json")
        except graph.GraphError as e:
            raise ArchiveError(str(e)) from None
        chain.append((cur, v1))
        cur = v1.get("parent") or None
    return chain[::-1]


def _history(v1: dict[str, Any], empty: bool) -> dict[str, Any]:
    h: dict[str, Any] = {}
    for key in ("created", "author", "comment"):
        if isinstance(v1.get(key), str) and v1[key]:
            h[key] = v1[key]
    cmd = (v1.get("container_config") or {}).get("Cmd")
    if isinstance(cmd, list) and cmd:
        h["created_by"] = " ".join(str(c) for c in cmd)
    if empty:
        h["empty_layer"] = True
    return h


def load_legacy(store: Store, tr: TarReader) -> list[tuple[str, dict[str, Any]]]:
    """Load a pre-1.10 archive: names from `repositories`, the image from the v1 JSON chain."""
    try:
        repos = json.loads(tr.read("repositories", MAX_JSON))
    except (ValueError, UnicodeDecodeError) as e:
        raise ArchiveError(f"{tr.label}: repositories is not valid JSON ({e})") from None
    if not isinstance(repos, dict) or not repos:
        raise ArchiveError(f"{tr.label}: repositories names no images")
    plans = []
    for repo, tags in repos.items():
        if not isinstance(tags, dict):
            raise ArchiveError(f"{tr.label}: repositories[{repo!r}] is not an object")
        for tag, top in tags.items():
            where = f"{tr.label}: repositories {repo}:{tag}"
            name = _names([f"{repo}:{tag}"], where)[0]
            chain = _v1_chain(tr, top, where)
            members = [f"{i}/layer.tar" if tr.has(f"{i}/layer.tar") else None for i, _ in chain]
            plans.append((where, name, chain, members))
    cache: dict[str, tuple[dict[str, Any], str]] = {}
    out = []
    for where, name, chain, members in plans:
        descs, diff_ids = _layers(store, tr, members, where, cache)
        cfg = {k: v for k, v in chain[-1][1].items() if k not in _V1_ONLY}
        cfg["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
        cfg["history"] = [_history(v1, m is None) for (_, v1), m in zip(chain, members,
                                                                          strict=True)]
        config_bytes = json.dumps(cfg, separators=(",", ":")).encode()
        out.append((name, _publish(store, config_bytes, cfg, descs)))
    return out
