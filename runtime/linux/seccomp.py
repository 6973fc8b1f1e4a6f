"""linux.seccomp: the OCI seccomp section compiled by libseccomp (through ctypes).

Two steps, because the init loses the host's files at pivot_root and its privileges at the
uid switch:

- `prepare(cfg, where, proc, state)`, early in the init (after the parent's "go", before any
  namespace is joined and before pivot_root): checks the section, dlopens libseccomp,
  resolves syscall names and builds the filter context. Config errors name the JSON path.
- `Filter.load()`, as late as the kernel lets us: right before the init reports "ready"
  (after the uid switch, capabilities and no_new_privs), or, when `Filter.early` is true,
  just before the uid switch. A filter without no_new_privs needs CAP_SYS_ADMIN at load
  time, so without noNewPrivileges and without CAP_SYS_ADMIN in the process's effective set
  it must go in while the init still holds it (runc does the same).

Nothing here touches libseccomp at import time: a config without seccomp never loads it.

Readings shared with runc, where the spec is silent:
- syscall names unknown to this libseccomp are skipped (older/newer kernels, other arches);
- a rule whose action equals the default action is skipped (libseccomp refuses it);
- several conditions on one rule are ANDed, but libseccomp can't compare one argument twice
  in a rule, so when an index repeats each condition becomes a rule of its own (OR);
- SCMP_CMP_MASKED_EQ: `value` is the mask, `valueTwo` the expected result;
- without a `flags` list, SECCOMP_FILTER_FLAG_SPEC_ALLOW is set when supported;
- the filter never sets no_new_privs itself; process.noNewPrivileges does that;
- under a denying default action, syscalls numbered above the highest one the profile names
  get -ENOSYS instead (linux/seccomp_bpf.py puts that prologue in front of the filter).
"""

from __future__ import annotations

import ctypes
import os
import sys

from runtime.errors import ConfigError, PyruncError

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

# Action values from seccomp.h; ERRNO and TRACE carry 16 bits of data.
ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,  # = KILL_THREAD
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
    "SCMP_ACT_NOTIFY": 0x7FC00000,
}
_WITH_DATA = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
EPERM = 1

OPERATORS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
             "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}

# OCI name -> libseccomp's own name, resolved by seccomp_arch_resolve_name at prepare time,
# so whether an architecture is usable is this libseccomp's call.
ARCHES = {f"SCMP_ARCH_{n.upper()}": n for n in (
    "x86", "x86_64", "x32", "arm", "aarch64", "loongarch64", "m68k", "mips", "mips64",
    "mips64n32", "mipsel", "mipsel64", "mipsel64n32", "ppc", "ppc64", "ppc64le", "s390",
    "s390x", "parisc", "parisc64", "riscv64", "sh", "sheb")}

# enum scmp_filter_attr
_ATTR_CTL_NNP = 3
_ATTR_CTL_TSYNC = 4
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_ATTR_CTL_WAITKILL = 10  # libseccomp >= 2.6
FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": _ATTR_CTL_TSYNC,
         "SECCOMP_FILTER_FLAG_LOG": _ATTR_CTL_LOG,
         "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _ATTR_CTL_SSB,
         "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": _ATTR_CTL_WAITKILL}

MAX_ARGS = 6
_U64 = (1 << 64) - 1

_NR_SCMP_ERROR = -1


