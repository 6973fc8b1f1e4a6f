"""linux.resources.devices on cgroup v2: the kernel asks an eBPF program of type
BPF_PROG_TYPE_CGROUP_DEVICE, attached to the cgroup, whether a device may be opened or made.

The program is generated from the rules: the OCI list plus the devices every container gets
(resources_common.DEFAULT_ALLOWED), checked from the last rule back, the first match deciding,
which is how the v1 allow/deny lists end up behaving. An allow rule matches when it grants
every access asked for; a deny rule when it covers any of them. No match: allowed (a new
cgroup allows everything until a rule says otherwise, as in v1). The program replaces any
program a previous `set` attached, so `update` swaps rules without a gap.

Only imported when a v2 cgroup gets device rules; ctypes and struct are loaded then.
"""

from __future__ import annotations

import ctypes
import os
import struct

from runtime.cgroups.resources_common import DEFAULT_ALLOWED, device_access
from runtime.errors import PyruncError

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

_NR_BPF = {"x86_64": 321, "amd64": 321, "aarch64": 280, "arm64": 280}
BPF_PROG_LOAD, BPF_PROG_ATTACH, BPF_PROG_DETACH = 5, 8, 9
BPF_PROG_GET_FD_BY_ID, BPF_PROG_QUERY = 13, 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2

# struct bpf_cgroup_dev_ctx { u32 access_type (access << 16 | type); u32 major; u32 minor; }
DEV_TYPE = {"b": 1, "c": 2}
ACCESS = {"m": 1, "r": 2, "w": 4}

# eBPF opcodes used
_LDXW = 0x61      # dst = *(u32 *)(src + off)
_MOV32_X = 0xBC   # dst = (u32)src
_AND32_K = 0x54   # dst &= imm (32 bit)
_RSH32_K = 0x74   # dst >>= imm (32 bit)
_MOV64_K = 0xB7   # dst = imm
_JNE_K = 0x55     # if dst != imm: pc += off
_JEQ_K = 0x15     # if dst == imm: pc += off
_EXIT = 0x95

_SKIP = object()  # placeholder offset: "to the end of this rule's block"


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def parse_rule(d: dict[str, Any]) -> tuple[str, int, int, int, bool]:
    """(type, major or -1, minor or -1, access bits, allow) of an OCI device rule."""
    t = d.get("type", "a") or "a"
    if t not in ("a", "b", "c"):
        raise PyruncError(f"linux.resources.devices: bad type {t!r} (a, b or c)")
    access = device_access(d.get("access"))
    nums = []
    for key in ("major", "minor"):
        v = d.get(key)
        if v is None or v == -1:
            nums.append(-1)
        elif isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**31:
            raise PyruncError(f"linux.resources.devices: bad {key} {v!r}")
        else:
            nums.append(v)
    bits = 0
    for ch in access:
        bits |= ACCESS[ch]
    return t, nums[0], nums[1], bits, bool(d.get("allow"))


def _default_rules() -> list[tuple[str, int, int, int, bool]]:
    out = []
    for rule in DEFAULT_ALLOWED:
        t, numbers, access = rule.split()
        major, minor = numbers.split(":")
        out.append(parse_rule({"type": t, "access": access, "allow": True,
                               "major": -1 if major == "*" else int(major),
                               "minor": -1 if minor == "*" else int(minor)}))
    return out


def compile_rules(rules: list[tuple[str, int, int, int, bool]]) -> bytes:
    """The program's instructions. Registers: r3 type, r4 access, r5 major, r6 minor."""
    prog = [_insn(_LDXW, 2, 1, 0), _insn(_MOV32_X, 3, 2), _insn(_AND32_K, 3, imm=0xFFFF),
            _insn(_MOV32_X, 4, 2), _insn(_RSH32_K, 4, imm=16),
            _insn(_LDXW, 5, 1, 4), _insn(_LDXW, 6, 1, 8)]
    for t, major, minor, bits, allow in reversed(rules):
        block: list[tuple[int, int, int, Any, int]] = []
        if t != "a":
            block.append((_JNE_K, 3, 0, _SKIP, DEV_TYPE[t]))
            if bits != 7:
                block.append((_MOV32_X, 7, 4, 0, 0))
                if allow:  # must grant all that is asked: skip if anything else is asked
                    block.append((_AND32_K, 7, 0, 0, ~bits & 7))
                    block.append((_JNE_K, 7, 0, _SKIP, 0))
                else:  # denies what it covers: skip if none of it is asked
                    block.append((_AND32_K, 7, 0, 0, bits))
                    block.append((_JEQ_K, 7, 0, _SKIP, 0))
            if major != -1:
                block.append((_JNE_K, 5, 0, _SKIP, major))
            if minor != -1:
                block.append((_JNE_K, 6, 0, _SKIP, minor))
        block.append((_MOV64_K, 0, 0, 0, 1 if allow else 0))
        block.append((_EXIT, 0, 0, 0, 0))
        for i, (code, dst, src, off, imm) in enumerate(block):
            prog.append(_insn(code, dst, src, len(block) - i - 1 if off is _SKIP else off, imm))
        if t == "a":
            return b"".join(prog)  # matches everything: no earlier rule is ever reached
    prog += [_insn(_MOV64_K, 0, imm=1), _insn(_EXIT)]
    return b"".join(prog)


