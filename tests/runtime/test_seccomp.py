"""linux.seccomp: real containers under real filters, plus the checks and the libseccomp
translation looked at in-process (libseccomp's own rendering of the filter, never loaded)."""

from __future__ import annotations

import copy
import ctypes
import json
import os
import re
import select
import socket
import struct
import subprocess
import sys
import threading

import pytest

from runtime.errors import ConfigError
from runtime.linux import seccomp

DOCKER_PROFILE = "/usr/share/containers/seccomp.json"  # Debian's golang-github-containers-common
needs_profile = pytest.mark.skipif(not os.path.isfile(DOCKER_PROFILE),
                                   reason=f"{DOCKER_PROFILE} missing (scripts/install.sh)")
SIGSYS_STATUS = 128 + 31
NR_MKDIR = 83  # x86_64; the tests below that use it are x86_64-only
X86_64 = os.uname().machine == "x86_64"


def docker_profile(caps: list[str]) -> dict:
    """Docker's profile format (archMap, includes/excludes) -> the OCI section for this
    machine and these bounding capabilities, the way Docker and Podman turn it into one."""
    with open(DOCKER_PROFILE) as f:
        prof = json.load(f)
    machine = os.uname().machine
    native = "SCMP_ARCH_" + machine.upper()
    goarch = {"x86_64": "amd64", "aarch64": "arm64"}[machine]
    kernel = tuple(int(x) for x in re.match(r"(\d+)\.(\d+)", os.uname().release).groups())
    arches = [native]
    for m in prof.get("archMap") or []:
        if m["architecture"] == native:
            arches += m.get("subArchitectures") or []
    rules = []
    for s in prof["syscalls"]:
        inc, exc = s.get("includes") or {}, s.get("excludes") or {}
        if inc.get("arches") and goarch not in inc["arches"]:
            continue
        if exc.get("arches") and goarch in exc["arches"]:
            continue
        if inc.get("caps") and not set(inc["caps"]) <= set(caps):
            continue
        if exc.get("caps") and set(exc["caps"]) & set(caps):
            continue
        if inc.get("minKernel"):
            want = tuple(int(x) for x in inc["minKernel"].split(".")[:2])
            if kernel < want:
                continue
        rules.append({k: s[k] for k in ("names", "action", "args", "errnoRet")
                      if s.get(k) is not None})
    out = {"defaultAction": prof["defaultAction"], "architectures": arches, "syscalls": rules}
    if prof.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = prof["defaultErrnoRet"]
    return out