class _ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp"""
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


_lib: Any = None


def _load_lib() -> Any:
    global _lib
    if _lib is not None:
        return _lib
    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError as e:
        raise PyruncError(f"linux.seccomp: cannot load libseccomp.so.2 ({e}); "
                          "install libseccomp2") from None
    vp, u32, i, cp = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_char_p
    protos = {
        "seccomp_init": (vp, [u32]),
        "seccomp_release": (None, [vp]),
        "seccomp_load": (i, [vp]),
        "seccomp_attr_set": (i, [vp, i, u32]),
        "seccomp_arch_resolve_name": (u32, [cp]),
        "seccomp_arch_native": (u32, []),
        "seccomp_arch_add": (i, [vp, u32]),
        "seccomp_arch_exist": (i, [vp, u32]),
        "seccomp_syscall_resolve_name": (i, [cp]),
        "seccomp_syscall_resolve_name_arch": (i, [u32, cp]),
        "seccomp_attr_get": (i, [vp, i, ctypes.POINTER(u32)]),
        "seccomp_export_bpf": (i, [vp, i]),
        "seccomp_rule_add_array": (i, [vp, u32, i, ctypes.c_uint, ctypes.POINTER(_ArgCmp)]),
        "seccomp_notify_fd": (i, [vp]),
        "seccomp_export_pfc": (i, [vp, i]),
        "seccomp_version": (ctypes.POINTER(_Version), []),
    }
    for name, (res, args) in protos.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    _lib = lib
    return lib


def version() -> str:
    v = _load_lib().seccomp_version().contents
    return f"{v.major}.{v.minor}.{v.micro}"


def _is_uint(v: Any, top: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= top


def _action(name: Any, ret: Any, path: str, ret_path: str, default_ret: int) -> int:
    if not isinstance(name, str) or name not in ACTIONS:
        raise ConfigError(path, f"unknown action {name!r}")
    if ret is not None:
        if name not in _WITH_DATA:
            raise ConfigError(ret_path, f"{name} takes no errno (only SCMP_ACT_ERRNO and "
                              "SCMP_ACT_TRACE do)")
        if not _is_uint(ret, 0xFFFF):
            raise ConfigError(ret_path, "must be an integer from 0 to 65535")
    value = ACTIONS[name]
    if name in _WITH_DATA:
        value |= default_ret if ret is None else ret
    return value


def _conditions(args: Any, path: str) -> list[tuple[int, int, int, int]]:
    if args is None:
        return []
    if not isinstance(args, list):
        raise ConfigError(path, "must be an array")
    out = []
    for i, a in enumerate(args):
        p = f"{path}[{i}]"
        if not isinstance(a, dict):
            raise ConfigError(p, "must be an object")
        if not _is_uint(a.get("index"), MAX_ARGS - 1):
            raise ConfigError(f"{p}.index", f"must be an integer from 0 to {MAX_ARGS - 1}")
        if not isinstance(a.get("op"), str) or a["op"] not in OPERATORS:
            raise ConfigError(f"{p}.op", f"unknown operator {a.get('op')!r}")
        if not _is_uint(a.get("value"), _U64):
            raise ConfigError(f"{p}.value", "must be an unsigned 64-bit integer")
        two = a.get("valueTwo", 0)
        if not _is_uint(two, _U64):
            raise ConfigError(f"{p}.valueTwo", "must be an unsigned 64-bit integer")
        out.append((a["index"], OPERATORS[a["op"]], a["value"], two))
    return out


class Plan:
    """The section checked and turned into numbers; no libseccomp involved."""

    def __init__(self) -> None:
        self.default = 0
        self.arches: list[tuple[str, str]] = []  # (JSON path, libseccomp name)
        self.flags: list[tuple[str, str]] | None = None  # (JSON path, OCI flag); None: unset
        # (JSON path, names, action, conditions)
        self.rules: list[tuple[str, list[str], int, list[tuple[int, int, int, int]]]] = []
        self.notify = False
        self.listener_path = ""
        self.listener_metadata = ""


def check(cfg: Any, where: str = "linux.seccomp") -> Plan:
    """Check the section and turn it into numbers. Pure Python: cheap enough for the parent
    to call before it clones, so a bad config fails before any process exists."""
    if not isinstance(cfg, dict):
        raise ConfigError(where, "must be an object")
    plan = Plan()
    default_ret = cfg.get("defaultErrnoRet")
    plan.default = _action(cfg.get("defaultAction"), default_ret, f"{where}.defaultAction",
                           f"{where}.defaultErrnoRet", EPERM)
    if cfg.get("defaultAction") == "SCMP_ACT_NOTIFY":
        raise ConfigError(f"{where}.defaultAction", "SCMP_ACT_NOTIFY cannot be used as "
                          "default action (the init itself would wait on the agent)")
    arches = cfg.get("architectures") or []
    if not isinstance(arches, list):
        raise ConfigError(f"{where}.architectures", "must be an array")
    for i, a in enumerate(arches):
        if not isinstance(a, str) or a not in ARCHES:
            raise ConfigError(f"{where}.architectures[{i}]", f"unknown architecture {a!r}")
        plan.arches.append((f"{where}.architectures[{i}]", ARCHES[a]))
    flags = cfg.get("flags")
    if flags is not None:
        if not isinstance(flags, list):
            raise ConfigError(f"{where}.flags", "must be an array")
        for i, f in enumerate(flags):
            if not isinstance(f, str) or f not in FLAGS:
                raise ConfigError(f"{where}.flags[{i}]", f"unknown flag {f!r}")
        plan.flags = [(f"{where}.flags[{i}]", f) for i, f in enumerate(flags)]
    calls = cfg.get("syscalls") or []
    if not isinstance(calls, list):
        raise ConfigError(f"{where}.syscalls", "must be an array")
    for i, call in enumerate(calls):
        p = f"{where}.syscalls[{i}]"
        if not isinstance(call, dict):
            raise ConfigError(p, "must be an object")
        names = call.get("names")
        if (not isinstance(names, list) or not names
                or not all(isinstance(n, str) and n for n in names)):
            raise ConfigError(f"{p}.names", "must be a non-empty array of syscall names")
        action = _action(call.get("action"), call.get("errnoRet"), f"{p}.action",
                         f"{p}.errnoRet", EPERM)
        if call["action"] == "SCMP_ACT_NOTIFY":
            plan.notify = True
            if "write" in names:  # the init reports over a pipe after the load, as runc's
                raise ConfigError(f"{p}.names", "SCMP_ACT_NOTIFY cannot be used for the "
                                  "write syscall")
            if "sendmsg" in names:
                raise ConfigError(f"{p}.names", "sendmsg can't be notified: the init needs "
                                  "it to hand the listener its fd")
        plan.rules.append((p, names, action, _conditions(call.get("args"), f"{p}.args")))
    lp, meta = cfg.get("listenerPath"), cfg.get("listenerMetadata")
    if lp is not None and not isinstance(lp, str):
        raise ConfigError(f"{where}.listenerPath", "must be a string (a unix socket path, "
                          "@name for an abstract one)")
    if plan.notify and not lp:
        raise ConfigError(f"{where}.listenerPath", "listenerPath is not set "
                          "(SCMP_ACT_NOTIFY needs a listenerPath)")
    if meta is not None and not isinstance(meta, str):  # unused without a listener, as in runc
        raise ConfigError(f"{where}.listenerMetadata", "must be a string")
    plan.listener_path, plan.listener_metadata = lp or "", meta or ""
    return plan


def _holds_sys_admin(proc: dict[str, Any]) -> bool:
    """Whether CAP_SYS_ADMIN stays in the effective set after the process's caps apply."""
    effective = (proc.get("capabilities") or {}).get("effective") or []
    return any(isinstance(c, str) and c.upper() in ("CAP_SYS_ADMIN", "SYS_ADMIN")
               for c in effective)


