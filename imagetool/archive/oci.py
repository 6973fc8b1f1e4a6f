"""OCI archives: a tar of an OCI image layout. Index entries carry the full name in
`io.containerd.image.name` and the tag in `org.opencontainers.image.ref.name`, the convention
of containerd and docker >= 25, so their loaders and umoci (`layout:tag`) all find them."""

from __future__ import annotations

import json
from typing import Any

from imagetool import digest as dg
from imagetool import mediatypes as mt
from imagetool import reference
from imagetool.archive.tarreader import ArchiveError, TarReader
from imagetool.archive.tarwriter import TarWriter
from imagetool.store import REF_NAME, IngestError, Store, graph

CONTAINERD_NAME = "io.containerd.image.name"
MAX_INDEX = 32 << 20


def _blob_member(digest: str) -> str:
    algo, hexpart = dg.parse(digest)
    return f"blobs/{algo}/{hexpart}"


def archive_annotations(name: str, annotations: dict[str, str] | None) -> dict[str, str]:
    """The annotations of a saved index entry for store name `name`."""
    ann = {k: v for k, v in (annotations or {}).items() if k != REF_NAME}
    try:
        ref = reference.parse(name)
    except reference.ReferenceError:
        ann[REF_NAME] = name  # a layout written by another tool: keep its name as is
        return ann
    ann[CONTAINERD_NAME] = str(ref)
    ann[REF_NAME] = ref.tag if ref.tag and not ref.digest else str(ref)
    return ann


def save_oci(store: Store, images: list[tuple[str, dict[str, Any]]], tw: TarWriter) -> None:
    """Write the layout of `images` ((name, descriptor) pairs from the store) into `tw`."""
    entries, roots = [], []
    for name, desc in images:
        entry = {k: v for k, v in desc.items() if k != "annotations"}
        entry["annotations"] = archive_annotations(name, desc.get("annotations"))
        entries.append(entry)
        roots.append(desc)
    blobs: dict[str, int] = {}
    for d, required, present in graph.walk(roots, store._read_if_present,
                                           lambda d: store.has_blob(d["digest"])):
        if present:
            blobs[d["digest"]] = d["size"]
        elif required:
            raise ArchiveError(f"cannot save: blob {d['digest']} is missing from {store.root}")
    tw.bytes("oci-layout", json.dumps({"imageLayoutVersion": mt.OCI_LAYOUT_VERSION}).encode())
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}
    tw.bytes("index.json", json.dumps(index, separators=(",", ":")).encode())
    tw.dir("blobs/sha256")
    for digest in sorted(blobs):
        with store.open_blob(digest, blobs[digest]) as r:
            tw.file(_blob_member(digest), r, blobs[digest])  # type: ignore[arg-type]
            r.verify_rest()


def _entry_name(entry: dict[str, Any], where: str) -> str:
    ann = entry.get("annotations") or {}
    text = ann.get(CONTAINERD_NAME) or ann.get(REF_NAME)
    if not text:
        raise ArchiveError(f"{where}: no name ({CONTAINERD_NAME} or {REF_NAME}); "
                           "cannot load an image without one")
    try:
        return reference.normalize(text)
    except reference.ReferenceError as e:
        raise ArchiveError(f"{where}: {e}") from None


def load_oci(store: Store, tr: TarReader) -> list[tuple[str, dict[str, Any]]]:
    """Copy the named images of an OCI archive into the store; return (name, descriptor)
    pairs for the caller to publish in one index update. The caller holds a lease."""
    try:
        layout = graph.parse_json(tr.read("oci-layout", 4096), f"{tr.label}: oci-layout")
        index = graph.parse_json(tr.read("index.json", MAX_INDEX), f"{tr.label}: index.json")
    except graph.GraphError as e:
        raise ArchiveError(str(e)) from None
    if layout.get("imageLayoutVersion") != mt.OCI_LAYOUT_VERSION:
        raise ArchiveError(f"{tr.label}: oci-layout version {layout.get('imageLayoutVersion')!r}"
                           f" is not {mt.OCI_LAYOUT_VERSION!r}")
    entries = index.get("manifests")
    if not isinstance(entries, list) or not entries:
        raise ArchiveError(f"{tr.label}: index.json lists no images")
    out = []
    for i, entry in enumerate(entries):
        where = f"{tr.label}: index.json manifests[{i}]"
        try:
            graph.check_descriptor(entry, where)
        except graph.GraphError as e:
            raise ArchiveError(str(e)) from None
        if not graph.is_parent(entry):
            raise ArchiveError(f"{where}: {entry['mediaType']} is not a manifest or index")
        desc = {k: v for k, v in entry.items() if k != "annotations"}
        ann = {k: v for k, v in (entry.get("annotations") or {}).items()
               if k not in (REF_NAME, CONTAINERD_NAME)}
        if ann:
            desc["annotations"] = ann
        out.append((_entry_name(entry, where), desc))

    def read(d: dict[str, Any]) -> bytes | None:
        if store.has_blob(d["digest"]):
            return store.read_blob(d["digest"], d["size"])
        if not tr.has(_blob_member(d["digest"])):
            return None
        data = tr.read(_blob_member(d["digest"]), graph.MAX_JSON)
        dg.check_bytes(data, d["digest"], d["size"], f"{tr.label}: blob")
        store.put_bytes(data, d["digest"])
        return data

    def has(d: dict[str, Any]) -> bool:
        if store.has_blob(d["digest"]):
            return True
        member = _blob_member(d["digest"])
        if not tr.has(member):
            return False
        with store.ingest() as w, tr.open(member) as f:
            while chunk := f.read(dg.CHUNK):
                w.write(chunk)
            w.commit(d["digest"], d["size"])
        return True

    try:
        for d, required, present in graph.walk([desc for _, desc in out], read, has):
            if required and not present:
                raise ArchiveError(f"{tr.label}: blob {d['digest']} ({d['mediaType']}) is "
                                   "missing from the archive")
    except (graph.GraphError, dg.DigestError, IngestError) as e:
        raise ArchiveError(f"{tr.label}: {e}") from None
    return out
