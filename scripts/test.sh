#!/usr/bin/env bash
# Command 2 of the README (and what .ci/run calls): make sure everything is installed, lint,
# then run every test (unit, integration with real containers, conformance against runc).
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/install.sh || exit 1
.venv/bin/ruff check runtime imagetool tests conformance bench scripts conftest.py || exit 1
# types: the files [tool.mypy] in pyproject.toml lists
.venv/bin/python -m mypy || exit 1
# what this host offers (tests probe it and test the refusal where a feature is missing)
.venv/bin/python -m tests.hostcaps || exit 1
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "test.sh: pytest collected no tests: that is a broken suite, not a pass" >&2
  exit 1
fi
exit "$rc"
