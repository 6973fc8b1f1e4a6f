"""The hand-written parser accepts what engines pass and refuses what runc refuses."""

from __future__ import annotations

import pytest

from runtime.cli import COMMANDS, GLOBAL, all_commands, parse_signal
from runtime.clihelp import app_help, command_help
from runtime.cliparse import UnknownCommand, UsageError, parse
from runtime.errors import PyruncError


def p(*argv: str):
    return parse(list(argv), GLOBAL, COMMANDS)


def test_shim_argv_shapes():
    a = p("--root", "/r", "--log", "/b/log.json", "--log-format", "json", "create", "--bundle",
          "/b", "--pid-file", "/b/pid", "--console-socket", "/s.sock", "--no-pivot", "cid")
    assert (a.root, a.log, a.log_format, a.command, a.bundle, a.pid_file, a.console_socket,
            a.no_pivot, a.id) == ("/r", "/b/log.json", "json", "create", "/b", "/b/pid",
                                  "/s.sock", True, "cid")
    a = p("kill", "--all", "cid", "9")
    assert (a.all, a.id, a.signal) == (True, "cid", "9")
    assert p("kill", "cid").signal == "SIGTERM"
    a = p("delete", "--force", "cid")
    assert a.force and a.id == "cid"
    a = p("run", "-d", "--preserve-fds=2", "-b", "/b", "x")
    assert a.detach and a.preserve_fds == 2 and a.bundle == "/b"


def test_exec_argv_after_the_id_is_not_parsed():
    a = p("exec", "-t", "cid", "sh", "-c", "echo --cap x", "--tty")
    assert a.tty and a.id == "cid" and a.argv == ["sh", "-c", "echo --cap x", "--tty"]
    assert a.cap == []


def test_go_style_single_dash_and_interspersed():
    a = p("-root", "/r", "create", "-bundle", "/b", "cid", "--pid-file", "/p")
    assert (a.root, a.bundle, a.id, a.pid_file) == ("/r", "/b", "cid", "/p")


@pytest.mark.parametrize("argv,msg", [
    (["nosuch"], "nosuch"),
    (["create"], "missing argument <id>"),
    (["state", "a", "b"], "unexpected argument"),
    (["create", "--bogus", "x"], "flag provided but not defined: --bogus"),
    (["create", "--bundle"], "flag needs an argument"),
    (["--log-format", "xml", "list"], "not one of"),
    (["run", "--preserve-fds", "x", "id"], "invalid value"),
])
def test_usage_errors(argv, msg):
    with pytest.raises(UsageError, match=msg):
        p(*argv)


def test_help_lists_every_command_and_option():
    top = app_help("pyrunc", GLOBAL, all_commands())
    for name in COMMANDS:
        assert f"   {name} " in top
    assert {"update", "events", "ps"} <= set(COMMANDS)
    sub = command_help("pyrunc", COMMANDS["create"])
    assert "--console-socket value" in sub and "<container-id>" in sub
    assert p("create", "--help").help


def test_help_topics_and_unknown_commands():
    a = p("help", "list")
    assert (a.help, a.command, a.topic) == (True, None, "list")
    a = p("h")
    assert (a.help, a.topic) == (True, None)
    a = p("list", "-h")
    assert (a.help, a.command) == (True, "list")
    with pytest.raises(UnknownCommand) as e:
        p("foo", "-h")
    assert e.value.name == "foo"


def test_signals():
    assert parse_signal("9") == parse_signal("KILL") == parse_signal("sigkill") == 9
    assert parse_signal("SIGUSR1") == 10 and parse_signal("0") == 0  # runc's kill takes 0
    for bad in ("99", "NOPE", "SIG_DFL", "SIG"):
        with pytest.raises(PyruncError):
            parse_signal(bad)
