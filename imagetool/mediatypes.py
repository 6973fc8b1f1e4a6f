"""Media types of OCI and Docker images in one place, with the few questions every walker of
an image graph asks: is this an index, a manifest, a layer, and how is the layer compressed."""

from __future__ import annotations

OCI_LAYOUT_VERSION = "1.0.0"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_ND_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_ND_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

INDEXES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIGS = frozenset({OCI_CONFIG, DOCKER_CONFIG})
LAYERS = frozenset({OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, OCI_LAYER_ND, OCI_LAYER_ND_GZIP,
                    OCI_LAYER_ND_ZSTD, DOCKER_LAYER_GZIP, DOCKER_LAYER_FOREIGN})
# Layers a registry may refuse to serve; an image is complete without their blobs.
NONDISTRIBUTABLE = frozenset({OCI_LAYER_ND, OCI_LAYER_ND_GZIP, OCI_LAYER_ND_ZSTD,
                              DOCKER_LAYER_FOREIGN})


def is_index(media_type: str | None) -> bool:
    return media_type in INDEXES


def is_manifest(media_type: str | None) -> bool:
    return media_type in MANIFESTS


def is_layer(media_type: str | None) -> bool:
    return media_type in LAYERS


def is_nondistributable(media_type: str | None) -> bool:
    return media_type in NONDISTRIBUTABLE


def compression(media_type: str) -> str:
    """'gzip', 'zstd' or 'none' for a layer media type; ValueError for anything else."""
    if media_type in (OCI_LAYER_GZIP, OCI_LAYER_ND_GZIP, DOCKER_LAYER_GZIP, DOCKER_LAYER_FOREIGN):
        return "gzip"
    if media_type in (OCI_LAYER_ZSTD, OCI_LAYER_ND_ZSTD):
        return "zstd"
    if media_type in (OCI_LAYER, OCI_LAYER_ND):
        return "none"
    raise ValueError(f"not a layer media type: {media_type!r}")


def sniff_compression(head: bytes) -> str:
    """'gzip', 'zstd', 'xz', 'bzip2' or 'none' from the first bytes of a stream."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"BZh"):
        return "bzip2"
    return "none"
