"""Finding images in the store: a name, a normalised reference or a digest / image ID prefix
-> store names (`resolve`, `resolve_one`); the manifest an index stands for on this host
(`platform_manifest`); the image ID; and the parts a bundle or a build reads
(`image_parts`). Offline: nothing here imports the registry client."""

from __future__ import annotations

from typing import Any

from imagetool import mediatypes as mt
from imagetool import reference
from imagetool.platform import PlatformError, host, select
from imagetool.store import REF_NAME, Store, StoreError


class NotFound(StoreError):
    pass


def name_of(desc: dict[str, Any]) -> str | None:
    return (desc.get("annotations") or {}).get(REF_NAME)


def _is_digest_prefix(text: str) -> bool:
    hexpart = text[7:] if text.startswith("sha256:") else text
    return 4 <= len(hexpart) <= 64 and all(c in "0123456789abcdef" for c in hexpart)


def resolve(store: Store, text: str) -> list[str]:
    """The store names `text` means: the normalised reference if stored, else every name
    whose manifest digest or image ID (config digest) starts with `text`."""
    try:
        full = reference.normalize(text)
    except reference.ReferenceError:
        full = None
    if full is not None and store.get_image(full) is not None:
        return [full]
    if store.get_image(text) is not None:  # a name another tool wrote (e.g. umoci's "latest")
        return [text]
    if _is_digest_prefix(text):
        want = text if text.startswith("sha256:") else "sha256:" + text
        hits = []
        for d in store.list_images():
            n = name_of(d) or d.get("digest")  # an unnamed (dangling) image: its digest
            if n and (d["digest"].startswith(want) or image_id(store, d).startswith(want)):
                hits.append(n)
        if hits:
            return hits
    raise NotFound(f"no image {text} in {store.root}" +
                   (f" (looked for {full})" if full and full != text else ""))


class Ambiguous(StoreError):
    """A digest prefix that names several different images."""


def resolve_one(store: Store, text: str) -> str:
    """The one store name `text` means. An image ID (or prefix) shared by several names is
    one image, as in docker: the first of its names (sorted) stands for it. Raises NotFound,
    or Ambiguous when the prefix matches different images."""
    hits = resolve(store, text)
    if len(hits) == 1:
        return hits[0]
    ids = {image_id(store, store.get_image(n) or {}) or n for n in hits}
    if len(ids) == 1:
        return sorted(hits)[0]
    raise Ambiguous(f"{text} matches {len(ids)} different images ({', '.join(sorted(hits))}); "
                    "give more of the ID or a name")


def platform_manifest(store: Store, desc: dict[str, Any]) -> dict[str, Any] | None:
    """The image manifest descriptor to describe for `desc`: itself, or for an index the
    entry for this host (or the only one present)."""
    if mt.is_manifest(desc.get("mediaType")):
        return desc
    if not mt.is_index(desc.get("mediaType")) or not store.has_blob(desc["digest"]):
        return None
    index = store.read_json(desc)
    present = [d for d in index.get("manifests", [])
               if isinstance(d, dict) and mt.is_manifest(d.get("mediaType"))
               and store.has_blob(d.get("digest", ""))]
    if not present:
        return None
    try:
        return select(present, host(), "index")
    except PlatformError:
        return present[0] if len(present) == 1 else None


def image_id(store: Store, desc: dict[str, Any]) -> str:
    """The config digest (docker's image ID), or '' when unknown."""
    m = platform_manifest(store, desc)
    if m is None or not store.has_blob(m["digest"]):
        return ""
    return (store.read_json(m).get("config") or {}).get("digest", "")


class ImageError(StoreError):
    """A stored image that cannot be used as it is (several matches, no manifest for this
    platform, layers and diff_ids that disagree, a layer missing)."""


def image_parts(store: Store, name: str) -> dict[str, Any]:
    """{name, manifest_desc, manifest, config_desc, config, chain[(layer desc, diff_id)]} of
    the image `name` (a store name; an index picks this host's platform)."""
    desc = store.get_image(name)
    if desc is None:
        hits = resolve(store, name)
        if len(hits) != 1:
            raise ImageError(f"{name} matches {len(hits)} images ({', '.join(hits)})")
        name = hits[0]
        desc = store.get_image(name)
        assert desc is not None
    mdesc = platform_manifest(store, desc)
    if mdesc is None:
        raise ImageError(f"image {name}: no manifest for this platform in the store")
    manifest = store.read_json(mdesc)
    cdesc = manifest.get("config") or {}
    config = store.read_json(cdesc)
    ldescs = manifest.get("layers") or []
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    if len(diff_ids) != len(ldescs):
        raise ImageError(f"image {name}: {len(ldescs)} layers but {len(diff_ids)} diff_ids "
                          "in its config")
    for d in ldescs:
        if not mt.is_layer(d.get("mediaType")):
            raise ImageError(f"image {name}: layer {d.get('digest')} has media type "
                              f"{d.get('mediaType')!r}, not a filesystem layer")
        if not store.has_blob(d["digest"]):
            raise ImageError(f"image {name}: layer {d['digest']} is not in the store")
    return {"name": name, "manifest_desc": mdesc, "manifest": manifest, "config_desc": cdesc,
            "config": config, "chain": list(zip(ldescs, diff_ids, strict=True))}
