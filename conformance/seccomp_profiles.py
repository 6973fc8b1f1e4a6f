"""Seccomp sections for the differential suite and the resources benchmark.

`docker_default(caps)` turns the Docker/Podman default profile shipped by Debian's
containers-common (/usr/share/containers/seccomp.json: archMap, per-rule includes/excludes on
arches, caps and minKernel) into the OCI `linux.seccomp` section an engine would hand the
runtime for this machine and these capabilities; tests/runtime/test_seccomp.py does the same for
pyrunc alone. The custom profiles exercise errnoRet, defaultErrnoRet and argument conditions
with syscalls busybox can be made to call.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
from typing import Any

DOCKER_PROFILE = "/usr/share/containers/seccomp.json"
# `uname -m` -> Go's GOARCH, the names the profile's includes/excludes use
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x"}


def have_docker_profile() -> bool:
    return os.path.isfile(DOCKER_PROFILE)


def _kernel() -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _wanted(rule: dict[str, Any], goarch: str, caps: set[str], kernel: tuple[int, int]) -> bool:
    """Whether a profile rule applies on this architecture, kernel and capability set."""
    inc = rule.get("includes") or {}
    exc = rule.get("excludes") or {}
    if inc.get("arches") and goarch not in inc["arches"]:
        return False
    if goarch in (exc.get("arches") or []):
        return False
    if not set(inc.get("caps") or []) <= caps:
        return False
    if set(exc.get("caps") or []) & caps:
        return False
    if inc.get("minKernel"):
        major, minor = (int(x) for x in inc["minKernel"].split(".")[:2])
        if kernel < (major, minor):
            return False
    return True


def docker_default(caps: list[str], path: str = DOCKER_PROFILE) -> dict[str, Any]:
    """The OCI seccomp section for the default profile with `caps` (the bounding set)."""
    with open(path) as f:
        profile = json.load(f)
    machine = os.uname().machine
    goarch = _GOARCH.get(machine, machine)
    native = "SCMP_ARCH_" + machine.upper()
    arches = [native]
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == native:
            arches.extend(entry.get("subArchitectures") or [])
    have, kernel = set(caps), _kernel()
    syscalls = []
    for rule in profile.get("syscalls") or []:
        if not _wanted(rule, goarch, have, kernel):
            continue
        out = {"names": list(rule["names"]), "action": rule["action"]}
        if rule.get("args"):
            out["args"] = rule["args"]
        if rule.get("errnoRet") is not None:
            out["errnoRet"] = rule["errnoRet"]
        syscalls.append(out)
    section: dict[str, Any] = {"defaultAction": profile["defaultAction"],
                               "architectures": arches, "syscalls": syscalls}
    if profile.get("defaultErrnoRet") is not None:
        section["defaultErrnoRet"] = profile["defaultErrnoRet"]
    return section


def without(section: dict[str, Any], name: str) -> dict[str, Any]:
    """`section` with `name` taken out of every rule, so it falls to the default action."""
    rules = []
    for rule in section["syscalls"]:
        names = [n for n in rule["names"] if n != name]
        if names:
            rules.append({**rule, "names": names})
    return {**section, "syscalls": rules}


# errno values as the kernel numbers them (x86_64 and arm64 agree on these)
EPERM, EACCES, EINVAL, ENOSYS, EROFS = 1, 13, 22, 38, 30
S_ISUID = 0o4000
SIGUSR1 = 10


def custom_errno_args() -> dict[str, Any]:
    """Allow everything but: mkdir/mkdirat -> EACCES; chmod/fchmodat that sets the setuid bit
    -> EROFS (masked equality on the mode argument); kill(_, SIGUSR1) -> EINVAL (plain
    equality); rmdir -> the default errno of SCMP_ACT_ERRNO, EPERM."""
    masked = {"value": S_ISUID, "valueTwo": S_ISUID, "op": "SCMP_CMP_MASKED_EQ"}
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": EACCES},
            {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": EROFS,
             "args": [{"index": 1, **masked}]},
            {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": EROFS,
             "args": [{"index": 2, **masked}]},
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": EINVAL,
             "args": [{"index": 1, "value": SIGUSR1, "op": "SCMP_CMP_EQ"}]},
            {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"},
        ],
    }


def custom_default_errno(allowed_from: dict[str, Any]) -> dict[str, Any]:
    """An allow list (the default profile's ALLOW rules without mkdir/mkdirat) under
    defaultAction ERRNO with defaultErrnoRet EACCES: what is left out fails with EACCES."""
    rules = []
    for rule in allowed_from["syscalls"]:
        if rule["action"] != "SCMP_ACT_ALLOW" or rule.get("args"):
            continue
        names = [n for n in rule["names"] if n not in ("mkdir", "mkdirat")]
        if names:
            rules.append({"names": names, "action": "SCMP_ACT_ALLOW"})
    return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": EACCES,
            "architectures": allowed_from.get("architectures", []), "syscalls": rules}


class SyscallTable:
    """The native architecture's syscall table, as libseccomp knows it."""

    def __init__(self) -> None:
        self.lib = ctypes.CDLL("libseccomp.so.2")
        self.lib.seccomp_arch_native.restype = ctypes.c_uint32
        self.lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        self.lib.seccomp_syscall_resolve_num_arch.argtypes = [ctypes.c_uint32, ctypes.c_int]
        self.lib.seccomp_syscall_resolve_num_arch.restype = ctypes.c_void_p
        self.native = self.lib.seccomp_arch_native()

    def nr(self, name: str) -> int:
        return self.lib.seccomp_syscall_resolve_name(name.encode())

    def names_upto(self, top: int) -> list[str]:
        out = []
        for nr in range(top + 1):
            p = self.lib.seccomp_syscall_resolve_num_arch(self.native, nr)
            if p:
                out.append(ctypes.string_at(p).decode())
                ctypes.CDLL(None).free(ctypes.c_void_p(p))
        return out


def allow_upto(table: SyscallTable, last: str, default: str, skip: tuple[str, ...] = ()
               ) -> dict[str, Any]:
    """Every syscall this libseccomp knows numbered up to `last` (but `skip`) allowed, the
    native architecture listed, everything else to `default`."""
    names = [n for n in table.names_upto(table.nr(last)) if n not in skip]
    m = os.uname().machine
    return {"defaultAction": default,
            "architectures": [{"aarch64": "SCMP_ARCH_AARCH64"}.get(m, f"SCMP_ARCH_{m.upper()}")],
            "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]}
