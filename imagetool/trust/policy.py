"""containers-policy.json(5) for the `docker` transport: the requirements of the most specific
scope (`host/repo:tag` or `@digest`, `host/repo`, its parent namespaces, `host`, `*.domain`
wildcards, then the transport's "" scope, then `default`), every one of which must hold:
insecureAcceptAnything, reject, signedBy (keyType GPGKeys; keyPath, keyPaths or keyData;
signatures from the registries.d lookaside) and sigstoreSigned (keyPath or keyData; cosign
signatures from the registry), each with a signedIdentity (matchExact,
matchRepoDigestOrExact (the default), matchRepository, exactReference, exactRepository,
remapIdentity). The whole file is checked when loaded: an unknown type or field is an error
naming it, before anything is fetched."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from typing import Any

from imagetool.reference import Reference, ReferenceError, parse
from imagetool.trust.errors import TrustError, VerifyError

DEFAULT_PATH = "/etc/containers/policy.json"
ENV_PATH = "IMAGETOOL_SIGNATURE_POLICY"
TYPES = {"insecureAcceptAnything": set(), "reject": set(),
         "signedBy": {"keyType", "keyPath", "keyPaths", "keyData", "signedIdentity"},
         "sigstoreSigned": {"keyPath", "keyData", "signedIdentity", "fulcio", "rekorPublicKeyPath",
                            "rekorPublicKeyData"}}
IDENTITIES = {"matchExact": set(), "matchRepoDigestOrExact": set(), "matchRepository": set(),
              "exactReference": {"dockerReference"}, "exactRepository": {"dockerRepository"},
              "remapIdentity": {"prefix", "signedPrefix"}}


@dataclass(frozen=True)
class Policy:
    path: str
    default: list[dict[str, Any]]
    scopes: dict[str, list[dict[str, Any]]]  # the docker transport's

    def requirements(self, ref: Reference) -> tuple[str, list[dict[str, Any]]]:
        """(the scope that matched, its requirements) for `ref`."""
        for scope in _scopes(ref):
            if scope in self.scopes:
                return scope, self.scopes[scope]
        host = ref.registry
        for scope, reqs in sorted(self.scopes.items(), key=lambda kv: -len(kv[0])):
            if scope.startswith("*.") and host.endswith(scope[1:]):
                return scope, reqs
        if "" in self.scopes:
            return "", self.scopes[""]
        return "default", self.default


def _scopes(ref: Reference) -> list[str]:
    out = [str(ref)]
    parts = ref.name.split("/")
    out += ["/".join(parts[:i]) for i in range(len(parts), 0, -1)]
    return out


def find(explicit: str | None = None) -> str | None:
    """The policy file to enforce: --signature-policy, $IMAGETOOL_SIGNATURE_POLICY (empty:
    none), /etc/containers/policy.json when present, else None (nothing is enforced)."""
    if explicit:
        return explicit
    env = os.environ.get(ENV_PATH)
    if env is not None:
        return env or None
    return DEFAULT_PATH if os.path.exists(DEFAULT_PATH) else None


def _check_identity(si: Any, where: str) -> None:
    if not isinstance(si, dict) or si.get("type") not in IDENTITIES:
        raise TrustError(f"{where}.signedIdentity: unknown type "
                         f"{si.get('type') if isinstance(si, dict) else si!r}")
    extra = set(si) - {"type"} - IDENTITIES[si["type"]]
    missing = IDENTITIES[si["type"]] - set(si)
    if extra or missing:
        raise TrustError(f"{where}.signedIdentity ({si['type']}): "
                         f"{'unknown' if extra else 'missing'} field "
                         f"{sorted(extra or missing)[0]!r}")


def _check_req(req: Any, where: str) -> None:
    if not isinstance(req, dict) or req.get("type") not in TYPES:
        kind = req.get("type") if isinstance(req, dict) else req
        raise TrustError(f"{where}: unknown requirement type {kind!r}")
    t = req["type"]
    extra = set(req) - {"type"} - TYPES[t]
    if extra:
        raise TrustError(f"{where} ({t}): unknown field {sorted(extra)[0]!r}")
    if t in ("signedBy", "sigstoreSigned"):
        sources = [k for k in ("keyPath", "keyPaths", "keyData", "fulcio") if k in req]
        if len(sources) != 1 or (t == "sigstoreSigned" and "keyPaths" in req):
            raise TrustError(f"{where} ({t}): give exactly one of keyPath, "
                             f"{'keyPaths, ' if t == 'signedBy' else ''}keyData")
        if "signedIdentity" in req:
            _check_identity(req["signedIdentity"], where)


def load(path: str) -> Policy:
    """Read and check the whole file; errors name the file and the field."""
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except OSError as e:
        raise TrustError(f"signature policy {path}: {e.strerror}") from None
    except ValueError:
        raise TrustError(f"signature policy {path}: not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("default"), list):
        raise TrustError(f"signature policy {path}: want an object with a 'default' list")
    for i, req in enumerate(doc["default"]):
        _check_req(req, f"signature policy {path}: default[{i}]")
    transports = doc.get("transports") or {}
    if not isinstance(transports, dict):
        raise TrustError(f"signature policy {path}: 'transports' must be an object")
    for tname, scopes in transports.items():
        if not isinstance(scopes, dict):
            raise TrustError(f"signature policy {path}: transports.{tname} must be an object")
        for scope, reqs in scopes.items():
            if not isinstance(reqs, list) or not reqs:
                raise TrustError(f"signature policy {path}: transports.{tname}[{scope!r}] "
                                 "must be a non-empty list")
            for i, req in enumerate(reqs):
                _check_req(req, f"signature policy {path}: transports.{tname}[{scope!r}][{i}]")
    if not doc["default"]:
        raise TrustError(f"signature policy {path}: 'default' must not be empty")
    return Policy(path, doc["default"], dict(transports.get("docker") or {}))


# -- identities --------------------------------------------------------------------------------
def _parse(text: str, what: str) -> Reference:
    try:
        return parse(text, default_tag=False)
    except ReferenceError as e:
        raise VerifyError(f"{what}: {e}") from None


def identity_ok(si: dict[str, Any] | None, image: Reference, signed: str) -> bool:
    """Does the signature's docker-reference `signed` fit `image` under `si`?"""
    kind = (si or {}).get("type", "matchRepoDigestOrExact")
    sig = _parse(signed, "signed docker-reference")
    if kind == "matchExact":
        return str(sig) == str(image)
    if kind == "matchRepository":
        return sig.name == image.name
    if kind == "exactReference":
        want = _parse(si["dockerReference"], "exactReference.dockerReference")  # type: ignore
        return str(sig) == str(want)
    if kind == "exactRepository":
        want = _parse(si["dockerRepository"], "exactRepository.dockerRepository")  # type: ignore
        return sig.name == want.name
    if kind == "remapIdentity":
        prefix, signed_prefix = si["prefix"], si["signedPrefix"]  # type: ignore
        text = str(image)
        if image.name == prefix or text.startswith(prefix.rstrip("/") + "/"):
            image = _parse(signed_prefix + text[len(prefix):], "remapIdentity")
    # matchRepoDigestOrExact
    if image.digest and not image.tag:
        return sig.name == image.name
    return str(sig) == str(image)


