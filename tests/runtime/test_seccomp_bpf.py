"""The -ENOSYS prologue, run through a small classic-BPF interpreter: architectures this
host can't exercise (x32 next to x86_64, s390x's multiplexer) and the choice of limits.
The prologue's effect on real containers is in conformance/test_seccomp_enosys_diff.py."""

from __future__ import annotations

import struct

import pytest

from runtime.linux import seccomp_bpf as bpf

FILTER = 0xF11  # what "the filter" returns in these runs
I386, AARCH64, S390X = 0x40000003, 0xC00000B7, 0x80000016


def run(insns: list[bpf.Insn], nr: int, arch: int) -> int:
    """Evaluate the prologue for one syscall; falling off its end means the filter runs."""
    data = struct.pack("=iI", nr, arch)
    acc, pc = 0, 0
    while pc < len(insns):
        code, jt, jf, k = insns[pc]
        if code == bpf.LD_ABS_W:
            acc = struct.unpack_from("=I", data, k)[0]
        elif code == bpf.RET:
            return k
        elif code == bpf.JA:
            pc += k
        else:
            cond = {bpf.JEQ: acc == k, bpf.JGT: acc > k, bpf.JSET: bool(acc & k)}[code]
            pc += jt if cond else jf  # type: ignore[operator]
        pc += 1
    assert pc == len(insns), "jumped past the filter's first instruction"
    return FILTER


def test_above_the_highest_number_gets_enosys():
    p = bpf.prologue({AARCH64: {AARCH64: 300}})
    assert run(p, 300, AARCH64) == FILTER
    assert run(p, 301, AARCH64) == bpf.RET_ENOSYS
    assert run(p, 5000, I386) == FILTER  # not listed: the filter decides


@pytest.mark.parametrize("modes,calls", [
    ({bpf.AUDIT_X86_64: 400, bpf.SCMP_X32: bpf.X32_BIT | 300},
     {400: FILTER, 401: bpf.RET_ENOSYS, bpf.X32_BIT | 300: FILTER,
      bpf.X32_BIT | 301: bpf.RET_ENOSYS}),
    ({bpf.AUDIT_X86_64: 400},
     {401: bpf.RET_ENOSYS, bpf.X32_BIT | 1: FILTER, bpf.X32_BIT | 999: FILTER}),
    ({bpf.SCMP_X32: bpf.X32_BIT | 300},
     {401: FILTER, 5000: FILTER, bpf.X32_BIT | 300: FILTER,
      bpf.X32_BIT | 301: bpf.RET_ENOSYS}),
], ids=["both", "x86_64-only", "x32-only"])
def test_x86_64_and_x32_have_their_own_limits(modes, calls):
    p = bpf.prologue({bpf.AUDIT_X86_64: modes, I386: {I386: 450}})
    for nr, want in calls.items():
        assert run(p, nr, bpf.AUDIT_X86_64) == want, hex(nr)
    assert run(p, 451, I386) == bpf.RET_ENOSYS
    assert run(p, 450, I386) == FILTER


def test_s390x_multiplexer_gets_enosys():
    p = bpf.prologue({S390X: {S390X: 440}})
    assert run(p, 0, S390X) == bpf.RET_ENOSYS
    assert run(p, 1, S390X) == FILTER
    assert run(p, 441, S390X) == bpf.RET_ENOSYS


def test_no_listed_architecture_means_no_prologue():
    assert bpf.prologue({}) == []


@pytest.mark.parametrize("action,needed", [
    (0x7FFF0000, False), (0x7FFC0000, False), (0x7FF00005, False),  # allow, log, trace
    (0x00050001, True), (0x00000000, True), (0x80000000, True), (0x00030000, True),
])
def test_only_denying_defaults_get_the_prologue(action, needed):
    assert bpf.needs_prologue(action) is needed


def test_highest_counts_every_rule_and_skips_unknown_names():
    class Lib:
        table = {(1, b"a"): 10, (1, b"b"): 20, (2, b"a"): 5, (1, b"sock"): -101}

        def seccomp_syscall_resolve_name_arch(self, arch, name):
            return self.table.get((arch, name), -1)
    got = bpf.highest_syscalls(Lib(), [1, 2, 3, 1], ["a", "b", "sock", "nope"])
    assert got == {1: {1: 20}, 2: {2: 5}}


def test_packed_like_struct_sock_filter():
    code = bpf.pack([(bpf.JGT, 3, 0, 449)])
    assert code == struct.pack("=HBBI", 0x25, 3, 0, 449) and len(code) == 8
