"""runtime/signals.py: the one signal table and parser (pyrunc kill, imagetool STOPSIGNAL,
stop and kill), checked against the host's own numbering and for its import cost."""

from __future__ import annotations

import _signal
import os
import subprocess
import sys

import pytest

from runtime import signals

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_table_matches_the_host():
    """Every name in the table is the host libc's number for it (the table is Linux's)."""
    for name, num in signals.SIGNALS.items():
        host = getattr(_signal, "SIG" + name, None)
        if host is not None:
            assert host == num, name
    assert (signals.RTMIN, signals.RTMAX) == (_signal.SIGRTMIN, _signal.SIGRTMAX)
    assert signals.NSIG == _signal.NSIG


@pytest.mark.parametrize("text", sorted(signals.SIGNALS))
def test_every_name_with_and_without_sig_in_any_case(text):
    want = signals.SIGNALS[text]
    for spelling in (text, "SIG" + text, text.lower(), "sig" + text.lower(), "Sig" + text):
        assert signals.parse(spelling) == want, spelling


@pytest.mark.parametrize("text,want", [
    ("1", 1), ("9", 9), ("15", 15), ("64", 64),
    ("RTMIN", 34), ("SIGRTMIN+3", 37), ("rtmin+3", 37), ("SigRtMin+15", 49),
    ("RTMIN+30", 64), ("SIGRTMAX", 64), ("RTMAX-1", 63), ("sigrtmax-14", 50), ("RTMAX-30", 34),
])
def test_numbers_and_realtime(text, want):
    assert signals.parse(text) == want


@pytest.mark.parametrize("text", [
    "", "0", "65", "99", "-1", "+9", " 9", "9 ", "KILL ", "NOPE", "SIG", "SIG_DFL", "SIG_IGN",
    "SIGSIGKILL", "SIG0", "9.0", "0x9", "\u0669",  # Arabic-Indic nine: a digit, not ASCII
    "RTMIN+", "RTMIN+31", "RTMIN-1", "RTMAX+1", "RTMAX-31", "RTMIN+x", "RTMIN+-1", "NSIG",
])
def test_refused(text):
    with pytest.raises(signals.InvalidSignal) as ei:
        signals.parse(text)
    assert str(ei.value) == f"invalid signal {text!r}"
    assert isinstance(ei.value, ValueError)


def test_zero_only_when_asked():
    """0 sends nothing: runc's kill takes it (is the container alive?); docker's does not."""
    assert signals.parse("0", allow_zero=True) == 0
    with pytest.raises(signals.InvalidSignal):
        signals.parse("0")
    with pytest.raises(signals.InvalidSignal):
        signals.parse("SIG0", allow_zero=True)


def test_the_three_parsers_are_this_one():
    from imagetool.builder import dockerfile
    from imagetool.run import cli as run_cli
    from imagetool.run.records import ContainerError
    from runtime import cli
    from runtime.errors import PyruncError
    for text in ("SIGRTMIN+3", "term", "9", "RTMAX-2"):
        want = signals.parse(text)
        assert cli.parse_signal(text) == dockerfile.parse_signal(text) == want
        assert run_cli.parse_signal(text) == want
    assert cli.parse_signal("0") == 0
    with pytest.raises(ValueError):
        dockerfile.parse_signal("0")
    with pytest.raises(ContainerError, match="invalid signal '0'"):
        run_cli.parse_signal("0")
    with pytest.raises(PyruncError, match="invalid signal 'NOPE'"):
        cli.parse_signal("NOPE")
    assert run_cli.parse_signal(None, 9) == run_cli.parse_signal("", 9) == 9


def test_import_is_cheap():
    """pyrunc's kill loads it: no `signal` (enum) or `re` comes with it."""
    code = (f"import sys; sys.path.insert(0, {ROOT!r}); before = set(sys.modules); "
            "import runtime.signals; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    p = subprocess.run([sys.executable, "-I", "-S", "-c", code], cwd=ROOT, capture_output=True,
                       text=True, timeout=30, check=True)
    assert set(p.stdout.split()) <= {"__future__", "runtime", "runtime.signals"}, p.stdout
