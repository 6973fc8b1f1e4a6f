"""imagetool's own registry client (oras-py can't be the pull path, see ARCHITECTURE.md):
transport (TLS, certs.d, retries, redirects), auth (per-scope bearer tokens, Basic, Docker's
config.json), verified manifests and blobs, uploads, platforms and progress. Modules are
imported by what needs them, so this package stays cheap to import."""

from imagetool.registry.errors import (
    AuthError,
    DigestMismatch,
    ManifestError,
    NotFoundError,
    RegistryError,
    TransportError,
)

__all__ = ["AuthError", "DigestMismatch", "ManifestError", "NotFoundError", "RegistryError",
           "TransportError"]
