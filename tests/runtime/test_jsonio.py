"""The hot-path JSON codec agrees with the json module, also on errors, in a fresh
interpreter where json was never imported (the C scanner's error path needs care there)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from runtime import jsonio

DOCS = [{"a": [1, 2.5, None, True, False, "x\u00e9\n\"q"], "b": {}, "c": [],
         "d": {"e": {"f": [{}]}}}, [], {}, "s", 1, -0.1, None, {"k": [[], {}, [[1]]]}]


@pytest.mark.parametrize("doc", DOCS)
def test_round_trip_matches_json(doc):
    assert jsonio.loads(json.dumps(doc)) == doc
    assert jsonio.dumps(doc) == json.dumps(doc)
    assert jsonio.dumps(doc, indent=2) == json.dumps(doc, indent=2)


@pytest.mark.parametrize("bad", ["", "{", "{} x", "[1,]", "nan", '{"a" 1}', "\"unterminated"])
def test_errors_in_a_fresh_interpreter(bad):
    code = ("import sys\nfrom runtime import jsonio\nassert 'json' not in sys.modules\n"
            f"try:\n    jsonio.loads({bad!r})\n"
            "except ValueError as e:\n    print('ValueError', e)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("ValueError")


def test_bytes_with_bom_and_whitespace():
    assert jsonio.loads(b'\xef\xbb\xbf {"a": 1} \n') == {"a": 1}
