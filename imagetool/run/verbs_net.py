"""`network create|ls|rm|inspect|connect|disconnect` over usernet.py and netconnect.py."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from imagetool.run.records import ContainerError, Records, monitor_alive, status


def cmd_network_create(args: argparse.Namespace) -> int:
    from imagetool.run import usernet
    if args.driver != "bridge":
        raise ContainerError(f"--driver {args.driver}: only bridge networks")
    print(usernet.create(args.root, args.name, args.subnet)["Id"])
    return 0


def cmd_network_ls(args: argparse.Namespace) -> int:
    import hashlib

    from imagetool.run import netconfig, usernet
    from imagetool.run.formatting import print_rows
    bridge = netconfig.config(args.root)["bridge"]
    rows = [{"ID": hashlib.sha256(f"{bridge}/{n}".encode()).hexdigest()[:12], "Name": n,
             "Driver": n if n != "bridge" else "bridge", "Scope": "local"}
            for n in usernet.BUILTIN]
    for n in usernet.names(args.root):
        doc = usernet.load(args.root, n)
        rows.append({"ID": doc["Id"][:12], "Name": n, "Driver": "bridge", "Scope": "local"})
    if args.quiet:
        for r in rows:
            print(r["ID"])
        return 0
    print_rows(args.format or "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}", rows,
               {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE"})
    return 0


def cmd_network_rm(args: argparse.Namespace) -> int:
    from imagetool.run import usernet
    rc = 0
    for n in args.names:
        try:
            usernet.remove(args.root, n)
            print(n)
        except ContainerError as e:
            print(f"imagetool: network rm: {e}", file=sys.stderr)
            rc = 1
    return rc


def cmd_network_inspect(args: argparse.Namespace) -> int:
    from imagetool.run import usernet
    from imagetool.run.formatting import print_docs
    docs = []
    for n in args.names:
        d = usernet.load(args.root, n)
        members = {r["Id"]: {"Name": r["Name"], "IPv4Address": usernet.address_on(r, n)}
                   for r in usernet.users(args.root, n) if status(r) in ("running", "paused")}
        docs.append({"Name": n, "Id": d["Id"], "Created": d["Created"], "Scope": "local",
                     "Driver": "bridge", "IPAM": {"Driver": "default",
                                                  "Config": [{"Subnet": d["subnet"]}]},
                     "Options": {"bridge": d["bridge"]}, "Containers": members})
    print_docs(docs, args.format)
    return 0


def cmd_network_connect(args: argparse.Namespace) -> int:
    """A running container gets one more interface on the user network (netconnect.py);
    one that is not running moves to the network (it joins at its next start)."""
    from imagetool.run import usernet
    if args.network not in usernet.BUILTIN:
        usernet.load(args.root, args.network)
    recs = Records(args.root)
    cid = recs.resolve(args.container)
    rec = recs.load(cid)
    if monitor_alive(rec) and status(rec) in ("running", "paused"):
        if args.network in usernet.BUILTIN:
            raise ContainerError(f"network {args.network}: a running container joins only "
                                 "user networks (network create)")
        from imagetool.run import netconnect
        netconnect.connect(args.root, recs, cid, args.network, int(rec["State"]["Pid"]))
        return 0
    with recs.lock():
        rec = recs.load(cid)
        rec["HostConfig"]["NetworkMode"] = args.network
        recs.save(rec)
    return 0


def cmd_network_disconnect(args: argparse.Namespace) -> int:
    """Take a running container off a network it was connected to (its interface there
    goes); a container that is not running leaves its network (it starts with none)."""
    from imagetool.run import usernet
    if args.network not in usernet.BUILTIN:
        usernet.load(args.root, args.network)
    recs = Records(args.root)
    cid = recs.resolve(args.container)
    rec = recs.load(cid)
    if monitor_alive(rec) and status(rec) in ("running", "paused"):
        from imagetool.run import netconnect
        netconnect.disconnect(args.root, recs, cid, args.network)
        return 0
    with recs.lock():
        rec = recs.load(cid)
        if rec["HostConfig"].get("NetworkMode", "bridge") != args.network:
            raise ContainerError(f"container {rec['Name']} is not connected to network "
                                 f"{args.network}")
        rec["HostConfig"]["NetworkMode"] = "none"
        recs.save(rec)
    return 0


def register(verb: Any) -> None:
    sp = verb("network-create", cmd_network_create, "make a user network: its own bridge "
              "and subnet, names resolved between its containers (`network create`)")
    sp.add_argument("name", metavar="NAME", help="the network's name")
    sp.add_argument("--subnet", metavar="CIDR", help="default: a free 172.18-31.0.0/16")
    sp.add_argument("-d", "--driver", default="bridge", help="bridge (the only one)")
    sp = verb("network-ls", cmd_network_ls, "list networks (`network ls`)")
    sp.add_argument("-q", "--quiet", action="store_true", help="only the IDs")
    sp.add_argument("--format", metavar="FORMAT", help="table, json or a Go template")
    sp = verb("network-rm", cmd_network_rm, "remove user networks (`network rm`)")
    sp.add_argument("names", nargs="+", metavar="NETWORK", help="network names")
    sp = verb("network-inspect", cmd_network_inspect, "describe networks "
              "(`network inspect`)")
    sp.add_argument("names", nargs="+", metavar="NETWORK", help="network names")
    sp.add_argument("-f", "--format", metavar="TEMPLATE", help="a Go template per network")
    sp = verb("network-connect", cmd_network_connect, "connect a container to a network: "
              "a running one gets another interface (`network connect`)")
    sp.add_argument("network", metavar="NETWORK", help="network name")
    sp.add_argument("container", metavar="CONTAINER", help="container name or id")
    sp = verb("network-disconnect", cmd_network_disconnect, "disconnect a container from a "
              "network (`network disconnect`)")
    sp.add_argument("network", metavar="NETWORK", help="network name")
    sp.add_argument("container", metavar="CONTAINER", help="container name or id")
