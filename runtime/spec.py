"""config.json: load it, check the fields the runtime acts on, and make runc-like defaults.

The checks here are hand-written and cheap so that `create` never imports jsonschema; the
full schema check lives in runtime/validate.py (`pyrunc validate`). Every problem names the
JSON path of the bad field, e.g. ``config.json: process.args: must be a non-empty array``.
"""

from __future__ import annotations

import os

from runtime import jsonio
from runtime.errors import ConfigError

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

Spec = dict  # dict[str, Any]: the parsed config.json

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def load(bundle: str) -> Spec:
    """Read and check <bundle>/config.json; raise ConfigError naming the bad field."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ConfigError("", f"not found in bundle {bundle}") from None
    except OSError as e:
        raise ConfigError("", f"cannot read: {e.strerror}") from None
    try:
        spec = jsonio.loads(raw)
    except ValueError as e:
        raise ConfigError("", f"invalid JSON: {e}") from None
    check(spec)
    for m in spec.get("mounts", []):
        if not m["destination"].startswith("/"):
            m["relativeDestination"] = m["destination"]
            m["destination"] = "/" + m["destination"]
    return spec


def relative_mounts(spec: Spec) -> list[str]:
    """The mount destinations config.json gave as relative paths (anchored at "/" by load)."""
    return [m["relativeDestination"] for m in spec.get("mounts", [])
            if "relativeDestination" in m]


def _want(cond: bool, path: str, problem: str) -> None:
    if not cond:
        raise ConfigError(path, problem)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def check(spec: Any) -> None:
    """The semantic checks `create` needs; the schema in specs/ is the complete contract."""
    _want(isinstance(spec, dict), "", "must be a JSON object")
    _want(isinstance(spec.get("ociVersion"), str), "ociVersion", "must be a string")
    root = spec.get("root")
    _want(isinstance(root, dict), "root", "must be an object with a path")
    _want(isinstance(root.get("path"), str) and root["path"] != "", "root.path",
          "must be a non-empty string")
    _want(isinstance(root.get("readonly", False), bool), "root.readonly", "must be a boolean")
    # process is OPTIONAL for create; `start` refuses a container created without one.
    if "process" in spec:
        _want(isinstance(spec["process"], dict), "process", "must be an object")
        check_process(spec["process"], "process")
    _want(isinstance(spec.get("hostname", ""), str), "hostname", "must be a string")
    _want(isinstance(spec.get("domainname", ""), str), "domainname", "must be a string")
    mounts = spec.get("mounts", [])
    _want(isinstance(mounts, list), "mounts", "must be an array")
    for i, m in enumerate(mounts):
        p = f"mounts[{i}]"
        _want(isinstance(m, dict), p, "must be an object")
        dest = m.get("destination")
        # runtime-spec 1.1+: on Linux a relative destination is relative to "/" (create
        # warns, as runc does); relative_mounts() lists them and load() anchors them
        _want(isinstance(dest, str) and dest != "", f"{p}.destination",
              "must be a path in the container")
        _want(isinstance(m.get("type", ""), str), f"{p}.type", "must be a string")
        _want(isinstance(m.get("source", ""), str), f"{p}.source", "must be a string")
        _want(_str_list(m.get("options", [])), f"{p}.options", "must be an array of strings")
    _check_hooks(spec.get("hooks"))
    ann = spec.get("annotations", {})
    _want(isinstance(ann, dict) and all(isinstance(v, str) for v in ann.values()),
          "annotations", "must be an object of strings")
    linux = spec.get("linux", {})
    _want(isinstance(linux, dict), "linux", "must be an object")
    _check_linux(linux, spec)


def check_process(proc: dict[str, Any], p: str) -> None:
    args = proc.get("args")
    _want(_str_list(args) and bool(args), f"{p}.args", "must be a non-empty array of strings")
    _want(_str_list(proc.get("env", [])), f"{p}.env", "must be an array of strings")
    for i, e in enumerate(proc.get("env", [])):
        _want("=" in e and not e.startswith("="), f"{p}.env[{i}]", f"{e!r} is not KEY=VALUE")
    cwd = proc.get("cwd", "/")
    _want(isinstance(cwd, str) and cwd.startswith("/"), f"{p}.cwd", "must be an absolute path")
    _want(isinstance(proc.get("terminal", False), bool), f"{p}.terminal", "must be a boolean")
    user = proc.get("user", {})
    _want(isinstance(user, dict), f"{p}.user", "must be an object")
    for k in ("uid", "gid"):
        _want(_is_int(user.get(k, 0)) and user.get(k, 0) >= 0, f"{p}.user.{k}",
              "must be a non-negative integer")
    if "umask" in user:
        _want(_is_int(user["umask"]) and 0 <= user["umask"] <= 0o777, f"{p}.user.umask",
              "must be an integer from 0 to 0777")
    gids = user.get("additionalGids", [])
    _want(isinstance(gids, list) and all(_is_int(g) and g >= 0 for g in gids),
          f"{p}.user.additionalGids", "must be an array of non-negative integers")
    caps = proc.get("capabilities", {})
    _want(isinstance(caps, dict), f"{p}.capabilities", "must be an object")
    for k, v in caps.items():
        # Unknown sets are ignored: the spec says runtimes must not fail on unknown properties.
        if k in ("bounding", "effective", "inheritable", "permitted", "ambient"):
            _want(_str_list(v), f"{p}.capabilities.{k}", "must be an array of strings")
    rl = proc.get("rlimits", [])
    _want(isinstance(rl, list), f"{p}.rlimits", "must be an array")
    seen: set[str] = set()
    for i, r in enumerate(rl):
        rp = f"{p}.rlimits[{i}]"
        _want(isinstance(r, dict), rp, "must be an object")
        t = r.get("type")
        _want(isinstance(t, str) and t.startswith("RLIMIT_"), f"{rp}.type",
              "must be an RLIMIT_* name")
        _want(t not in seen, f"{rp}.type", f"{t} given twice")
        seen.add(t)
        for k in ("soft", "hard"):
            _want(_is_int(r.get(k)) and r[k] >= 0, f"{rp}.{k}", "must be a non-negative integer")
    if "oomScoreAdj" in proc:
        _want(_is_int(proc["oomScoreAdj"]) and -1000 <= proc["oomScoreAdj"] <= 1000,
              f"{p}.oomScoreAdj", "must be an integer from -1000 to 1000")
    _want(isinstance(proc.get("noNewPrivileges", False), bool), f"{p}.noNewPrivileges",
          "must be a boolean")
    if proc.get("apparmorProfile"):
        _want(os.path.exists("/sys/module/apparmor/parameters/enabled"),
              f"{p}.apparmorProfile", "AppArmor is not enabled on this host")
    if proc.get("selinuxLabel"):
        # Refused, as runc does: running unconfined is not what a process label asks for.
        # (linux.mountLabel is only warned about: create.py.)
        _want(selinux_enabled(), f"{p}.selinuxLabel", "SELinux is not enabled on this host")
    if any(proc.get(k) is not None for k in ("scheduler", "ioPriority", "execCPUAffinity")):
        from runtime.linux import process_attrs  # only for configs that use these fields
        process_attrs.check_process(proc, p)


def selinux_enabled() -> bool:
    """selinuxfs is mounted where libselinux looks for it."""
    return os.path.exists("/sys/fs/selinux/enforce")


def _check_hooks(hooks: Any) -> None:
    if hooks is None:
        return
    _want(isinstance(hooks, dict), "hooks", "must be an object")
    for kind, lst in hooks.items():
        if kind not in ("prestart", "createRuntime", "createContainer", "startContainer",
                        "poststart", "poststop"):
            continue  # unknown properties must not fail (runtime-spec config.md)
        _want(isinstance(lst, list), f"hooks.{kind}", "must be an array")
        for i, h in enumerate(lst):
            hp = f"hooks.{kind}[{i}]"
            _want(isinstance(h, dict), hp, "must be an object")
            _want(isinstance(h.get("path"), str) and h["path"].startswith("/"), f"{hp}.path",
                  "must be an absolute path")
            _want(_str_list(h.get("args", [])), f"{hp}.args", "must be an array of strings")
            _want(_str_list(h.get("env", [])), f"{hp}.env", "must be an array of strings")
            if "timeout" in h:
                _want(_is_int(h["timeout"]) and h["timeout"] > 0, f"{hp}.timeout",
                      "must be a positive integer")


def _check_linux(linux: dict[str, Any], spec: Spec) -> None:
    nss = linux.get("namespaces", [])
    _want(isinstance(nss, list), "linux.namespaces", "must be an array")
    seen: set[str] = set()
    for i, ns in enumerate(nss):
        p = f"linux.namespaces[{i}]"
        _want(isinstance(ns, dict), p, "must be an object")
        t = ns.get("type")
        _want(t in NAMESPACE_TYPES, f"{p}.type", f"unknown namespace type {t!r}")
        _want(t not in seen, f"{p}.type", f"namespace {t} given twice")
        seen.add(t)
        if "path" in ns:
            _want(isinstance(ns["path"], str) and ns["path"].startswith("/"), f"{p}.path",
                  "must be an absolute path")
    for key in ("uidMappings", "gidMappings"):
        maps = linux.get(key, [])
        _want(isinstance(maps, list), f"linux.{key}", "must be an array")
        for i, m in enumerate(maps):
            p = f"linux.{key}[{i}]"
            _want(isinstance(m, dict), p, "must be an object")
            for k in ("containerID", "hostID", "size"):
                _want(_is_int(m.get(k)) and m[k] >= 0, f"{p}.{k}",
                      "must be a non-negative integer")
            _want(m["size"] > 0, f"{p}.size", "must be at least 1")
        if maps:
            _want("user" in seen, f"linux.{key}", "mappings need a user namespace")
    if "user" in seen and not any(n.get("path") for n in nss if n.get("type") == "user"):
        _want(bool(linux.get("uidMappings")) and bool(linux.get("gidMappings")),
              "linux.uidMappings", "a new user namespace needs uidMappings and gidMappings")
    if spec.get("hostname") and "uts" not in seen:
        raise ConfigError("hostname", "setting a hostname needs a uts namespace")
    sysctl = linux.get("sysctl", {})
    _want(isinstance(sysctl, dict) and all(isinstance(v, str) for v in sysctl.values()),
          "linux.sysctl", "must be an object of strings")
    for key in sysctl:
        _check_sysctl(key, {n.get("type"): n.get("path", "") for n in nss})
    devs = linux.get("devices", [])
    _want(isinstance(devs, list), "linux.devices", "must be an array")
    for i, d in enumerate(devs):
        p = f"linux.devices[{i}]"
        _want(isinstance(d, dict), p, "must be an object")
        _want(isinstance(d.get("path"), str) and d["path"].startswith("/dev/"), f"{p}.path",
              "must be an absolute path under /dev")
        _want(d.get("type") in ("c", "b", "u", "p"), f"{p}.type", "must be one of c, b, u, p")
        if d.get("type") != "p":
            for k in ("major", "minor"):
                _want(_is_int(d.get(k)), f"{p}.{k}", "must be an integer")
    for key in ("maskedPaths", "readonlyPaths"):
        paths = linux.get(key, [])
        _want(_str_list(paths), f"linux.{key}", "must be an array of strings")
        for i, path in enumerate(paths):
            _want(path.startswith("/"), f"linux.{key}[{i}]", "must be an absolute path")
    prop = linux.get("rootfsPropagation", "")
    _want(prop in ("", "shared", "slave", "private", "rshared", "rslave", "rprivate",
                   "unbindable", "runbindable"), "linux.rootfsPropagation",
          f"unknown propagation {prop!r}")
    _want(isinstance(linux.get("cgroupsPath", ""), str), "linux.cgroupsPath", "must be a string")
    if linux.get("intelRdt") is not None:  # pyrunc has no resctrl support (features says so)
        raise ConfigError("linux.intelRdt", "Intel RDT is not supported by pyrunc" if
                          os.path.isdir("/sys/fs/resctrl/info") else "Intel RDT is not "
                          "available on this host (no resctrl filesystem at /sys/fs/resctrl)")
    _want(isinstance(linux.get("mountLabel", ""), str), "linux.mountLabel", "must be a string")
    if linux.get("resources") is not None:
        _want(isinstance(linux["resources"], dict), "linux.resources", "must be an object")
    if linux.get("personality") is not None or linux.get("memoryPolicy") is not None:
        from runtime.linux import process_attrs
        process_attrs.check_linux(linux)


_IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def _check_sysctl(key: str, nss: dict[Any, str]) -> None:
    """runc's rule: a sysctl must belong to a namespace the container has of its own, or
    writing it would change the host (the init writes it before /proc/sys goes read-only)."""
    p, k = f"linux.sysctl.{key}", key.replace("/", ".")
    if k in _IPC_SYSCTLS or k.startswith("fs.mqueue."):
        _want("ipc" in nss, p, "not allowed in the host's ipc namespace")
    elif k.startswith("net."):
        _want("network" in nss and not _is_host_netns(nss["network"]), p,
              "not allowed in the host's network namespace")
    elif k == "kernel.hostname" and "uts" in nss:
        raise ConfigError(p, "conflicts with the hostname field; set that instead")
    elif not (k == "kernel.domainname" and "uts" in nss):
        raise ConfigError(p, "is not in a separate kernel namespace")


def _is_host_netns(path: str) -> bool:
    if not path:
        return False
    try:
        a, b = os.stat(path), os.stat("/proc/self/ns/net")
    except OSError:
        return False  # create reports a bad path with its reason
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def namespaces(spec: Spec) -> dict[str, str]:
    """{type: path-or-empty} for the namespaces the config asks for."""
    return {ns["type"]: ns.get("path", "") for ns in spec.get("linux", {}).get("namespaces", [])}


_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
BUNDLE_VERSION = "1.0.2"  # the newest spec version default_spec's fields need


def default_spec(rootless: bool = False) -> Spec:
    """What `pyrunc spec` writes: runc's defaults, so bundles move between the two unchanged.
    It uses no field newer than runtime-spec 1.0.2 and says so (BUNDLE_VERSION), so older
    runtimes (crun 1.8 refuses "1.3.0") take it too; pyrunc itself implements OCI_VERSION."""
    spec: Spec = {
        "ociVersion": BUNDLE_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [DEFAULT_PATH, "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(_CAPS) for k in ("bounding", "effective", "permitted",
                                                       "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "pyrunc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                         "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }
    if rootless:
        linux = spec["linux"]
        del linux["resources"]
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "network"]
        linux["namespaces"].append({"type": "user"})
        uid, gid = os.geteuid(), os.getegid()
        linux["uidMappings"] = [{"containerID": 0, "hostID": uid, "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": gid, "size": 1}]
        for m in spec["mounts"]:
            if m["destination"] == "/dev/pts":
                m["options"] = [o for o in m["options"] if o != "gid=5"]
            if m["destination"] == "/sys":
                m.update(type="none", source="/sys",
                         options=["rbind", "nosuid", "noexec", "nodev", "ro"])
    return spec
