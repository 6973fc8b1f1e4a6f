"""The command-line habits scripts and engines parse, runc and pyrunc side by side (runc
1.1.5's version.bats, help.bats, debug.bats, exec.bats "[exit codes]"/"--debug exec" and
list.bats checks): the same commands under both, the same checks on both outputs, and the
exit statuses compared. Names differ (`runc ...` / `pyrunc ...`), so checks that read a name
take it from the binary; everything else must agree.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest

from conformance.pair import NAMES

pytestmark = pytest.mark.peer

HELP_BATS_COMMANDS = ("checkpoint", "delete", "events", "exec", "kill", "list", "pause",
                      "restore", "resume", "spec", "start", "run", "state", "update")


def _name(pair, runtime: str) -> str:
    return os.path.basename(pair.rt[runtime].binary)


def _out(p) -> tuple[int, str, str]:
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def _lines(text: str) -> list[str]:
    """Non-empty lines, as bats' $lines holds them."""
    return [line for line in text.splitlines() if line.strip()]


def _no_traceback(outs: dict[str, tuple[int, str, str]]) -> None:
    for name, (_, out, err) in outs.items():
        assert "Traceback" not in out + err, f"{name}: {err}"


def _docker_parse(text: str) -> tuple[str, str, str]:
    """What docker 20.10's daemon reads from `<runtime> --version` for `docker info`: the
    runtime name and version from the line holding "version", the commit after "commit:"."""
    runtime = version = commit = ""
    for line in text.strip().split("\n"):
        if "version" in line:
            parts = line.split("version")
            runtime, version = parts[0].strip(), parts[-1].strip()
        elif "commit:" in line:
            commit = line.split("commit:")[-1].strip()
    return runtime, version, commit


# --- version.bats --------------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["-v", "--version"])
def test_version_lines(pair, flag):
    for name in NAMES:
        rc, out, err = _out(pair.rt[name](flag))
        prog = _name(pair, name)
        lines = _lines(out)
        assert rc == 0, (name, err)
        assert re.match(rf"{prog} version [0-9]+\.[0-9]+\.[0-9]+", lines[0]), (name, lines)
        assert re.match(r"commit: \S+$", lines[1]), (name, lines)
        assert re.match(r"spec: [0-9]+\.[0-9]+\.[0-9]+", lines[2]), (name, lines)
        runtime, version, commit = _docker_parse(out)
        assert runtime == prog and version == lines[0].split()[-1], (name, out)
        assert commit == lines[1].split()[-1], (name, out)


def test_pyrunc_version_names_its_checkout(pair):
    """A checkout says its commit (read from .git), anything else "unknown"."""
    out = pair.rt["pyrunc"]("-v").stdout.decode()
    commit = _docker_parse(out)[2]
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.exists(os.path.join(here, ".git")):
        assert re.fullmatch(r"[0-9a-f]{40}", commit), out
    else:
        assert commit == "unknown", out


def test_version_is_not_a_command(pair):
    """runc 1.1.5 has no `version` command: it is an unknown help topic, exit 3."""
    outs = {name: _out(pair.rt[name]("version")) for name in NAMES}
    assert outs["runc"][0] == outs["pyrunc"][0] == 3, outs
    for name, (_, out, err) in outs.items():
        assert "No help topic for 'version'" in err, (name, err)
        assert out == "", (name, out)


# --- help.bats -----------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["-h"], ["--help"], [], ["help"], ["h"]],
                         ids=["-h", "--help", "no-args", "help", "h"])
