"""`imagetool pull`: reference -> (mirror or) registry -> verified manifests and blobs -> store.

The top manifest or index is stored and named exactly as served, so the local digest is the
registry's. From an index only the chosen platform's manifest (or, with all_platforms,
every entry) is fetched; the store treats index children as optional. Blobs are downloaded
in parallel under a store lease, manifests are written after their blobs, and the name is
set last: a failed pull leaves no name and no partial file (complete, verified blobs may
stay for the next attempt; GC reclaims them).

What is verified: every manifest against its digest, every blob (config and layers) against
its descriptor's digest and size, hashing the bytes as they arrive, before it enters the
store. Not by default: the config's rootfs.diff_ids, i.e. the sha256 of each *uncompressed*
layer. Checking them means decompressing and hashing every layer, which measured 60 % of a
pull's CPU (bench/registry_bench.py); skopeo copy doesn't do it, and containerd
checks diff_ids where the decompression is needed anyway: at unpack. So do we
(imagetool/layer/stream.py hashes the stream it applies and refuses a layer whose diff_id differs).
The compressed digest already pins the layer's bytes, so nothing unverified gets in; the
diff_id check only tells early that an image's config lies about its layers.
`verify_diff_ids=True` (`imagetool pull --verify-diff-ids`) does that check during the pull.
Blobs are fetched largest first, so the last one to finish isn't a big one started late."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any

from imagetool import mediatypes as mt
from imagetool.reference import Reference, parse
from imagetool.registry import platform as plat
from imagetool.registry.blobs import download
from imagetool.registry.client import RegistryClient
from imagetool.registry.config import RegistryConfig
from imagetool.registry.errors import (
    AuthError,
    DigestMismatch,
    ManifestError,
    NotFoundError,
    RegistryError,
    TransportError,
)
from imagetool.registry.manifests import Manifest, fetch
from imagetool.registry.parallel import run_all
from imagetool.registry.progress import Reporter, make_reporter
from imagetool.registry.transport import RetryPolicy, Transport

WORKERS = 3
MIRROR_RETRY = RetryPolicy(attempts=2)  # a mirror that's down shouldn't delay the fallback
MAX_DEPTH = 4  # nested indexes deeper than this are refused


@dataclass
class Plan:
    """What one pull fetched and will store: the top document and the manifests below it."""

    top: Manifest
    manifests: list[Manifest] = field(default_factory=list)  # children first, top last
    images: list[Manifest] = field(default_factory=list)  # image manifests whose blobs we need


class Cancelled(Exception):
    """Another download of the same pull failed; this one stops early."""


def endpoints(ref: Reference, config: RegistryConfig, transport: Transport,
              docker_config: str | None = None) -> list[RegistryClient]:
    """The mirrors configured for the registry, in order, then the registry itself."""
    out = [RegistryClient(ref.registry, transport=transport, base_url=url,
                          docker_config=docker_config, retry=MIRROR_RETRY)
           for url in config.mirrors_for(ref.registry)]
    out.append(RegistryClient(ref.registry, transport=transport, docker_config=docker_config))
    return out


def resolve(client: RegistryClient, ref: Reference, want: plat.Platform | None,
            all_platforms: bool) -> Plan:
    """Fetch and verify the top document and the manifests the pull needs below it."""
    what = str(ref)
    top = fetch(client, ref.repository, ref.target, what)
    plan = Plan(top)
    _expand(client, ref, top, want, all_platforms, plan, 0)
    plan.manifests.append(top)
    return plan


def _expand(client: RegistryClient, ref: Reference, doc: Manifest, want: plat.Platform | None,
            all_platforms: bool, plan: Plan, depth: int) -> None:
    if not doc.is_index:
        plan.images.append(doc)
        return
    if depth >= MAX_DEPTH:
        raise ManifestError(f"{ref}: indexes nested deeper than {MAX_DEPTH}")
    if all_platforms:
        chosen = [d for d in doc.children() if mt.is_index(d.get("mediaType"))
                  or mt.is_manifest(d.get("mediaType"))]
    else:
        chosen = [plat.select(doc.children(), want or plat.host(), str(ref))]
    seen = {m.digest for m in plan.manifests}
    for desc in chosen:
        if desc["digest"] in seen:
            continue
        child = fetch(client, ref.repository, desc["digest"], f"{ref} ({desc['digest']})",
                      expected=desc)
        _expand(client, ref, child, want, all_platforms, plan, depth + 1)
        plan.manifests.append(child)
        seen.add(child.digest)


def pull(store: Any, ref: str, platform: str | None = None, all_platforms: bool = False,
         progress: bool | None = None, config: RegistryConfig | None = None, *,
         reporter: Reporter | None = None, transport: Transport | None = None,
         docker_config: str | None = None, workers: int = WORKERS,
         verify_diff_ids: bool = False, signature_policy: str | None = None,
         registries_d: str | None = None) -> str:
    """Pull `ref` into `store` and name it with the normalised reference; returns the digest
    of the stored top manifest or index (the registry's digest for the reference).
    `verify_diff_ids`: also decompress each new layer and check the config's diff_ids (see
    the module docstring for why that is off by default). The signature policy
    (imagetool/trust/policy.py: `signature_policy`, else $IMAGETOOL_SIGNATURE_POLICY, else
    /etc/containers/policy.json when present) must accept the top manifest's digest before
    anything is stored."""
    r = parse(ref)
    policy = _policy(signature_policy)
    cfg = config or RegistryConfig.load()
    want = plat.parse(platform) if platform else None
    own_transport = transport is None
    transport = transport or Transport(cfg)
    rep = reporter or make_reporter(progress)
    try:
        client, plan = _resolve_anywhere(r, cfg, transport, docker_config, want, all_platforms,
                                         rep)
        if policy is not None:
            from imagetool.trust.policy import check
            check(policy, r, plan.top.digest, client, registries_d)
        with store.lease():
            _fetch_blobs(store, client, r, plan, rep, workers, verify_diff_ids)
            if want is not None and not plan.top.is_index:
                _check_platform(store, plan.top, want, str(r))
            for m in plan.manifests:
                if not store.has_blob(m.digest):
                    store.put_bytes(m.raw, m.digest)
            store.set_image(str(r), plan.top.descriptor())
        rep.message(f"{r}: pulled {plan.top.digest}")
        return plan.top.digest
    finally:
        rep.close()
        if own_transport:
            transport.close()


def _policy(explicit: str | None) -> Any:
    """The signature policy to enforce, loaded and checked (None: no policy file)."""
    from imagetool.trust import policy
    path = policy.find(explicit)
    return policy.load(path) if path else None


def _resolve_anywhere(r: Reference, cfg: RegistryConfig, transport: Transport,
                      docker_config: str | None, want: plat.Platform | None,
                      all_platforms: bool, rep: Reporter) -> tuple[RegistryClient, Plan]:
    """Try the mirrors, then the registry; a mirror that fails only costs a warning."""
    clients = endpoints(r, cfg, transport, docker_config)
    failures: list[str] = []
    for client in clients:
        try:
            return client, resolve(client, r, want, all_platforms)
        except (TransportError, NotFoundError, AuthError) as e:
            if client is clients[-1]:
                if failures:
                    raise type(e)(f"{e} (mirrors failed too: {'; '.join(failures)})") from e
                raise
            failures.append(str(e))
            rep.message(f"mirror {client.display} failed, trying the next: {e}")
    raise AssertionError("unreachable")


def _fetch_blobs(store: Any, client: RegistryClient, r: Reference, plan: Plan, rep: Reporter,
                 workers: int, verify_diff_ids: bool) -> None:
    """Every config and layer not yet in the store, in parallel and largest first; diff_ids
    checked after when asked to."""
    wanted: dict[str, dict[str, Any]] = {}
    for m in plan.images:
        for d in m.blobs():
            wanted.setdefault(d["digest"], d)
    todo = sorted((d for dg_, d in wanted.items() if not store.has_blob(dg_)),
                  key=lambda d: -int(d.get("size") or 0))
    for dg_, d in wanted.items():
        if store.has_blob(dg_):
            rep.skipped(dg_, "layer" if mt.is_layer(d.get("mediaType")) else "blob",
                        "already present")
    cancel = threading.Event()
    diff_ids: dict[str, str] = {}

    def one(desc: dict[str, Any]) -> None:
        if cancel.is_set():
            raise Cancelled()
        download(client, r.repository, desc, lambda: _Cancellable(store.ingest(desc["digest"]),
                                                                  cancel),
                 what=str(r), reporter=rep)
        if verify_diff_ids and mt.is_layer(desc.get("mediaType")):
            diff_ids[desc["digest"]] = _diff_id(store, desc, cancel)

    if todo:  # a failure stops the others at their next chunk (so does Ctrl-C)
        run_all(one, todo, min(workers, len(todo)), stop=cancel, quiet=(Cancelled,))
    if verify_diff_ids:
        for m in plan.images:
            _check_diff_ids(store, m, diff_ids, str(r))


class _Cancellable:
    """Wraps an ingest so a cancelled pull stops writing at the next chunk."""

    def __init__(self, ingest: Any, cancel: threading.Event) -> None:
        self._ingest = ingest
        self._cancel = cancel

    def __enter__(self) -> _Cancellable:
        self._ingest.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ingest.__exit__(*exc)

    @property
    def offset(self) -> int:
        return self._ingest.offset

    def write(self, data: bytes | memoryview) -> Any:
        if self._cancel.is_set():
            raise Cancelled()
        return self._ingest.write(data)

    def truncate(self) -> None:
        self._ingest.truncate()

    def commit(self, expected_digest: str | None = None,
               expected_size: int | None = None) -> str:
        return self._ingest.commit(expected_digest, expected_size)


def _diff_id(store: Any, desc: dict[str, Any], cancel: threading.Event) -> str:
    """sha256 of the uncompressed layer (gzip through isal, zstd, or none)."""
    from imagetool.compression import decompressed
    try:
        kind = mt.compression(desc["mediaType"])
    except ValueError:
        return ""
    h = hashlib.sha256()
    with open(store.blob_path(desc["digest"]), "rb") as raw:
        reader = decompressed(raw, kind)
        try:
            while chunk := reader.read(1 << 20):
                if cancel.is_set():
                    raise Cancelled()
                h.update(chunk)
        except Cancelled:
            raise
        except Exception as e:  # isal, zstandard and lzma each raise their own errors
            raise DigestMismatch(f"layer {desc['digest']}: not valid {kind} ({e})") from None
    return f"sha256:{h.hexdigest()}"


def _check_diff_ids(store: Any, m: Manifest, diff_ids: dict[str, str], what: str) -> None:
    """The config's rootfs.diff_ids must match the layers we just decompressed."""
    cfg_desc = m.data["config"]
    if cfg_desc.get("mediaType") not in mt.CONFIGS:
        return
    config = store.read_json(cfg_desc)
    expected = (config.get("rootfs") or {}).get("diff_ids")
    layers = m.data.get("layers", [])
    if not all(mt.is_layer(d.get("mediaType")) for d in layers):
        return  # artifacts and attestations: their "layers" are not tars
    if not isinstance(expected, list) or len(expected) != len(layers):
        raise ManifestError(f"{what}: config {cfg_desc['digest']} lists "
                            f"{len(expected) if isinstance(expected, list) else 'no'} diff_ids "
                            f"for {len(layers)} layers")
    for layer, want in zip(layers, expected, strict=True):
        got = diff_ids.get(layer["digest"])
        if got and got != want:
            raise DigestMismatch(f"{what}: layer {layer['digest']} uncompresses to {got}, "
                                 f"config says {want}")


def _check_platform(store: Any, m: Manifest, want: plat.Platform, what: str) -> None:
    cfg_desc = m.data["config"]
    if cfg_desc.get("mediaType") not in mt.CONFIGS:
        return
    config = store.read_json(cfg_desc)
    got = plat.normalize(config.get("os", ""), config.get("architecture", ""),
                         config.get("variant", ""))
    if (got.os, got.architecture) != (want.os, want.architecture) or (
            want.variant and got.variant and want.variant != got.variant):
        raise ManifestError(f"{what}: image is {got}, not the requested platform {want}")


__all__ = ["pull", "resolve", "endpoints", "Plan", "RegistryError"]
