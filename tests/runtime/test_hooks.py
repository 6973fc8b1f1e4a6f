"""OCI hooks: each at its point, in its namespace, with the state on stdin, env and timeout."""

from __future__ import annotations

import json
import os
import time

from tests.rig import cgroup_leftovers


def _hook(kind: str, out: str, extra: str = "", env: list[str] | None = None,
          timeout: int | None = None) -> dict:
    """A host-side hook (/bin/sh of the host) that records what it saw under `out`."""
    script = (f"cat > {out}/{kind}.json; readlink /proc/self/ns/mnt > {out}/{kind}.mnt; "
              f"echo {kind} >> {out}/order; env > {out}/{kind}.env; pwd > {out}/{kind}.cwd; "
              f"{extra}")
    h = {"path": "/bin/sh", "args": ["sh", "-c", script], "env": env or ["FOO=bar"]}
    if timeout:
        h["timeout"] = timeout
    return h


def _in_container_hook(kind: str) -> dict:
    """startContainer runs after pivot_root: its path is resolved inside the container."""
    return {"path": "/bin/sh", "args": ["sh", "-c", f"cat > /out/{kind}.json; "
                                        f"readlink /proc/self/ns/mnt > /out/{kind}.mnt; "
                                        f"pwd > /out/{kind}.cwd; echo {kind} >> /out/order"]}


def test_every_hook_at_its_point(pyrunc, bundle, tmp_path):
    out = str(tmp_path / "out")
    os.makedirs(out)
    cfg = bundle.config
    cfg["process"]["args"] = ["sleep", "30"]
    cfg["process"]["cwd"] = "/tmp"
    cfg["mounts"].append({"destination": "/out", "type": "bind", "source": out,
                          "options": ["rbind", "rw"]})
    cfg["annotations"] = {"org.example.key": "value"}
    cfg["hooks"] = {k: [_hook(k, out)] for k in ("prestart", "createRuntime", "createContainer",
                                                 "poststart", "poststop")}
    cfg["hooks"]["startContainer"] = [_in_container_hook("startContainer")]
    bundle.write()
    cid = pyrunc.new_id()
    pyrunc("create", "--bundle", bundle.path, cid, check=True)
    pid = pyrunc.state(cid)["pid"]
    order = open(f"{out}/order").read().split()
    assert order == ["prestart", "createRuntime", "createContainer"]
    host_mnt = os.readlink("/proc/self/ns/mnt")
    ctr_mnt = os.readlink(f"/proc/{pid}/ns/mnt")
    assert open(f"{out}/prestart.mnt").read().strip() == host_mnt
    assert open(f"{out}/createRuntime.mnt").read().strip() == host_mnt
    assert open(f"{out}/createContainer.mnt").read().strip() == ctr_mnt
    for kind in ("prestart", "createRuntime", "createContainer"):
        st = json.load(open(f"{out}/{kind}.json"))
        # runtime-spec: the pid as the hook's own namespaces see it; created after step 2
        want_pid = 1 if kind == "createContainer" else pid
        assert st["id"] == cid and st["pid"] == want_pid and st["bundle"] == bundle.path
        assert st["annotations"] == {"org.example.key": "value"}
        assert st["status"] == "created", (kind, st)
        env = open(f"{out}/{kind}.env").read()
        assert "FOO=bar" in env and "PYTEST" not in env
    # cwd as runc's: the bundle for runtime hooks, the (mounted) rootfs for createContainer
    cwds = {k: open(f"{out}/{k}.cwd").read().strip() for k in ("prestart", "createRuntime",
                                                                "createContainer")}
    assert cwds == {"prestart": bundle.path, "createRuntime": bundle.path,
                    "createContainer": os.path.realpath(bundle.rootfs)}
    pyrunc("start", cid, check=True)
    deadline = time.monotonic() + 5
    while len(open(f"{out}/order").read().split()) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    order = open(f"{out}/order").read().split()
    assert order[3:] == ["startContainer", "poststart"]
    assert open(f"{out}/startContainer.mnt").read().strip() == ctr_mnt
    st = json.load(open(f"{out}/startContainer.json"))
    assert (st["status"], st["pid"]) == ("created", 1)  # the program has not run yet
    assert open(f"{out}/startContainer.cwd").read().strip() == "/tmp"  # process.cwd
    assert json.load(open(f"{out}/poststart.json"))["status"] == "running"
    assert open(f"{out}/poststart.cwd").read().strip() == bundle.path
    pyrunc("kill", cid, "KILL", check=True)
    deadline = time.monotonic() + 5
    while pyrunc.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.02)
    pyrunc("delete", cid, check=True)
    assert open(f"{out}/order").read().split()[-1] == "poststop"
    assert json.load(open(f"{out}/poststop.json"))["status"] == "stopped"


def test_failing_prestart_cleans_everything(pyrunc, bundle, tmp_path):
    out = str(tmp_path)
    bundle.config["hooks"] = {"prestart": [_hook("prestart", out, extra="echo boom >&2; exit 3")]}
    bundle.write()
    cid = pyrunc.new_id()
    p = pyrunc("create", "--bundle", bundle.path, cid)
    assert p.returncode != 0
    assert b"error running hook #0: hooks.prestart[0]" in p.stderr and b"boom" in p.stderr
    assert not os.path.exists(os.path.join(pyrunc.root, cid))
    assert not cgroup_leftovers(cid)
    st = json.load(open(f"{out}/prestart.json"))
    pid = st["pid"]
    assert not os.path.exists(f"/proc/{pid}") or \
        open(f"/proc/{pid}/stat").read().split(") ")[1][0] == "Z"


def test_hook_timeout(pyrunc, bundle, tmp_path):
    bundle.config["hooks"] = {"createRuntime": [_hook("createRuntime", str(tmp_path),
                                                      extra="sleep 20", timeout=1)]}
    bundle.write()
    cid = pyrunc.new_id()
    t0 = time.monotonic()
    p = pyrunc("create", "--bundle", bundle.path, cid)
    assert p.returncode != 0 and b"timed out" in p.stderr
    assert time.monotonic() - t0 < 10
    assert not os.path.exists(os.path.join(pyrunc.root, cid))


def test_failing_createcontainer_hook_fails_create(pyrunc, bundle, tmp_path):
    bundle.config["hooks"] = {"createContainer": [{"path": "/bin/false"}]}
    bundle.write()
    cid = pyrunc.new_id()
    p = pyrunc("create", "--bundle", bundle.path, cid)
    assert p.returncode != 0 and b"hooks.createContainer[0]" in p.stderr
    assert not os.path.exists(os.path.join(pyrunc.root, cid))


def test_poststart_and_poststop_failures_are_warnings(pyrunc, bundle, tmp_path):
    bundle.config["process"]["args"] = ["sleep", "30"]
    bundle.config["hooks"] = {"poststart": [{"path": "/bin/false"}, _hook("poststart",
                                                                          str(tmp_path))],
                              "poststop": [{"path": "/bin/false"}]}
    bundle.write()
    cid = pyrunc.new_id()
    pyrunc("create", "--bundle", bundle.path, cid, check=True)
    p = pyrunc("start", cid)
    assert p.returncode == 0 and b"warning" in p.stderr
    assert os.path.exists(tmp_path / "poststart.json")  # later hooks still ran
    p = pyrunc("delete", "--force", cid)
    assert p.returncode == 0 and b"warning" in p.stderr
    assert not os.path.exists(os.path.join(pyrunc.root, cid))