def test_app_help(pair, argv):
    commands = {}
    for name in NAMES:
        rc, out, err = _out(pair.rt[name](*argv))
        prog = _name(pair, name)
        lines = _lines(out)
        assert rc == 0, (name, err)
        assert lines[0] == "NAME:", (name, lines[:2])
        assert re.search(rf"{prog} - Open Container Initiative runtime", lines[1]), lines[1]
        heads = [line for line in lines if re.fullmatch(r"[A-Z][A-Z ]+:", line)]
        assert [h for h in heads if h != "VERSION:"] == ["NAME:", "USAGE:", "COMMANDS:",
                                                        "GLOBAL OPTIONS:"], (name, heads)
        at = lines.index("USAGE:")
        assert lines[at + 1].startswith(f"   {prog} [global options] command"), lines[at + 1]
        first, last = lines.index("COMMANDS:") + 1, lines.index("GLOBAL OPTIONS:")
        commands[name] = {c for line in lines[first:last]
                          for c in re.match(r"\s+(\S+(?:, \S+)*)", line).group(1).split(", ")}
        options = " ".join(lines[last:])
        for flag in ("--debug", "--log value", "--log-format value", "--root value",
                     "--help, -h", "--version, -v"):
            assert flag in options, (name, flag)
    assert commands["runc"] <= commands["pyrunc"], commands["runc"] - commands["pyrunc"]


@pytest.mark.parametrize("cmd", HELP_BATS_COMMANDS)
def test_command_help(pair, cmd):
    for name in NAMES:
        prog = _name(pair, name)
        for argv in ([cmd, "-h"], [cmd, "--help"], ["help", cmd]):
            rc, out, err = _out(pair.rt[name](*argv))
            lines = _lines(out)
            assert rc == 0, (name, argv, err)
            assert lines[0] == "NAME:", (name, argv, lines[:2])
            assert re.search(rf"{prog} {cmd}\b", lines[1]), (name, argv, lines[1])
            at = lines.index("USAGE:")
            assert lines[at + 1].startswith(f"   {prog} {cmd}"), (name, argv, lines[at + 1])


@pytest.mark.parametrize("argv", [["foo", "-h"], ["foo"], ["help", "foo"], ["foo", "--help"]],
                         ids=["foo-h", "foo", "help-foo", "foo--help"])
def test_unknown_command(pair, argv):
    outs = {name: _out(pair.rt[name](*argv)) for name in NAMES}
    _no_traceback(outs)
    assert outs["pyrunc"][0] == outs["runc"][0] != 0, outs
    for name, (_, _, err) in outs.items():
        assert "No help topic for 'foo'" in err, (name, err)


@pytest.mark.parametrize("argv", [["list", "--bogus"], ["state"], ["kill", "a", "b", "c"],
                                  ["exec"], ["--log-format", "yaml", "list"], ["--bogus"]],
                         ids=["bad-flag", "missing-id", "extra-args", "exec-no-id",
                              "bad-log-format", "bad-global-flag"])
def test_usage_errors_exit_1(pair, argv):
    outs = {name: _out(pair.rt[name](*argv)) for name in NAMES}
    _no_traceback(outs)
    assert outs["runc"][0] == 1 and outs["pyrunc"][0] == 1, outs


# --- debug.bats ----------------------------------------------------------------------------

def _text_lines_ok(text: str) -> bool:
    return all(re.match(r'time="[^"]+" level=[a-z]+ msg=', line) for line in _lines(text))


def _json_lines_ok(text: str) -> bool:
    for line in _lines(text):
        rec = json.loads(line)
        if not {"level", "msg", "time"} <= set(rec) or ": " in line.split('"msg"')[0]:
            return False
    return True


@pytest.mark.parametrize("how", ["stderr", "log", "log-text", "log-json"])
def test_debug_run(pair, config, tmp_path, how):
    """`--debug run`: level=debug lines on stderr, or only in the --log file."""
    for name in NAMES:
        rt = pair.rt[name]
        b = pair.bundle(name, config)
        log = str(tmp_path / f"{name}.log")
        glob = [] if how == "stderr" else ["--log", log]
        if how in ("log-text", "log-json"):
            glob += ["--log-format", how[4:]]
        rc, _, err = _out(rt(*glob, "--debug", "run", "--bundle", b.path, rt.new_id("dbg")))
        assert rc == 0, (name, err)
        if how == "stderr":
            assert "level=debug" in err, (name, err)
            # debug.bats' check_debug: the init's stages, as runc names them (1.1.5 says
            # "nsexec container setup", later runc "nsexec started"; pyrunc says both)
            assert "nsexec container setup" in err and "child process in init()" in err, \
                (name, err)
            assert name == "runc" or "nsexec started" in err, err
            assert "init: closing the pipe to signal completion" in err, (name, err)
            continue
        assert "level=debug" not in err and '"level":"debug"' not in err, (name, err)
        text = open(log).read()
        assert "nsexec container setup" in text and "child process in init()" in text, \
            (name, text)
        assert "init: closing the pipe to signal completion" in text, (name, text)
        if how == "log-json":
            assert '"level":"debug"' in text and _json_lines_ok(text), (name, text)
        else:
            assert "level=debug" in text and _text_lines_ok(text), (name, text)


