"""How imagetool's command line reports errors: the user's errors (every class under
imagetool.errors.ImagetoolError, OSError, ...) as one line, a programming error as a one-line
"internal error" without a traceback, and both with the traceback under --debug."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import imagetool
from imagetool import cli
from imagetool.errors import ImagetoolError
from imagetool.store import ImageNotFound


def _run(monkeypatch, capsys, exc: BaseException, *flags: str) -> tuple[int, str]:
    def boom(args):
        raise exc
    monkeypatch.setattr(cli, "cmd_images", boom)  # the parser binds it when main() builds it
    rc = cli.main([*flags, "images"])
    return rc, capsys.readouterr().err


def test_user_error_is_one_line(monkeypatch, capsys, tmp_path):
    rc, err = _run(monkeypatch, capsys, ImageNotFound("no such image: x"), "--root",
                   str(tmp_path))
    assert (rc, err) == (1, "imagetool: images: no such image: x\n")


def test_os_error_is_the_users_too(monkeypatch, capsys, tmp_path):
    rc, err = _run(monkeypatch, capsys, PermissionError(13, "Permission denied"), "--root",
                   str(tmp_path))
    assert rc == 1 and err == "imagetool: images: [Errno 13] Permission denied\n"


def test_programming_error_is_an_internal_error_without_traceback(monkeypatch, capsys,
                                                                  tmp_path):
    rc, err = _run(monkeypatch, capsys, TypeError("'NoneType' is not subscriptable"),
                   "--root", str(tmp_path))
    assert rc == 1
    assert err == ("imagetool: images: internal error: TypeError: 'NoneType' is not "
                   "subscriptable (--debug shows the traceback)\n")
    assert "Traceback" not in err


def test_debug_lets_the_traceback_through(monkeypatch, capsys, tmp_path):
    with pytest.raises(KeyError):
        _run(monkeypatch, capsys, KeyError("x"), "--debug", "--root", str(tmp_path))


def test_every_imagetool_error_class_has_the_one_root():
    """Every exception class imagetool defines derives from ImagetoolError (internal
    control-flow ones aside)."""
    internal = {"imagetool.builder.dockerfile.lexer.NotStrings", "imagetool.pull.Cancelled"}
    strays = []
    for mod in pkgutil.walk_packages(imagetool.__path__, "imagetool."):
        m = importlib.import_module(mod.name)
        for obj in vars(m).values():
            if (isinstance(obj, type) and issubclass(obj, Exception)
                    and obj.__module__ == mod.name
                    and f"{obj.__module__}.{obj.__qualname__}" not in internal
                    and not issubclass(obj, ImagetoolError)):
                strays.append(f"{obj.__module__}.{obj.__qualname__}")
    assert strays == [], ("derive these from imagetool.errors.ImagetoolError (keep ValueError "
                          "as a second base if it is one): " + ", ".join(strays))
