"""Looking around: `history`, `version`, `info`, `system df`, `system prune`, `events`.
Events are appended by the verbs and the monitor to <store root>/events.jsonl (events.py)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from imagetool.run.records import Records, monitor_alive, status


def cmd_history(args: argparse.Namespace) -> int:
    """docker history: the config's history, newest first, with each layer's size."""
    from imagetool import sizes, views
    from imagetool.store import Store
    store = Store(args.root)
    name = views.resolve_one(store, args.image)
    desc = store.get_image(name) or {}
    manifest, cfg = views._config(store, desc)
    layers = list((manifest or {}).get("layers") or [])
    rows = []
    for h in cfg.get("history") or []:
        size = 0
        if not h.get("empty_layer") and layers:
            size = sizes.image_size(store, {"layers": [layers.pop(0)]})
        by = h.get("created_by", "")
        rows.append({"ID": "<missing>", "CreatedSince": views.ago(views.parse_time(
            h.get("created"))), "CreatedAt": h.get("created", ""),
            "CreatedBy": by if args.no_trunc else _cut(by, 45),
            "Size": views.human_size(size), "Comment": h.get("comment", "")})
    rows.reverse()
    if rows:
        rows[0]["ID"] = views.short_id(views.image_id(store, desc), args.no_trunc)
    if args.quiet:
        for r in rows:
            print(r["ID"])
        return 0
    from imagetool.run.formatting import print_rows
    print_rows(args.format or "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t"
               "{{.Comment}}", rows,
               {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"})
    return 0


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _runtime_version() -> str:
    try:
        from runtime import __version__ as v
        return str(v)
    except ImportError:
        return "unknown"


def cmd_version(args: argparse.Namespace) -> int:
    import platform

    from imagetool import __version__
    doc = {"Client": {"Version": __version__, "Python": platform.python_version(),
                      "Os": sys.platform, "Arch": platform.machine()},
           "Runtime": {"Name": "pyrunc", "Version": _runtime_version()}}
    if args.format:
        from imagetool.run.formatting import print_docs
        print_docs([doc], args.format)
        return 0
    print(f"Client: imagetool\n Version:\t{__version__}\n Python version:\t"
          f"{doc['Client']['Python']}\n OS/Arch:\t{sys.platform}/{platform.machine()}\n\n"
          f"Runtime: pyrunc (a library, no daemon)\n Version:\t{_runtime_version()}")
    return 0


def _counts(root: str) -> dict[str, int]:
    recs = Records(root).all()
    states = [status(r) for r in recs]
    return {"Containers": len(recs), "ContainersRunning": states.count("running"),
            "ContainersPaused": states.count("paused"),
            "ContainersStopped": len(recs) - states.count("running") - states.count("paused")}


def cmd_info(args: argparse.Namespace) -> int:
    import platform

    from imagetool.store import Store
    store = Store(args.root)
    images = [d for d in store.list_images()] if os.path.exists(store.index_path) else []
    cg = "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    doc = {**_counts(args.root), "Images": len(images), "Driver": "overlay",
           "StoreRoot": os.path.abspath(args.root), "CgroupVersion": cg,
           "KernelVersion": platform.release(), "OperatingSystem": _os_name(),
           "OSType": "linux", "Architecture": platform.machine(), "NCPU": os.cpu_count(),
           "MemTotal": mem, "DefaultRuntime": "pyrunc"}
    if args.format:
        from imagetool.run.formatting import print_docs
        print_docs([doc], args.format)
        return 0
    from imagetool.run.verbs_manage import _iec
    print(f"Containers: {doc['Containers']}\n Running: {doc['ContainersRunning']}\n"
          f" Paused: {doc['ContainersPaused']}\n Stopped: {doc['ContainersStopped']}\n"
          f"Images: {doc['Images']}\nStorage Driver: overlay\nStore Root: {doc['StoreRoot']}\n"
          f"Cgroup Version: {cg}\nDefault Runtime: pyrunc\nKernel Version: "
          f"{doc['KernelVersion']}\nOperating System: {doc['OperatingSystem']}\n"
          f"OSType: linux\nArchitecture: {doc['Architecture']}\nCPUs: {doc['NCPU']}\n"
          f"Total Memory: {_iec(mem)}")
    return 0


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _du(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except OSError:
                continue
            total += st.st_size
    return total


def cmd_system_df(args: argparse.Namespace) -> int:
    """docker system df: images, containers, local volumes, build cache."""
    from imagetool import views
    from imagetool.run import volumes
    from imagetool.store import Store
    store = Store(args.root)
    recs = Records(args.root).all()
    used_ids = {r.get("ImageID") for r in recs}
    imgs = views.rows(store) if os.path.exists(store.index_path) else []
    by_id: dict[str, int] = {}
    for r in imgs:
        by_id[r.image_id] = r.size
    img_size = sum(by_id.values())
    img_active = [i for i in by_id if i in used_ids]
    reclaim = sum(s for i, s in by_id.items() if i not in used_ids)
    ctr_sizes = [_du(os.path.join(Records(args.root).path(r["Id"]), "bundle", "overlay",
                                  "upper"))
                 for r in recs]
    running = [r for r in recs if status(r) in ("running", "paused") and monitor_alive(r)]
    vols = volumes.names(args.root)
    vol_used = [v for v in vols if volumes.users(args.root, v)]
    vol_sizes = {v: _du(volumes.inspect(args.root, v)["Mountpoint"]) for v in vols}
    cache = os.path.join(os.path.abspath(args.root), "build-cache")
    h = views.human_size
    rows = [
        {"Type": "Images", "TotalCount": str(len(by_id)), "Active": str(len(img_active)),
         "Size": h(img_size), "Reclaimable": _pct(h(reclaim), reclaim, img_size)},
        {"Type": "Containers", "TotalCount": str(len(recs)), "Active": str(len(running)),
         "Size": h(sum(ctr_sizes)), "Reclaimable": h(0)},
        {"Type": "Local Volumes", "TotalCount": str(len(vols)), "Active": str(len(vol_used)),
         "Size": h(sum(vol_sizes.values())),
         "Reclaimable": h(sum(s for v, s in vol_sizes.items() if v not in vol_used))},
        {"Type": "Build Cache", "TotalCount": "0", "Active": "0",
         "Size": h(_du(cache) if os.path.isdir(cache) else 0), "Reclaimable": h(0)}]
    from imagetool.run.formatting import print_rows
    print_rows(args.format or "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t"
               "{{.Reclaimable}}", rows,
               {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
                "Reclaimable": "RECLAIMABLE"})
    return 0


def _pct(text: str, part: int, whole: int) -> str:
    return f"{text} ({100 * part // whole}%)" if whole else text


def cmd_system_prune(args: argparse.Namespace) -> int:
    """Stopped containers, (with --volumes) unused anonymous volumes, then the store's
    unused blobs and snapshots (`prune`)."""
    from imagetool.run import volumes
    from imagetool.run.verbs_manage import cmd_container_prune
    from imagetool.verbs_prune import cmd_prune
    if not args.force and sys.stdin.isatty():
        answer = input("WARNING! This will remove all stopped containers and the blobs and "
                       "snapshots no image uses.\nAre you sure you want to continue? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return 0
    cmd_container_prune(argparse.Namespace(root=args.root, force=True))
    if args.volumes:
        print("Deleted Volumes:")
        for n in volumes.prune(args.root):
            print(n)
    return cmd_prune(argparse.Namespace(root=args.root, quiet=False, build_cache=False))


def cmd_events(args: argparse.Namespace) -> int:
    """Past events since --since (default: none, as docker: only new ones), then new ones
    until --until or Ctrl-C."""
    from imagetool.run import eventfilter, events
    flt = eventfilter.parse(args.filter)
    since = events.parse_when(args.since) if args.since else time.time()
    until = events.parse_when(args.until) if args.until else None
    for e in events.read(args.root, since, until, follow=until is None or until > time.time()):
        if not eventfilter.matches(flt, e):
            continue
        if args.format:
            from imagetool.run.formatting import print_docs
            print_docs([e], args.format)
        else:
            attrs = ", ".join(f"{k}={v}" for k, v in sorted((e.get("Actor") or {})
                                                           .get("Attributes", {}).items()))
            print(f"{events.stamp(e['timeNano'])} {e['Type']} {e['Action']} "
                  f"{(e.get('Actor') or {}).get('ID', '')} ({attrs})")
        sys.stdout.flush()
    return 0


def register(verb: Any) -> None:
    sp = verb("history", cmd_history, "the layers and steps an image was made of")
    sp.add_argument("image", metavar="IMAGE", help="image name or ID")
    sp.add_argument("--no-trunc", action="store_true", help="whole IDs and commands")
    sp.add_argument("-q", "--quiet", action="store_true", help="only the IDs")
    sp.add_argument("--format", metavar="FORMAT", help="table, json or a Go template")
    sp = verb("version", cmd_version, "imagetool's and pyrunc's versions")
    sp.add_argument("-f", "--format", metavar="TEMPLATE", help="a Go template")
    sp = verb("info", cmd_info, "containers, images, store and host facts")
    sp.add_argument("-f", "--format", metavar="TEMPLATE", help="a Go template")
    sp = verb("system-df", cmd_system_df, "disk usage of images, containers, volumes "
              "(`system df`)")
    sp.add_argument("--format", metavar="FORMAT", help="table, json or a Go template")
    sp = verb("system-prune", cmd_system_prune, "remove stopped containers and what no image "
              "uses (`system prune`)")
    sp.add_argument("-f", "--force", action="store_true", help="do not ask")
    sp.add_argument("--volumes", action="store_true", help="also unused anonymous volumes")
    sp = verb("events", cmd_events, "container events (create start die destroy ...)")
    sp.add_argument("--since", metavar="WHEN", help="a time (RFC 3339, unix seconds) or an "
                    "age (10m, 1h): also past events from then")
    sp.add_argument("--until", metavar="WHEN", help="stop at this time")
    sp.add_argument("-f", "--filter", metavar="KEY=VALUE", action="append",
                    help="container=, event=, type=, image=, label=... (repeatable)")
    sp.add_argument("--format", metavar="TEMPLATE", help="a Go template, or json")
