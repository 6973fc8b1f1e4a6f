"""Red Hat simple signing with OpenPGP keys, as `skopeo copy --sign-by` makes it: the
payload (type "atomic container signature", identity = the reference as given, tag included)
signed by GnuPG and stored as the next signature-N in the lookaside store that
registries.d names for the image (lookaside-staging, else lookaside; file:// only)."""

from __future__ import annotations

from imagetool.reference import Reference
from imagetool.registry.client import RegistryClient
from imagetool.trust import gpg, lookaside, payload, remote
from imagetool.trust.errors import TrustError


def sign(client: RegistryClient, ref: Reference, fingerprint: str, registries_d: str | None,
         passphrase_file: str | None = None) -> tuple[str, str]:
    """Sign the manifest `ref` names; returns (its digest, the signature file written)."""
    url = lookaside.Config.load(registries_d).write_url(ref)
    if not url:
        raise TrustError(f"{ref}: no lookaside-staging (or lookaside) in registries.d "
                         f"({registries_d or lookaside.DEFAULT_DIR}) for it")
    top = remote.manifest(client, ref)
    body = payload.make(str(ref), top.digest, payload.ATOMIC_TYPE, creator=True)
    sig = gpg.sign(body, fingerprint, passphrase_file)
    return top.digest, lookaside.write_signature(url, ref, top.digest, sig)
