"""`pyrunc validate`: check config.json (and state) against our JSON Schemas in specs/.

jsonschema costs ~100 ms to import, so it is imported inside the functions: nothing on the
create/start/state/kill/delete path may pull it in. Problems come back one per line as
``config.json: process.args[0]: <message>`` so they read like spec.py's errors.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from runtime.errors import PyruncError

SPECS = Path(__file__).resolve().parents[1] / "specs"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
               int: "an integer", float: "a number", type(None): "null"}
_PY = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int,
       "number": float, "null": type(None)}


def validate_bundle(bundle: str) -> list[str]:
    """Every problem with <bundle>/config.json; an empty list means it is valid."""
    path = Path(bundle) / "config.json"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [f"config.json: not found in bundle {bundle}"]
    except OSError as e:
        return [f"config.json: cannot read: {e.strerror}"]
    try:
        config = json.loads(raw)
    except ValueError as e:
        return [f"config.json: invalid JSON: {e}"]
    return validate_config(config)


def validate_config(config: Any) -> list[str]:
    """Problems with a parsed config.json, checked against specs/config-schema.json."""
    return _problems("config-schema.json", config, "config.json")


def validate_state(obj: Any) -> list[str]:
    """Problems with a state object (what `pyrunc state` prints) against specs/state-schema.json."""
    return _problems("state-schema.json", obj, "state")


def _problems(schema_name: str, instance: Any, label: str) -> list[str]:
    validator = _validator(schema_name)
    lines = {f"{label}: {_describe(e)}" for e in validator.iter_errors(instance)}
    return sorted(lines)


def _validator(schema_name: str):
    """A draft 2020-12 validator whose relative $refs resolve to the files in specs/."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    resources = []
    for f in sorted(SPECS.glob("*.json")):
        try:
            contents = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            raise PyruncError(f"{f}: cannot load schema: {e}") from None
        resources.append((f.name, Resource.from_contents(contents)))
    registry = Registry().with_resources(resources)
    return Draft202012Validator(registry.contents(schema_name), registry=registry)


def json_path(parts) -> str:
    """process.args[0], linux.sysctl["net.ipv4.ip_forward"]: how a field is named to users."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif _IDENT.match(p):
            out += f".{p}" if out else p
        else:
            out += f"[{json.dumps(p)}]"
    return out


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(err) -> str:
    """'<path>: <message>' for one jsonschema error, preferring our schemas' errorMessage."""
    parts = list(err.absolute_path)
    schema = err.schema if isinstance(err.schema, dict) else {}
    if err.validator == "required":
        names = [n for n in err.validator_value if err.message == f"{n!r} is a required property"]
        return f"{json_path([*parts, *names[:1]]) or '(top level)'}: is required"
    scalar = not isinstance(err.instance, (dict, list))
    custom = schema.get("errorMessage")
    if custom:
        msg = f"{custom} (got {_short(err.instance)})" if scalar else custom
    elif err.validator == "type":
        want = schema.get("type")
        wants: list[str] = want if isinstance(want, list) else [str(want)]
        words = " or ".join(_JSON_TYPES.get(_PY.get(w, object), w) for w in wants)
        msg = f"must be {words}, not {_JSON_TYPES.get(type(err.instance), 'that')}"
    elif err.validator == "enum":
        msg = f"{_short(err.instance)} is not one of " + ", ".join(
            json.dumps(v) for v in err.validator_value)
    else:
        msg = err.message if len(err.message) <= 200 else err.message[:197] + "..."
    return f"{json_path(parts) or '(top level)'}: {msg}"

