"""`imagetool import ROOTFS.tar NAME`: a rootfs tarball becomes a one-layer image, like
`docker import`. The tar (plain or gzip/zstd/xz/bzip2) is read once: its uncompressed bytes
give the diff_id and are gzipped by isal into the layer blob, while tarfile walks the headers
of the same stream, so a file that is not a tar, or is cut short, is refused."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import shlex
import sys
import tarfile
from typing import Any, BinaryIO

from imagetool import compression
from imagetool import mediatypes as mt
from imagetool.errors import ImagetoolError
from imagetool.store import Store


class ImportFailed(ImagetoolError, ValueError):
    """The rootfs tarball or an option is unusable; the message names which."""


def host_platform() -> dict[str, str]:
    """This machine as an OCI platform (GOARCH names: x86_64 -> amd64)."""
    from imagetool.platform import host
    h = host()
    plat = {"architecture": h.architecture, "os": h.os}
    if h.variant:
        plat["variant"] = h.variant
    return plat


def now_rfc3339() -> str:
    """Now (or SOURCE_DATE_EPOCH, for reproducible images) in RFC 3339, UTC."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (_dt.datetime.fromtimestamp(int(epoch), _dt.UTC) if epoch and epoch.isdigit()
            else _dt.datetime.now(_dt.UTC))
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_cmd(text: str, what: str) -> list[str]:
    """`["a","b"]` (JSON, exec form) or a shell string (run by /bin/sh -c), as in a Dockerfile."""
    import json
    if text.lstrip().startswith("["):
        try:
            value = json.loads(text)
        except ValueError as e:
            raise ImportFailed(f"{what}: not a JSON array of strings ({e})") from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ImportFailed(f"{what}: not a JSON array of strings")
        return value
    if not text.strip():
        raise ImportFailed(f"{what}: empty")
    return ["/bin/sh", "-c", text]


class _Tee:
    """Reads the uncompressed tar in big chunks; every chunk is hashed (diff_id) and gzipped
    into the ingest as it arrives, and then handed to tarfile in whatever sizes it asks for."""

    def __init__(self, src: BinaryIO, sink: Any) -> None:
        self._src = src
        self._sink = sink
        self._gz = compression.GzipWriter()
        self.diff = hashlib.sha256()
        self.total = 0
        self._buf = b""
        self._pos = 0

    def _fill(self) -> bool:
        chunk = self._src.read(1 << 20)
        if not chunk:
            return False
        self.diff.update(chunk)
        self.total += len(chunk)
        self._sink.write(self._gz.compress(chunk))
        self._buf = self._buf[self._pos:] + chunk
        self._pos = 0
        return True

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self._buf) - self._pos < n) and self._fill():
            pass
        end = len(self._buf) if n < 0 else self._pos + n
        out = self._buf[self._pos:end]
        self._pos += len(out)
        return out

    def drain(self) -> None:
        """Consume what tarfile left (end-of-archive padding) and finish the gzip stream."""
        self._buf, self._pos = b"", 0
        while self._fill():
            self._buf, self._pos = b"", 0
        self._sink.write(self._gz.flush())


def _layer_from(src: BinaryIO, label: str, store: Store) -> tuple[dict[str, Any], str]:
    """Ingest the layer; return (layer descriptor, diff_id)."""
    try:
        kind, plain = compression.open_any(src)
    except OSError as e:
        raise ImportFailed(f"{label}: cannot read ({e})") from None
    with store.ingest() as w:
        tee = _Tee(plain, w)
        try:
            with tarfile.open(fileobj=tee, mode="r|") as tf:  # type: ignore[call-overload]
                members = 0
                for _ in tf:
                    members += 1
                end = tf.offset
            tee.drain()
        except (tarfile.TarError, EOFError, OSError, ValueError) as e:
            what = f"{kind}-compressed " if kind != "none" else ""
            raise ImportFailed(f"{label}: not a valid {what}tar archive ({e})") from None
        if tee.total < end:
            raise ImportFailed(f"{label}: tar archive is truncated ({tee.total} bytes, its "
                               f"last member ends at {end})")
        digest = w.commit()
        size = w.size
    return ({"mediaType": mt.OCI_LAYER_GZIP, "digest": digest, "size": size},
            f"sha256:{tee.diff.hexdigest()}")


def import_rootfs(store: Store, source: str | BinaryIO, name: str, *,
                  cmd: list[str] | None = None, entrypoint: list[str] | None = None,
                  env: list[str] | None = None, workdir: str | None = None,
                  message: str | None = None) -> dict[str, Any]:
    """Make `name` (a full normalised reference) a one-layer image of the rootfs tarball
    `source` (a path, '-' for stdin, or a binary stream). Returns the manifest descriptor.
    Nothing is named unless every blob is complete; on failure the temp files go away."""
    for e in env or []:
        if "=" not in e or e.startswith("="):
            raise ImportFailed(f"--env {e!r}: want KEY=VALUE")
    if isinstance(source, str):
        label = "stdin" if source == "-" else source
        if source == "-":
            src: BinaryIO = sys.stdin.buffer
        else:
            try:
                src = open(source, "rb")  # noqa: SIM115 - closed below
            except OSError as e:
                raise ImportFailed(f"{source}: {e.strerror}") from None
    else:
        label, src = getattr(source, "name", "stream"), source
    created = now_rfc3339()
    plat = host_platform()
    try:
        with store.lease():
            layer, diff_id = _layer_from(src, label, store)
            conf: dict[str, Any] = {}
            if env:
                conf["Env"] = list(env)
            if entrypoint:
                conf["Entrypoint"] = entrypoint
            if cmd:
                conf["Cmd"] = cmd
            if workdir:
                conf["WorkingDir"] = workdir
            by = "imagetool import " + shlex.quote(os.path.basename(label))
            config = {"created": created, **plat, "config": conf,
                      "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                      "history": [{"created": created, "created_by": by,
                                   "comment": message or f"imported from {label}"}]}
            cdesc = store.put_json(config, mt.OCI_CONFIG)
            manifest = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": cdesc,
                        "layers": [layer]}
            mdesc = store.put_json(manifest, mt.OCI_MANIFEST)
            mdesc["platform"] = plat
            store.set_image(name, mdesc)
    finally:
        if src is not sys.stdin.buffer and isinstance(source, str):
            src.close()
    return mdesc
