"""Building the root, runc and pyrunc side by side: proc and sysfs refused on a symlink, a
read-only /dev, the recursive mount options (mount_setattr), --no-pivot hiding the host's
/proc, bind sources only host root can reach in a user namespace, and every
linux.rootfsPropagation.

Each case runs the same config and the same commands under both runtimes and compares what
the containers printed (mount ids and paths normalised away). Where runc 1.1.5 itself is
wrong (it refuses `unbindable`, ignores `shared`, fails `ratime` with EINVAL, drops recursive
options on non-bind mounts, and leaks the rootfs onto a shared "/" with --no-pivot), the case
says so and checks pyrunc against the runtime-spec instead.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from conformance import observe
from conformance.pair import NAMES, Pair
from runtime.linux.mounts import has_mount_setattr

pytestmark = [pytest.mark.peer, pytest.mark.timeout(180)]

Config = dict[str, Any]
UNSHARE = shutil.which("unshare")


def _sections(pair: Pair, config: Config, probes: dict[str, str], mutate=None,
              ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    ref, got, outs = pair.observe(config, (), mutate, probes)
    return ref, got, outs


def _same(ref: dict[str, Any], got: dict[str, Any], outs: dict[str, Any], what: str) -> None:
    diff = observe.differences(ref, got)
    if diff:
        pytest.fail(f"{what}: pyrunc differs from runc\npyrunc exit {outs['pyrunc'].rc}, "
                    f"stderr {outs['pyrunc'].stderr.strip()!r}\n{diff}", pytrace=False)


# -- proc and sysfs on a symlink ----------------------------------------------------------------

def _symlink_at(name: str, target: str, make_target: bool = False):
    def mutate(cfg: Config, bundle: str) -> None:
        path = os.path.join(bundle, "rootfs", name)
        os.rmdir(path)
        if make_target:
            os.makedirs(os.path.join(bundle, "rootfs", target.lstrip("/")))
        os.symlink(target, path)
    return mutate


@pytest.mark.parametrize("name,fs,target,make", [
    ("proc", "proc", "/symlink", False),
    ("sys", "sysfs", "/symlink", False),
    ("proc", "proc", "/bad-proc", True),   # to a real directory inside the rootfs
])
def test_pseudo_fs_on_a_symlink_is_refused(pair, config, name, fs, target, make):
    got = {n: pair.run(n, config, _symlink_at(name, target, make)) for n in NAMES}
    for n in NAMES:
        assert got[n].rc != 0, f"{n} ran a rootfs whose /{name} is a symlink"
        err = got[n].stderr
        assert fs in err, f"{n}: {err!r}"
        if fs == "proc":  # mask.bats greps runc's words for /proc
            assert "must be mounted on ordinary directory" in err, f"{n}: {err!r}"
    assert not os.path.lexists(target), f"something was made at the host's {target}"


# -- a read-only /dev ---------------------------------------------------------------------------

def ro_dev(cfg: Config, bundle: str) -> None:
    for m in cfg["mounts"]:
        if m["destination"] == "/dev":
            m["options"].append("ro")


DEV_PROBES = {
    "proc_mounts": "grep '^tmpfs /dev ' /proc/mounts",
    "mountinfo": "awk '$5 ~ /^\\/dev/' /proc/self/mountinfo",
    "devices": "stat -c '%n %F' /dev/null /dev/pts/ptmx /dev/ptmx /dev/fd /dev/shm",
    "write": "touch /dev/new",
}


def test_read_only_dev(pair, config):
    ref, got, outs = _sections(pair, config, DEV_PROBES, ro_dev)
    assert ref["run_rc"] == 0, outs["runc"].stderr
    assert "ro," in ref["proc_mounts"]["out"][0], ref
    _same(ref, got, outs, "ro /dev")


# -- recursive mount options ---------------------------------------------------------------------

@pytest.fixture
def volume() -> Iterator[str]:
    """A tmpfs with a tmpfs submount (subvol), a script, and symlinks on both: the bind
    source of the recursive cases. Unmounted (by path) whatever happens."""
    top = tempfile.mkdtemp(prefix="conf-vol-")
    os.chmod(top, 0o755)
    mounted = []
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "conf-vol", top], check=True)
        mounted.append(top)
        sub = os.path.join(top, "subvol")
        os.mkdir(sub)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "conf-subvol", sub],
                       check=True)
        mounted.append(sub)
        for d in (top, sub):
            with open(os.path.join(d, "data"), "w") as f:
                f.write("data\n")
            with open(os.path.join(d, "run.sh"), "w") as f:
                f.write("#!/bin/sh\necho ran\n")
            os.chmod(os.path.join(d, "run.sh"), 0o755)
            os.symlink("data", os.path.join(d, "link"))
        yield top
    finally:
        for m in reversed(mounted):
            subprocess.run(["umount", "-l", m], check=False)
        shutil.rmtree(top, ignore_errors=True)


REC_PROBES = {
    "flags": "awk '$5 ~ /^\\/mnt/ {print $5, $6}' /proc/self/mountinfo",
    "write_top": "touch /mnt/new",
    "write_sub": "touch /mnt/subvol/new",
    "exec_top": "/mnt/run.sh",
    "exec_sub": "/mnt/subvol/run.sh",
    "link_top": "cat /mnt/link",
    "link_sub": "cat /mnt/subvol/link",
}

# (pyrunc's options, runc's). A later option overrides an earlier one, as "ro,rw" does;
# runc 1.1.5 instead lets the setting one win whatever the order (its set and clear masks
# are collected apart), so a pair that contradicts itself is compared with runc given the
# last option alone.
REC_CASES = [
    ("rbind,ro", None), ("rbind,rro", None), ("rbind,ro,rro", None), ("bind,rro", None),
    ("rbind,rnosuid,rnodev,rnoexec,rnoatime,rnodiratime", None),
    ("rbind,rstrictatime", None), ("rbind,rrelatime", None),
    ("rbind,nosymfollow", None), ("rbind,rnosymfollow", None),
    ("rbind,nosymfollow,symfollow", None), ("rbind,rrw,rro", None),
    ("rbind,rro,rrw", "rbind,rrw"), ("rbind,rnoexec,rexec", "rbind,rexec"),
    ("rbind,rnosuid,rsuid", "rbind,rsuid"), ("rbind,rnodev,rdev", "rbind,rdev"),
    ("rbind,rnodiratime,rdiratime", "rbind,rdiratime"),
    ("rbind,rnoatime,rrelatime", "rbind,rrelatime"),
    ("rbind,rnosymfollow,rsymfollow", "rbind,rsymfollow"),
]


def _with_volume(volume: str, options: str):
    def mutate(cfg: Config, bundle: str) -> None:
        cfg["mounts"].append({"source": volume, "destination": "/mnt",
                              "options": options.split(",")})
    return mutate


def _observe_one(pair: Pair, runtime: str, config: Config, probes: dict[str, str],
                 mutate) -> tuple[dict[str, Any], Any]:
    cfg = copy.deepcopy(config)
    cfg["process"]["args"] = ["sh", "-c", observe.script((), probes)]
    o = pair.run(runtime, cfg, mutate)
    return {"run_rc": o.rc, **observe.normalise(observe.parse(o.stdout), o.subst())}, o


@pytest.mark.parametrize("options,runc_options", REC_CASES,
                         ids=[c[0] for c in REC_CASES])
def test_recursive_mount_options(pair, config, volume, options, runc_options):
    if not has_mount_setattr() and any(o.startswith("r") and o not in ("ro", "rw", "rbind")
                                       for o in options.split(",")):
        got = pair.run("pyrunc", config, _with_volume(volume, options))
        assert got.rc != 0 and "mount_setattr" in got.stderr, got.stderr
        return
    ref, ro = _observe_one(pair, "runc", config, REC_PROBES,
                           _with_volume(volume, runc_options or options))
    got, go = _observe_one(pair, "pyrunc", config, REC_PROBES, _with_volume(volume, options))
    assert ref["run_rc"] == 0, ro.stderr
    _same(ref, got, {"pyrunc": go}, options)


def test_recursive_options_reach_the_submount(pair, config, volume):
    """The effect itself, under pyrunc: rro refuses writes on the submount, rnoexec its
    programs, rnosymfollow its symlinks; plain ro leaves the submount writable."""
    if not has_mount_setattr():
        pytest.skip("the kernel has no mount_setattr(2): refusal checked above")
    want = {"rbind,ro": ("write_sub", None), "rbind,rro": ("write_sub", "Read-only"),
            "rbind,rnoexec": ("exec_sub", "Permission denied"),
            "rbind,rnosymfollow": ("link_sub", "Too many levels")}
    for options, (probe, text) in want.items():
        cfg = copy.deepcopy(config)
        cfg["process"]["args"] = ["sh", "-c", observe.script((), {probe: REC_PROBES[probe]})]
        o = pair.run("pyrunc", cfg, _with_volume(volume, options))
        assert o.rc == 0, o.stderr
        if text is None:
            assert f"{observe.MARK}rc 0" in o.stdout, (options, o.stdout)
        else:
            assert text in o.stdout, (options, o.stdout)


def test_recursive_options_on_a_tmpfs(pair, config):
    """Not only binds: a tmpfs with rro is read-only and rnoexec,rnosuid take. runc 1.1.5
    drops recursive options on anything but a bind mount without a word (a read-only
    request silently left writable), so pyrunc is checked against the spec here."""
    if not has_mount_setattr():
        pytest.skip("the kernel has no mount_setattr(2)")
    for options, want, write_rc in ((["rro"], {"ro"}, 1),
                                    (["rnoexec", "rnosuid"], {"rw", "noexec", "nosuid"}, 0)):
        cfg = copy.deepcopy(config)
        cfg["process"]["args"] = ["sh", "-c", "awk '$5 == \"/mnt\" {print $6}' "
                                  "/proc/self/mountinfo; touch /mnt/new; echo rc=$?"]
        cfg["mounts"].append({"type": "tmpfs", "source": "tmpfs", "destination": "/mnt",
                              "options": options})
        o = pair.run("pyrunc", cfg)
        assert o.rc == 0, o.stderr
        flags, rc = o.stdout.split()
        assert want <= set(flags.split(",")), (options, o.stdout)
        assert rc == f"rc={write_rc}", (options, o.stdout, o.stderr)


def test_recursive_atime_negations(pair, config, volume):
    """ratime, rnostrictatime: back to the kernel's relatime; rnorelatime: strictatime.
    runc 1.1.5 fails the first with EINVAL (it clears a part of the atime field), so these
    are checked against mount_setattr(2)'s meaning, not against runc."""
    if not has_mount_setattr():
        pytest.skip("the kernel has no mount_setattr(2)")
    for options, want in (("rbind,rnoatime,ratime", "relatime"),
                          ("rbind,rstrictatime,rnostrictatime", "relatime"),
                          ("rbind,rnorelatime", None)):
        cfg = copy.deepcopy(config)
        cfg["process"]["args"] = ["awk", '$5 ~ /^\\/mnt/ {print $5, $6}',
                                  "/proc/self/mountinfo"]
        o = pair.run("pyrunc", cfg, _with_volume(volume, options))
        assert o.rc == 0, o.stderr
        lines = o.stdout.split()
        assert len(lines) == 4, o.stdout
        for flags in lines[1::2]:
            opts = flags.split(",")
            if want:
                assert want in opts, (options, o.stdout)
            else:
                assert not {"relatime", "noatime"} & set(opts), (options, o.stdout)


