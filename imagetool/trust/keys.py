"""cosign-compatible key pairs: ECDSA P-256, the public key as a PEM SubjectPublicKeyInfo, the
private key as PKCS#8 DER sealed the way cosign seals it: scrypt (N=65536, r=8, p=1, 32-byte
salt) derives a 32-byte key, NaCl secretbox (XSalsa20-Poly1305, 24-byte nonce) encrypts, and
the JSON {"kdf", "cipher", "ciphertext"} goes into a PEM block `ENCRYPTED SIGSTORE PRIVATE KEY`
(older cosign wrote `ENCRYPTED COSIGN PRIVATE KEY`; both are read). Signatures are ECDSA over
SHA-256, DER-encoded, as cosign makes them."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from typing import Any

from imagetool.trust.errors import TrustError, VerifyError

PEM_TYPE = "ENCRYPTED SIGSTORE PRIVATE KEY"
PEM_TYPES = (PEM_TYPE, "ENCRYPTED COSIGN PRIVATE KEY")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 65536, 8, 1
SALT_LEN, NONCE_LEN, KEY_LEN = 32, 24, 32
MAX_SCRYPT_N = 1 << 20  # refuse a key file that would make us spend gigabytes


@dataclass(frozen=True)
class KeyPair:
    """The two files `imagetool key generate` writes."""

    private_pem: bytes
    public_pem: bytes


def _pem(kind: str, der: bytes) -> bytes:
    body = base64.b64encode(der).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return (f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n").encode()


def _unpem(data: bytes, kinds: tuple[str, ...], what: str) -> bytes:
    text = data.decode("ascii", "replace")
    for kind in kinds:
        begin, end = f"-----BEGIN {kind}-----", f"-----END {kind}-----"
        if begin in text:
            if end not in text:
                raise TrustError(f"{what}: truncated PEM (no END {kind} line)")
            body = text.split(begin, 1)[1].split(end, 1)[0]
            try:
                return base64.b64decode("".join(body.split()), validate=True)
            except ValueError:
                raise TrustError(f"{what}: the PEM body is not base64") from None
    raise TrustError(f"{what}: not a PEM {' or '.join(kinds)}")


def _scrypt(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
    return Scrypt(salt=salt, length=KEY_LEN, n=n, r=r, p=p).derive(passphrase)


def seal(plaintext: bytes, passphrase: bytes) -> bytes:
    """The cosign/sigstore encrypted-key JSON for `plaintext` under `passphrase`."""
    import nacl.secret
    salt, nonce = os.urandom(SALT_LEN), os.urandom(NONCE_LEN)
    key = _scrypt(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    sealed = nacl.secret.SecretBox(key).encrypt(plaintext, nonce).ciphertext
    doc = {"kdf": {"name": "scrypt", "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
                   "salt": base64.b64encode(salt).decode()},
           "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
           "ciphertext": base64.b64encode(sealed).decode()}
    return json.dumps(doc).encode()


def _b64field(doc: dict[str, Any], path: str, what: str) -> bytes:
    cur: Any = doc
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if not isinstance(cur, str):
        raise TrustError(f"{what}: encrypted key lacks {path}")
    try:
        return base64.b64decode(cur, validate=True)
    except ValueError:
        raise TrustError(f"{what}: {path} is not base64") from None


def unseal(blob: bytes, passphrase: bytes, what: str) -> bytes:
    """Open the encrypted-key JSON; a wrong passphrase is one clear error."""
    import nacl.exceptions
    import nacl.secret
    try:
        doc = json.loads(blob)
    except ValueError:
        raise TrustError(f"{what}: encrypted key is not JSON (truncated?)") from None
    if not isinstance(doc, dict):
        raise TrustError(f"{what}: encrypted key is not a JSON object")
    kdf, cipher = doc.get("kdf") or {}, doc.get("cipher") or {}
    if kdf.get("name") != "scrypt" or cipher.get("name") != "nacl/secretbox":
        raise TrustError(f"{what}: unsupported key encryption "
                         f"{kdf.get('name')!r}/{cipher.get('name')!r}")
    params = kdf.get("params") or {}
    n, r, p = params.get("N"), params.get("r"), params.get("p")
    if not (isinstance(n, int) and isinstance(r, int) and isinstance(p, int)
            and n > 0 and r > 0 and p > 0) or n > MAX_SCRYPT_N:
        raise TrustError(f"{what}: bad scrypt parameters {params!r}")
    salt = _b64field(doc, "kdf.salt", what)
    nonce = _b64field(doc, "cipher.nonce", what)
    sealed = _b64field(doc, "ciphertext", what)
    if len(nonce) != NONCE_LEN:
        raise TrustError(f"{what}: nonce is {len(nonce)} bytes, want {NONCE_LEN}")
    key = _scrypt(passphrase, salt, n, r, p)
    try:
        return nacl.secret.SecretBox(key).decrypt(sealed, nonce)
    except nacl.exceptions.CryptoError:
        raise TrustError(f"{what}: wrong passphrase (or a damaged key)") from None


def generate(passphrase: bytes) -> KeyPair:
    """A new P-256 key pair in cosign's files."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return KeyPair(_pem(PEM_TYPE, seal(der, passphrase)), pub)


def load_private(data: bytes, passphrase: bytes, what: str = "key") -> Any:
    """The ECDSA private key of a cosign key file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    der = unseal(_unpem(data, PEM_TYPES, what), passphrase, what)
    try:
        key = serialization.load_der_private_key(der, None)
    except ValueError:
        raise TrustError(f"{what}: the decrypted key is not PKCS#8") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TrustError(f"{what}: not an ECDSA key")
    return key


def load_public(data: bytes, what: str = "public key") -> Any:
    """A PEM public key (ECDSA; RSA and Ed25519 are accepted as cosign does)."""
    from cryptography.hazmat.primitives import serialization
    der = _unpem(data, ("PUBLIC KEY",), what)
    try:
        return serialization.load_der_public_key(der)
    except ValueError:
        raise TrustError(f"{what}: not a valid public key") from None


def sign(key: Any, data: bytes) -> bytes:
    """ECDSA-P256 over SHA-256 of `data`, DER-encoded."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def verify(pub: Any, signature: bytes, data: bytes) -> None:
    """Raise VerifyError unless `signature` is `pub`'s over `data`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    try:
        if isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(pub, rsa.RSAPublicKey):
            pub.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(pub, ed25519.Ed25519PublicKey):
            pub.verify(signature, data)
        else:
            raise VerifyError("unsupported public key type")
    except InvalidSignature:
        raise VerifyError("signature does not match the key") from None


def read_passphrase(path: str | None, confirm: bool = False) -> bytes:
    """From --passphrase-file (first line), $COSIGN_PASSWORD, or a terminal prompt."""
    if path:
        try:
            with open(path, "rb") as f:
                return f.read().split(b"\n", 1)[0].rstrip(b"\r")
        except OSError as e:
            raise TrustError(f"--passphrase-file {path}: {e.strerror}") from None
    env = os.environ.get("COSIGN_PASSWORD")
    if env is not None:
        return env.encode()
    import sys
    if not sys.stdin.isatty():
        raise TrustError("no passphrase: give --passphrase-file (no terminal to ask on)")
    import getpass
    first = getpass.getpass("Enter password for private key: ")
    if confirm and getpass.getpass("Enter password for private key again: ") != first:
        raise TrustError("passphrases do not match")
    return first.encode()
