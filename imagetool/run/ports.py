"""Published ports: `[HOSTIP:]HOST:CTR[/tcp|udp]` parsed, and userspace proxies that listen
on the host address and talk to the container's address (no forwarding, no NAT), as
docker-proxy does. They run as threads inside the monitor. TCP: one accept thread per port,
two copy threads per connection. UDP: one receive thread per port and, per client address,
a socket connected to the container whose replies go back to that client; a client quiet
for UDP_IDLE seconds is forgotten (docker-proxy's 90 s)."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from imagetool.errors import ImagetoolError

UDP_IDLE = 90.0


class PortError(ImagetoolError):
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


def _bound(port: dict[str, Any], kind: int) -> socket.socket:
    fam = socket.AF_INET6 if ":" in port["HostIp"] else socket.AF_INET
    sock = socket.socket(fam, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((port["HostIp"], port["HostPort"]))
    except OSError as e:
        sock.close()
        raise PortError(f"cannot publish {port['HostIp']}:{port['HostPort']}/"
                        f"{port['Proto']}: {e.strerror}") from None
    port["HostPort"] = sock.getsockname()[1]
    return sock


def proxy_for(port: dict[str, Any], target: str) -> Proxy | UdpProxy:
    """The proxy for one published port; binding it now reports a taken port at once."""
    return UdpProxy(port, target) if port["Proto"] == "udp" else Proxy(port, target)


class Proxy:
    def __init__(self, port: dict[str, Any], target: str) -> None:
        self.port, self.target = port, target
        self.sock = _bound(port, socket.SOCK_STREAM)
        self.sock.listen(128)
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


class UdpProxy:
    def __init__(self, port: dict[str, Any], target: str, idle: float = UDP_IDLE) -> None:
        self.port, self.target, self.idle = port, target, idle
        self.sock = _bound(port, socket.SOCK_DGRAM)
        self.clients: dict[Any, socket.socket] = {}
        self.lock = threading.Lock()
        self.closed = False

    def start(self) -> None:
        threading.Thread(target=self._receive, daemon=True).start()

    def _receive(self) -> None:
        while not self.closed:
            try:
                data, client = self.sock.recvfrom(65535)
            except OSError:
                return
            with self.lock:
                up = self.clients.get(client)
                if up is None:
                    try:
                        up = socket.socket(socket.AF_INET6 if ":" in self.target
                                           else socket.AF_INET, socket.SOCK_DGRAM)
                        up.connect((self.target, self.port["ContainerPort"]))
                    except OSError:
                        if up is not None:
                            up.close()
                        continue
                    up.settimeout(self.idle)
                    self.clients[client] = up
                    threading.Thread(target=self._replies, args=(client, up),
                                     daemon=True).start()
            with contextlib.suppress(OSError):
                up.send(data)

    def _replies(self, client: Any, up: socket.socket) -> None:
        """The container's answers to one client, until it has been quiet for `idle`."""
        try:
            while not self.closed:
                data = up.recv(65535)
                self.sock.sendto(data, client)
        except OSError:  # timeout, refused (no listener), or closed
            pass
        with self.lock:
            if self.clients.get(client) is up:
                del self.clients[client]
        up.close()

    def close(self) -> None:
        self.closed = True
        self.sock.close()
        with self.lock:
            for up in self.clients.values():
                with contextlib.suppress(OSError):
                    up.shutdown(socket.SHUT_RDWR)