# -- --no-pivot --------------------------------------------------------------------------------

def _run_with(pair: Pair, runtime: str, config: Config, mutate, *flags: str,
              wrap: list[str] | None = None) -> tuple[int, str, str, str]:
    """`run FLAGS` of a fresh bundle, optionally under a wrapper command; (rc, out, err,
    bundle path)."""
    rt = pair.rt[runtime]
    b = pair.bundle(runtime, config, mutate)
    cid = rt.new_id("conf")
    cmd = [rt.binary, "--root", rt.root, "run", *flags, "--bundle", b.path, cid]
    p = subprocess.run((wrap or []) + cmd, capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr, b.path


def _proc_mount_attempt(cfg: Config, bundle: str) -> None:
    """A nested user+mount+pid namespace tries to mount a fresh /proc: the kernel allows it
    only where a fully visible proc exists, which the host's would be."""
    cfg["process"]["args"] = ["unshare", "-mrpf", "sh", "-c",
                              "mount -t proc none /proc && echo mounted"]
    for s in ("bounding", "permitted"):
        cfg["process"]["capabilities"][s].append("CAP_SETFCAP")


def test_no_pivot_hides_the_hosts_proc(pair, config):
    got = {n: _run_with(pair, n, config, _proc_mount_attempt, "--no-pivot") for n in NAMES}
    assert "permission denied" in got["runc"][2], got["runc"]
    assert got["pyrunc"][:2] == got["runc"][:2], got
    assert "mounted" not in got["pyrunc"][1] and "permission denied" in got["pyrunc"][2]


def _host_mounts_at(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [ln for ln in f if path in ln]


def _root_mounts(pid: int) -> int:
    """Mounts on "/" in the mount namespace of `pid`, read from the host's side."""
    with open(f"/proc/{pid}/mountinfo") as f:
        return sum(1 for ln in f if ln.split()[4] == "/")


@pytest.mark.skipif(not UNSHARE, reason="unshare(1) missing")
def test_no_pivot_rshared_leaks_nothing(pair, config):
    """runc issue 1961: with rshared and a rootfs that is a mount, --no-pivot must not leave
    the rootfs on top of the caller's "/". Run inside a throwaway shared mount namespace (as
    a systemd host's "/"), so a leak lands there and never on the real host. pyrunc only:
    runc 1.1.5 still has this bug (fixed in later runc), it covers that namespace's "/"."""
    def mutate(cfg: Config, bundle: str) -> None:
        cfg["linux"]["rootfsPropagation"] = "rshared"
        cfg["process"]["args"] = ["true"]
    rt = pair.rt["pyrunc"]
    b = pair.bundle("pyrunc", config, mutate)
    cid = rt.new_id("conf")
    script = (f"mount --bind {b.rootfs} {b.rootfs} && echo bound && read go && "
              f"{rt.binary} --root {rt.root} run --no-pivot --bundle {b.path} {cid}; "
              "echo rc=$?; read done")
    p = subprocess.Popen([UNSHARE, "-m", "--propagation", "shared", "sh", "-c", script],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "bound"
        before = _root_mounts(p.pid)
        p.stdin.write("go\n")
        p.stdin.flush()
        rc_line = p.stdout.readline().strip()
        after = _root_mounts(p.pid)
    finally:
        p.kill()
        p.wait(timeout=10)
    assert rc_line == "rc=0", rc_line
    assert before == after == 1, f"a mount was left on /: {before} -> {after}"
    assert not _host_mounts_at(b.rootfs), "the rootfs bind reached the host"


# -- bind sources the user namespace can't reach -------------------------------------------------

def inaccessible_sources(cfg: Config, bundle: str) -> None:
    """Two bind sources under 0700 directories of host root; the container's root is host
    uid 100000, which can't traverse them."""
    for n in ("inaccessible-1", "inaccessible-2"):
        os.makedirs(os.path.join(bundle, f"source-{n}", "dir"))
        open(os.path.join(bundle, f"source-{n}", "dir", "foo.txt"), "w").close()
        os.chmod(os.path.join(bundle, f"source-{n}"), 0o700)
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65534}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65534}]
    cfg["mounts"] += [
        {"source": "source-inaccessible-1/dir", "destination": "/tmp/mount-1",
         "options": ["bind"]},
        {"source": "source-inaccessible-2/dir", "destination": "/tmp/mount-2",
         "options": ["rbind", "ro"]}]


