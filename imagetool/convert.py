"""Image config -> runtime spec (config.json), umoci's config/convert in shape, with the
defaults Docker gives a container.

What comes from the image: Entrypoint + Cmd (with docker run's override rules), Env (PATH
and HOME filled in when missing), WorkingDir, User (names resolved through the rootfs's
/etc/passwd and /etc/group, supplementary groups from /etc/group), Labels as annotations plus
org.opencontainers.image.{stopSignal,exposedPorts,author,created,os,architecture} like
umoci, and Volumes (as bind mounts, see bundle.py).

What Docker adds by default (moby's oci/defaults.go and daemon/oci_linux.go): namespaces
pid, ipc, uts, mount, network; its 14 default capabilities (bounding; effective and
permitted too for root, empty for other users, as docker 20.10 does: moby#36587, reverted in
24.0 by moby#45511); primary and supplementary groups in additionalGids;
noNewPrivileges false; /proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys, /sys/fs/cgroup;
masked and read-only /proc and /sys paths; a device cgroup that denies everything but the
usual nodes; the unprivileged-ports and ping sysctls; and its default seccomp profile when
/usr/share/containers/seccomp.json is installed, converted for this machine and these
capabilities (docker_seccomp below)."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from imagetool.users import ConvertError, resolve_user  # noqa: F401  (this module's API)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DOCKER_SECCOMP = "/usr/share/containers/seccomp.json"
OCI_VERSION = "1.0.2"

DOCKER_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
               "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
               "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
MASKED_PATHS = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                "/sys/devices/virtual/powercap"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
NAMESPACES = ["pid", "ipc", "uts", "mount", "network"]


def _dev(kind: str, major: int | None, minor: int | None, access: str = "rwm") -> dict:
    d: dict[str, Any] = {"allow": True, "type": kind, "access": access}
    if major is not None:
        d["major"] = major
    if minor is not None:
        d["minor"] = minor
    return d


# deny all; mknod of anything; null, random, full, tty, zero, urandom, pts, ptmx, tun
DEVICE_RULES = [{"allow": False, "access": "rwm"}, _dev("c", None, None, "m"),
                _dev("b", None, None, "m"), _dev("c", 1, 3), _dev("c", 1, 8), _dev("c", 1, 7),
                _dev("c", 5, 0), _dev("c", 1, 5), _dev("c", 1, 9), _dev("c", 136, None),
                _dev("c", 5, 2), _dev("c", 10, 200)]


def default_mounts() -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    ]


# -- seccomp -----------------------------------------------------------------------------------
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
           "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}
_SCMP_ARCH = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64",
              "armv7l": "SCMP_ARCH_ARM", "i686": "SCMP_ARCH_X86", "ppc64le": "SCMP_ARCH_PPC64LE",
              "s390x": "SCMP_ARCH_S390X", "riscv64": "SCMP_ARCH_RISCV64"}


def _kernel(release: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def docker_seccomp(profile: dict[str, Any], caps: list[str], machine: str | None = None,
                   kernel: str | None = None) -> dict[str, Any]:
    """A Docker-format seccomp profile (archMap, includes/excludes by arch, capability and
    kernel) as the OCI linux.seccomp section for `machine` and a process whose bounding set
    is `caps`, the way Docker and Podman turn their profile into a spec."""
    machine = machine or os.uname().machine
    have_kernel = _kernel(kernel or os.uname().release)
    goarch = _GOARCH.get(machine, machine)
    native = _SCMP_ARCH.get(machine)
    capset = set(caps)
    arches: list[str] = list(profile.get("architectures") or [])
    if not arches and native:
        for m in profile.get("archMap") or []:
            if m.get("architecture") == native:
                arches = [native, *(m.get("subArchitectures") or [])]
        arches = arches or [native]
    rules = []
    for s in profile.get("syscalls") or []:
        inc, exc = s.get("includes") or {}, s.get("excludes") or {}
        if inc.get("arches") and goarch not in inc["arches"]:
            continue
        if exc.get("arches") and goarch in exc["arches"]:
            continue
        if inc.get("caps") and not set(inc["caps"]) <= capset:
            continue
        if exc.get("caps") and set(exc["caps"]) & capset:
            continue
        if inc.get("minKernel") and have_kernel < _kernel(inc["minKernel"]):
            continue
        names = list(s.get("names") or ([s["name"]] if s.get("name") else []))
        if not names:
            continue
        rule: dict[str, Any] = {"names": names, "action": s["action"]}
        if s.get("args"):
            rule["args"] = s["args"]
        if s.get("errnoRet") is not None:
            rule["errnoRet"] = s["errnoRet"]
        rules.append(rule)
    out: dict[str, Any] = {"defaultAction": profile["defaultAction"], "syscalls": rules}
    if arches:
        out["architectures"] = arches
    for key in ("defaultErrnoRet", "listenerPath", "listenerMetadata", "flags"):
        if profile.get(key) is not None:
            out[key] = profile[key]
    return out


def default_seccomp(caps: list[str], path: str = DOCKER_SECCOMP) -> dict[str, Any] | None:
    """Docker's default profile for these capabilities, or None when it is not installed."""
    try:
        with open(path) as f:
            profile = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ConvertError(f"{path}: unreadable seccomp profile ({e})") from None
    return docker_seccomp(profile, caps)


