"""`run` and `create` as library calls: `create()` finds (or pulls) the image once, completes
the settings the image decides (-P's ports), records the container and makes its bundle
(lifecycle.create: the spec is written once); `start()` launches its monitor (which
creates the runtime container, wires the network and publishes the ports) and waits for
its first word; `launch()` is both. On any failure, Ctrl-C included, a container `run`
made is removed again with everything it had (runtime container, network, bundle,
record); `start` of an existing container keeps the record. The command line
(verbs_run.py) only parses flags, relays the terminal and prints."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from imagetool.run import lifecycle
from imagetool.run.records import ContainerError, Records


@dataclass
class Options:
    """A new container: the record's Config and HostConfig as the flags gave them, its
    name, and -P (publish every port the image EXPOSEs on a free host port)."""

    config: dict[str, Any]
    host: dict[str, Any]
    name: str | None = None
    publish_all: bool = False


@dataclass
class Container:
    """A created (status_fd -1) or started container: `status_fd` is the read end of its
    monitor's status pipe (the caller closes it), `rest` what was read past 'started'."""

    id: str
    records: Records
    status_fd: int = -1
    rest: bytes = field(default=b"")


def image(store: Any, ref: str, on_pull: Callable[[str], None] | None = None
          ) -> dict[str, Any]:
    """image_parts() of `ref` (a name or an image ID), pulled first when it is missing, as
    docker run does (`on_pull(ref)` is told before)."""
    from imagetool import reference
    from imagetool.store import lookup
    try:
        name = lookup.resolve_one(store, ref)
    except lookup.Ambiguous as e:
        raise ContainerError(str(e)) from None
    except lookup.NotFound:
        from imagetool.pull import pull
        if on_pull is not None:
            on_pull(ref)
        pull(store, ref, progress=False)
        name = reference.normalize(ref)
    return lookup.image_parts(store, name)


def publish_all(host: dict[str, Any], exposed: dict[str, Any] | None) -> dict[str, Any]:
    """HostConfig with -P applied (every EXPOSEd port not bound yet, on a free host port)
    and its port bindings checked against the network mode."""
    from imagetool.run import ports
    pbind = list(host.get("PortBindings") or [])
    taken = {(p["ContainerPort"], p["Proto"]) for p in pbind}
    for key in sorted(exposed or {}):
        port, _, proto = key.partition("/")
        if port.isdigit() and (int(port), proto or "tcp") not in taken:
            pbind.append(ports.parse(f"0.0.0.0::{port}/{proto or 'tcp'}"))
    return dict(host, PortBindings=pbind)


def check_ports(host: dict[str, Any]) -> None:
    """-p/-P need a network with an address of its own."""
    net = host.get("NetworkMode", "bridge")
    if host.get("PortBindings") and net in ("host", "none"):
        raise ContainerError("-p needs --network bridge (or a user network)")


def create(store: Any, ref: str, opts: Options,
           on_pull: Callable[[str], None] | None = None) -> Container:
    """Record the container and make its bundle; nothing is left when this fails."""
    parts = image(store, ref, on_pull)
    host = opts.host
    if opts.publish_all:
        host = publish_all(host, (parts["config"].get("config") or {}).get("ExposedPorts"))
    check_ports(host)
    recs = Records(store.root)
    rec = lifecycle.create(store, recs, parts, ref, opts.name, opts.config, host)
    return Container(rec["Id"], recs)


def start(store: Any, recs: Records, cid: str, *, foreground: bool, interactive: bool,
          remove_on_error: bool) -> Container:
    """Start the container `cid` through its monitor. Raises lifecycle.StartError when it
    did not start; then, and on Ctrl-C meanwhile (after stopping what had started), the
    container is removed when `remove_on_error` (a `run`'s own), else kept."""
    try:
        fd, rest = lifecycle.start(store, recs, cid, foreground, interactive)
    except BaseException:
        if remove_on_error:
            with contextlib.suppress(Exception):
                lifecycle.remove(recs, cid)
        raise
    return Container(cid, recs, fd, rest)


def launch(store: Any, ref: str, opts: Options, *, foreground: bool, interactive: bool,
           on_pull: Callable[[str], None] | None = None,
           before_start: Callable[[Container], None] | None = None) -> Container:
    """`run`: create() then start(); `before_start()` runs between them (the command line
    puts its terminal in raw mode there). Nothing is left when it fails."""
    c = create(store, ref, opts, on_pull)
    if before_start is not None:
        try:
            before_start(c)
        except BaseException:
            with contextlib.suppress(Exception):
                lifecycle.remove(c.records, c.id)
            raise
    return start(store, c.records, c.id, foreground=foreground, interactive=interactive,
                 remove_on_error=True)
