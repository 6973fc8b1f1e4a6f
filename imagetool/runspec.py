"""The one runtime-spec builder for images: `build()` takes an image config and the run's
options (`RunOptions`) and returns the whole config.json; `write()` puts it in a bundle,
atomically. `imagetool run`/`create` (through bundle.make), `imagetool unpack` and the
builder's RUN steps all make their spec here, so a run option lands in one place.

Order of the parts: the image's process and Docker's defaults (convert.spec_from_image,
the image's volumes with the default mounts), the options' mounts after them, resources,
read-only root, the network namespace, and last the changes a rootless run needs
(imagetool.rootless.spec, which looks at the finished namespaces)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from imagetool import convert
from imagetool.atomicfile import atomic_file

NETWORK_PRIVATE = "private"   # a network namespace of its own (wired later, or loopback only)
NETWORK_HOST = "host"         # the caller's network namespace; the host's sysctls untouched


@dataclass
class RunOptions:
    """What a run asks on top of the image's config. None means the image's own value.

    network: NETWORK_PRIVATE, NETWORK_HOST, or the absolute path of a network namespace
    to join (/proc/PID/ns/net, /run/netns/NAME). rootless: None asks
    imagetool.rootless.paths.rootless()."""

    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] | None = None
    user: str | None = None
    workdir: str | None = None
    hostname: str | None = None
    terminal: bool = False
    seccomp: bool = True
    mounts: list[dict[str, Any]] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)
    read_only: bool = False
    network: str = NETWORK_PRIVATE
    rootless: bool | None = None


class RunSpecError(convert.ConvertError):
    """A run option the spec cannot take (named in the message)."""


def build(image: dict[str, Any], opts: RunOptions, rootfs: str,
          volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The runtime spec for the image config blob `image` (os, architecture, config{...})
    run with `opts` on the root filesystem `rootfs` (its /etc/passwd and /etc/group name
    the user). `volumes` (the image's Volumes as finished bind mounts) come right after the
    default mounts, then opts.mounts. Raises ConvertError (an unknown user, no command) or
    RunSpecError (a bad option); the rootless checks raise their own ImagetoolError."""
    from imagetool import layers
    conf = image.get("config") or {}
    who = opts.user if opts.user is not None else (conf.get("User") or "")
    user = convert.resolve_user(who, layers.read_file_in(rootfs, "/etc/passwd"),
                                layers.read_file_in(rootfs, "/etc/group"))
    spec = convert.spec_from_image(
        image, user=user, entrypoint=opts.entrypoint, cmd=opts.cmd, env=opts.env,
        workdir=opts.workdir, hostname=opts.hostname or "container", seccomp=opts.seccomp,
        terminal=opts.terminal, volumes=[*(volumes or []), *opts.mounts])
    linux = spec["linux"]
    if opts.resources:
        linux["resources"].update(opts.resources)
    if opts.read_only:
        spec["root"]["readonly"] = True
    _network(linux, opts.network)
    rootless = opts.rootless
    if rootless is None:
        from imagetool.rootless.paths import rootless as detect
        rootless = bool(detect())
    if rootless:  # no cgroup, a nested identity-mapped user namespace
        from imagetool.rootless.spec import adapt
        adapt(spec, {"Resources": opts.resources})
    return spec


def _network(linux: dict[str, Any], mode: str) -> None:
    if mode == NETWORK_PRIVATE:
        return
    if mode == NETWORK_HOST:
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "network"]
        # never change the host's own sysctls
        linux["sysctl"] = {k: v for k, v in (linux.get("sysctl") or {}).items()
                           if not k.startswith("net.")}
        return
    if not os.path.isabs(mode):
        raise RunSpecError(f"network {mode!r}: want {NETWORK_PRIVATE}, {NETWORK_HOST} or the "
                           "absolute path of a network namespace")
    for n in linux["namespaces"]:
        if n["type"] == "network":
            n["path"] = mode


def write(bundle: str, spec: dict[str, Any]) -> str:
    """Write `spec` as BUNDLE/config.json, whole or not at all; returns the path."""
    import json
    path = os.path.join(bundle, "config.json")
    with atomic_file(path, 0o644, text=True, durable=False) as f:
        json.dump(spec, f, indent=2)
        f.write("\n")
    return path
