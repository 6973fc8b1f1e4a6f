"""Published ports: `[HOSTIP:]HOST:CTR[/tcp|udp]` parsed, and a userspace TCP proxy that
listens on the host address and connects to the container's address (no forwarding, no
NAT). Runs as threads inside the monitor: one accept thread per port, two copy threads per
connection."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any


class PortError(Exception):
    pass


def parse(text: str) -> dict[str, Any]:
    spec, _, proto = text.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise PortError(f"-p {text}: protocol must be tcp or udp")
    parts = spec.rsplit(":", 2)
    if len(parts) == 3:
        hip, hport, cport = parts
        hip = hip.strip("[]")
    elif len(parts) == 2:
        hip, (hport, cport) = "0.0.0.0", parts
    else:
        hip, hport, cport = "0.0.0.0", "", parts[0]
    try:
        c = int(cport)
        h = int(hport) if hport else 0
    except ValueError:
        raise PortError(f"-p {text}: ports must be numbers") from None
    if not (0 < c < 65536 and 0 <= h < 65536):
        raise PortError(f"-p {text}: port out of range")
    return {"HostIp": hip or "0.0.0.0", "HostPort": h, "ContainerPort": c, "Proto": proto}


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


class Proxy:
    def __init__(self, port: dict[str, Any], target: str) -> None:
        if port["Proto"] != "tcp":
            raise PortError("only tcp ports can be published here")
        self.port, self.target = port, target
        fam = socket.AF_INET6 if ":" in port["HostIp"] else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((port["HostIp"], port["HostPort"]))
        except OSError as e:
            self.sock.close()
            raise PortError(f"cannot publish {port['HostIp']}:{port['HostPort']}: "
                            f"{e.strerror}") from None
        self.sock.listen(128)
        port["HostPort"] = self.sock.getsockname()[1]
        self.closed = False

    def start(self) -> None:
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            up = socket.create_connection((self.target, self.port["ContainerPort"]), timeout=10)
        except OSError:
            conn.close()
            return
        up.settimeout(None)
        t = threading.Thread(target=_pipe, args=(up, conn), daemon=True)
        t.start()
        _pipe(conn, up)
        t.join()
        conn.close()
        up.close()

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