class Filter:
    """A built libseccomp context, ready to load."""

    def __init__(self, lib: Any, ctx: int, where: str, early: bool) -> None:
        self._lib = lib
        self._ctx = ctx
        self.where = where
        self.early = early  # load before the uid switch and capability drop
        self.skipped: list[str] = []  # names this libseccomp doesn't know
        self._listener: Any = None  # a connected socket.socket, for SCMP_ACT_NOTIFY
        self._message = b""
        self._program: Any = None  # a seccomp_bpf.Program when the -ENOSYS prologue applies
        self.loaded = False

    def load(self) -> None:
        """Install the filter in this process (and, with TSYNC, its threads). No imports and
        no file opens: this runs after pivot_root and perhaps as an unprivileged uid."""
        if self.loaded:
            return
        notify_fd = -1
        if self._program is not None:
            try:
                notify_fd = self._program.install()
                rc = 0
            except OSError as e:
                rc = -(e.errno or 22)  # EINVAL if the error carries none
        else:
            rc = self._lib.seccomp_load(self._ctx)
        if rc < 0:
            hint = ""
            if -rc == 13:  # EACCES
                hint = " (without noNewPrivileges, loading needs CAP_SYS_ADMIN)"
            raise PyruncError(f"{self.where}: cannot load the filter: "
                              f"{os.strerror(-rc)}{hint}")
        self.loaded = True
        if self._listener is not None:
            self._send_notify_fd(notify_fd)

    def _send_notify_fd(self, fd: int) -> None:
        if fd < 0:
            fd = self._lib.seccomp_notify_fd(self._ctx)
        if fd < 0:
            raise PyruncError(f"{self.where}: no seccomp notify fd: {os.strerror(-fd)}")
        sock, self._listener = self._listener, None
        try:
            rights = [(1, 1, fd.to_bytes(4, sys.byteorder))]  # SOL_SOCKET, SCM_RIGHTS
            sent = sock.sendmsg([self._message], rights)
            if sent < len(self._message):
                sock.sendall(self._message[sent:])
        except OSError as e:
            raise PyruncError(f"{self.where}.listenerPath: cannot send the seccomp fd: "
                              f"{e.strerror}") from None
        finally:
            sock.close()
            os.close(fd)

    def release(self) -> None:
        if self._ctx:
            self._lib.seccomp_release(self._ctx)
            self._ctx = 0
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def export_pfc(self) -> str:
        """libseccomp's pseudo-C rendering of the filter, for tests and debugging."""
        fd = os.memfd_create("seccomp-pfc")
        try:
            rc = self._lib.seccomp_export_pfc(self._ctx, fd)
            if rc < 0:
                raise OSError(-rc, os.strerror(-rc))
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks).decode()
        finally:
            os.close(fd)


