"""What the CLI shows about stored images: finding an image by name or digest prefix, the
`images` rows (table and JSON), and the `inspect` document. Kept apart from argparse so tests
and other front ends can use the same answers."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any

from imagetool import mediatypes as mt
from imagetool import reference
from imagetool.store import Store, StoreError
from imagetool.store.lookup import (  # noqa: F401  (their old home: this module's API)
    Ambiguous,
    NotFound,
    image_id,
    name_of,
    platform_manifest,
    resolve,
    resolve_one,
)


def _config(store: Store, desc: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(manifest, config) of the image, {} for parts not in the store."""
    m = platform_manifest(store, desc)
    if m is None or not store.has_blob(m["digest"]):
        return None, {}
    manifest = store.read_json(m)
    c = manifest.get("config") or {}
    if not store.has_blob(c.get("digest", "")):
        return manifest, {}
    return manifest, store.read_json(c)


def parse_time(text: Any) -> _dt.datetime | None:
    """RFC 3339 with up to nanoseconds (Go writes 9 digits; Python reads 6)."""
    if not isinstance(text, str) or not text:
        return None
    t = text.replace("Z", "+00:00")
    if "." in t:
        head, rest = t.split(".", 1)
        digits = len(rest) - len(rest.lstrip("0123456789"))
        t = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}" if digits else head + rest
    try:
        when = _dt.datetime.fromisoformat(t)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=_dt.UTC)


