"""build_parser(only): the parser of one verb gives the same parse as the full parser, an
unknown `only` falls back to every verb, and the top-level help still lists them all."""

from __future__ import annotations

import pytest

from imagetool.cli import build_parser
from imagetool.run.usage import _subparsers, flat_verb

LINES = [
    ["run", "--rm", "--network", "none", "-e", "A=1", "busybox", "sh", "-c", "true"],
    ["ps", "-a", "--format", "{{.Names}}"],
    ["container", "ls", "-a"],
    ["network", "create", "n1"],
    ["--root", "/tmp/x", "images"],
    ["key", "generate", "--output-prefix", "k"],
]


@pytest.mark.parametrize("argv", LINES, ids=lambda a: " ".join(a[:2]))
def test_one_verb_parses_as_the_full_parser(argv):
    from imagetool.run.usage import parse_args
    only = flat_verb(argv)
    assert only is not None
    one = build_parser(only)
    assert set(_subparsers(one)) == {only}
    a, b = parse_args(one, argv), parse_args(build_parser(), argv)
    assert {k: v for k, v in vars(a).items() if k != "fn"} == \
        {k: v for k, v in vars(b).items() if k != "fn"}
    assert a.fn.__qualname__ == b.fn.__qualname__


def test_unknown_or_help_gets_every_verb():
    full = set(_subparsers(build_parser()))
    assert len(full) > 40
    assert set(_subparsers(build_parser("no-such-verb"))) == full
    assert flat_verb(["-h", "run"]) is None and flat_verb(["--root", "/x"]) is None
    assert flat_verb(["network"]) is None and flat_verb(["container", "ls"]) == "ps"
