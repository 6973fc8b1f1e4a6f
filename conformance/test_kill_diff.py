"""`kill` with signal 0 (sends nothing: "is it alive?"), runc's answers the reference: success
on a running container, with or without --all; once the container has stopped, `kill ID 0`
fails (not running) while `kill --all ID 0` still succeeds, as runc 1.1's kill.bats expects."""

from __future__ import annotations

import pytest

from conformance.pair import NAMES

pytestmark = pytest.mark.peer


def _verdicts(pair, name: str, config: dict) -> dict[str, object]:
    rt = pair.rt[name]
    cid, _ = pair.start_detached(name, config)
    v: dict[str, object] = {}
    for label, args in (("running_0", (cid, "0")), ("running_all_0", ("--all", cid, "0")),
                        ("running_a_0", ("-a", cid, "0"))):
        p = rt("kill", *args)
        v[label] = (p.returncode == 0, p.stderr.decode(errors="replace").strip()[-200:])
    v["still_running"] = rt.state(cid)["status"]
    rt("kill", cid, "KILL", check=True)
    pair.wait_status(name, cid, "stopped")
    p = rt("kill", cid, "0")
    v["stopped_0"] = p.returncode == 0
    err = p.stderr.decode(errors="replace").strip()
    v["stopped_0_says"] = "not running" if "not running" in err else err
    v["stopped_all_0"] = rt("kill", "--all", cid, "0").returncode == 0
    v["unknown_0"] = rt("kill", "nosuch", "0").returncode == 0
    v["bad_SIG0"] = rt("kill", cid, "SIG0").returncode == 0
    rt("delete", cid, check=True)
    return v


def test_kill_signal_zero_agrees(pair, config):
    config["process"]["args"] = ["sleep", "60"]
    got = {name: _verdicts(pair, name, config) for name in NAMES}
    want = {"running_0": (True, ""), "running_all_0": (True, ""), "running_a_0": (True, ""),
            "still_running": "running", "stopped_0": False, "stopped_0_says": "not running",
            "stopped_all_0": True, "unknown_0": False, "bad_SIG0": False}
    assert got["runc"] == want, got["runc"]
    assert got["pyrunc"] == got["runc"], f"runc: {got['runc']}\npyrunc: {got['pyrunc']}"
