"""OpenPGP simple signing through GnuPG's gpg(1), driven with --batch and --status-fd (no
Python binding needed). Signing uses the caller's GNUPGHOME (as skopeo --sign-by does): the
payload becomes an opaque (non-detached, binary) OpenPGP signed message. Verifying never
touches the caller's keyring: the trusted keys (policy keyPath/keyPaths/keyData) are
imported into a throwaway GNUPGHOME, removed afterwards with its agent stopped."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from imagetool.trust.errors import TrustError, VerifyError

TIMEOUT = 60


def _gpg() -> str:
    path = shutil.which("gpg")
    if not path:
        raise TrustError("gpg (GnuPG) is not installed: OpenPGP signatures need it")
    return path


def sign(payload: bytes, fingerprint: str, passphrase_file: str | None = None) -> bytes:
    """An OpenPGP signed message holding `payload`, by the secret key `fingerprint`."""
    cmd = [_gpg(), "--batch", "--no-tty", "--yes", "--local-user", fingerprint, "--sign",
           "--output", "-"]
    if passphrase_file:
        cmd[1:1] = ["--pinentry-mode", "loopback", "--passphrase-file", passphrase_file]
    p = subprocess.run(cmd, input=payload, capture_output=True, timeout=TIMEOUT)
    if p.returncode != 0 or not p.stdout:
        why = p.stderr.decode(errors="replace").strip().splitlines()
        raise TrustError(f"--sign-by {fingerprint}: gpg could not sign "
                         f"({why[-1] if why else 'exit ' + str(p.returncode)})")
    return p.stdout


@contextmanager
def keyring(key_blobs: list[bytes]) -> Iterator[dict[str, str]]:
    """A throwaway GNUPGHOME holding exactly these public keys; yields gpg's environment."""
    home = tempfile.mkdtemp(prefix="imagetool-gnupg-")
    env = dict(os.environ, GNUPGHOME=home, LC_ALL="C")
    try:
        for blob in key_blobs:
            p = subprocess.run([_gpg(), "--batch", "--no-tty", "--status-fd", "1", "--import"],
                               input=blob, capture_output=True, env=env, timeout=TIMEOUT)
            if b"[GNUPG:] IMPORT_OK" not in p.stdout:
                raise TrustError("policy GPG keys: gpg found no public key in them")
        yield env
    finally:
        gpgconf = shutil.which("gpgconf")
        if gpgconf:  # the agent, if one started, and its /run/user socket dir
            for args in (["--kill", "all"], ["--remove-socketdir"]):
                subprocess.run([gpgconf, *args], env=env, capture_output=True,
                               timeout=TIMEOUT)
        shutil.rmtree(home, ignore_errors=True)


def verify(sig: bytes, env: dict[str, str]) -> tuple[str, bytes]:
    """(signer's primary key fingerprint, the signed payload) when a key of the keyring made
    `sig` and it is valid now; else VerifyError."""
    rfd, wfd = os.pipe()
    try:
        p = subprocess.Popen([_gpg(), "--batch", "--no-tty", "--status-fd", str(wfd),
                              "--output", "-", "--decrypt"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                             pass_fds=(wfd,))
        os.close(wfd)
        wfd = -1
        with os.fdopen(rfd, "rb") as status_f:
            rfd = -1
            try:
                out, _ = p.communicate(sig, timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                raise TrustError("gpg --decrypt timed out") from None
            status = status_f.read().decode(errors="replace")
    finally:
        for fd in (rfd, wfd):
            if fd >= 0:
                os.close(fd)
    lines = [ln.split()[1:] for ln in status.splitlines() if ln.startswith("[GNUPG:] ")]
    kinds = {ln[0] for ln in lines if ln}
    if "NODATA" in kinds or "BADARMOR" in kinds:
        raise VerifyError("not an OpenPGP signature")
    if "BADSIG" in kinds:
        raise VerifyError("OpenPGP signature does not verify")
    if "ERRSIG" in kinds or "NO_PUBKEY" in kinds:
        raise VerifyError("signed by a key the policy does not trust")
    for kind in ("EXPSIG", "EXPKEYSIG", "REVKEYSIG"):
        if kind in kinds:
            raise VerifyError(f"OpenPGP signature rejected ({kind})")
    valid = [ln for ln in lines if ln and ln[0] == "VALIDSIG"]
    if p.returncode != 0 or not valid or "GOODSIG" not in kinds:
        raise VerifyError("OpenPGP signature does not verify")
    fields = valid[0]
    return (fields[10] if len(fields) > 10 else fields[1]), out
