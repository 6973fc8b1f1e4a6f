"""What a container sees, as a shell probe and a normaliser per observation.

One probe script runs inside the container and prints every observation as a section headed
``@@@ name``. The normalisers drop what legitimately differs between two runs (mount ids,
device numbers of anonymous filesystems, dates, container ids, bundle paths) and keep what a
runtime decides: names, types, modes, owners, options, values. Two normalised observations
are then compared key by key, and a mismatch is shown as a unified diff.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

MARK = "@@@ "

# name -> shell snippet. Each runs in a subshell with stderr folded into stdout, and its exit
# status is recorded, so "refused" and "allowed" are observations too.
PROBES: dict[str, str] = {
    "hostname": "hostname",
    "domainname": "cat /proc/sys/kernel/domainname",
    "pid": "echo $$",
    "id": "id",
    "status": "grep -E '^(Uid|Gid|Groups|Cap|NoNewPrivs|Seccomp)' /proc/self/status",
    "dev": "stat -c '%n|%F|%a|%u|%g|%t|%T|%N' /dev /dev/* /dev/pts/* /dev/shm /dev/mqueue",
    "mountinfo": "cat /proc/self/mountinfo",
    "cgroup": "cat /proc/self/cgroup",
    "env": "env",
    "cwd": "pwd",
    "umask": "umask",
    "nofile": "ulimit -n; ulimit -Hn",
    "limits": "cat /proc/self/limits",
    "write_root": "touch /probe-write",
    "masked_file": "wc -c < /proc/keys",
    "masked_dir": "ls -A /proc/acpi /sys/firmware",
    "readonly_proc": "echo probe > /proc/sys/kernel/hostname",
    "uid_map": "cat /proc/self/uid_map /proc/self/gid_map",
    "lo": "cat /sys/class/net/lo/operstate; ip addr show lo",
    "netdevs": "ls /sys/class/net",
    "netns": "readlink /proc/self/ns/net",
    "utsns": "readlink /proc/self/ns/uts",
}

DEFAULT_PROBES = ("hostname", "domainname", "pid", "id", "status", "dev", "mountinfo",
                  "cgroup", "env", "cwd", "umask", "nofile", "limits", "write_root",
                  "masked_file", "masked_dir", "readonly_proc", "uid_map", "lo")


def script(probes: Iterable[str], extra: dict[str, str] | None = None) -> str:
    """A POSIX sh script printing each probe as a section followed by its exit status."""
    snippets = {name: PROBES[name] for name in probes}
    snippets.update(extra or {})
    parts = []
    for name, snippet in snippets.items():
        parts.append(f"echo '{MARK}{name}'; ( {snippet} ) 2>&1; echo \"{MARK}rc $?\"")
    return "\n".join(parts) + "\n"


def parse(output: str) -> dict[str, dict[str, Any]]:
    """Split probe output into {name: {"out": text, "rc": int}}."""
    sections: dict[str, dict[str, Any]] = {}
    name = None
    lines: list[str] = []
    for line in output.splitlines():
        if line.startswith(MARK + "rc ") and name is not None:
            sections[name] = {"out": "\n".join(lines), "rc": int(line[len(MARK) + 3:])}
            name, lines = None, []
        elif line.startswith(MARK):
            name, lines = line[len(MARK):], []
        elif name is not None:
            lines.append(line)
    return sections


def _mount_opts(opts: str, drop: frozenset[str] = frozenset()) -> str:
    return ",".join(sorted(o for o in opts.split(",") if o and o not in drop))


# runc 1.1.5 leaves the v1 /sys/fs/cgroup tmpfs writable though the config says "ro"
# (its hierarchies below are read-only); pyrunc honours "ro". Only ro/rw is ignored there.
_RW_QUIRK = {"/sys/fs/cgroup": frozenset({"ro", "rw"})}


def mountinfo(text: str) -> list[str]:
    """One line per mount: mountpoint, fstype, source, per-mount options, propagation tags
    and super options, sorted by mountpoint; mount ids, device numbers and the root within
    the filesystem (it holds bundle paths and cgroup names) are dropped."""
    out = []
    for line in text.splitlines():
        pre, _, post = line.partition(" - ")
        f = pre.split()
        if len(f) < 6:
            continue
        mountpoint, opts, optional = f[4], f[5], f[6:]
        fstype, source, superopts = (post.split() + ["", "", ""])[:3]
        drop = _RW_QUIRK.get(mountpoint, frozenset())
        if fstype in ("cgroup", "cgroup2"):
            source = "cgroup"  # a free-form label; runc names the systemd hierarchy "systemd"
        tags = ",".join(sorted(t.split(":")[0] for t in optional)) or "-"
        out.append(f"{mountpoint} {fstype} {source} {_mount_opts(opts, drop)} {tags} "
                   f"{_mount_opts(superopts, drop)}")
    # A stable sort keeps stacked mounts on one mountpoint in their order.
    return sorted(out, key=lambda m: m.split(" ", 1)[0])


def dev_listing(text: str) -> list[str]:
    """stat lines with device numbers kept and nothing date-like in them already."""
    return sorted(line for line in text.splitlines() if line)


def env(text: str) -> list[str]:
    return sorted(line for line in text.splitlines() if line)


def limits(text: str) -> list[str]:
    return [re.sub(r"\s+", " ", line).strip() for line in text.splitlines()]


def lo(text: str) -> list[str]:
    """`ip addr` output is stable apart from the interface index."""
    return [re.sub(r"^\d+: ", "N: ", line) for line in text.splitlines()]


NORMALISERS: dict[str, Callable[[str], Any]] = {
    "mountinfo": mountinfo, "dev": dev_listing, "env": env, "limits": limits, "lo": lo,
}


def normalise(sections: dict[str, dict[str, Any]], subst: dict[str, str]) -> dict[str, Any]:
    """Apply per-probe normalisers after replacing run-specific strings (ids, paths)."""
    out: dict[str, Any] = {}
    for name, sec in sections.items():
        text = sec["out"]
        for old, new in subst.items():
            text = text.replace(old, new)
        out[name] = {"rc": sec["rc"], "out": NORMALISERS.get(name, _lines)(text)}
    return out


def _lines(text: str) -> list[str]:
    return text.splitlines()


def differences(ref: dict[str, Any], got: dict[str, Any], ref_name: str = "runc",
                got_name: str = "pyrunc") -> str:
    """A readable unified diff per key that differs; empty when both agree."""
    report = []
    for key in sorted(set(ref) | set(got)):
        a, b = ref.get(key), got.get(key)
        if a == b:
            continue
        da = json.dumps(a, indent=1, sort_keys=True, default=str).splitlines()
        db = json.dumps(b, indent=1, sort_keys=True, default=str).splitlines()
        diff = difflib.unified_diff(da, db, f"{ref_name}:{key}", f"{got_name}:{key}", lineterm="",
                                    n=2)
        report.append("\n".join(diff))
    return "\n\n".join(report)
