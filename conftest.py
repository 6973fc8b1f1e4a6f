"""Repository-wide pytest hook: the report header says what the host offers (tests/hostcaps.py),
so a CI log on any machine shows which features the suite probed and found."""

from __future__ import annotations


def pytest_report_header(config):
    from tests import hostcaps
    return hostcaps.summary()