def ago(when: _dt.datetime | None, now: _dt.datetime | None = None) -> str:
    """'N units ago', as docker prints CREATED."""
    if when is None:
        return "N/A"
    secs = ((now or _dt.datetime.now(_dt.UTC)) - when).total_seconds()
    for unit, size in (("year", 365 * 86400), ("month", 30 * 86400), ("week", 7 * 86400),
                       ("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        n = int(secs // size)
        if n >= 1:
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "Less than a second ago"


def human_size(n: int) -> str:
    """Docker's SI sizes: 1.15MB, 512B."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.3g}{unit}"
        size /= 1000
    return f"{n}B"


@dataclass
class Row:
    name: str
    repository: str
    tag: str
    digest: str
    image_id: str
    created: str
    size: int
    media_type: str
    platform: str

    def as_json(self, no_trunc: bool = False) -> dict[str, Any]:
        """docker's `images --format '{{json .}}'` keys (plus Name, MediaType, Platform)."""
        when = parse_time(self.created)
        return {"Containers": "N/A", "CreatedAt": go_time(when), "CreatedSince": ago(when),
                "Digest": self.digest, "ID": short_id(self.image_id, no_trunc),
                "Repository": self.repository, "SharedSize": "N/A",
                "Size": human_size(self.size), "Tag": self.tag, "UniqueSize": "N/A",
                "VirtualSize": human_size(self.size), "Name": self.name,
                "MediaType": self.media_type, "Platform": self.platform}


IMAGE_HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
                 "ID": "IMAGE ID", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                 "Size": "SIZE", "VirtualSize": "VIRTUAL SIZE", "Containers": "CONTAINERS",
                 "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE", "Name": "NAME",
                 "Platform": "PLATFORM", "MediaType": "MEDIA TYPE"}


def short_id(digest: str, no_trunc: bool = False) -> str:
    """docker's IMAGE ID column: 12 hex digits, or the whole digest with --no-trunc."""
    return digest if no_trunc else digest.split(":", 1)[-1][:12]


def go_time(when: _dt.datetime | None) -> str:
    """Go's time.String() as docker prints CreatedAt: 2024-01-02 03:04:05 +0000 UTC."""
    return when.strftime("%Y-%m-%d %H:%M:%S +0000 UTC") if when else ""


def rows(store: Store, filters: list[str] | None = None) -> list[Row]:
    """One row per name in the store (and per unnamed entry), newest first as docker lists
    them (then by name)."""
    want = []
    for f in filters or []:
        try:
            want.append(reference.parse(f, default_tag=":" in f.rsplit("/", 1)[-1]))
        except reference.ReferenceError as e:
            raise StoreError(str(e)) from None
    from imagetool import sizes
    out = []
    for d in store.list_images():
        name = name_of(d) or ""
        try:
            ref = reference.parse(name)
            repo = ref.with_tag(None).familiar()
            tag = ref.tag or "<none>"
        except reference.ReferenceError:
            ref, repo, tag = None, name or "<none>", "<none>"
        if want and not any(ref is not None and ref.name == w.name and
                            (w.tag is None or w.tag == ref.tag) for w in want):
            continue
        manifest, cfg = _config(store, d)
        size = sizes.image_size(store, manifest) if manifest is not None else 0
        plat = "/".join(p for p in (cfg.get("os"), cfg.get("architecture"), cfg.get("variant"))
                        if isinstance(p, str) and p)
        out.append(Row(name, repo, tag, d["digest"],
                       ((manifest or {}).get("config") or {}).get("digest", ""),
                       cfg.get("created") or "", size, d.get("mediaType", ""), plat))
    out.sort(key=lambda r: (r.repository, r.tag, r.name))
    epoch = _dt.datetime.min.replace(tzinfo=_dt.UTC)
    return sorted(out, key=lambda r: parse_time(r.created) or epoch, reverse=True)


def table(rs: list[Row], digests: bool = False, no_trunc: bool = False) -> str:
    """docker's `images` table: REPOSITORY TAG [DIGEST] IMAGE ID CREATED SIZE."""
    fmt = "table {{.Repository}}\t{{.Tag}}\t" + ("{{.Digest}}\t" if digests else "") + \
        "{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    from imagetool.gotemplate import format_rows
    return "\n".join(format_rows(fmt, [r.as_json(no_trunc) for r in rs], IMAGE_HEADERS))


def inspect(store: Store, name: str) -> dict[str, Any]:
    """docker's `image inspect` document (Id = config digest, RepoTags, RepoDigests, Config =
    the config's "config", RootFS, Size ...) plus ours: Name, Digest (of the manifest or
    index), Descriptor, Manifest, Index, ImageConfig (the whole config blob)."""
    desc = store.get_image(name)
    if desc is None:
        raise NotFound(f"no image {name} in {store.root}")
    manifest, cfg = _config(store, desc)
    iid = ((manifest or {}).get("config") or {}).get("digest")
    tags, digests = [], []
    for d in store.list_images():
        n = name_of(d)
        if not n or (n != name and (not iid or image_id(store, d) != iid)):
            continue
        try:
            ref = reference.parse(n)
        except reference.ReferenceError:
            continue
        tags.append(ref.familiar())
        rd = f"{ref.with_tag(None).familiar()}@{d['digest']}"
        if rd not in digests:
            digests.append(rd)
    from imagetool import sizes
    size = sizes.image_size(store, manifest) if manifest is not None else 0
    doc: dict[str, Any] = {
        "Id": iid, "RepoTags": sorted(set(tags)), "RepoDigests": sorted(digests),
        "Parent": "", "Comment": (cfg.get("history") or [{}])[-1].get("comment", "")
        if cfg.get("history") else "",
        "Created": cfg.get("created", ""), "Container": "", "ContainerConfig": {},
        "DockerVersion": "", "Author": cfg.get("author", ""),
        "Config": cfg.get("config") or {}, "Architecture": cfg.get("architecture", ""),
        "Os": cfg.get("os", ""), "Size": size, "VirtualSize": size,
        "RootFS": {"Type": (cfg.get("rootfs") or {}).get("type", "layers"),
                   "Layers": list((cfg.get("rootfs") or {}).get("diff_ids") or [])},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        "Name": name, "Digest": desc["digest"], "Descriptor": desc, "ID": iid}
    if cfg.get("variant"):
        doc["Variant"] = cfg["variant"]
    if mt.is_index(desc.get("mediaType")):
        doc["Index"] = store.read_json(desc)
    doc["Manifest"] = manifest
    doc["ImageConfig"] = cfg or None
    return doc
