"""linux.netDevices (runtime-spec 1.3): host interfaces moved into the container's network
namespace, renamed there if asked, and given back to the host under their own names when
the container is deleted (or its create fails).

One rtnetlink RTM_NEWLINK per device (IFLA_NET_NS_FD, IFLA_IFNAME). The kernel moves the
device first and renames it after, so a name clash inside leaves it moved under its host
name: a failed move gives that back too. A container's
own network namespace is pinned by a bind mount in its state directory while it holds
devices: a veth dies with the namespace, and `delete` comes after the init is gone.
Imported only when a config has netDevices: `socket` stays off create's usual path.
"""

from __future__ import annotations

import os
import socket
import struct

from runtime.errors import ConfigError, PyruncError
from runtime.linux import syscalls as sc

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

_RTM_NEWLINK, _NLMSG_ERROR = 16, 2
_NLM_F_REQUEST, _NLM_F_ACK = 1, 4
_IFLA_IFNAME, _IFLA_NET_NS_FD = 3, 28
_IFNAMSIZ = 16


def plan(spec: dict[str, Any], host_netns: bool) -> list[tuple[str, str]]:
    """[(host name, name in the container)]; ConfigError naming the field otherwise.
    `host_netns`: the container would share the runtime's network namespace."""
    devs = (spec.get("linux") or {}).get("netDevices")
    if not isinstance(devs, dict):
        raise ConfigError("linux.netDevices", "must be an object of interface names")
    if host_netns:
        raise ConfigError("linux.netDevices", "moving network devices needs a network "
                                              "namespace of the container's own")
    out, seen = [], set()
    for host, d in devs.items():
        p = f"linux.netDevices.{host}"
        if not valid_name(host):
            raise ConfigError(p, "is not a valid interface name")
        if not isinstance(d, dict):
            raise ConfigError(p, "must be an object")
        new = d.get("name") or host
        if not isinstance(new, str) or not valid_name(new):
            raise ConfigError(f"{p}.name", f"{new!r} is not a valid interface name")
        if new in seen:
            raise ConfigError(f"{p}.name", f"{new} is given to two devices")
        seen.add(new)
        try:
            socket.if_nametoindex(host)
        except OSError:
            raise ConfigError(p, "no such network interface on the host") from None
        out.append((host, new))
    return out


def valid_name(name: str) -> bool:
    """What the kernel's dev_valid_name accepts."""
    return (0 < len(name.encode()) < _IFNAMSIZ and name not in (".", "..")
            and not any(c in name for c in "/:") and not any(c.isspace() for c in name))


def pin(pid: int, path: str) -> None:
    """Keep the network namespace of `pid` alive at `path` (an empty file, bind-mounted)."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    sc.mount(f"/proc/{pid}/ns/net", path, None, sc.MS_BIND)


def unpin(path: str) -> None:
    try:
        sc.umount2(path, sc.MNT_DETACH)
    except OSError:
        pass
    try:
        os.unlink(path)
    except OSError:
        pass


def move_in(devices: list[tuple[str, str]], netns: str) -> list[tuple[str, str]]:
    """Move each host device into the namespace at `netns` under its new name. On failure
    the ones already moved go back, and PyruncError names the device."""
    done: list[tuple[str, str]] = []
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for host, new in devices:
            try:
                _setlink(socket.if_nametoindex(host), fd, new)
            except OSError as e:
                move_out([*done, (host, host)], netns)  # moved but not renamed, maybe
                raise PyruncError(f"linux.netDevices.{host}: cannot move into the container's "
                                  f"network namespace: {e.strerror}") from None
            done.append((host, new))
    finally:
        os.close(fd)
    return done


def move_out(devices: list[tuple[str, str]], netns: str) -> list[str]:
    """Give devices back to our network namespace under their host names; the problems."""
    if not devices:
        return []
    problems = []
    home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        inside = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        os.close(home)
        return [f"network namespace {netns}: {e.strerror}"]
    try:
        sc.setns(inside, sc.CLONE_NEWNET)  # the device's index is looked up in there
        try:
            for host, new in devices:
                try:
                    _setlink(socket.if_nametoindex(new), home, host)
                except OSError as e:
                    problems.append(f"{new} -> {host}: {e.strerror}")
        finally:
            sc.setns(home, sc.CLONE_NEWNET)
    finally:
        os.close(inside)
        os.close(home)
    return problems


def _setlink(index: int, netns_fd: int, name: str) -> None:
    """RTM_NEWLINK on an existing device: move it to `netns_fd`, named `name` there."""
    raw = name.encode() + b"\0"
    attrs = _attr(_IFLA_NET_NS_FD, struct.pack("I", netns_fd)) + _attr(_IFLA_IFNAME, raw)
    body = struct.pack("BxHiII", socket.AF_UNSPEC, 0, index, 0, 0) + attrs
    msg = struct.pack("IHHII", 16 + len(body), _RTM_NEWLINK, _NLM_F_REQUEST | _NLM_F_ACK,
                      1, 0) + body
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                       socket.NETLINK_ROUTE) as s:
        s.sendto(msg, (0, 0))
        reply = s.recv(65536)
    _len, kind = struct.unpack_from("IH", reply)
    if kind == _NLMSG_ERROR:
        err = -struct.unpack_from("i", reply, 16)[0]
        if err:
            raise OSError(err, os.strerror(err))


def _attr(kind: int, data: bytes) -> bytes:
    n = 4 + len(data)
    return struct.pack("HH", n, kind) + data + b"\0" * ((4 - n % 4) % 4)


class Attached:
    """The devices a container holds and where: saved in its state for `delete`."""

    def __init__(self, netns: str, pinned: bool) -> None:
        self.netns = netns
        self.pinned = pinned
        self.devices: list[tuple[str, str]] = []

    def to_state(self) -> dict[str, Any]:
        return {"netns": self.netns, "pinned": self.pinned,
                "devices": [list(d) for d in self.devices]}


def attach(pid: int, joined: str | None, state_dir: str,
           devices: list[tuple[str, str]]) -> Attached:
    """Move the devices into the init's network namespace (`joined`: the path it joins);
    its own new namespace is pinned in `state_dir` first."""
    if joined:
        att = Attached(joined, False)
    else:
        att = Attached(os.path.join(state_dir, "netns"), True)
        pin(pid, att.netns)
    try:
        att.devices = move_in(devices, att.netns)
    except BaseException:
        if att.pinned:
            unpin(att.netns)
        raise
    return att


def release(saved: dict[str, Any] | Attached, warn=lambda msg: None) -> None:
    """Give the devices back to the host and drop the pin; problems are warned about."""
    if isinstance(saved, dict):
        att = Attached(saved.get("netns", ""), bool(saved.get("pinned")))
        att.devices = [(h, n) for h, n in saved.get("devices", [])]
    else:
        att = saved
    for problem in move_out(att.devices, att.netns):
        warn(f"linux.netDevices: cannot give back {problem}")
    if att.pinned:
        unpin(att.netns)
