"""Where each network's bridge and subnet are read from: the default network from
<store root>/network.json (over DEFAULT), a user network from <store root>/networks/<name>.json.
Read-only; below both network.py (the plumbing) and usernet.py (creating/removing user
networks), so neither has to import the other to learn a network's configuration."""

from __future__ import annotations

import json
import os
from typing import Any

from imagetool.run.records import ContainerError

DEFAULT = {"bridge": "imagetool0", "subnet": "10.88.0.0/16"}


def user_path(root: str, name: str) -> str:
    """The file describing user network `name`."""
    return os.path.join(os.path.abspath(root), "networks", f"{name}.json")


def load(root: str, name: str) -> dict[str, Any]:
    """User network `name`'s document; ContainerError when there is none."""
    try:
        with open(user_path(root, name)) as f:
            return json.load(f)
    except FileNotFoundError:
        raise ContainerError(f"network {name} not found") from None


def names(root: str) -> list[str]:
    """The user networks' names, sorted."""
    try:
        return sorted(n[:-5] for n in os.listdir(os.path.join(os.path.abspath(root),
                                                              "networks"))
                      if n.endswith(".json"))
    except FileNotFoundError:
        return []


def config(store_root: str, net: str | None = None) -> dict[str, str]:
    """{"bridge", "subnet"} of the default network, or of the user network `net`."""
    if net is not None:
        return load(store_root, net)
    try:
        with open(os.path.join(store_root, "network.json")) as f:
            return {**DEFAULT, **json.load(f)}
    except FileNotFoundError:
        return dict(DEFAULT)
