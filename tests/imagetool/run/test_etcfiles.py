"""The text of a run container's resolv.conf and hosts (the files themselves are checked in
real containers by test_run.py)."""

from __future__ import annotations

from imagetool.run.etcfiles import DEFAULT_NAMESERVERS, hosts, resolv_conf


def _servers(text: str) -> list[str]:
    return [w[1] for w in (line.split() for line in text.splitlines()) if w[:1] == ["nameserver"]]


def test_loopback_nameservers_are_dropped_and_the_rest_kept():
    text = ("# from the host\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 10.0.0.2\n"
            "search example.org\noptions ndots:2\n")
    out = resolv_conf(text)
    assert _servers(out) == ["10.0.0.2"]
    assert "search example.org" in out and "options ndots:2" in out


def test_only_local_nameservers_give_dockers_defaults():
    assert _servers(resolv_conf("nameserver 127.0.0.11\n")) == list(DEFAULT_NAMESERVERS)
    assert _servers(resolv_conf("")) == list(DEFAULT_NAMESERVERS)


def test_hosts_names_the_address_only_when_there_is_one():
    assert hosts("box", None).splitlines()[0] == "127.0.0.1\tlocalhost"
    assert "box" not in hosts("box", None)
    assert hosts("box", "10.89.0.5").splitlines()[-1] == "10.89.0.5\tbox"
