"""Bridge networking with pyroute2: one bridge on the host (address = the subnet's first
host, the containers' gateway), a veth pair per container (host end on the bridge, the
other end moved into the container's network namespace as eth0), an address per container
from the subnet, `lo` up and a default route. Nothing is forwarded or NATed off the host:
no iptables, no ip_forward. The host reaches containers over the bridge directly.

Addresses come from <root>/network/ipam.json under a flock, so two containers never get
the same one. <root>/network.json may set {"bridge": NAME, "subnet": CIDR} (tests use it
to keep their own bridge); the default is imagetool0 on 10.88.0.0/16.

Netlink sockets belong to the network namespace of the process that opened them, so each
side is configured in a forked child that opens its own IPRoute (never one carried over a
fork); the container side calls setns() first. pyroute2 itself (~100 ms to import) is
imported once, by preload() in the monitor before the first fork, so the children find it
loaded; it opens no socket and starts no thread at import."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

from imagetool.errors import ImagetoolError
from imagetool.run.netconfig import config


class NetworkError(ImagetoolError):
    pass


@contextlib.contextmanager
def _ipam(store_root: str, net: str | None = None) -> Iterator[dict[str, Any]]:
    d = os.path.join(store_root, "network")
    os.makedirs(d, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(d, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = os.path.join(d, "ipam.json" if net is None else f"ipam-{net}.json")
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            data = {}
        data.setdefault("allocated", {})
        before = json.dumps(data, sort_keys=True)
        yield data
        if json.dumps(data, sort_keys=True) != before:
            with open(path + ".tmp", "w") as f:
                json.dump(data, f, indent=2)
            os.rename(path + ".tmp", path)
    finally:
        os.close(fd)


def allocate(store_root: str, cid: str, net_name: str | None = None) -> dict[str, Any]:
    """{address, prefixlen, gateway, bridge} for container `cid` on the default network or
    the user network `net_name` (the same if asked again)."""
    cfg = config(store_root, net_name)
    net = ipaddress.ip_network(cfg["subnet"])
    hosts = net.hosts()
    gateway = str(next(hosts))
    with _ipam(store_root, net_name) as data:
        alloc = data["allocated"]
        mine = [a for a, c in alloc.items() if c == cid]
        if mine:
            addr = mine[0]
        else:
            # round robin from the last one handed out, as docker's IPAM does: an address
            # just released is not reused at once (the other containers' neighbour caches
            # still map it to the old MAC)
            first = int(ipaddress.ip_address(gateway)) + 1
            end = int(net.broadcast_address)
            last = data.get("last")
            start = int(ipaddress.ip_address(last)) + 1 if last and \
                ipaddress.ip_address(last) in net else first
            start = start if first <= start < end else first
            addr = next((str(ipaddress.ip_address(i)) for r in (range(start, end),
                                                                 range(first, start))
                         for i in r if str(ipaddress.ip_address(i)) not in alloc), None)
            if addr is None:
                raise NetworkError(f"no free address left in {net}")
            alloc[addr] = cid
            data["last"] = addr
    return {"address": addr, "prefixlen": net.prefixlen, "gateway": gateway,
            "bridge": cfg["bridge"]}


def release(store_root: str, cid: str, net_name: str | None = None) -> None:
    with _ipam(store_root, net_name) as data:
        for a in [a for a, c in data["allocated"].items() if c == cid]:
            del data["allocated"][a]


def preload() -> None:
    """Import pyroute2 here, once, so every forked child below reuses the loaded modules.
    Only modules: the netlink sockets are still opened by each child, after its setns()."""
    import pyroute2  # noqa: F401


def in_child(fn: Callable[[], None]) -> None:
    """Run fn in a forked child; raise its error here (NetworkError)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            fn()
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            os.write(w, f"{type(e).__name__}: {e}".encode()[:4000])
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        err = f.read()
    _, st = os.waitpid(pid, 0)
    if err or os.waitstatus_to_exitcode(st) != 0:
        raise NetworkError(err.decode(errors="replace") or "network setup failed")


