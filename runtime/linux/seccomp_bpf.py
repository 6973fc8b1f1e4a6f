"""linux.seccomp_bpf: the -ENOSYS prologue put in front of libseccomp's filter, and its load.

A syscall the profile never names may be newer than the profile: with a denying default
action, programs that probe for it (and fall back on ENOSYS) would see EPERM or die. runc
therefore puts a short prologue in front of the filter, and so do we, with the same rule:

- only when the default action denies (anything but ALLOW, LOG and TRACE);
- per architecture the profile lists (`architectures`; none listed: no prologue), the
  highest syscall number any rule names (whatever its action; names this libseccomp can't
  resolve for that architecture are ignored); numbers above it get -ENOSYS;
- x86_64 and x32 share one kernel architecture: x32 calls carry bit 30, so each mode is
  compared with its own highest number, and a mode not listed goes to the filter as is;
- on s390/s390x syscall 0 (the multiplexer unknown large numbers land on) gets -ENOSYS too;
- anything else (other architectures, numbers in range) runs libseccomp's filter unchanged.

Pure Python and libseccomp's own tables: `prologue()` builds the instructions, `program()`
joins them to the exported filter, `install()` loads the result with seccomp(2).
"""

from __future__ import annotations

import ctypes
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ENOSYS = 38
RET_ENOSYS = 0x00050000 | ENOSYS  # SECCOMP_RET_ERRNO | ENOSYS
# default actions that let unknown syscalls through, so need no prologue
PERMISSIVE = (0x7FFF0000, 0x7FFC0000, 0x7FF00000)  # ALLOW, LOG, TRACE (data masked off)

AUDIT_X86_64 = 0xC000003E
SCMP_X32 = 0x4000003E  # libseccomp's token for x32: not a kernel AUDIT_ARCH value
S390 = (0x00000016, 0x80000016)
X32_BIT = 0x40000000

# classic BPF opcodes (linux/bpf_common.h)
LD_ABS_W = 0x20  # BPF_LD | BPF_W | BPF_ABS
JA = 0x05  # BPF_JMP | BPF_JA
JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
JGT = 0x25
JSET = 0x45
RET = 0x06  # BPF_RET | BPF_K
OFF_NR, OFF_ARCH = 0, 4  # struct seccomp_data

# (opcode, jump-if-true label, jump-if-false label, k); labels resolve at assembly,
# None means the next instruction. For JA the target label sits in the "true" slot.
Insn = tuple[int, "str | None", "str | None", int]

FLAG_TSYNC, FLAG_LOG, FLAG_SPEC_ALLOW, FLAG_NEW_LISTENER, FLAG_TSYNC_ESRCH = 1, 2, 4, 8, 16
FLAG_WAIT_KILLABLE_RECV = 32


def needs_prologue(default_action: int) -> bool:
    return (default_action & 0xFFFF0000) not in PERMISSIVE


def highest_syscalls(lib: Any, arch_tokens: list[int], names: list[str]
                     ) -> dict[int, dict[int, int]]:
    """{kernel arch: {libseccomp arch token: highest syscall number named}}; arches where
    no name resolves are left out."""
    out: dict[int, dict[int, int]] = {}
    encoded = list(dict.fromkeys(n.encode() for n in names))
    for token in dict.fromkeys(arch_tokens):
        top = 0
        for name in encoded:
            nr = lib.seccomp_syscall_resolve_name_arch(token, name)
            if nr > top:  # negatives: unknown (-1) or a multiplexed pseudo number
                top = nr
        if top:
            kernel_arch = AUDIT_X86_64 if token == SCMP_X32 else token
            out.setdefault(kernel_arch, {})[token] = top
    return out


