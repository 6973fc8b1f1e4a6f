"""User networks (`network create`): each its own bridge and subnet, described by
<store root>/networks/<name>.json, addresses from its own IPAM file (network.py). On a
user network containers find each other by name: each running member's /etc/hosts lists
every other member (name and hostname), rewritten in place (the file is bind-mounted, so
the same inode must change) whenever a member starts or exits."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import socket
import struct
import time
from typing import Any

from imagetool.run import netconfig
from imagetool.run.netconfig import load, names
from imagetool.run.netconfig import user_path as _path
from imagetool.run.records import ContainerError, Records, status

BUILTIN = ("bridge", "host", "none")


def _host_routes() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = []
    with contextlib.suppress(OSError), open("/proc/net/route") as f:
        for line in f.readlines()[1:]:
            w = line.split()
            if len(w) < 8:
                continue
            dest = socket.inet_ntoa(struct.pack("<I", int(w[1], 16)))
            mask = socket.inet_ntoa(struct.pack("<I", int(w[7], 16)))
            if mask != "0.0.0.0":
                out.append(ipaddress.ip_network(f"{dest}/{mask}", strict=False))
    return out


def _pick_subnet(root: str) -> str:
    taken = [ipaddress.ip_network(load(root, n)["subnet"]) for n in names(root)]
    taken.append(ipaddress.ip_network(netconfig.config(root)["subnet"]))
    taken += _host_routes()
    for second in range(18, 32):
        cand = ipaddress.ip_network(f"172.{second}.0.0/16")
        if not any(cand.overlaps(t) for t in taken):
            return str(cand)
    raise ContainerError("no free 172.18-31.0.0/16 subnet left; give --subnet")


def create(root: str, name: str, subnet: str | None = None) -> dict[str, Any]:
    if name in BUILTIN or not name or not (name[0].isalnum() and
                                          all(c.isalnum() or c in "_.-" for c in name)):
        raise ContainerError(f"invalid network name {name!r}")
    with Records(root).lock():
        if os.path.exists(_path(root, name)):
            raise ContainerError(f"network with name {name} already exists")
        if subnet:
            try:
                net = ipaddress.ip_network(subnet)
            except ValueError:
                raise ContainerError(f"--subnet {subnet}: not a CIDR subnet") from None
            if net.version != 4 or net.num_addresses < 4:
                raise ContainerError(f"--subnet {subnet}: want an IPv4 subnet of /30 or more")
            subnet = str(net)
        nid = secrets.token_hex(32)
        doc = {"Name": name, "Id": nid, "Driver": "bridge", "Scope": "local",
               "Created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "subnet": subnet or _pick_subnet(root), "bridge": f"itn{nid[:10]}"}
        os.makedirs(os.path.dirname(_path(root, name)), mode=0o700, exist_ok=True)
        with open(_path(root, name) + ".tmp", "w") as f:
            json.dump(doc, f, indent=2)
        os.rename(_path(root, name) + ".tmp", _path(root, name))
    return doc


def users(root: str, name: str) -> list[dict[str, Any]]:
    """Records on `name`: as their first network, or connected while running."""
    return [r for r in Records(root).all()
            if (r.get("HostConfig") or {}).get("NetworkMode") == name
            or name in (r.get("ExtraNetworks") or {})]


def _nets(rec: dict[str, Any]) -> list[str]:
    """The user networks `rec` is on: its first one, then those connected while running."""
    mode = (rec.get("HostConfig") or {}).get("NetworkMode", "bridge")
    return ([mode] if mode not in BUILTIN else []) + list(rec.get("ExtraNetworks") or {})


def address_on(rec: dict[str, Any], name: str) -> str:
    """The container's address on network `name` ('' when it has none yet)."""
    extra = (rec.get("ExtraNetworks") or {}).get(name)
    if extra is not None:
        return extra["IPAddress"]
    return (rec.get("NetworkSettings") or {}).get("IPAddress") or ""


def remove(root: str, name: str) -> None:
    doc = load(root, name)
    live = [r["Name"] for r in users(root, name) if status(r) in ("running", "paused")]
    if live:
        raise ContainerError(f"error while removing network: network {name} has active "
                             f"endpoints ({', '.join(live)})")
    from imagetool.run import network
    with contextlib.suppress(network.NetworkError):
        if os.path.exists(f"/sys/class/net/{doc['bridge']}"):
            network.delete_bridge(doc["bridge"])
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(os.path.abspath(root), "network", f"ipam-{name}.json"))
    os.unlink(_path(root, name))


def update_hosts(root: str, name: str, joining: str | None = None,
                 left: str | None = None) -> None:
    """Rewrite (in place) each running member's /etc/hosts (and the `joining` one's, about
    to start): its --add-host entries, itself, then every member of each user network it
    is on (this one or others, as `network connect` joined it) by name and hostname. The
    container `left` (just disconnected from `name`) is rewritten too."""
    from imagetool.run import etcfiles
    recs = Records(root)
    live = [r for r in recs.all() if status(r) in ("running", "paused") or r["Id"] == joining]
    for r in live:
        if (name not in _nets(r) or not address_on(r, name)) and r["Id"] != left:
            continue
        me = (r.get("NetworkSettings") or {}).get("IPAddress") or address_on(r, name)
        host = (r.get("Config") or {}).get("Hostname") or r["Id"][:12]
        lines = [f"{me}\t{host}"]
        seen = {r["Id"]}
        for net in _nets(r):  # every member of every network it is on, once
            for o in live:
                if o["Id"] not in seen and net in _nets(o) and address_on(o, net):
                    seen.add(o["Id"])
                    oh = (o.get("Config") or {}).get("Hostname") or o["Id"][:12]
                    names_ = " ".join(dict.fromkeys([o["Name"], oh, o["Id"][:12]]))
                    lines.append(f"{address_on(o, net)}\t{names_}")
        text = etcfiles.LOCAL_HOSTS + etcfiles.extra_hosts(
            (r.get("HostConfig") or {}).get("ExtraHosts") or []) + "\n".join(lines) + "\n"
        with contextlib.suppress(OSError):
            with open(recs.path(r["Id"], "hosts"), "r+") as f:  # the same inode
                f.seek(0)
                f.write(text)
                f.truncate()