def prepare(cfg: Any, where: str = "linux.seccomp", proc: dict[str, Any] | None = None,
            state: dict[str, Any] | None = None) -> Filter:
    """Check the section and build the filter; call before pivot_root. `proc` is the OCI
    process (noNewPrivileges, capabilities); `state` the container state, sent to the
    listener with SCMP_ACT_NOTIFY."""
    plan = check(cfg, where)
    proc = proc or {}
    nnp = bool(proc.get("noNewPrivileges"))
    lib = _load_lib()
    ctx = lib.seccomp_init(plan.default)
    if not ctx:
        raise PyruncError(f"{where}.defaultAction: libseccomp refused the default action")
    filt = Filter(lib, ctx, where, early=not nnp and not _holds_sys_admin(proc))
    try:
        _build(lib, ctx, plan, nnp, where, filt)
        filt._program = _with_prologue(lib, ctx, plan, where)
        if plan.notify:
            _connect_listener(filt, plan, state or {}, where)
    except BaseException:
        filt.release()
        raise
    return filt


def _build(lib: Any, ctx: int, plan: Plan, nnp: bool, where: str, filt: Filter) -> None:
    _attr(lib, ctx, _ATTR_CTL_NNP, int(nnp), where, "no_new_privs")
    for path, name in plan.arches:
        token = lib.seccomp_arch_resolve_name(name.encode())
        if not token:
            raise ConfigError(path, f"architecture not supported by libseccomp {version()}")
        rc = lib.seccomp_arch_add(ctx, token)
        if rc == -17:  # EEXIST: the native one is there from seccomp_init
            continue
        if rc < 0:
            raise ConfigError(path, f"cannot add architecture: {os.strerror(-rc)}"
                              + (" (its byte order differs from the native one)"
                                 if rc == -33 else ""))
    if plan.flags is None:
        lib.seccomp_attr_set(ctx, _ATTR_CTL_SSB, 1)  # runc's default; fine to lack
    else:
        for path, flag in plan.flags:
            rc = lib.seccomp_attr_set(ctx, FLAGS[flag], 1)
            if rc < 0:
                raise ConfigError(path, f"{flag} is not supported by libseccomp "
                                  f"{version()} or this kernel ({os.strerror(-rc)})")
    for path, names, action, conds in plan.rules:
        if action == plan.default:
            continue
        groups = _split(conds)
        for name in names:
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr == _NR_SCMP_ERROR:
                filt.skipped.append(name)
                continue
            for group in groups:
                arr = (_ArgCmp * max(len(group), 1))(*[_ArgCmp(*c) for c in group])
                rc = lib.seccomp_rule_add_array(ctx, action, nr, len(group), arr)
                if rc < 0:
                    raise ConfigError(path, f"cannot add the rule for {name}: "
                                      f"{os.strerror(-rc)}")


