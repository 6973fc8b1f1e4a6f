"""`network connect|disconnect` on a RUNNING container: a second (third, ...) veth pair into
its network namespace, named ethN there, with an address from that user network's IPAM and
no route beyond its subnet; recorded in the record's "ExtraNetworks" {name: {IPAddress,
IPPrefixLen, Gateway, Interface, Veth}}, and every member's /etc/hosts rewritten
(usernet.update_hosts). Such a connection lasts while the container runs: the monitor
calls drop_all() at its exit (docker keeps it across restarts; not here)."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from imagetool.run import network, usernet
from imagetool.run.records import ContainerError, Records


def _iface_index(extra: dict[str, Any]) -> int:
    used = {int(v["Interface"][3:]) for v in extra.values()}
    return next(i for i in range(1, 100) if i not in used)


def connect(root: str, recs: Records, cid: str, net: str, pid: int) -> dict[str, Any]:
    """Join the running container `cid` (init `pid`) to the user network `net`."""
    rec = recs.load(cid)
    mode = (rec.get("HostConfig") or {}).get("NetworkMode", "bridge")
    if mode in ("host", "none"):
        raise ContainerError(f"container {rec['Name']} is on the {mode} network: it cannot "
                             "be connected to another one")
    extra = rec.get("ExtraNetworks") or {}
    if mode == net or net in extra:
        raise ContainerError(f"endpoint with name {rec['Name']} already exists in network "
                             f"{net}")
    idx = _iface_index(extra)
    info = network.allocate(root, cid, net)
    veth, peer = f"vx{cid[:9]}{idx}", f"vq{cid[:9]}{idx}"
    try:
        network.in_child(lambda: _host_side(info, veth, peer, pid))
        network.in_child(lambda: _container_side(info, peer, f"eth{idx}", pid))
    except BaseException:
        _delete_link(veth)
        network.release(root, cid, net)
        raise
    entry = {"IPAddress": info["address"], "IPPrefixLen": info["prefixlen"],
             "Gateway": info["gateway"], "Interface": f"eth{idx}", "Veth": veth}
    with recs.lock():
        rec = recs.load(cid)
        rec.setdefault("ExtraNetworks", {})[net] = entry
        recs.save(rec)
    usernet.update_hosts(root, net)
    return entry


def disconnect(root: str, recs: Records, cid: str, net: str) -> None:
    """Take the running container `cid` off `net`, a network it was connected to."""
    with recs.lock():
        rec = recs.load(cid)
        entry = (rec.get("ExtraNetworks") or {}).pop(net, None)
        if entry is None:
            if (rec.get("HostConfig") or {}).get("NetworkMode") == net:
                raise ContainerError(f"container {rec['Name']} runs on {net} as its first "
                                     "network: stop it to disconnect it")
            raise ContainerError(f"container {rec['Name']} is not connected to network "
                                 f"{net}")
        recs.save(rec)
    _delete_link(entry["Veth"])  # its peer in the container goes with it
    network.release(root, cid, net)
    usernet.update_hosts(root, net, left=cid)


def drop_all(root: str, recs: Records, cid: str) -> None:
    """At the container's exit: release every extra network's address, forget them, and
    update those networks' members (the veths died with the namespace)."""
    with recs.lock():
        rec = recs.load(cid)
        extra = rec.pop("ExtraNetworks", None) or {}
        if extra:
            recs.save(rec)
    for net, entry in extra.items():
        _delete_link(entry["Veth"])
        with contextlib.suppress(Exception):
            network.release(root, cid, net)
        with contextlib.suppress(Exception):
            usernet.update_hosts(root, net)


def _host_side(info: dict[str, Any], veth: str, peer: str, pid: int) -> None:
    from pyroute2 import IPRoute
    bidx = network.ensure_bridge(info)
    with IPRoute() as ipr:
        ipr.link("add", ifname=veth, kind="veth", peer=peer)
        hidx = ipr.link_lookup(ifname=veth)[0]
        ipr.link("set", index=hidx, master=bidx)
        ipr.link("set", index=hidx, state="up")
        ipr.link("set", index=ipr.link_lookup(ifname=peer)[0], net_ns_pid=pid)


def _container_side(info: dict[str, Any], peer: str, name: str, pid: int) -> None:
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    from runtime.linux import syscalls
    syscalls.setns(fd, syscalls.CLONE_NEWNET)
    os.close(fd)
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=peer)[0]
        ipr.link("set", index=idx, ifname=name)
        ipr.addr("add", index=idx, address=info["address"], prefixlen=info["prefixlen"])
        ipr.link("set", index=idx, state="up")


def _delete_link(name: str) -> None:
    if not os.path.lexists(f"/sys/class/net/{name}"):
        return

    def work() -> None:
        from pyroute2 import IPRoute
        with IPRoute() as ipr:
            for idx in ipr.link_lookup(ifname=name):
                ipr.link("del", index=idx)
    with contextlib.suppress(network.NetworkError):
        network.in_child(work)
