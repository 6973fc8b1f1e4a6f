"""TLS for the registry transport: contexts built from the system CAs plus Docker's certs.d
layout (CAs, client certificate pairs), and the reading of a failed handshake: an untrusted
certificate, a server that answered in plain HTTP, or another TLS error, each as one line."""

from __future__ import annotations

import os
import re
import ssl

from imagetool.registry.errors import TransportError


def tls_context(cert_dir: str | None, verify: bool = True) -> ssl.SSLContext:
    """System CAs, plus every *.crt of a certs.d dir, plus its *.cert/*.key client pairs."""
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if not cert_dir:
        return ctx
    import glob
    for ca in sorted(glob.glob(os.path.join(cert_dir, "*.crt"))):
        try:
            ctx.load_verify_locations(cafile=ca)
        except (ssl.SSLError, OSError) as e:
            raise TransportError(f"{ca}: not a usable CA certificate ({e})") from None
    for cert in sorted(glob.glob(os.path.join(cert_dir, "*.cert"))):
        key = cert[:-len(".cert")] + ".key"
        if not os.path.exists(key):
            raise TransportError(f"{cert}: client certificate without {key}")
        try:
            ctx.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as e:
            raise TransportError(f"{cert}: not a usable client certificate ({e})") from None
    return ctx



def _is_verify_failure(e: BaseException | None) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(cur):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


_NOT_TLS = ("WRONG_VERSION_NUMBER", "record layer failure", "unknown protocol",
            "http request", "PACKET_LENGTH_TOO_LONG")


def speaks_no_tls(e: BaseException | None) -> bool:
    """The handshake failed because the server answered in plain HTTP (not a refused or
    missing certificate, which must stay an error)."""
    return (isinstance(e, ssl.SSLError) and not _is_verify_failure(e)
            and any(m.lower() in str(e).lower() for m in _NOT_TLS))


def _ssl_reason(e: BaseException) -> str:
    """The innermost SSL message, e.g. `tlsv13 alert certificate required`."""
    m = re.search(r"\[SSL: [A-Z0-9_]+\] ([^(]+?)\s*\(_ssl", str(e))
    return m.group(1) if m else "see the registry's TLS setup"


def transport_error(registry: str, url: str, e: BaseException) -> TransportError:
    if isinstance(e, ssl.SSLError):
        if _is_verify_failure(e):
            return TransportError(
                f"{registry}: TLS certificate not trusted (put its CA in certs.d/{registry}/ca.crt"
                f" or mark the registry insecure)")
        return TransportError(f"{registry}: TLS handshake failed ({_ssl_reason(e)})")
    if isinstance(e, TimeoutError):
        return TransportError(f"{registry}: timed out on {url}")
    reason = str(e) or type(e).__name__
    for marker in ("Connection refused", "Name or service not known", "No route to host",
                   "Temporary failure in name resolution", "Connection reset"):
        if marker in reason:
            reason = marker.lower()
            break
    return TransportError(f"{registry}: cannot connect ({reason}) for {url}")
