"""The local store: one OCI image layout (oci-layout, index.json, blobs/<alg>/<hex>), so every
OCI tool can read it. Names are `org.opencontainers.image.ref.name` annotations in index.json
holding the full normalised reference.

Concurrency: blobs are content-addressed and appear by rename, so writers never clash on
them. index.json is read-modify-written under an exclusive flock (<root>/.lock) and replaced
by rename, so readers need no lock and no update is lost. GC must not delete a blob that a
writer committed but has not named yet: writers hold a *lease* (a shared flock on
<root>/.gc.lock) from their first blob to their set_image, and GC takes that lock exclusively.
set_image also refuses an image whose blobs are missing, so a writer without a lease gets a
clear error instead of a dangling name."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from imagetool import digest as dg
from imagetool import mediatypes as mt
from imagetool.atomicfile import atomic_file
from imagetool.errors import ImagetoolError
from imagetool.store import graph
from imagetool.store.ingest import RESUME_PREFIX, Ingest, IngestError
from imagetool.store.locks import LockBusy, flock_for

__all__ = ["Store", "StoreError", "BlobNotFound", "ImageNotFound", "Ingest", "IngestError",
           "REF_NAME", "LockBusy"]

REF_NAME = "org.opencontainers.image.ref.name"
STALE_INGEST = 3600.0  # seconds before GC drops a resumable download nobody came back for
FRESH_TEMP = 60.0  # an unlocked anonymous ingest file older than this has lost its writer
_OURS = {".lock", ".gc.lock", "blobs", "ingest", "index.json", "oci-layout"}


class StoreError(ImagetoolError):
    """The store is not usable as asked; the message names the file, blob or image."""


class BlobNotFound(StoreError):
    pass


class ImageNotFound(StoreError):
    pass


def _atomic_write(path: str, data: bytes) -> None:
    """Write `data` to `path` so readers see old or new, never half (and the rename is durable)."""
    with atomic_file(path, sync_dir=True) as f:
        f.write(data)


def _name_of(desc: dict[str, Any]) -> str | None:
    ann = desc.get("annotations")
    return ann.get(REF_NAME) if isinstance(ann, dict) else None


class Store:
    """One OCI image layout at `root`, created on first write."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.index_path = os.path.join(self.root, "index.json")
        self.layout_path = os.path.join(self.root, "oci-layout")
        self.blobs_dir = os.path.join(self.root, "blobs")
        self.ingest_dir = os.path.join(self.root, "ingest")
        self._ready = False

    # -- locking -------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive writer lock on index.json (re-entrant within a thread)."""
        self._mkroot()
        with flock_for(os.path.join(self.root, ".lock")).exclusive():
            self._ensure_layout()
            yield

    @contextlib.contextmanager
    def lease(self) -> Iterator[None]:
        """Keep GC away while this writer has committed blobs it has not named yet. Hold it
        from before the first has_blob/ingest of a pull/import/load until after set_image."""
        self._mkroot()
        with flock_for(os.path.join(self.root, ".gc.lock")).shared():
            yield

    def busy(self) -> bool:
        """Whether some writer holds a lease right now (so gc() would wait)."""
        if not os.path.exists(self.layout_path):
            return False
        try:
            with flock_for(os.path.join(self.root, ".gc.lock")).exclusive(blocking=False):
                return False
        except LockBusy:
            return True

    def _mkroot(self) -> None:
        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create store {self.root}: {e.strerror}") from None

    def _ensure_layout(self) -> None:
        if self._ready:
            return
        if os.path.exists(self.layout_path):
            self._check_layout()
        else:
            strangers = sorted(set(os.listdir(self.root)) - _OURS)
            if strangers:
                raise StoreError(f"{self.root} is not an OCI image layout (no oci-layout) and "
                                 f"not empty (has {strangers[0]}); refusing to write there")
            _atomic_write(self.layout_path, json.dumps(
                {"imageLayoutVersion": mt.OCI_LAYOUT_VERSION}).encode())
        os.makedirs(os.path.join(self.blobs_dir, "sha256"), exist_ok=True)
        os.makedirs(self.ingest_dir, exist_ok=True)
        if not os.path.exists(self.index_path):
            self._write_index({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []})
        self._ready = True

    def _check_layout(self) -> None:
        try:
            with open(self.layout_path, "rb") as f:
                version = json.load(f).get("imageLayoutVersion")
        except (OSError, ValueError, AttributeError) as e:
            raise StoreError(f"{self.layout_path}: unreadable ({e})") from None
        if version != mt.OCI_LAYOUT_VERSION:
            raise StoreError(f"{self.layout_path}: imageLayoutVersion {version!r} is not "
                             f"{mt.OCI_LAYOUT_VERSION!r}")

    # -- blobs ---------------------------------------------------------------------------
    def blob_path(self, digest: str) -> str:
        algo, hexpart = dg.parse(digest)
        return os.path.join(self.blobs_dir, algo, hexpart)

    def has_blob(self, digest: str) -> bool:
        return os.path.isfile(self.blob_path(digest))

    def blob_size(self, digest: str) -> int:
        try:
            return os.stat(self.blob_path(digest)).st_size
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} is not in {self.root}") from None

    def open_blob(self, digest: str, size: int | None = None) -> dg.VerifiedReader:
        """A reader that raises DigestError at EOF if the blob on disk was tampered with."""
        try:
            f = open(self.blob_path(digest), "rb")  # noqa: SIM115 - handed to the reader
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} is not in {self.root}") from None
        return dg.VerifiedReader(f, digest, size)

    def read_blob(self, digest: str, size: int | None = None) -> bytes:
        with self.open_blob(digest, size) as r:
            return r.read()

    def read_json(self, desc_or_digest: dict[str, Any] | str) -> dict[str, Any]:
        """A verified blob parsed as a JSON object (manifests, indexes, configs)."""
        if isinstance(desc_or_digest, dict):
            digest, size = desc_or_digest["digest"], desc_or_digest.get("size")
        else:
            digest, size = desc_or_digest, None
        if size is not None and size > graph.MAX_JSON:
            raise StoreError(f"blob {digest}: {size} bytes is too large for a JSON document")
        return graph.parse_json(self.read_blob(digest, size), f"blob {digest}")

    def ingest(self, key: str | None = None) -> Ingest:
        """A temp file that becomes a blob on commit. With `key` (the expected digest) a
        download that crashed can be resumed from `offset`."""
        if not self._ready:
            with self.lock():
                pass
        return Ingest(self, key)

    def put_bytes(self, data: bytes, expected_digest: str | None = None) -> str:
        with self.ingest() as w:
            w.write(data)
            return w.commit(expected_digest, None)

    def put_json(self, obj: dict[str, Any], media_type: str) -> dict[str, Any]:
        """Store a JSON document; return its descriptor."""
        data = json.dumps(obj, separators=(",", ":")).encode()
        return {"mediaType": media_type, "digest": self.put_bytes(data), "size": len(data)}

    # -- names ---------------------------------------------------------------------------
    def read_index(self) -> dict[str, Any]:
        """index.json as it is now (an empty index if the store does not exist yet)."""
        try:
            with open(self.index_path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
        try:
            index = graph.parse_json(data, self.index_path)
        except graph.GraphError as e:
            raise StoreError(str(e)) from None
        if not isinstance(index.get("manifests", []), list):
            raise StoreError(f"{self.index_path}: manifests is not a list")
        index.setdefault("manifests", [])
        return index

    def _write_index(self, index: dict[str, Any]) -> None:
        _atomic_write(self.index_path, json.dumps(index, separators=(",", ":")).encode())

    def set_image(self, name: str, desc: dict[str, Any]) -> None:
        """Point `name` at `desc` (a manifest or index descriptor), replacing any old entry."""
        self.set_images([(name, desc)])

    def set_images(self, pairs: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Several names in one update of index.json: all of them or none."""
        entries: list[tuple[str, dict[str, Any]]] = []
        for name, desc in dict(pairs).items():  # a name given twice: the last one wins
            if not isinstance(name, str) or not name or name != name.strip():
                raise StoreError(f"invalid image name {name!r}")
            try:
                graph.check_descriptor(desc, f"image {name}")
            except graph.GraphError as e:
                raise StoreError(str(e)) from None
            if not graph.is_parent(desc):
                raise StoreError(f"image {name}: {desc['mediaType']} is not a manifest or index")
            entry = {k: v for k, v in desc.items() if k != "annotations"}
            entry["annotations"] = {**(desc.get("annotations") or {}), REF_NAME: name}
            entries.append((name, entry))
        with self.lock():
            for name, entry in entries:
                self._check_complete(name, entry)
            index = self.read_index()
            names = {n for n, _ in entries}
            kept = [d for d in index["manifests"] if _name_of(d) not in names]
            index["manifests"] = kept + [e for _, e in entries]
            self._write_index(index)

    def keep_unnamed(self, desc: dict[str, Any]) -> None:
        """Keep a complete image without a name (docker's dangling <none> image, e.g. a
        build without -t): an index entry without a ref name, unless an entry (named or
        not) already has its digest."""
        entry = {k: v for k, v in desc.items() if k != "annotations"}
        with self.lock():
            self._check_complete(desc["digest"], entry)
            index = self.read_index()
            if not any(isinstance(d, dict) and d.get("digest") == desc["digest"]
                       for d in index["manifests"]):
                index["manifests"].append(entry)
                self._write_index(index)

    def _check_complete(self, name: str, desc: dict[str, Any]) -> None:
        """Every required blob of the image is here: no name may point at a partial image."""
        try:
            for d, required, present in graph.walk([desc], self._read_if_present,
                                                   lambda d: self.has_blob(d["digest"])):
                if required and not present:
                    raise StoreError(f"image {name}: blob {d['digest']} ({d['mediaType']}) is "
                                     f"missing from {self.root}")
        except (graph.GraphError, dg.DigestError) as e:
            raise StoreError(f"image {name}: {e}") from None

    def _read_if_present(self, desc: dict[str, Any]) -> bytes | None:
        try:
            return self.read_blob(desc["digest"], desc["size"])
        except BlobNotFound:
            return None

    def get_image(self, name: str) -> dict[str, Any] | None:
        """The entry named `name`; a digest also finds an unnamed entry (keep_unnamed)."""
        entries = [d for d in self.read_index()["manifests"] if isinstance(d, dict)]
        for d in entries:
            if _name_of(d) == name:
                return dict(d)
        if name.startswith("sha256:"):
            for d in entries:
                if _name_of(d) is None and d.get("digest") == name:
                    return dict(d)
        return None

    def list_images(self) -> list[dict[str, Any]]:
        """Every entry of index.json (named or not), as copies."""
        return [dict(d) for d in self.read_index()["manifests"] if isinstance(d, dict)]

    def remove_image(self, name: str) -> None:
        with self.lock():
            index = self.read_index()
            kept = [d for d in index["manifests"] if _name_of(d) != name]
            if len(kept) == len(index["manifests"]) and name.startswith("sha256:"):
                kept = [d for d in kept if _name_of(d) is not None or d.get("digest") != name]
            if len(kept) == len(index["manifests"]):
                raise ImageNotFound(f"no image named {name} in {self.root}")
            index["manifests"] = kept
            self._write_index(index)

    # -- garbage -------------------------------------------------------------------------
    def live_blobs(self) -> set[str]:
        """Digests reachable from index.json (blobs that are absent are skipped)."""
        roots = []
        for i, d in enumerate(self.read_index()["manifests"]):
            try:
                roots.append(graph.check_descriptor(d, f"{self.index_path} manifests[{i}]"))
            except graph.GraphError as e:
                raise StoreError(str(e)) from None
        try:
            return {d["digest"] for d, _, present in graph.walk(
                roots, self._read_if_present, lambda d: True) if present}
        except (graph.GraphError, dg.DigestError) as e:
            raise StoreError(f"{self.root}: cannot walk images: {e}; nothing removed") from None

    def gc(self, wait: bool = True, stale_ingest: float = STALE_INGEST) -> list[str]:
        """Remove blobs no image reaches and ingest files no live writer holds; return the
        removed digests. With wait=False, give up at once (returning []) while any writer
        holds a lease."""
        return [d for d, _ in self.gc_report(wait, stale_ingest)]

    def gc_report(self, wait: bool = True,
                  stale_ingest: float = STALE_INGEST) -> list[tuple[str, int]]:
        """gc(), returning (digest, bytes freed) pairs."""
        if not os.path.exists(self.layout_path):
            return []
        if flock_for(os.path.join(self.root, ".lock")).held_here():
            # A leased writer waiting for index.json would wait for us, and we for it.
            raise RuntimeError("gc() called while holding Store.lock()")
        try:
            with flock_for(os.path.join(self.root, ".gc.lock")).exclusive(blocking=wait), \
                    self.lock():
                live = self.live_blobs()
                removed = []
                for algo in sorted(os.listdir(self.blobs_dir)):
                    adir = os.path.join(self.blobs_dir, algo)
                    if not os.path.isdir(adir):
                        continue
                    for hexpart in sorted(os.listdir(adir)):
                        d = f"{algo}:{hexpart}"
                        try:
                            dg.parse(d)
                        except dg.DigestError:
                            continue  # not a blob of ours; leave it
                        if d not in live:
                            path = os.path.join(adir, hexpart)
                            with contextlib.suppress(FileNotFoundError):
                                size = os.lstat(path).st_size
                                os.unlink(path)
                                removed.append((d, size))
                self._sweep_ingest(stale_ingest)
                return removed
        except LockBusy:
            return []

    def _sweep_ingest(self, stale: float) -> None:
        import fcntl
        now = time.time()
        for fname in os.listdir(self.root):  # index.json temp files of a crashed writer
            path = os.path.join(self.root, fname)
            if fname.startswith(".tmp-"):
                with contextlib.suppress(FileNotFoundError):
                    if now - os.lstat(path).st_mtime > min(stale, FRESH_TEMP):
                        os.unlink(path)
        if not os.path.isdir(self.ingest_dir):
            return
        for fname in os.listdir(self.ingest_dir):
            path = os.path.join(self.ingest_dir, fname)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer
                age = now - os.fstat(fd).st_mtime
                # A fresh anonymous file may belong to a writer between mkstemp and flock.
                limit = stale if fname.startswith(RESUME_PREFIX) else min(stale, FRESH_TEMP)
                if age > limit:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
            finally:
                os.close(fd)

    def ingest_files(self) -> list[str]:
        """Names under ingest/ (tests use this to prove nothing partial stayed behind)."""
        try:
            return sorted(os.listdir(self.ingest_dir))
        except FileNotFoundError:
            return []