def prologue(highest: dict[int, dict[int, int]]) -> list[Insn]:
    """The instructions that run before the filter (empty when nothing is compared)."""
    if not highest:
        return []
    flat: list[tuple[str | None, Insn]] = [(None, (LD_ABS_W, None, None, OFF_ARCH))]
    sections: list[tuple[str | None, Insn]] = []
    for i, (arch, modes) in enumerate(sorted(highest.items())):
        flat.append((None, (JEQ, f"arch{i}", None, arch)))
        sections += _section(arch, modes, f"arch{i}")
    flat.append((None, (JA, "filter", None, 0)))
    flat += sections
    flat.append(("enosys", (RET, None, None, RET_ENOSYS)))
    return _resolve(flat)


def _section(arch: int, modes: dict[int, int], label: str) -> list[tuple[str | None, Insn]]:
    """Load the number and compare it, for one kernel architecture."""
    load: Insn = (LD_ABS_W, None, None, OFF_NR)
    out: list[tuple[str | None, Insn]] = [(label, load)]
    if arch in S390:
        out.append((None, (JEQ, "enosys", None, 0)))
    if arch != AUDIT_X86_64:
        (top,) = modes.values()
        return out + _above(None, top)
    native, x32 = modes.get(AUDIT_X86_64), modes.get(SCMP_X32)
    if native is not None and x32 is not None:
        return (out + [(None, (JSET, f"{label}.x32", None, X32_BIT))]
                + _above(None, native) + _above(f"{label}.x32", x32))
    if native is not None:  # x32 calls go to the filter untouched
        return out + [(None, (JSET, "filter", None, X32_BIT))] + _above(None, native)
    assert x32 is not None  # only x32 listed: native calls go to the filter untouched
    return out + [(None, (JSET, None, "filter", X32_BIT))] + _above(None, x32)


def _above(label: str | None, top: int) -> list[tuple[str | None, Insn]]:
    """Numbers above `top` get -ENOSYS, the rest run the filter."""
    return [(label, (JGT, "enosys", None, top)), (None, (JA, "filter", None, 0))]


def _resolve(flat: list[tuple[str | None, Insn]]) -> list[Insn]:
    """Turn labels into relative offsets; "filter" is the instruction after the prologue."""
    where = {"filter": len(flat)}
    where.update((label, i) for i, (label, _insn) in enumerate(flat) if label is not None)
    out: list[Insn] = []
    for i, (_label, (code, jt, jf, k)) in enumerate(flat):
        if code == JA:
            out.append((code, None, None, _offset(where, jt, i, 0xFFFFFFFF)))
        else:
            out.append((code, _offset(where, jt, i, 255),  # type: ignore[arg-type]
                        _offset(where, jf, i, 255), k))
    return out


def _offset(where: dict[str, int], target: str | None, at: int, top: int) -> int:
    off = 0 if target is None else where[target] - at - 1
    if not 0 <= off <= top:
        raise ValueError(f"seccomp prologue: jump of {off} at instruction {at}")
    return off


def pack(insns: list[Insn]) -> bytes:
    """struct sock_filter[] in host byte order."""
    return b"".join(struct.pack("=HBBI", code, jt or 0, jf or 0, k)  # type: ignore[arg-type]
                    for code, jt, jf, k in insns)


class _Fprog(ctypes.Structure):
    """struct sock_fprog"""
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class Program:
    """A complete filter, ready for seccomp(2); built before pivot_root, loaded later with
    no imports and no file access."""

    def __init__(self, code: bytes, flags: int, sys_seccomp: int) -> None:
        self._buf = ctypes.create_string_buffer(code, len(code))
        self._prog = _Fprog(len(code) // 8, ctypes.addressof(self._buf))
        self.flags = flags
        self._nr = sys_seccomp
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.syscall.restype = ctypes.c_long

    def install(self) -> int:
        """seccomp(SECCOMP_SET_MODE_FILTER, flags, prog): the listener fd with
        FLAG_NEW_LISTENER, else 0. Raises OSError."""
        rc = self._libc.syscall(ctypes.c_long(self._nr), ctypes.c_long(1),
                                ctypes.c_ulong(self.flags), ctypes.byref(self._prog))
        if rc < 0:
            e = ctypes.get_errno()
            raise OSError(e, "seccomp")
        return rc
