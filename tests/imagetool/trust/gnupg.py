"""A throwaway GnuPG home for tests: keys made with --quick-gen-key (no passphrase), the
agent stopped with `gpgconf --kill all` and the directory removed at the end; a check that
no process still runs with that home."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile


class GnuPG:
    def __init__(self) -> None:
        # short path: gpg-agent's socket must fit in sun_path
        self.home = tempfile.mkdtemp(prefix="itg", dir="/tmp")
        self.env = dict(os.environ, GNUPGHOME=self.home, LC_ALL="C")

    def gpg(self, *args: str, input: bytes | None = None) -> bytes:
        p = subprocess.run(["gpg", "--batch", "--no-tty", *args], input=input,
                           capture_output=True, env=self.env, timeout=120)
        if p.returncode != 0:
            raise AssertionError(f"gpg {args} failed: {p.stderr.decode()}")
        return p.stdout

    def new_key(self, uid: str) -> str:
        """A new RSA signing key; returns its fingerprint."""
        self.gpg("--passphrase", "", "--quick-gen-key", uid, "rsa2048", "sign", "never")
        out = self.gpg("--with-colons", "--list-secret-keys", uid).decode()
        return next(ln.split(":")[9] for ln in out.splitlines() if ln.startswith("fpr:"))

    def export(self, fingerprint: str, path: str, armor: bool = True) -> str:
        data = self.gpg(*(["--armor"] if armor else []), "--export", fingerprint)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def close(self) -> None:
        for args in (["--kill", "all"], ["--remove-socketdir"]):
            subprocess.run(["gpgconf", *args], env=self.env, capture_output=True, timeout=60)
        left = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if self.home.encode() in f.read():
                        left.append(int(pid))
            except OSError:
                pass
        shutil.rmtree(self.home, ignore_errors=True)
        assert not left, f"gpg processes left running for {self.home}: {left}"
