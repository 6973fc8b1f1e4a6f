"""runtime/log.py: logrus-shaped lines, where debug lines go, the --log file made up front;
runtime/jsonio.dumps_go: Go's compact encoding (runc's list JSON, logrus' JSON lines)."""

from __future__ import annotations

import json
import os
import re

import pytest

from runtime import jsonio
from runtime.errors import PyruncError
from runtime.log import Logger

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"


def test_debug_goes_to_stderr_without_log(capsys):
    Logger(None, "text", debug=True).debug("hello world", pid=12, path="/a b")
    err = capsys.readouterr().err
    assert re.fullmatch(rf'time="{STAMP}" level=debug msg="hello world" path="/a b" pid=12\n',
                        err), err


def test_debug_off_writes_nothing(tmp_path, capsys):
    log = Logger(str(tmp_path / "l"), "text", debug=False)
    log.open()
    log.debug("x")
    assert capsys.readouterr().err == "" and (tmp_path / "l").read_text() == ""


def test_log_file_gets_debug_and_errors_stderr_only_errors(tmp_path, capsys):
    path = tmp_path / "log.json"
    log = Logger(str(path), "json", debug=True)
    log.open()
    umask = os.umask(0)
    os.umask(umask)
    assert path.exists() and path.stat().st_mode & 0o777 == 0o644 & ~umask
    log.debug("step", pid=3)
    log.error("it <broke> & stopped")
    err = capsys.readouterr().err
    assert err == "pyrunc: it <broke> & stopped\n"
    lines = path.read_text().splitlines()
    assert lines[0].startswith('{"level":"debug","msg":"step","pid":3,"time":"'), lines[0]
    assert '"msg":"it \\u003cbroke\\u003e \\u0026 stopped"' in lines[1], lines[1]
    assert [json.loads(x)["level"] for x in lines] == ["debug", "error"]


def test_log_file_that_cannot_be_made(tmp_path, capsys):
    log = Logger(str(tmp_path / "no" / "dir" / "log"), "text", debug=True)
    with pytest.raises(PyruncError, match="--log .*No such file or directory"):
        log.open()
    log.debug("then stderr")  # the file is dropped: lines go to stderr from here on
    assert "level=debug" in capsys.readouterr().err


@pytest.mark.parametrize("obj,want", [
    ({"a": 1, "b": [True, None, 2.5]}, '{"a":1,"b":[true,null,2.5]}'),
    ({"s": "x<y>&z"}, '{"s":"x\\u003cy\\u003e\\u0026z"}'),
    ({"s": "é\u2028\u2029"}, '{"s":"é\\u2028\\u2029"}'),
    ({"s": "q\"\\\n"}, '{"s":"q\\"\\\\\\n"}'),
    ([], "[]"),
])
def test_dumps_go(obj, want):
    assert jsonio.dumps_go(obj) == want
    assert json.loads(jsonio.dumps_go(obj)) == obj
