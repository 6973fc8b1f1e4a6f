"""The Red Hat "simple signing" payload (containers-signature(5)) that cosign also signs:
{"critical": {"identity": {"docker-reference": R}, "image": {"docker-manifest-digest": D},
"type": T}, "optional": {...}}. cosign's T is "cosign container image signature", GPG simple
signing's is "atomic container signature". Parsing is strict about the shape (unknown
critical keys are refused, as containers/image does) and, like Go's JSON, case-insensitive
about key names."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from imagetool.trust.errors import VerifyError

COSIGN_TYPE = "cosign container image signature"
ATOMIC_TYPE = "atomic container signature"
MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"


@dataclass(frozen=True)
class Payload:
    docker_reference: str
    manifest_digest: str
    type: str
    optional: dict[str, Any] | None


def make(docker_reference: str, manifest_digest: str, kind: str = COSIGN_TYPE,
         optional: dict[str, Any] | None = None, creator: bool = False) -> bytes:
    """The payload bytes (compact JSON). `creator` adds creator+timestamp as skopeo does."""
    opt = dict(optional or {})
    if creator:
        from imagetool import __version__
        opt.setdefault("creator", f"imagetool {__version__}")
        opt.setdefault("timestamp", int(time.time()))
    doc = {"critical": {"identity": {"docker-reference": docker_reference},
                        "image": {"docker-manifest-digest": manifest_digest},
                        "type": kind},
           "optional": opt or None}
    return json.dumps(doc, separators=(",", ":")).encode()


def _get(d: Any, key: str, what: str, kind: type = dict) -> Any:
    if not isinstance(d, dict):
        raise VerifyError(f"{what}: payload field is not an object")
    hits = [v for k, v in d.items() if k.lower() == key]
    if len(hits) != 1 or not isinstance(hits[0], kind):
        raise VerifyError(f"{what}: payload lacks {key!r} ({kind.__name__})")
    return hits[0]


def parse(raw: bytes, what: str, kind: str | None = None) -> Payload:
    """Check the shape and return the claims; `kind` also pins critical.type."""
    try:
        doc = json.loads(raw)
    except ValueError:
        raise VerifyError(f"{what}: signed payload is not JSON") from None
    crit = _get(doc, "critical", what)
    extra = {k.lower() for k in crit} - {"identity", "image", "type"}
    if extra:
        raise VerifyError(f"{what}: unknown critical fields {sorted(extra)}")
    ref = _get(_get(crit, "identity", what), "docker-reference", what, str)
    digest = _get(_get(crit, "image", what), "docker-manifest-digest", what, str)
    typ = _get(crit, "type", what, str)
    if kind is not None and typ != kind:
        raise VerifyError(f"{what}: payload type {typ!r}, want {kind!r}")
    optional = next((v for k, v in doc.items() if k.lower() == "optional"), None)
    return Payload(ref, digest, typ, optional if isinstance(optional, dict) else None)