def _with_prologue(lib: Any, ctx: int, plan: Plan, where: str) -> Any:
    """The filter behind the -ENOSYS prologue (see linux/seccomp_bpf.py), or None when the
    default action lets unknown syscalls through or no listed architecture has a rule."""
    from runtime.linux import seccomp_bpf as bpf
    if not bpf.needs_prologue(plan.default):
        return None
    tokens = [lib.seccomp_arch_resolve_name(name.encode()) for _path, name in plan.arches]
    names = [n for _path, ns, _action, _conds in plan.rules for n in ns]
    head = bpf.prologue(bpf.highest_syscalls(lib, tokens, names))
    if not head:
        return None
    fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    try:
        rc = lib.seccomp_export_bpf(ctx, fd)
        if rc < 0:
            raise PyruncError(f"{where}: libseccomp cannot export the filter: "
                              f"{os.strerror(-rc)}")
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    flags = 0
    for attr, flag in ((_ATTR_CTL_TSYNC, bpf.FLAG_TSYNC), (_ATTR_CTL_LOG, bpf.FLAG_LOG),
                       (_ATTR_CTL_SSB, bpf.FLAG_SPEC_ALLOW),
                       (_ATTR_CTL_WAITKILL, bpf.FLAG_WAIT_KILLABLE_RECV)):
        value = ctypes.c_uint32(0)
        if lib.seccomp_attr_get(ctx, attr, ctypes.byref(value)) == 0 and value.value:
            flags |= flag
    if plan.notify:
        flags |= bpf.FLAG_NEW_LISTENER
        if flags & bpf.FLAG_TSYNC:
            flags |= bpf.FLAG_TSYNC_ESRCH  # TSYNC alone would return a tid, not the fd
    return bpf.Program(bpf.pack(head) + b"".join(chunks), flags,
                       lib.seccomp_syscall_resolve_name(b"seccomp"))


def _split(conds: list[tuple[int, int, int, int]]) -> list[list[tuple[int, int, int, int]]]:
    """One rule with every condition (AND), unless an argument index repeats: libseccomp
    rejects that, so then one rule per condition, as runc does."""
    if len({c[0] for c in conds}) == len(conds):
        return [conds]
    return [[c] for c in conds]


def _attr(lib: Any, ctx: int, attr: int, value: int, where: str, what: str) -> None:
    rc = lib.seccomp_attr_set(ctx, attr, value)
    if rc < 0:
        raise PyruncError(f"{where}: libseccomp {version()} cannot set {what}: "
                          f"{os.strerror(-rc)}")


# listenerPath -> an fd connected by `create` before it cloned the init (see dial_agent)
_dialed: dict[str, int] = {}


def dial_agent(cfg: Any, bundle: str, where: str = "linux.seccomp") -> list[int]:
    """In `create`, before the clone: connect to the agent from the host's network namespace
    (an abstract @name lives there, as runc dials it) when the profile notifies; a relative
    path is taken from the bundle, runc's working directory. The init, a clone of this
    process, takes the connection over; the caller closes the returned fds once the init
    exists. Config errors come first, as they would from the init."""
    plan = check(cfg, where)
    if not plan.notify:
        return []
    path = plan.listener_path
    if not path.startswith(("/", "@")):
        path = os.path.join(bundle, path)
    sock = _dial(path, where)
    fd = sock.detach()
    _dialed[plan.listener_path] = fd
    return [fd]


def _dial(path: str, where: str) -> Any:
    import socket
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:  # "@name": abstract
        sock.connect("\0" + path[1:] if path.startswith("@") else path)
    except OSError as e:
        sock.close()
        raise PyruncError(f"{where}.listenerPath: failed to connect with seccomp agent "
                          f"specified in the seccomp profile: {path}: {e.strerror}") from None
    return sock


def _connect_listener(filt: Filter, plan: Plan, state: dict[str, Any], where: str) -> None:
    """Connect to the agent now, while its path is reachable; the fd goes over after load.
    `create` dialed already (dial_agent); `exec` dials here, on the host side.
    The payload is the spec's container process state, built from `state` as given (the
    init's is the "creating" state the parent sent with "go")."""
    import json
    import socket
    msg = {"ociVersion": state.get("ociVersion", ""), "fds": ["seccompFd"],
           "pid": state.get("pid", 0), "state": state}
    if plan.listener_metadata:
        msg["metadata"] = plan.listener_metadata
    filt._message = json.dumps(msg).encode()
    fd = _dialed.pop(plan.listener_path, None)
    sock = (socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=fd) if fd is not None
            else _dial(plan.listener_path, where))
    filt._listener = sock
