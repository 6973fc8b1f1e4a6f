"""Two containers in one pod share the pod's network (they talk over localhost) and its IPC
(one IPC namespace, one /dev/shm), under both handlers."""

from __future__ import annotations

from conformance.engines.conftest import wait_for

SLEEPER = ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 0.1; done']


def test_two_containers_share_network_and_ipc(pods, handler):
    pod = pods.run(handler, "pair")
    web = pods.start(pod, "web")  # the app: httpd on :80
    side = pods.start(pod, "side", SLEEPER)

    def fetch() -> bytes:
        r = pods.cri.exec_sync(side, ["wget", "-qO-", "http://127.0.0.1:80/"], timeout=10)
        return r.stdout if r.exit_code == 0 else b""

    page = wait_for(fetch, 15, "the sidecar to reach the app over localhost")
    assert b"hello from imagetool build" in page

    def ns(cid: str, kind: str) -> str:
        r = pods.cri.exec_sync(cid, ["readlink", f"/proc/self/ns/{kind}"])
        assert r.exit_code == 0, r
        return r.stdout.decode().strip()

    for kind in ("net", "ipc", "uts"):
        assert ns(web, kind) == ns(side, kind), kind
    assert ns(web, "mnt") != ns(side, "mnt")

    # the pod's /dev/shm is one tmpfs: what one container writes the other reads
    r = pods.cri.exec_sync(web, ["sh", "-c", "echo shared-$$ > /dev/shm/token; "
                                             "cat /dev/shm/token"])
    assert r.exit_code == 0, r
    r2 = pods.cri.exec_sync(side, ["cat", "/dev/shm/token"])
    assert (r2.exit_code, r2.stdout) == (0, r.stdout)
    # and the hostname is the pod's
    r = pods.cri.exec_sync(side, ["hostname"])
    assert r.stdout == b"pair\n"