def _bpf(cmd: int, attr: bytearray, what: str) -> int:
    nr = _NR_BPF.get(os.uname().machine)
    if nr is None:
        raise PyruncError(f"linux.resources.devices: no bpf(2) number for {os.uname().machine}")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    r = libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), buf, ctypes.c_uint(len(attr)))
    if r < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf {what}: {os.strerror(err)}")
    return int(r)


def load(insns: bytes) -> int:
    """BPF_PROG_LOAD; the verifier's complaint, if any, is in the error."""
    code = ctypes.create_string_buffer(insns, len(insns))
    license_ = ctypes.create_string_buffer(b"Apache-2.0")
    log = ctypes.create_string_buffer(65536)
    attr = bytearray(128)
    struct.pack_into("<IIQQIIQ", attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE, len(insns) // 8,
                     ctypes.addressof(code), ctypes.addressof(license_), 1, len(log),
                     ctypes.addressof(log))
    attr[48:48 + 12] = b"pyrunc_dev\0\0"
    struct.pack_into("<I", attr, 68, BPF_CGROUP_DEVICE)  # expected_attach_type
    try:
        return _bpf(BPF_PROG_LOAD, attr, "load")
    except OSError as e:
        detail = log.value.decode(errors="replace").strip().splitlines()
        raise PyruncError(f"linux.resources.devices: the kernel refused the device program: "
                          f"{e.strerror}{': ' + detail[-1] if detail else ''}") from None


def attached(cgroup_fd: int) -> list[int]:
    """Ids of the device programs attached directly to the cgroup."""
    ids = (ctypes.c_uint32 * 64)()
    attr = bytearray(64)
    struct.pack_into("<IIIIQI", attr, 0, cgroup_fd, BPF_CGROUP_DEVICE, 0, 0,
                     ctypes.addressof(ids), 64)
    _bpf(BPF_PROG_QUERY, attr, "query")
    count = struct.unpack_from("<I", attr, 24)[0]
    return list(ids[:min(count, 64)])


def _attach_cmd(cmd: int, cgroup_fd: int, prog_fd: int, flags: int, what: str) -> None:
    attr = bytearray(64)
    struct.pack_into("<IIII", attr, 0, cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, flags)
    _bpf(cmd, attr, what)


def apply(path: str, devices: list[dict[str, Any]]) -> None:
    """Install the rules on the cgroup at `path`, replacing what an earlier call installed."""
    if not isinstance(devices, list):
        raise PyruncError("linux.resources.devices: must be a list")
    rules = [parse_rule(d) for d in devices] + _default_rules()
    prog_fd = load(compile_rules(rules))
    cg_fd = -1
    try:
        try:
            cg_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise PyruncError(f"linux.resources.devices: cgroup {path}: {e.strerror}") from None
        try:
            old = attached(cg_fd)
            _attach_cmd(BPF_PROG_ATTACH, cg_fd, prog_fd, BPF_F_ALLOW_MULTI, "attach")
            for prog_id in old:
                attr = bytearray(16)
                struct.pack_into("<I", attr, 0, prog_id)
                old_fd = _bpf(BPF_PROG_GET_FD_BY_ID, attr, "get fd")
                try:
                    _attach_cmd(BPF_PROG_DETACH, cg_fd, old_fd, 0, "detach")
                finally:
                    os.close(old_fd)
        except OSError as e:
            raise PyruncError(f"linux.resources.devices: cgroup {path} (devices through "
                              f"eBPF): {e.strerror}") from None
    finally:
        os.close(prog_fd)
        if cg_fd >= 0:
            os.close(cg_fd)