USERNS_PROBES = {
    "stat": "stat -c '%n %u %g %F' /tmp/mount-1/foo.txt /tmp/mount-2/foo.txt",
    "mountinfo": "awk '$5 ~ /^\\/tmp\\/mount/' /proc/self/mountinfo",
    "write_ro": "touch /tmp/mount-2/new",
    "fds": "ls /proc/self/fd | wc -l",
}


def test_userns_inaccessible_bind_sources(pair, config):
    ref, got, outs = _sections(pair, config, USERNS_PROBES, inaccessible_sources)
    assert ref["run_rc"] == 0, outs["runc"].stderr
    _same(ref, got, outs, "userns with 2 inaccessible mounts")


def test_userns_inaccessible_bind_sources_exec(pair, config):
    cfg = copy.deepcopy(config)
    cfg["process"]["args"] = ["sleep", "120"]
    seen = {}
    for n in NAMES:
        cid, _pid = pair.start_detached(n, cfg, inaccessible_sources)
        p = pair.rt[n]("exec", cid, "stat", "-c", "%n %u", "/tmp/mount-1/foo.txt",
                       "/tmp/mount-2/foo.txt")
        seen[n] = (p.returncode, p.stdout.decode())
        pair.rt[n]("delete", "--force", cid, timeout=30)
    assert seen["runc"][0] == 0, seen
    assert seen["pyrunc"] == seen["runc"]