def veth_name(cid: str) -> str:
    return f"veth{cid[:11]}"


def ensure_bridge(info: dict[str, Any]) -> int:
    """The bridge of `info` (made if missing, its gateway address on it, up); its index.
    Call in a child (in_child): it opens its own netlink socket."""
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        br = ipr.link_lookup(ifname=info["bridge"])
        if not br:
            try:
                ipr.link("add", ifname=info["bridge"], kind="bridge")
            except Exception:  # noqa: BLE001 - a racing creator is fine
                pass
            br = ipr.link_lookup(ifname=info["bridge"])
        bidx = br[0]
        have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=bidx)}
        if info["gateway"] not in have:
            with contextlib.suppress(Exception):
                ipr.addr("add", index=bidx, address=info["gateway"],
                         prefixlen=info["prefixlen"])
        ipr.link("set", index=bidx, state="up")
        return bidx


def setup_bridge_side(info: dict[str, Any], cid: str, pid: int) -> None:
    """Make the bridge if missing, a veth pair, the host end on the bridge, the other end
    into the network namespace of process `pid` (named tmp0 there until configured)."""
    def work() -> None:
        from pyroute2 import IPRoute
        bidx = ensure_bridge(info)
        with IPRoute() as ipr:
            host = veth_name(cid)
            peer = f"vp{cid[:11]}"
            ipr.link("add", ifname=host, kind="veth", peer=peer)
            hidx = ipr.link_lookup(ifname=host)[0]
            pidx = ipr.link_lookup(ifname=peer)[0]
            ipr.link("set", index=hidx, master=bidx)
            ipr.link("set", index=hidx, state="up")
            ipr.link("set", index=pidx, net_ns_pid=pid)
    in_child(work)


def setup_container_side(info: dict[str, Any] | None, cid: str, pid: int) -> None:
    """Inside the namespace of `pid`: lo up; with `info`, eth0 with its address and a
    default route through the bridge."""
    def work() -> None:
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        from runtime.linux import syscalls
        syscalls.setns(fd, syscalls.CLONE_NEWNET)
        os.close(fd)
        if info is None:
            lo_up()
            return
        from pyroute2 import IPRoute
        with IPRoute() as ipr:
            lo = ipr.link_lookup(ifname="lo")[0]
            ipr.link("set", index=lo, state="up")
            idx = ipr.link_lookup(ifname=f"vp{cid[:11]}")[0]
            ipr.link("set", index=idx, ifname="eth0")
            ipr.addr("add", index=idx, address=info["address"], prefixlen=info["prefixlen"])
            ipr.link("set", index=idx, state="up")
            ipr.route("add", dst="0.0.0.0/0", gateway=info["gateway"])
    in_child(work)


def lo_up() -> None:
    """`ip link set lo up` with an ioctl (SIOCGIFFLAGS / SIOCSIFFLAGS)."""
    import fcntl as f
    import socket
    import struct
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", f.ioctl(s.fileno(), 0x8913, req))[1]
        f.ioctl(s.fileno(), 0x8914, struct.pack("16sh", b"lo", flags | 1))


def teardown(cid: str) -> None:
    """Delete the host end of the veth if it is still there (the namespace's death
    normally takes the pair with it, and then there is nothing to do: no fork, no netlink)."""
    if os.path.isdir("/sys/class/net") and \
            not os.path.lexists(f"/sys/class/net/{veth_name(cid)}"):
        return

    def work() -> None:
        from pyroute2 import IPRoute
        with IPRoute() as ipr:
            for idx in ipr.link_lookup(ifname=veth_name(cid)):
                with contextlib.suppress(Exception):
                    ipr.link("del", index=idx)
    with contextlib.suppress(NetworkError):
        in_child(work)


def delete_bridge(name: str) -> None:
    def work() -> None:
        from pyroute2 import IPRoute
        with IPRoute() as ipr:
            for idx in ipr.link_lookup(ifname=name):
                ipr.link("del", index=idx)
    in_child(work)
