"""`imagetool push`: a named image in the store -> a registry. Blobs first (in parallel,
skipping what exists, mounting from a sibling repository when possible), then manifests
bottom-up by digest, then the top one under the tag, each with its own media type. Blobs
start largest first; each goes up in one PUT unless it is bigger than `chunk_size`.

An index whose children are only partly in the store (a single-platform pull) can't be
pushed as is, since registries refuse an index naming unknown manifests; when exactly one
image manifest is present it is pushed alone under the tag, and the caller is told."""

from __future__ import annotations

from typing import Any

from imagetool import mediatypes as mt
from imagetool.reference import parse
from imagetool.registry.client import RegistryClient
from imagetool.registry.config import RegistryConfig
from imagetool.registry.errors import ManifestError, RegistryError
from imagetool.registry.manifests import Manifest, parse_manifest, put
from imagetool.registry.parallel import run_all
from imagetool.registry.progress import Reporter, make_reporter
from imagetool.registry.transport import Transport
from imagetool.registry.upload import CHUNK_SIZE, upload_blob

WORKERS = 3


def _load(store: Any, desc: dict[str, Any], what: str) -> Manifest:
    raw = store.read_blob(desc["digest"], desc.get("size"))
    return parse_manifest(raw, desc.get("mediaType"), desc["digest"], what)


def collect(store: Any, top: Manifest, what: str) -> tuple[list[Manifest], list[Manifest],
                                                           int]:
    """(manifests children-first, image manifests, number of index children missing)."""
    order: list[Manifest] = []
    images: list[Manifest] = []
    missing = 0

    def visit(m: Manifest, depth: int) -> None:
        nonlocal missing
        if depth > 4:
            raise ManifestError(f"{what}: indexes nested too deep")
        for child in m.children():
            if not (mt.is_index(child.get("mediaType")) or mt.is_manifest(child.get("mediaType"))):
                continue
            if not store.has_blob(child["digest"]):
                missing += 1
                continue
            cm = _load(store, child, f"{what} ({child['digest']})")
            visit(cm, depth + 1)
        if not m.is_index:
            images.append(m)
        order.append(m)

    visit(top, 0)
    return order, images, missing


def push(store: Any, local_name: str, remote_ref: str | None = None,
         progress: bool | None = None, config: RegistryConfig | None = None, *,
         reporter: Reporter | None = None, transport: Transport | None = None,
         docker_config: str | None = None, workers: int = WORKERS,
         chunk_size: int = CHUNK_SIZE, mount_from: tuple[str, ...] = ()) -> str:
    """Push the store's image `local_name` to `remote_ref` (default: the same name); returns
    the digest of the manifest or index the registry now has under the tag."""
    src = parse(local_name)
    desc = store.get_image(str(src)) or store.get_image(local_name)
    if desc is None:
        raise RegistryError(f"{src}: no such image in the store")
    dst = parse(remote_ref) if remote_ref else src
    what = str(dst)
    top = _load(store, desc, what)
    order, images, missing = collect(store, top, what)
    rep = reporter or make_reporter(progress, verb="uploading")
    if missing:
        if len(order) != 2 or len(images) != 1:
            raise ManifestError(f"{src}: {missing} manifests of its index are not in the store "
                                "(pull with --all-platforms to push the whole index)")
        rep.message(f"{src}: only one platform of the index is in the store; pushing its "
                    f"manifest {images[0].digest} alone")
        top, order = images[0], [images[0]]
    if dst.digest and dst.digest != top.digest:
        raise ManifestError(f"{what}: the image's digest is {top.digest}")
    mounts = tuple(mount_from)
    if src.registry == dst.registry and src.repository != dst.repository:
        mounts += (src.repository,)
    own_transport = transport is None
    transport = transport or Transport(config or RegistryConfig.load())
    client = RegistryClient(dst.registry, transport=transport, docker_config=docker_config)
    try:
        _push_blobs(store, client, dst.repository, images, what, rep, workers, chunk_size,
                    mounts)
        for m in order[:-1]:
            put(client, dst.repository, m.digest, m, f"{what} ({m.digest})")
        put(client, dst.repository, dst.digest or dst.tag or "latest", top, what)
        rep.message(f"{what}: pushed {top.digest}")
        return top.digest
    finally:
        rep.close()
        if own_transport:
            transport.close()


def _push_blobs(store: Any, client: RegistryClient, repository: str, images: list[Manifest],
                what: str, rep: Reporter, workers: int, chunk_size: int,
                mounts: tuple[str, ...]) -> None:
    blobs: dict[str, dict[str, Any]] = {}
    for m in images:
        for d in m.blobs():
            if mt.is_nondistributable(d.get("mediaType")) and d.get("urls"):
                continue  # foreign layers stay where their urls point
            blobs.setdefault(d["digest"], d)
    for d in blobs.values():
        if not store.has_blob(d["digest"]):
            raise RegistryError(f"{what}: blob {d['digest']} is not in the store")

    def one(d: dict[str, Any]) -> str:
        return upload_blob(client, repository, d, store.blob_path(d["digest"]), what=what,
                           reporter=rep, chunk_size=chunk_size, mount_from=mounts)

    if not blobs:
        return
    largest_first = sorted(blobs.values(), key=lambda d: -int(d.get("size") or 0))
    run_all(one, largest_first, min(workers, len(blobs)))  # the first failure is raised
