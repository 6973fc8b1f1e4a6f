"""/etc/hostname, /etc/hosts and /etc/resolv.conf for a `run` container, as docker gives them.

Each is a file in the container's own directory, bind-mounted over the image's: the image is
left alone, and the files go with the container. With bridge networking /etc/hosts names the
container's address (written by the monitor once the address is allocated); resolv.conf is
the host's without loopback nameservers (they mean nothing in another network namespace),
and docker's public defaults when none are left. With --network host both are the host's.
"""

from __future__ import annotations

import ipaddress
import os

from imagetool.atomicfile import atomic_file

FILES = ("hostname", "hosts", "resolv.conf")
LOCAL_HOSTS = ("127.0.0.1\tlocalhost\n"
               "::1\tlocalhost ip6-localhost ip6-loopback\n"
               "fe00::0\tip6-localnet\n"
               "ff00::0\tip6-mcastprefix\n"
               "ff02::1\tip6-allnodes\n"
               "ff02::2\tip6-allrouters\n")
DEFAULT_NAMESERVERS = ("8.8.8.8", "8.8.4.4")   # docker's, when the host has only local ones


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%")[0]).is_loopback
    except ValueError:
        return False


def resolv_conf(host_text: str) -> str:
    """The host's resolv.conf for another network namespace: loopback nameservers dropped."""
    lines, servers = [], 0
    for line in host_text.splitlines():
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1:
            if _loopback(words[1]):
                continue
            servers += 1
        lines.append(line)
    if not servers:
        lines += [f"nameserver {s}" for s in DEFAULT_NAMESERVERS]
    return "\n".join(lines) + "\n"


def hosts(hostname: str, address: str | None) -> str:
    return LOCAL_HOSTS + (f"{address}\t{hostname}\n" if address else "")


def extra_hosts(items: list[str]) -> str:
    """--add-host HOST:IP entries as hosts(5) lines."""
    out = ""
    for item in items:
        name, _, addr = item.partition(":")
        out += f"{addr}\t{name}\n"
    return out


def with_dns(text: str, dns: list[str]) -> str:
    """--dns: these nameservers instead of the host's."""
    if not dns:
        return text
    kept = [line for line in text.splitlines() if not line.startswith("nameserver")]
    return "\n".join(kept + [f"nameserver {d}" for d in dns]) + "\n"


def write(directory: str, hostname: str, mode: str, add_hosts: list[str] | None = None,
          dns: list[str] | None = None) -> list[dict[str, object]]:
    """Write the three files into `directory`; return the OCI mounts that put them in place."""
    extra = extra_hosts(add_hosts or [])
    if mode == "host":
        content = {"hostname": hostname + "\n",
                   "hosts": (_read("/etc/hosts") or LOCAL_HOSTS) + extra,
                   "resolv.conf": with_dns(_read("/etc/resolv.conf"), dns or [])}
    else:
        content = {"hostname": hostname + "\n", "hosts": hosts(hostname, None) + extra,
                   "resolv.conf": with_dns(resolv_conf(_read("/etc/resolv.conf")), dns or [])}
    mounts: list[dict[str, object]] = []
    for name in FILES:
        path = os.path.join(directory, name)
        with atomic_file(path, text=True, durable=False) as f:
            f.write(content[name])
        mounts.append({"destination": f"/etc/{name}", "type": "bind", "source": path,
                       "options": ["rbind", "rprivate"]})
    return mounts


def add_address(directory: str, hostname: str, address: str) -> None:
    """Name the container's bridge address in its /etc/hosts (before the container starts),
    after what is there (localhost, --add-host)."""
    text = _read(os.path.join(directory, "hosts")) or LOCAL_HOSTS
    with atomic_file(os.path.join(directory, "hosts"), text=True, durable=False) as f:
        f.write(text + f"{address}\t{hostname}\n")