def test_log_file(pair, tmp_path):
    """--log FILE exists after a command that logged nothing; errors land in it as the last
    JSON line; a --log in a missing directory is an error."""
    for name in NAMES:
        rt = pair.rt[name]
        quiet = str(tmp_path / f"{name}-quiet.log")
        assert rt("--log", quiet, "list").returncode == 0
        assert os.path.isfile(quiet), name
        failing = str(tmp_path / f"{name}-fail.log")
        rc, _, err = _out(rt("--log", failing, "--log-format", "json", "state", "nosuch"))
        assert rc == 1 and "does not exist" in err, (name, err)
        last = json.loads(open(failing).read().splitlines()[-1])
        assert last["level"] == "error" and "does not exist" in last["msg"], (name, last)
        rc, _, err = _out(rt("--log", str(tmp_path / "nodir" / "x.log"), "list"))
        assert rc == 1 and "Traceback" not in err, (name, err)


# --- exec.bats -----------------------------------------------------------------------------

EXEC_CASES: list[tuple[str, list[str]]] = [
    ("false", ["{C}", "false"]),
    ("exit42", ["{C}", "sh", "-c", "exit 42"]),
    ("pid-file-bad-dir", ["--pid-file", "/non-existent/directory", "{C}", "true"]),
    ("no-such-binary", ["{C}", "no-such-binary"]),
    ("no-such-container", ["no_such_container", "true"]),
    ("no-command", ["{C}"]),
    ("process-json-missing", ["--process", "/non-existent/process.json", "{C}"]),
    ("bad-flag", ["--bogus", "{C}", "true"]),
]


def test_exec_exit_codes(pair, config):
    config["process"]["args"] = ["sleep", "60"]
    got: dict[str, dict[str, int]] = {}
    for name in NAMES:
        rt = pair.rt[name]
        cid, _ = pair.start_detached(name, config)
        got[name] = {}
        for case, argv in EXEC_CASES:
            rc, out, err = _out(rt("exec", *[a.replace("{C}", cid) for a in argv]))
            assert "Traceback" not in out + err, (name, case, err)
            if rc not in (0, 1, 42):
                assert err.strip(), (name, case, "failed without saying why")
            got[name][case] = rc
    assert got["runc"] == {"false": 1, "exit42": 42, "pid-file-bad-dir": 255,
                           "no-such-binary": 255, "no-such-container": 255, "no-command": 255,
                           "process-json-missing": 255, "bad-flag": 1}, got["runc"]
    assert got["pyrunc"] == got["runc"]


def test_exec_pid_file_failure_kills_the_process(pair, config):
    """runc kills the process it started when it cannot write --pid-file."""
    config["process"]["args"] = ["sleep", "60"]
    for name in NAMES:
        rt = pair.rt[name]
        cid, _ = pair.start_detached(name, config)
        rc, _, err = _out(rt("exec", "--pid-file", "/non-existent/dir/pid", cid, "sleep", "97"))
        assert rc == 255, (name, err)
        ps = rt("exec", cid, "ps", check=True).stdout.decode()
        assert "sleep 97" not in ps, (name, ps)


@pytest.mark.parametrize("to_log", [False, True], ids=["stderr", "log"])
def test_exec_debug(pair, config, tmp_path, to_log):
    config["process"]["args"] = ["sleep", "60"]
    for name in NAMES:
        rt = pair.rt[name]
        cid, _ = pair.start_detached(name, config)
        log = str(tmp_path / f"{name}.log")
        glob = ["--debug", "--log", log] if to_log else ["--debug"]
        rc, _, err = _out(rt(*glob, "exec", cid, "true"))
        assert rc == 0, (name, err)
        if to_log:
            assert "level=debug" not in err, (name, err)
            text = open(log).read()
            assert "level=debug" in text and _text_lines_ok(text), (name, text)
        else:
            text = err
            assert "level=debug" in err and _text_lines_ok(err), (name, err)
        # exec.bats' check_exec_debug: the stages as runc names them
        for stage in ("nsexec container setup", "child process in init()",
                      "setns_init: about to exec"):
            assert stage in text, (name, stage, text)