# -- the spec ----------------------------------------------------------------------------------
def command(config: dict[str, Any], entrypoint: list[str] | None = None,
            cmd: list[str] | None = None) -> list[str]:
    """docker run's rules: an --entrypoint override drops the image's Cmd unless a command
    is given too; an empty entrypoint override ([]) clears the image's."""
    ep = list(config.get("Entrypoint") or []) if entrypoint is None else list(entrypoint)
    if cmd is not None:
        args = list(cmd)
    elif entrypoint is not None:
        args = []
    else:
        args = list(config.get("Cmd") or [])
    out = ep + args
    if not out:
        raise ConvertError("no command: the image has no Entrypoint or Cmd and none was given")
    return out


def merge_env(base: list[str], extra: list[str] | None) -> list[str]:
    """Later KEY=VALUE entries replace earlier ones of the same key, keeping first order."""
    out: dict[str, str] = {}
    for item in [*base, *(extra or [])]:
        key = item.split("=", 1)[0]
        if not key:
            raise ConvertError(f"environment entry {item!r} has no name")
        out[key] = item if "=" in item else f"{key}="
    return list(out.values())


def image_annotations(image: dict[str, Any]) -> dict[str, str]:
    conf = image.get("config") or {}
    out = {str(k): str(v) for k, v in (conf.get("Labels") or {}).items()}
    pre = "org.opencontainers.image."
    if conf.get("StopSignal"):
        out[pre + "stopSignal"] = str(conf["StopSignal"])
    if conf.get("ExposedPorts"):
        out[pre + "exposedPorts"] = ",".join(sorted(conf["ExposedPorts"]))
    for key in ("author", "created", "os", "architecture"):
        if image.get(key):
            out[pre + key] = str(image[key])
    return out


def spec_from_image(image: dict[str, Any], *, user: dict[str, Any],
                    entrypoint: list[str] | None = None, cmd: list[str] | None = None,
                    env: list[str] | None = None, workdir: str | None = None,
                    hostname: str = "container", volumes: list[dict[str, Any]] | None = None,
                    seccomp: bool = True, terminal: bool = False) -> dict[str, Any]:
    """The runtime spec for an image config `image` (the whole config blob: os,
    architecture, config{...}). `user` comes from resolve_user(); `volumes` are finished
    mount entries (bundle.py makes them)."""
    conf = image.get("config") or {}
    args = command(conf, entrypoint, cmd)
    envs = merge_env(list(conf.get("Env") or []), env)
    keys = {e.split("=", 1)[0] for e in envs}
    if "PATH" not in keys:
        envs.insert(0, f"PATH={DEFAULT_PATH}")
    if "HOME" not in keys:
        envs.append(f"HOME={user.get('home') or '/'}")
    cwd = workdir if workdir is not None else (conf.get("WorkingDir") or "/")
    if not cwd.startswith("/"):
        cwd = "/" + cwd  # docker makes a relative WORKDIR relative to /
    cwd = os.path.normpath(cwd)
    caps = list(DOCKER_CAPS)
    root_user = user["uid"] == 0
    proc_user: dict[str, Any] = {"uid": user["uid"], "gid": user["gid"]}
    if user.get("additionalGids"):
        proc_user["additionalGids"] = list(user["additionalGids"])
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": terminal,
            "user": proc_user,
            "args": args,
            "env": envs,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps if root_user else [],
                             "permitted": caps if root_user else []},
            "noNewPrivileges": False,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": hostname,
        "mounts": default_mounts() + list(volumes or []),
        "annotations": image_annotations(image),
        "linux": {
            "sysctl": {"net.ipv4.ip_unprivileged_port_start": "0",
                       "net.ipv4.ping_group_range": "0 2147483647"},
            "resources": {"devices": [dict(d) for d in DEVICE_RULES]},
            "namespaces": [{"type": t} for t in NAMESPACES],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
    if not spec["annotations"]:
        del spec["annotations"]
    if seccomp:
        sec = default_seccomp(caps)
        if sec is not None:
            spec["linux"]["seccomp"] = sec
    return spec
