"""`events --filter KEY=VALUE`, docker's rules: values of one key are alternatives (any may
match), different keys must all match. container= (and network=, volume=, ...) matches the
actor's ID or name, exactly or as a prefix (docker's fuzzy match); event= the action (or
its part before ':'); type= the event type; image= the image (docker's exact match, a tag
stripped or not) or the actor's ID; label= KEY or KEY=VALUE among the attributes;
scope= local or swarm. Unlike docker 20.10, an unknown key is refused, not ignored."""

from __future__ import annotations

from typing import Any

from imagetool.errors import ImagetoolError

KEYS = ("config", "container", "daemon", "event", "image", "label", "network", "node",
        "plugin", "scope", "secret", "service", "type", "volume")


class FilterError(ImagetoolError, ValueError):
    """A bad --filter value (the message names it)."""


def parse(items: list[str] | None) -> dict[str, list[str]]:
    """KEY=VALUE strings -> {key: [values]}; FilterError on an unknown key or no '='."""
    out: dict[str, list[str]] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq:
            raise FilterError(f"--filter: bad format of filter {item!r} (expected name=value)")
        key = key.strip().lower()
        if key not in KEYS:
            raise FilterError(f"--filter: invalid filter {key!r}")
        out.setdefault(key, []).append(value)
    return out


def _prefix(values: list[str], *sources: str) -> bool:
    return any(s and s.startswith(v) for v in values for s in sources)


def _strip_tag(ref: str) -> str:
    """busybox:1 -> busybox (a digest reference is kept whole), as docker's stripTag."""
    if "@" in ref or ":" not in ref.rsplit("/", 1)[-1]:
        return ref
    return ref.rsplit(":", 1)[0]


def matches(flt: dict[str, list[str]], e: dict[str, Any]) -> bool:
    """Whether the event `e` passes every key of `flt`."""
    actor = e.get("Actor") or {}
    aid = actor.get("ID", "")
    attrs = actor.get("Attributes") or {}
    etype = e.get("Type", "")
    action = e.get("Action", "")
    for key, values in flt.items():
        if key == "type":
            ok = etype in values
        elif key == "event":
            ok = action in values or action.split(":", 1)[0] in values
        elif key == "scope":
            ok = e.get("scope", "local") in values
        elif key == "label":
            ok = any(attrs.get(v.partition("=")[0]) == v.partition("=")[2] if "=" in v
                     else v in attrs for v in values)
        elif key == "image":
            name = attrs.get("name" if etype == "image" else "image", "")
            ok = bool({aid, name, _strip_tag(aid), _strip_tag(name)} & set(values))
        else:  # container, network, volume, ...: the actor's ID or name (docker matches these
            # without looking at the type; type= does that)
            ok = _prefix(values, aid, attrs.get("name", ""))
        if not ok:
            return False
    return True