# --- list.bats -----------------------------------------------------------------------------

ANNOTATIONS = {"org.example.note": "a&b<c>d é"}
STATE_KEYS = ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created"]


def _check_table(text: str) -> list[list[str]]:
    """Go tabwriter's layout of runc's list (the rule both outputs must follow): every column
    but the last as wide as its widest cell plus 3, at least 12; cells never hold spaces."""
    lines = text.splitlines()
    starts = [[m.start() for m in re.finditer(r"\S+", line)] for line in lines]
    cells = [line.split() for line in lines]
    assert all(len(c) == 6 for c in cells), text
    assert all(s == starts[0] for s in starts), text
    for col in range(5):
        want = max(12, max(len(c[col]) for c in cells) + 3)
        assert starts[0][col + 1] - starts[0][col] == want, (col, text)
    assert all(line == line.rstrip() for line in lines), text
    return cells


def _go_json(obj: Any) -> str:
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for raw, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(raw, esc)
    return text


def test_list_empty(pair):
    outs = {name: {fmt: _out(pair.rt[name]("list", *fmt)) for fmt in
                   ((), ("--format", "table"), ("--format", "json"), ("-q",))}
            for name in NAMES}
    assert outs["pyrunc"] == outs["runc"]


def test_list(pair, config):
    config["process"]["args"] = ["sleep", "60"]
    annotated = dict(config, annotations=ANNOTATIONS)
    for name in NAMES:
        rt = pair.rt[name]
        ids = sorted(pair.start_detached(name, cfg)[0] for cfg in (config, annotated))
        b = os.path.dirname(rt.state(ids[0])["bundle"])

        for argv in (["list"], ["list", "--format", "table"], ["list", "-f", "table"]):
            rc, out, err = _out(rt(*argv))
            assert rc == 0, (name, err)
            cells = _check_table(out)
            assert cells[0] == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
            assert [c[0] for c in cells[1:]] == ids, (name, out)
            for c in cells[1:]:
                assert c[1].isdigit() and c[2] == "running" and c[3].startswith(b), (name, c)
                assert c[5] == "root", (name, c)

        assert rt("list", "-q", check=True).stdout.decode().split("\n") == ids + [""]
        assert rt("list", "-q", "-f", "json", check=True).stdout.decode().split() == ids

        raw = rt("list", "--format", "json", check=True).stdout.decode()
        assert raw.endswith("\n") and raw.count("\n") == 1, (name, raw)
        items = json.loads(raw)
        assert _go_json(items) == raw.strip(), (name, raw)  # Go's compact encoding
        assert [i["id"] for i in items] == ids
        by_id = {i["id"]: i for i in items}
        for cid in ids:
            item, st = by_id[cid], rt.state(cid)
            keys = STATE_KEYS + (["annotations"] if "annotations" in item else []) + ["owner"]
            assert list(item) == keys, (name, list(item))
            assert list(st) == keys, (name, "state", list(st))  # `state`: the same order
            assert (item["pid"], item["status"], item["owner"]) == (st["pid"], "running", "root")
            # list.bats' pattern for each item of line 0
            assert re.search(r'\{"ociVersion":"[0-9]+\.[0-9]+\.[0-9]+[^"]*","id":"' + cid +
                             r'","pid":[0-9]+,"status":"running","bundle":"' + re.escape(b) +
                             r'[^"]*","rootfs":"[^"]*","created":"[0-9][^"]*"', raw), raw
        assert by_id[ids[0]].get("annotations") or by_id[ids[1]].get("annotations")
        assert '"org.example.note":"a\\u0026b\\u003cc\\u003ed é"' in raw, (name, raw)