# -- evaluation --------------------------------------------------------------------------------
def _key_blobs(req: dict[str, Any], where: str) -> list[bytes]:
    if "keyData" in req:
        try:
            return [base64.b64decode(req["keyData"], validate=True)]
        except ValueError:
            raise TrustError(f"{where}: keyData is not base64") from None
    paths = req.get("keyPaths") or [req["keyPath"]]
    out = []
    for p in paths:
        try:
            with open(p, "rb") as f:
                out.append(f.read())
        except OSError as e:
            raise TrustError(f"{where}: keyPath {p}: {e.strerror}") from None
    return out


def check(policy: Policy, image: Reference, digest: str, client: Any,
          registries_d: str | None = None) -> str:
    """Raise VerifyError unless every requirement for `image` (manifest `digest`) holds;
    returns a short description of what was checked."""
    scope, reqs = policy.requirements(image)
    where = f"policy {policy.path} ({'scope ' + repr(scope) if scope != 'default' else 'default'})"
    done = []
    for req in reqs:
        t = req["type"]
        why = _unsupported(req)
        if why:  # refused when used, so a machine's policy with them elsewhere still loads
            raise VerifyError(f"{image}: {where}: {why}")
        if t == "insecureAcceptAnything":
            done.append(t)
        elif t == "reject":
            raise VerifyError(f"{image}: rejected by {where}")
        elif t == "signedBy":
            _signed_by(req, image, digest, registries_d, where)
            done.append(t)
        else:
            _sigstore_signed(req, image, digest, client, where)
            done.append(t)
    return ", ".join(done)