def _deny(names: list[str], action: str = "SCMP_ACT_ERRNO", **extra) -> dict:
    return {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": names, "action": action, **extra}]}


def _run(pyrunc, bundle, script: str, sec: dict | None, status: int = 0,
         writable: bool = True, extra: tuple[str, ...] = ()) -> tuple[str, str]:
    bundle.config["process"]["args"] = ["sh", "-c", script]
    bundle.config["root"]["readonly"] = not writable
    if sec is None:
        bundle.config["linux"].pop("seccomp", None)
    else:
        bundle.config["linux"]["seccomp"] = sec
    bundle.write()
    p = pyrunc("run", *extra, "--bundle", bundle.path, pyrunc.new_id())
    assert p.returncode == status, (p.returncode, p.stdout.decode(), p.stderr.decode())
    return p.stdout.decode(), p.stderr.decode()


def _status(out: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


# -- Docker's default profile -------------------------------------------------------------

@needs_profile
@pytest.mark.parametrize("nnp", [True, False], ids=["nnp", "no-nnp"])
def test_docker_profile_common_programs_run(pyrunc, bundle, nnp):
    """Without noNewPrivileges the filter goes in before the uid switch (the init still
    holds CAP_SYS_ADMIN), so the init's own remaining steps run under the profile too."""
    proc = bundle.config["process"]
    proc["noNewPrivileges"] = nnp
    sec = docker_profile(proc["capabilities"]["bounding"])
    script = ("ls / >/dev/null && cat /etc/passwd | wc -l && echo hello | wc -c && "
              "sleep 0.1 && date +%Y >/dev/null && id -u && grep -E '^(Seccomp|NoNewPrivs):' "
              "/proc/self/status")
    out, _ = _run(pyrunc, bundle, script, sec)
    lines = out.split("\n")
    assert lines[:3] == ["3", "6", "0"]
    st = _status(out)
    assert st["Seccomp"] == "2"
    assert st["NoNewPrivs"] == ("1" if nnp else "0")


@needs_profile
def test_docker_profile_blocks_with_its_errno(pyrunc, bundle):
    """The profile made for the default capabilities refuses sethostname with EPERM (its
    errnoRet 1) even though this process holds CAP_SYS_ADMIN; without the profile the same
    process may. Syscalls missing from the profile get its defaultErrnoRet: ENOSYS."""
    caps = bundle.config["process"]["capabilities"]
    sec = docker_profile(caps["bounding"])
    assert sec.get("defaultErrnoRet") == 38
    # drop one allowed syscall from the profile: it falls to the default action
    for rule in sec["syscalls"]:
        if rule["action"] == "SCMP_ACT_ALLOW" and "mkdir" in rule["names"]:
            rule["names"].remove("mkdir")
    for k in caps:
        caps[k] = caps[k] + ["CAP_SYS_ADMIN"]
    script = "hostname changed; echo rc=$?; mkdir /tmp/d; echo rc=$?"
    out, err = _run(pyrunc, bundle, script, sec)
    assert out.split() == ["rc=1", "rc=1"]
    assert "Operation not permitted" in err and "Function not implemented" in err
    out, err = _run(pyrunc, bundle, script + "; hostname", None)
    assert out.split() == ["rc=0", "rc=0", "changed"], err


# -- actions and errno ---------------------------------------------------------------------

@pytest.mark.parametrize("rule,message", [
    ({}, "Operation not permitted"),  # SCMP_ACT_ERRNO defaults to EPERM
    ({"errnoRet": 1}, "Operation not permitted"),
    ({"errnoRet": 38}, "Function not implemented"),
    ({"errnoRet": 13}, "Permission denied"),
    ({"action": "SCMP_ACT_TRACE"}, "Function not implemented"),  # no tracer: ENOSYS
], ids=["default", "EPERM", "ENOSYS", "EACCES", "trace"])
def test_errno_actions(pyrunc, bundle, rule, message):
    sec = _deny(["mkdir"], **{"action": "SCMP_ACT_ERRNO", **rule})
    out, err = _run(pyrunc, bundle, "mkdir /tmp/x; echo rc=$?; mkdir /tmp/x 2>&1 | wc -l",
                    sec)
    assert out.split() == ["rc=1", "1"]
    assert f"can't create directory '/tmp/x': {message}" in err
    assert not os.path.exists(os.path.join(bundle.rootfs, "tmp/x"))


@pytest.mark.parametrize("default_ret,message", [
    (None, "Operation not permitted"), (38, "Function not implemented"),
    (13, "Permission denied")])
def test_default_errno_ret(pyrunc, bundle, default_ret, message):
    """defaultAction ERRNO: every syscall outside the allow list gets defaultErrnoRet."""
    names = _syscalls_except("mkdir")
    sec = {"defaultAction": "SCMP_ACT_ERRNO",
           "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]}
    if default_ret is not None:
        sec["defaultErrnoRet"] = default_ret
    out, err = _run(pyrunc, bundle, "mkdir /tmp/x; echo rc=$?; touch /tmp/y; echo rc=$?", sec)
    assert out.split() == ["rc=1", "rc=0"]
    assert f"can't create directory '/tmp/x': {message}" in err


def _syscalls_except(*drop: str) -> list[str]:
    """Every syscall name of the native architecture but `drop`."""
    lib = seccomp._load_lib()
    lib.seccomp_syscall_resolve_num_arch.restype = ctypes.c_char_p
    lib.seccomp_syscall_resolve_num_arch.argtypes = [ctypes.c_uint32, ctypes.c_int]
    names = set()
    for nr in range(0, 1024):
        n = lib.seccomp_syscall_resolve_num_arch(0, nr)
        if n:
            names.add(n.decode())
    assert "mkdir" in names or not X86_64
    return sorted(names - set(drop))


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD",
                                    "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP"])
def test_sigsys_actions(pyrunc, bundle, tmp_path, action):
    """The process dies of SIGSYS before the syscall runs; `run` exits 128+31. The kernel's
    audit record tells the actions apart (TRAP is only logged with FLAG_LOG)."""
    sec = _deny(["mkdir"], action)
    sec["flags"] = ["SECCOMP_FILTER_FLAG_LOG"]
    pidfile = str(tmp_path / "pid")
    before = _kmsg_len()
    out, _ = _run(pyrunc, bundle, "echo before; exec mkdir /tmp/x", sec, SIGSYS_STATUS,
                  extra=("--pid-file", pidfile))
    assert out == "before\n"
    assert not os.path.exists(os.path.join(bundle.rootfs, "tmp/x"))
    code = {"SCMP_ACT_KILL_PROCESS": "0x80000000", "SCMP_ACT_TRAP": "0x30000"}.get(action,
                                                                                  "0x0")
    # the kernel kills for KILL_*; TRAP sends the signal, which kills since sh can't catch it
    sig = 0 if action == "SCMP_ACT_TRAP" else 31
    _expect_audit(before, int(open(pidfile).read()), code, sig=sig)


def test_log_action(pyrunc, bundle, tmp_path):
    pidfile = str(tmp_path / "pid")
    before = _kmsg_len()
    _run(pyrunc, bundle, "exec mkdir /tmp/x", _deny(["mkdir"], "SCMP_ACT_LOG"),
         extra=("--pid-file", pidfile))
    assert os.path.isdir(os.path.join(bundle.rootfs, "tmp/x"))  # logged, then allowed
    _expect_audit(before, int(open(pidfile).read()), "0x7ffc0000", sig=0)


def test_flag_log_logs_errno(pyrunc, bundle, tmp_path):
    """SECCOMP_FILTER_FLAG_LOG: ERRNO actions are logged too, and only with the flag."""
    for flags, logged in ((None, False), (["SECCOMP_FILTER_FLAG_LOG"], True)):
        sec = _deny(["mkdir"], errnoRet=1)
        if flags:
            sec["flags"] = flags
        pidfile = str(tmp_path / f"pid{logged}")
        before = _kmsg_len()
        _run(pyrunc, bundle, "exec mkdir /tmp/x", sec, 1, extra=("--pid-file", pidfile))
        pid = int(open(pidfile).read())
        if logged:
            _expect_audit(before, pid, "0x50000", sig=0)  # the record drops the errno
        else:
            assert not _audit_lines(before, pid)


def _kmsg() -> list[str]:
    return subprocess.run(["dmesg"], capture_output=True, text=True, check=True).stdout \
        .splitlines()


def _kmsg_len() -> int:
    if subprocess.run(["pidof", "auditd"], capture_output=True).returncode == 0:
        pytest.skip("auditd takes the seccomp audit records away from the kernel log")
    return len(_kmsg())


def _audit_lines(before: int, pid: int) -> list[str]:
    return [line for line in _kmsg()[max(before - 50, 0):]
            if "type=1326" in line and f" pid={pid} " in line]


def _expect_audit(before: int, pid: int, code: str, sig: int) -> None:
    lines = _audit_lines(before, pid)
    assert len(lines) == 1, lines
    assert f" sig={sig} " in lines[0] and f"code={code}" in lines[0], lines[0]
    if X86_64:
        assert f"syscall={NR_MKDIR} " in lines[0]


def test_kill_process_with_allow_default(pyrunc, bundle):
    """The shell itself makes the call (cd is a builtin): the container process goes."""
    out, _ = _run(pyrunc, bundle, "echo one; cd /tmp; echo two",
                  _deny(["chdir"], "SCMP_ACT_KILL_PROCESS"), SIGSYS_STATUS)
    assert out == "one\n"


def test_unknown_syscall_names_are_skipped(pyrunc, bundle):
    sec = _deny(["no_such_syscall", "mkdir", "also_not_one"], errnoRet=38)
    _, err = _run(pyrunc, bundle, "mkdir /tmp/x; touch /tmp/y", sec, 0)
    assert "Function not implemented" in err
    assert os.path.exists(os.path.join(bundle.rootfs, "tmp/y"))


# -- arguments -----------------------------------------------------------------------------

SIZES = [0, 1, 768, 999, 1000, 1001, 1024, 1 << 32, (1 << 32) + 1000]
OPS = {
    "SCMP_CMP_NE": lambda a, v, _: a != v,
    "SCMP_CMP_LT": lambda a, v, _: a < v,
    "SCMP_CMP_LE": lambda a, v, _: a <= v,
    "SCMP_CMP_EQ": lambda a, v, _: a == v,
    "SCMP_CMP_GE": lambda a, v, _: a >= v,
    "SCMP_CMP_GT": lambda a, v, _: a > v,
    "SCMP_CMP_MASKED_EQ": lambda a, v, v2: a & v == v2,
}


@pytest.mark.parametrize("op,value,value_two", [
    ("SCMP_CMP_NE", 1000, 0), ("SCMP_CMP_LT", 1000, 0), ("SCMP_CMP_LE", 1000, 0),
    ("SCMP_CMP_EQ", 1000, 0), ("SCMP_CMP_GE", 1000, 0), ("SCMP_CMP_GT", 1000, 0),
    ("SCMP_CMP_EQ", (1 << 32) + 1000, 0),  # the high 32 bits count
    ("SCMP_CMP_LT", 1 << 32, 0),
    ("SCMP_CMP_MASKED_EQ", 0xFF00, 0x0300),  # value is the mask, valueTwo the result
], ids=lambda x: hex(x) if isinstance(x, int) else x)
def test_arg_operators(pyrunc, bundle, op, value, value_two):
    """ftruncate(fd, size) from busybox `truncate -s`: denied exactly when arg 1 matches."""
    sec = _deny(["ftruncate"], args=[{"index": 1, "op": op, "value": value,
                                      "valueTwo": value_two}])
    script = "; ".join(f"truncate -s {s} /tmp/f 2>/dev/null && echo {s}:ok || echo {s}:no"
                       for s in SIZES)
    out, _ = _run(pyrunc, bundle, script, sec)
    want = [f"{s}:{'no' if OPS[op](s, value, value_two) else 'ok'}" for s in SIZES]
    assert out.split() == want


def test_args_on_different_indexes_are_anded(pyrunc, bundle):
    """kill(pid, sig) is denied only for pid 1 *and* signal 0 (the shell is pid 1)."""
    sec = _deny(["kill"], args=[{"index": 0, "op": "SCMP_CMP_EQ", "value": 1},
                                {"index": 1, "op": "SCMP_CMP_EQ", "value": 0}])
    script = ("sleep 30 & for t in '-0 1' '-0 $!' '-CONT 1'; do "
              "eval kill $t && echo ok || echo no; done; kill $!")
    out, err = _run(pyrunc, bundle, script, sec)
    assert out.split() == ["no", "ok", "ok"]
    assert "Operation not permitted" in err


def test_repeated_index_becomes_separate_rules(pyrunc, bundle):
    """libseccomp can't compare one argument twice in a rule: like runc, each condition
    then stands alone, so the rule matches when either does."""
    sec = _deny(["ftruncate"], args=[{"index": 1, "op": "SCMP_CMP_LT", "value": 10},
                                     {"index": 1, "op": "SCMP_CMP_GT", "value": 1000}])
    script = "; ".join(f"truncate -s {s} /tmp/f 2>/dev/null && echo ok || echo no"
                       for s in (5, 500, 2000))
    out, _ = _run(pyrunc, bundle, script, sec)
    assert out.split() == ["no", "ok", "no"]


def test_personality_arg(pyrunc, bundle):
    """The issue's example: deny personality(PER_LINUX32) only."""
    sec = _deny(["personality"], args=[{"index": 0, "op": "SCMP_CMP_EQ", "value": 8}])
    out, err = _run(pyrunc, bundle, "linux64 true && echo 64ok; linux32 true || echo 32no",
                    sec, writable=False)
    assert out.split() == ["64ok", "32no"]
    assert "Operation not permitted" in err


# -- no_new_privs and where the filter goes in --------------------------------------------

@pytest.mark.parametrize("nnp,sys_admin,uid", [
    (True, False, 0), (False, False, 0), (False, True, 0), (False, False, 1000),
    (True, False, 1000), (False, True, 1000)])
def test_no_new_privs(pyrunc, bundle, nnp, sys_admin, uid):
    proc = bundle.config["process"]
    proc["noNewPrivileges"] = nnp
    proc["user"] = {"uid": uid, "gid": uid}
    if sys_admin:
        for k in proc["capabilities"]:
            proc["capabilities"][k] = proc["capabilities"][k] + ["CAP_SYS_ADMIN"]
    out, err = _run(pyrunc, bundle, "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; "
                                    "mkdir /tmp/x", _deny(["mkdir"]), 1)
    st = _status(out)
    assert st == {"NoNewPrivs": "1" if nnp else "0", "Seccomp": "2"}
    assert "Operation not permitted" in err


def test_without_seccomp_nothing_is_loaded(pyrunc, bundle):
    out, _ = _run(pyrunc, bundle, "grep -E '^Seccomp:' /proc/self/status", None)
    assert out.strip() == "Seccomp:\t0"


# -- flags and architectures ---------------------------------------------------------------

@pytest.mark.parametrize("flags", [[], ["SECCOMP_FILTER_FLAG_TSYNC"],
                                   ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
                                   ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                                    "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]])
def test_flags_load(pyrunc, bundle, flags):
    sec = _deny(["mkdir"])
    sec["flags"] = flags
    out, err = _run(pyrunc, bundle, "grep '^Seccomp:' /proc/self/status; mkdir /tmp/x", sec, 1)
    assert out.strip() == "Seccomp:\t2" and "Operation not permitted" in err


@pytest.mark.skipif(not X86_64, reason="x86 architecture tokens")
def test_architectures_reach_the_filter():
    cfg = _deny(["mkdir"], errnoRet=38)
    cfg["architectures"] = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32",
                            "SCMP_ARCH_AARCH64"]
    f = seccomp.prepare(cfg, "linux.seccomp", {"noNewPrivileges": True})
    try:
        pfc = f.export_pfc()
    finally:
        f.release()
    assert re.findall(r"# filter for arch (\w+)", pfc) == ["x86_64", "x86", "x32", "aarch64"]
    assert f"if ($arch == {0x40000003})" in pfc and f"if ($arch == {0xC00000B7})" in pfc
    # mkdir by each architecture's own number: 83 on x86_64, 39 on i386, 0x40000053 on x32;
    # aarch64 has no mkdir, so libseccomp's placeholder number there (one no call carries)
    nrs = re.findall(r"if \(\$syscall == (\d+)\)\n\s+action ERRNO\(38\)", pfc)
    assert nrs[:3] == ["83", "39", str(0x40000000 + 83)]
    assert len(nrs) == 4 and int(nrs[3]) >= 1 << 31


def test_architecture_without_the_native_byte_order_is_refused():
    cfg = _deny(["mkdir"])
    cfg["architectures"] = ["SCMP_ARCH_X86_64" if not X86_64 else "SCMP_ARCH_AARCH64",
                            "SCMP_ARCH_S390X"]
    with pytest.raises(ConfigError, match=r"linux\.seccomp\.architectures\[1\]: cannot add"):
        seccomp.prepare(cfg, "linux.seccomp", {})


def test_wait_killable_recv_needs_libseccomp_2_6():
    cfg = _deny(["mkdir"])
    cfg["flags"] = ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
    major, minor = (int(x) for x in seccomp.version().split(".")[:2])
    if (major, minor) >= (2, 6):
        seccomp.prepare(cfg, "linux.seccomp", {}).release()
        return
    with pytest.raises(ConfigError, match=r"linux\.seccomp\.flags\[0\]: "
                       r"SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV is not supported"):
        seccomp.prepare(cfg, "linux.seccomp", {})


def test_rules_equal_to_the_default_are_dropped():
    cfg = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]}
    f = seccomp.prepare(cfg, "linux.seccomp", {})
    try:
        pfc = f.export_pfc()
    finally:
        f.release()
    assert '"mkdir"' not in pfc and '"rmdir"' in pfc and '"read"' in pfc