def test_userns_bind_submounts_stay_locked(pair, config, volume):
    """Bind sources handed over by host root are mounts of the container's own namespace,
    so what the kernel locked when it copied the host's mounts for the user namespace stays
    locked: the container's root can't unmount a submount of an rbind volume (to see what
    it covers) nor make a host read-only submount writable."""
    rosub = os.path.join(volume, "rosub")
    os.mkdir(rosub)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "conf-rosub", rosub], check=True)
    try:
        def mutate(cfg: Config, bundle: str) -> None:
            inaccessible_sources(cfg, bundle)
            cfg["mounts"].append({"source": volume, "destination": "/tmp/vol",
                                  "options": ["rbind"]})
            for s in ("bounding", "permitted", "effective"):
                cfg["process"]["capabilities"][s].append("CAP_SYS_ADMIN")
        ref, got, outs = _sections(pair, config, {
            "umount_sub": "umount /tmp/vol/subvol",
            "remount_rw": "mount -o remount,bind,rw /tmp/vol/rosub",
            "write_ro": "touch /tmp/vol/rosub/new",
            "mountinfo": "awk '$5 ~ /^\\/tmp\\/vol/' /proc/self/mountinfo"}, mutate)
        assert ref["run_rc"] == 0, outs["runc"].stderr
        assert ref["umount_sub"]["rc"] != 0 and ref["remount_rw"]["rc"] != 0, ref
        _same(ref, got, outs, "locked submounts in a user namespace")
    finally:
        subprocess.run(["umount", rosub], check=False)


