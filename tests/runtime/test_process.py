"""The process section and its surroundings, observed from inside the container."""

from __future__ import annotations

import os
import subprocess

from tests.rig import PYRUNC


def test_env_cwd_umask_user(pyrunc, bundle):
    proc = bundle.config["process"]
    proc["env"] = ["PATH=/bin", "GREETING=hello world"]
    proc["cwd"] = "/home/user/work"  # missing in the image: created, like runc
    proc["user"] = {"uid": 1000, "gid": 1000, "umask": 0o027}
    out = pyrunc.run_script(bundle, 'echo "$GREETING|$HOME|$(pwd)|$(umask)|$(id -u):$(id -g)"')
    assert out.strip() == "hello world|/home/user|/home/user/work|0027|1000:1000"


def test_rlimits_oom_score_sysctl(pyrunc, bundle):
    proc = bundle.config["process"]
    proc["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654},
                       {"type": "RLIMIT_NPROC", "soft": 1000, "hard": 2000}]
    proc["oomScoreAdj"] = 123
    bundle.config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmax": "12345678"}
    out = pyrunc.run_script(bundle, "ulimit -n; ulimit -Hn; ulimit -u; "
                            "cat /proc/self/oom_score_adj; "
                            "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax")
    assert out.split() == ["321", "654", "1000", "123", "1", "12345678"]
    assert open("/proc/sys/kernel/shmmax").read().strip() != "12345678"  # host untouched


def test_default_devices_and_links(pyrunc, bundle):
    out = pyrunc.run_script(bundle, "for d in null zero full random urandom tty; do "
                               "stat -c '%n %F %t:%T %a' /dev/$d; done; "
                               "for l in fd stdin stdout stderr ptmx; do readlink /dev/$l; done")
    lines = out.strip().splitlines()
    assert lines[:6] == ["/dev/null character special file 1:3 666",
                         "/dev/zero character special file 1:5 666",
                         "/dev/full character special file 1:7 666",
                         "/dev/random character special file 1:8 666",
                         "/dev/urandom character special file 1:9 666",
                         "/dev/tty character special file 5:0 666"]
    assert lines[6:] == ["/proc/self/fd", "/proc/self/fd/0", "/proc/self/fd/1",
                         "/proc/self/fd/2", "pts/ptmx"]


def test_linux_devices(pyrunc, bundle):
    bundle.config["linux"]["devices"] = [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o640,
         "uid": 1000, "gid": 5},
        {"path": "/dev/sub/loopx", "type": "b", "major": 7, "minor": 200, "fileMode": 0o600}]
    out = pyrunc.run_script(bundle, "stat -c '%n %F %t:%T %a %u %g' /dev/fuse /dev/sub/loopx")
    assert out.strip().splitlines() == ["/dev/fuse character special file a:e5 640 1000 5",
                                        "/dev/sub/loopx block special file 7:c8 600 0 0"]


def test_no_fd_of_ours_leaks_in(pyrunc, bundle):
    """CVE-2024-21626: only stdio reaches the container (ls's own dir fd aside)."""
    out = pyrunc.run_script(bundle, "ls /proc/$$/fd; true")  # "; true": sh must not exec ls
    assert out.split() == ["0", "1", "2"]


def test_preserve_fds(pyrunc, bundle, tmp_path):
    secret = tmp_path / "passed"
    secret.write_text("through fd 3\n")
    bundle.config["process"]["args"] = ["sh", "-c", "cat <&3; ls /proc/$$/fd; true"]
    bundle.write()
    cid = pyrunc.new_id()
    p = subprocess.run(["bash", "-c", f'exec 3<"{secret}"; exec "$@"', "bash", PYRUNC,
                        "--root", pyrunc.root, "run", "--preserve-fds", "1", "--bundle",
                        bundle.path, cid], capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().split("\n", 1)[0] == "through fd 3"
    assert p.stdout.decode().split()[-4:] == ["0", "1", "2", "3"]


def test_session_keyring(pyrunc, bundle):
    """/proc/keys is masked inside by the default config, so look from the host."""
    bundle.config["process"]["args"] = ["sleep", "30"]
    bundle.write()
    cid = pyrunc.new_id()
    pyrunc("run", "-d", "--bundle", bundle.path, cid, check=True)
    keys = open("/proc/keys").read()
    assert f"_ses.{cid}" in keys
    pyrunc("delete", "--force", cid, check=True)
    cid2 = pyrunc.new_id()
    pyrunc("run", "-d", "--no-new-keyring", "--bundle", bundle.path, cid2, check=True)
    assert f"_ses.{cid2}" not in open("/proc/keys").read()


def test_no_pivot_and_root_propagation(pyrunc, bundle):
    bundle.config["linux"]["rootfsPropagation"] = "rprivate"
    bundle.config["process"]["args"] = ["sh", "-c", "cat /proc/self/mountinfo | head -1"]
    bundle.write()
    for extra in ([], ["--no-pivot"]):
        p = pyrunc("run", *extra, "--bundle", bundle.path, pyrunc.new_id())
        assert p.returncode == 0, p.stderr
        first = p.stdout.decode().split()
        assert first[4] == "/" and "shared:" not in p.stdout.decode()


def test_readonly_root_and_masked_readonly_paths(pyrunc, bundle):
    out = pyrunc.run_script(bundle, "touch /x 2>/dev/null && echo rw || echo ro; "
                               "cat /proc/timer_list | wc -c; ls /sys/firmware | wc -l; "
                               "echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo w "
                               "|| echo nw")
    assert out.split() == ["ro", "0", "0", "nw"]
    assert os.path.exists("/proc/timer_list")