def _unsupported(req: dict[str, Any]) -> str | None:
    if req["type"] == "signedBy" and req.get("keyType") != "GPGKeys":
        return f"signedBy keyType {req.get('keyType')!r} is not supported (only GPGKeys)"
    if any(k in req for k in ("fulcio", "rekorPublicKeyPath", "rekorPublicKeyData")):
        return "sigstoreSigned with fulcio/rekor is not supported (use keyPath or keyData)"
    return None


def _signed_by(req: dict[str, Any], image: Reference, digest: str,
               registries_d: str | None, where: str) -> None:
    from imagetool.trust import gpg, lookaside, payload
    url = lookaside.Config.load(registries_d).read_url(image)
    if not url:
        raise VerifyError(f"{image}: {where} wants a GPG signature but no lookaside is "
                          "configured for it in registries.d")
    sigs = lookaside.read_signatures(url, image, digest)
    if not sigs:
        raise VerifyError(f"{image}: {where} wants a GPG signature; none found for {digest}")
    why = []
    with gpg.keyring(_key_blobs(req, where)) as env:
        for i, sig in enumerate(sigs, 1):
            try:
                _, body = gpg.verify(sig, env)
                p = payload.parse(body, f"signature-{i}", payload.ATOMIC_TYPE)
                if p.manifest_digest != digest:
                    raise VerifyError(f"signed payload is for {p.manifest_digest}, "
                                      f"not {digest}")
                if not identity_ok(req.get("signedIdentity"), image, p.docker_reference):
                    raise VerifyError(f"signed for {p.docker_reference}, not {image}")
                return
            except VerifyError as e:
                why.append(f"signature-{i}: {e}")
    raise VerifyError(f"{image}: no signature accepted by {where} ({'; '.join(why)})")


def _sigstore_signed(req: dict[str, Any], image: Reference, digest: str, client: Any,
                     where: str) -> None:
    from imagetool.trust import cosign, keys
    pubs = [keys.load_public(b, f"{where} key") for b in _key_blobs(req, where)]
    sigs = cosign.signature_manifests(client, image, digest)
    if not sigs:
        raise VerifyError(f"{image}: {where} wants a sigstore signature; none found for "
                          f"{digest}")
    why = []
    for m in sigs:
        for i, desc in enumerate(m.data.get("layers", [])):
            for pub in pubs:
                try:
                    v = cosign.check_layer(client, image, desc, pub, digest)
                    if not identity_ok(req.get("signedIdentity"), image,
                                       v.payload.docker_reference):
                        raise VerifyError(f"signed for {v.payload.docker_reference}, "
                                          f"not {image}")
                    return
                except TrustError as e:
                    why.append(f"signature {i}: {e}")
    raise VerifyError(f"{image}: no signature accepted by {where} ({'; '.join(why)})")