def test_userns_mount_point_it_cannot_make(pair, config):
    """A mount point missing from a rootfs owned by host root: the user namespace's root
    can't create it. Both refuse; pyrunc's one line names the mount."""
    def mutate(cfg: Config, bundle: str) -> None:
        inaccessible_sources(cfg, bundle)
        cfg["mounts"].append({"type": "tmpfs", "source": "tmpfs",
                              "destination": "/newdir/x"})
    got = {n: pair.run(n, config, mutate) for n in NAMES}
    assert got["runc"].rc != 0, got["runc"].stdout
    assert got["pyrunc"].rc != 0
    err = got["pyrunc"].stderr.strip()
    assert "/newdir/x" in err and "Permission denied" in err and "\n" not in err, err


# -- linux.rootfsPropagation ---------------------------------------------------------------------

def _propagation_tag(mountinfo_line: str) -> str:
    """shared / master / unbindable / private, from the optional fields of one line."""
    fields = mountinfo_line.split(" - ")[0].split()[6:]
    tags = sorted(re.sub(r":\d+$", "", f) for f in fields)
    return ",".join(tags) or "private"


ROOT_LINE = "awk '$5 == \"/\"' /proc/self/mountinfo"


@pytest.mark.parametrize("shared_host", [False, True], ids=["host", "shared_host"])
@pytest.mark.parametrize("prop,want", [
    ("private", "private"), ("rprivate", "private"), ("slave", None), ("rslave", None),
    ("shared", "shared"), ("rshared", "shared"), ("unbindable", "unbindable"),
    ("runbindable", "unbindable")])
