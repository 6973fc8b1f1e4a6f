"""imagetool/units.py (the one byte-size and duration reader, runtime/units.py, and its
callers on both sides) and imagetool/users.py's two readings of a user (the container's USER
vs BuildKit's --chown)."""

from __future__ import annotations

import pytest

from imagetool import units, users

PASSWD = b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1001::/home/user:/bin/sh\n"
GROUP = b"root:x:0:\nstaff:x:50:user\ngrp:x:1001:\n"


@pytest.mark.parametrize("text,want", [
    ("100", 100), ("64m", 64 << 20), ("64M", 64 << 20), ("1g", 1 << 30), ("1.5g", 3 << 29),
    ("512KiB", 512 << 10), ("2 mb", 2 << 20), ("1t", 1 << 40), ("10b", 10),
])
def test_bytes(text, want):
    assert units.parse_bytes(text) == want and units.is_bytes(text)


@pytest.mark.parametrize("text", ["", "lots", "m", "-1m", "1x", "1.m", "1  m", " 1m"])
def test_bad_bytes(text):
    assert not units.is_bytes(text)
    with pytest.raises(ValueError, match="invalid size"):
        units.parse_bytes(text)


def test_durations():
    assert units.parse_duration("1m30s") == 90 * 10**9
    assert units.parse_duration("300ms") == 300 * 10**6
    assert units.parse_duration("-1.5h") == -5400 * 10**9
    for bad in ("", "1", "1d", "s", "."):
        with pytest.raises(ValueError, match="invalid duration"):
            units.parse_duration(bad)


def test_user_and_chown_differ_for_a_bare_id():
    """A container's USER 1000 takes its passwd gid (1001) and the groups listing the
    user; BuildKit's --chown=1000 is 1000:1000 with no lookup."""
    assert users.resolve_user("1000", PASSWD, GROUP) == {
        "uid": 1000, "gid": 1001, "home": "/home/user", "additionalGids": [1001, 50]}
    assert users.chown_ids("1000", PASSWD, GROUP) == (1000, 1000)
    assert users.chown_ids("user", PASSWD, GROUP) == (1000, 1001)
    assert users.chown_ids("user:staff", PASSWD, GROUP) == (1000, 50)
    assert users.chown_ids("7:9", None, None) == (7, 9)


@pytest.mark.parametrize("spec,message", [
    ("nobody", "unable to find user nobody"), ("user:nogroup", "unable to find group nogroup")])
def test_chown_unknown_names(spec, message):
    with pytest.raises(users.ConvertError, match=message):
        users.chown_ids(spec, PASSWD, GROUP)


def test_container_flags_read_sizes_with_units_and_keep_their_words():
    """run --memory / tmpfs-size go through units.parse_bytes; the error names the value the
    way the container verbs always did."""
    from imagetool.run.options import parse_bytes
    from imagetool.run.records import ContainerError
    assert parse_bytes(" 64m ") == 64 << 20 and parse_bytes("1.5g") == 3 << 29
    assert parse_bytes("512KiB") == 512 << 10 and parse_bytes("1p") == 1 << 50
    for bad in ("lots", "-1m", "1x"):
        with pytest.raises(ContainerError, match=r"invalid size .* \(want e\.g\. 64m, 1g\)"):
            parse_bytes(bad)


def test_events_since_reads_go_durations_with_units():
    import time

    from imagetool.run.events import parse_when
    assert parse_when("12") == 12.0  # unix seconds before durations, as docker
    for text, age in (("1.5h", 5400), ("1h30m", 5400), ("300ms", 0.3), (".5s", 0.5)):
        assert abs(time.time() - parse_when(text) - age) < 5
    with pytest.raises(ValueError, match="invalid time 'soon'"):
        parse_when("soon")


def test_pyrunc_flags_share_the_reader_and_keep_runc_rules():
    """runtime/verbs/cli.py reads --memory and --interval with runtime/units.py (the module
    imagetool/units.py re-exports), keeping -1, bare seconds and its own words."""
    import runtime.units
    from runtime.errors import PyruncError
    from runtime.verbs.cli import parse_bytes, parse_duration
    assert units.parse_bytes is runtime.units.parse_bytes
    assert parse_bytes("-1", "--memory") == -1 and parse_bytes(" 2GiB", "--memory") == 2 << 30
    with pytest.raises(PyruncError, match="invalid value for --memory: '1.m'"):
        parse_bytes("1.m", "--memory")
    assert parse_duration("7") == 7.0 and parse_duration("1m30s") == 90.0
    assert parse_duration("500ms") == 0.5
    for bad in ("-1s", "5d", ""):
        with pytest.raises(PyruncError, match="invalid duration"):
            parse_duration(bad)
