"""Idmapped bind mounts (mounts[].uidMappings/gidMappings, idmap, ridmap): the owners a
container sees through the mount, with and without a user namespace of its own, and the
clear refusals (not a bind mount, half the mappings, a filesystem that can't be idmapped)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

from runtime.linux import syscalls as sc
from tests import hostcaps
from tests.rig import Bundle, clone_rootfs, default_config

pytestmark = pytest.mark.timeout(120)

MAP = [{"containerID": 1000, "hostID": 2000, "size": 1}]
USERNS = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def _can_idmap(path: str) -> bool:
    """Probe: does the filesystem at `path` take MOUNT_ATTR_IDMAP on a detached bind?"""
    r, w = os.pipe()
    pid = sc.clone(sc.CLONE_NEWUSER)
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    tree = -1
    try:
        with open(f"/proc/{pid}/uid_map", "w") as f:
            f.write("0 100000 1\n")
        with open(f"/proc/{pid}/gid_map", "w") as f:
            f.write("0 100000 1\n")
        ns = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY)
        try:
            tree = sc.open_tree_detached(path, False)
            sc.mount_setattr_idmap(tree, ns, False)
            return True
        except OSError:
            return False
        finally:
            os.close(ns)
    finally:
        if tree >= 0:
            os.close(tree)
        os.close(w)
        os.waitpid(pid, 0)


@pytest.fixture
def source(tmp_path):
    """A host directory with a file of uid/gid 1000 and one of root."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "user").write_text("u")
    (src / "root").write_text("r")
    os.chown(src / "user", 1000, 1000)
    if not _can_idmap(str(src)):
        pytest.skip(f"the filesystem of {src} can't be idmapped on this kernel")
    return str(src)


def _bind(source: str, options: list[str] | None = None, **maps) -> dict:
    return {"destination": "/mnt", "type": "bind", "source": source,
            "options": options or ["bind"], **maps}


def _owners(pyrunc, bundle) -> list[str]:
    return pyrunc.run_script(bundle, "stat -c %u:%g /mnt/user /mnt/root").split()


@pytest.fixture
def ubundle(rootfs_template):
    """A bundle with a user namespace, under a world-traversable dir (pytest's tmp dirs are
    0700: the mapped root could not reach the rootfs)."""
    top = tempfile.mkdtemp(prefix="pyrunc-idmap-", dir="/tmp")
    os.chmod(top, 0o755)
    clone_rootfs(rootfs_template, os.path.join(top, "rootfs"))
    os.mkdir(os.path.join(top, "rootfs", "mnt"))  # root-owned rootfs: container root can't
    cfg = default_config(["true"])
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = USERNS
    cfg["linux"]["gidMappings"] = USERNS
    yield Bundle(top, cfg).write()
    shutil.rmtree(top, ignore_errors=True)


def test_idmapped_bind_without_user_namespace(pyrunc, bundle, source):
    bundle.config["mounts"].append(_bind(source, uidMappings=MAP, gidMappings=MAP))
    # owner 1000 on disk shows as 2000; root is outside the mapping: the overflow id
    assert _owners(pyrunc, bundle) == ["2000:2000", "65534:65534"]
    st = os.stat(os.path.join(source, "user"))
    assert (st.st_uid, st.st_gid) == (1000, 1000)  # the host's view is untouched


def test_idmapped_bind_in_a_user_namespace(pyrunc, ubundle, source):
    bundle = ubundle
    bundle.config["mounts"].append(_bind(source))
    # a plain bind: the host owners are unmapped in the container
    assert _owners(pyrunc, bundle) == ["65534:65534", "65534:65534"]
    bundle.config["mounts"][-1] = _bind(source, uidMappings=USERNS, gidMappings=USERNS)
    assert _owners(pyrunc, bundle) == ["1000:1000", "0:0"]