# -- bad configs ---------------------------------------------------------------------------

BAD = [
    ({"defaultAction": "SCMP_ACT_MAYBE"}, "linux.seccomp.defaultAction", "unknown action"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1},
     "linux.seccomp.defaultErrnoRet", "takes no errno"),
    ({"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                   {"names": ["mkdir"], "action": "SCMP_ACT_DENY"}]},
     "linux.seccomp.syscalls[1].action", "unknown action"),
    ({"syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]},
     "linux.seccomp.syscalls[0].errnoRet", "takes no errno"),
    ({"syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]},
     "linux.seccomp.syscalls[0].errnoRet", "0 to 65535"),
    ({"syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]},
     "linux.seccomp.syscalls[0].names", "non-empty"),
    ({"syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                             {"index": 1, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]},
     "linux.seccomp.syscalls[0].args[1].op", "unknown operator"),
    ({"syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]},
     "linux.seccomp.syscalls[0].args[0].index", "0 to 5"),
    ({"syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]},
     "linux.seccomp.syscalls[0].args[0].value", "64-bit"),
    ({"architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"]},
     "linux.seccomp.architectures[1]", "unknown architecture"),
    ({"flags": ["SECCOMP_FILTER_FLAG_FAST"]}, "linux.seccomp.flags[0]", "unknown flag"),
    ({"syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]},
     "linux.seccomp.listenerPath", "listenerPath is not set"),
    ({"syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}], "listenerPath": ""},
     "linux.seccomp.listenerPath", "listenerPath is not set"),
    ({"syscalls": [{"names": ["mkdir", "write"], "action": "SCMP_ACT_NOTIFY"}],
      "listenerPath": "/x"},
     "linux.seccomp.syscalls[0].names", "SCMP_ACT_NOTIFY cannot be used for the write syscall"),
    ({"listenerPath": 7}, "linux.seccomp.listenerPath", "must be a string"),
    ({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"},
     "linux.seccomp.defaultAction", "SCMP_ACT_NOTIFY cannot be used as default action"),
    ({"listenerMetadata": 5}, "linux.seccomp.listenerMetadata", "must be a string"),
]


@pytest.mark.parametrize("cfg,path,problem", BAD, ids=[c[1] + ":" + c[2] for c in BAD])
def test_check_names_the_json_path(cfg, path, problem):
    full = {"defaultAction": "SCMP_ACT_ALLOW", **cfg}
    with pytest.raises(ConfigError) as e:
        seccomp.check(full)
    assert e.value.path == path
    assert problem in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("cfg,path", [
    (BAD[2][0], BAD[2][1]),
    ({"architectures": ["SCMP_ARCH_S390X"]}, "linux.seccomp.architectures[0]"),
], ids=["bad-action", "foreign-arch"])
def test_bad_config_fails_create_and_leaves_nothing(pyrunc, bundle, cfg, path):
    bundle.config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", **cfg}
    bundle.write()
    cid = pyrunc.new_id()
    p = pyrunc("create", "--bundle", bundle.path, cid)
    assert p.returncode != 0
    err = p.stderr.decode().strip()
    assert f"{path}:" in err and len(err.splitlines()) == 1, err
    assert not os.path.exists(os.path.join(pyrunc.root, cid))
    assert pyrunc("state", cid).returncode != 0
    # the pyrunc fixture fails the test if a cgroup was left behind


def test_no_libseccomp_without_a_seccomp_section():
    """`create` never pays for libseccomp unless the config has a seccomp section."""
    code = ("import sys, runtime.cli, runtime.create, runtime.init; "
            "print('runtime.linux.seccomp' in sys.modules, "
            "'libseccomp' in open('/proc/self/maps').read())")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["False", "False"]


# -- SCMP_ACT_NOTIFY -----------------------------------------------------------------------

_NOTIF_SIZE, _RESP_SIZE = 80, 24  # struct seccomp_notif, struct seccomp_notif_resp
_IOCTL_RECV = (3 << 30) | (_NOTIF_SIZE << 16) | (ord("!") << 8) | 0
_IOCTL_SEND = (3 << 30) | (_RESP_SIZE << 16) | (ord("!") << 8) | 1


class Agent(threading.Thread):
    """A seccomp agent: takes the fd from the runtime and answers every notification with
    -reply_errno."""

    def __init__(self, path: str, reply_errno: int) -> None:
        super().__init__(daemon=True)
        self.reply_errno = reply_errno
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(1)
        self.srv.settimeout(30)
        self.message: dict | None = None
        self.fd_names: list[str] = []
        self.seen: list[tuple[int, int]] = []  # (syscall nr, arch)
        self.error: BaseException | None = None

    def run(self) -> None:
        import fcntl
        try:
            conn, _ = self.srv.accept()
            with conn:
                conn.settimeout(30)
                data, fds, _, _ = socket.recv_fds(conn, 65536, 4)
                while chunk := conn.recv(65536):
                    data += chunk
            self.message = json.loads(data)
            assert len(fds) == 1, fds
            fd = fds[0]
            poll = select.poll()
            poll.register(fd, select.POLLIN)
            done = False
            while not done:
                events = poll.poll(30000)
                if not events:
                    raise TimeoutError("no notification and no hangup in 30 s")
                for _, ev in events:
                    if ev & select.POLLIN:
                        buf = bytearray(_NOTIF_SIZE)
                        try:
                            fcntl.ioctl(fd, _IOCTL_RECV, buf, True)
                        except OSError:
                            continue  # the caller went away meanwhile
                        nid, _pid, _flags, nr, arch = struct.unpack_from("=QIIiI", buf)
                        self.seen.append((nr, arch))
                        resp = bytearray(struct.pack("=QqiI", nid, 0, -self.reply_errno, 0))
                        fcntl.ioctl(fd, _IOCTL_SEND, resp, True)
                    if ev & (select.POLLHUP | select.POLLERR):
                        done = True
            os.close(fd)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e
        finally:
            self.srv.close()


@pytest.mark.parametrize("nnp", [True, False], ids=["nnp", "no-nnp"])
def test_notify_hands_the_fd_to_the_agent(pyrunc, bundle, tmp_path, nnp):
    sock = str(tmp_path / "agent.sock")
    agent = Agent(sock, reply_errno=18)  # EXDEV
    agent.start()
    sec = _deny(["mkdir"], "SCMP_ACT_NOTIFY")
    sec.update(listenerPath=sock, listenerMetadata="hello agent")
    bundle.config["process"]["noNewPrivileges"] = nnp
    pidfile = str(tmp_path / "pid")
    out, err = _run(pyrunc, bundle, "mkdir /tmp/x; echo rc=$?; touch /tmp/y; echo rc=$?", sec,
                    extra=("--pid-file", pidfile))
    agent.join(40)
    assert not agent.is_alive() and agent.error is None, agent.error
    assert out.split() == ["rc=1", "rc=0"]
    assert "can't create directory '/tmp/x': Invalid cross-device link" in err
    assert not os.path.exists(os.path.join(bundle.rootfs, "tmp/x"))
    msg = agent.message
    pid = int(open(pidfile).read())
    assert msg["fds"] == ["seccompFd"] and msg["metadata"] == "hello agent"
    assert msg["pid"] == pid and msg["state"]["pid"] == pid
    assert msg["state"]["status"] == "creating" and msg["state"]["id"] in pyrunc.ids
    assert msg["state"]["bundle"] == bundle.path and msg["ociVersion"]
    if X86_64:
        assert agent.seen == [(NR_MKDIR, 0xC000003E)]


def test_notify_listener_missing_fails_create(pyrunc, bundle, tmp_path):
    sec = _deny(["mkdir"], "SCMP_ACT_NOTIFY")
    sec["listenerPath"] = str(tmp_path / "nobody.sock")
    bundle.config["linux"]["seccomp"] = copy.deepcopy(sec)
    bundle.write()
    cid = pyrunc.new_id()
    p = pyrunc("create", "--bundle", bundle.path, cid)
    assert p.returncode != 0
    assert ("linux.seccomp.listenerPath: failed to connect with seccomp agent specified in "
            "the seccomp profile: " in p.stderr.decode())
    assert not os.path.exists(os.path.join(pyrunc.root, cid))
