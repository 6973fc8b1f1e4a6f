"""Capabilities by OCI name, applied through capset(2) and prctl(2) in all five sets.

python-prctl has no ambient-set API and names cap 40 `last_cap` (ARCHITECTURE.md,
"Dependencies"), and importing it costs ~12 ms on the create path, so the table and the calls
are ours.
"""

from __future__ import annotations

from runtime.errors import ConfigError
from runtime.linux import syscalls as sc

CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]
CAP_NUMBER = {name: i for i, name in enumerate(CAPS)}
SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(CAPS) - 1


def to_mask(names: list[str], where: str) -> int:
    """Names to a bit mask; an unknown name is an error, one the kernel lacks is dropped."""
    top = last_cap()
    mask = 0
    for i, name in enumerate(names):
        num = CAP_NUMBER.get(name.upper() if name.upper().startswith("CAP_") else
                             "CAP_" + name.upper())
        if num is None:
            raise ConfigError(f"{where}[{i}]", f"unknown capability {name!r}")
        if num <= top:
            mask |= 1 << num
    return mask


def masks(caps: dict[str, list[str]], where: str) -> dict[str, int]:
    return {s: to_mask(caps.get(s, []), f"{where}.{s}") for s in SETS}


def check_grantable(m: dict[str, int], where: str) -> None:
    """A capability missing from our own bounding set can never be granted: say which (the
    kernel's answer is a bare EPERM from capset)."""
    wanted = m["bounding"] | m["permitted"] | m["effective"] | m["inheritable"]
    missing = [CAPS[n] for n in range(last_cap() + 1) if wanted & (1 << n)
               and not _in_bounding(n)]
    if missing:
        from runtime.errors import PyruncError
        raise PyruncError(f"{where}: {', '.join(missing)} not in this host's bounding set, so "
                          "it cannot be granted")


def _in_bounding(num: int) -> bool:
    try:
        return sc.prctl(sc.PR_CAPBSET_READ, num) == 1
    except OSError:
        return True


def drop_bounding(keep: int) -> None:
    """Drop from the bounding set every capability not in `keep` (needs CAP_SETPCAP)."""
    for num in range(last_cap() + 1):
        if not keep & (1 << num):
            sc.prctl(sc.PR_CAPBSET_DROP, num)


def apply(m: dict[str, int]) -> None:
    """Set effective/permitted/inheritable, then raise the ambient ones. As in runc, an
    ambient capability the kernel refuses (not in both permitted and inheritable) is skipped."""
    sc.capset(m["effective"], m["permitted"], m["inheritable"])
    if not m["ambient"]:
        return
    for num in range(last_cap() + 1):
        if m["ambient"] & (1 << num):
            try:
                sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_RAISE, num)
            except OSError:
                pass