def test_idmap_option_takes_the_container_mappings(pyrunc, ubundle, source):
    bundle = ubundle
    bundle.config["mounts"].append(_bind(source, ["rbind", "idmap", "ro"]))
    out = pyrunc.run_script(bundle, "stat -c %u:%g /mnt/user; touch /mnt/x 2>&1 || echo RO")
    assert out.split("\n")[0] == "1000:1000" and "RO" in out


def test_ridmap_reaches_submounts(pyrunc, bundle, source, tmp_path):
    sub = os.path.join(source, "sub")
    os.mkdir(sub)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "probe", sub], check=True)
    try:
        os.chown(sub, 1000, 1000)
        if not _can_idmap(sub):
            pytest.skip("tmpfs can't be idmapped on this kernel")
        for opt, want in (("idmap", "1000:1000"), ("ridmap", "2000:2000")):
            bundle.config["mounts"] = [m for m in bundle.config["mounts"]
                                       if m["destination"] != "/mnt"]
            bundle.config["mounts"].append(_bind(source, ["rbind", opt], uidMappings=MAP,
                                                 gidMappings=MAP))
            out = pyrunc.run_script(bundle, "stat -c %u:%g /mnt/user /mnt/sub").split()
            assert out == ["2000:2000", want], opt
    finally:
        subprocess.run(["umount", sub], check=True)


@pytest.mark.parametrize("mount,field,words", [
    ({"destination": "/mnt", "type": "tmpfs", "source": "tmpfs", "uidMappings": MAP,
      "gidMappings": MAP}, "mounts[7]", "bind mounts only"),
    (_bind("SRC", uidMappings=MAP), "mounts[7].gidMappings", "together"),
    (_bind("SRC", ["bind", "idmap"]), "mounts[7].uidMappings", "user namespace"),
    (_bind("SRC", uidMappings=[{"containerID": 0, "hostID": -1, "size": 1}],
           gidMappings=MAP), "mounts[7].uidMappings[0].hostID", "integer"),
])
def test_bad_idmap_configs(pyrunc, bundle, source, mount, field, words):
    if mount.get("source") == "SRC":
        mount = dict(mount, source=source)
    bundle.config["mounts"].append(mount)
    assert len(bundle.config["mounts"]) == 8
    bundle.write()
    cid = pyrunc.new_id()
    p = pyrunc("create", "--bundle", bundle.path, cid)
    err = p.stderr.decode()
    assert p.returncode != 0 and f"config.json: {field}:" in err and words in err, err
    assert "Traceback" not in err and not os.path.exists(os.path.join(pyrunc.root, cid))


def test_filesystem_that_cannot_be_idmapped(pyrunc, bundle):
    hostcaps.need(not _can_idmap("/proc/sys"), "a proc that refuses idmapped mounts")
    bundle.config["mounts"].append(_bind("/proc/sys", uidMappings=MAP, gidMappings=MAP))
    bundle.write()
    cid = pyrunc.new_id()
    p = pyrunc("create", "--bundle", bundle.path, cid)
    err = p.stderr.decode()
    assert p.returncode != 0 and "mounts[7]: cannot idmap /proc/sys" in err, err
    assert "proc filesystem there does not support idmapped mounts" in err
    assert not os.path.exists(os.path.join(pyrunc.root, cid))


def test_probe_tmpfs_and_ext4(tmp_path):
    """What the probe says matches the kernel's documented support (ext4 5.12, tmpfs 6.3)."""
    from runtime.linux.idmap import fstype
    release = tuple(int(x) for x in os.uname().release.split(".")[:2])
    fs = fstype(str(tmp_path))
    if fs == "ext4":
        assert _can_idmap(str(tmp_path)) == (release >= (5, 12))
    d = tmp_path / "t"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "probe", str(d)], check=True)
    try:
        assert fstype(str(d)) == "tmpfs"
        assert _can_idmap(str(d)) == (release >= (6, 3))
    finally:
        subprocess.run(["umount", str(d)], check=True)