def test_rootfs_propagation(pair, config, prop, want, shared_host):
    """Both runtimes on the same config; `shared_host` runs them inside a throwaway mount
    namespace whose mounts are all shared, as on a systemd host (the pivot_root case).
    private and slave flavours must agree with runc; runc 1.1.5 leaves `shared` private and
    refuses `unbindable` (EINVAL binding the rootfs), fixed in later runc: pyrunc must give
    the root what the config asks."""
    if shared_host and not UNSHARE:
        pytest.skip("unshare(1) missing")
    wrap = [UNSHARE, "-m", "--propagation", "shared"] if shared_host else None

    def mutate(cfg: Config, bundle: str) -> None:
        cfg["linux"]["rootfsPropagation"] = prop
        cfg["process"]["args"] = ["sh", "-c", f"{ROOT_LINE}; {ROOT_LINE} | wc -l"]
    got = {n: _run_with(pair, n, config, mutate, wrap=wrap) for n in NAMES}
    rc, out, err, bundle = got["pyrunc"]
    assert rc == 0, err
    line, count = out.splitlines()
    assert count == "1", out
    tag = _propagation_tag(line)
    runc_rc, runc_out = got["runc"][:2]
    if want is None:  # slave of whatever "/" was: the same as runc
        assert runc_rc == 0, got["runc"][2]
        assert tag == _propagation_tag(runc_out.splitlines()[0]), (out, runc_out)
    else:
        assert tag == want, out
        if runc_rc == 0 and want == "private":
            assert _propagation_tag(runc_out.splitlines()[0]) == "private", runc_out
    for n in NAMES:
        assert not _host_mounts_at(got[n][3]), f"{n}: a mount of the bundle reached the host"


def test_rootfs_propagation_shared_mounts_stay_inside(pair, config, volume):
    """rshared: a mount the container makes under its shared root is seen by nobody on the
    host; the bind volume stays a slave of the host's (events flow in, not out)."""
    def mutate(cfg: Config, bundle: str) -> None:
        cfg["linux"]["rootfsPropagation"] = "rshared"
        cfg["mounts"].append({"source": volume, "destination": "/mnt", "options": ["rbind"]})
        caps = cfg["process"]["capabilities"]
        for s in ("bounding", "permitted", "effective"):
            caps[s].append("CAP_SYS_ADMIN")
        cfg["process"]["args"] = ["sh", "-c", "mount -t tmpfs inner /mnt/subvol && "
                                  "touch /mnt/subvol/inner-file && echo made"]
    for n in NAMES:
        rc, out, err, _ = _run_with(pair, n, config, mutate)
        assert (rc, out.strip()) == (0, "made"), (n, err)
        assert not os.path.exists(os.path.join(volume, "subvol", "inner-file")), \
            f"{n}: the container's mount reached the host"
        assert os.stat(os.path.join(volume, "subvol")).st_mode & stat.S_IFDIR
