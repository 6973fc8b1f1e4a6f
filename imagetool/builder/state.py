"""What a stage carries from one step to the next while it is built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class StageState:
    chain: list[tuple[dict[str, Any], str]]     # (layer descriptor, diff_id), bottom first
    config: dict[str, Any]                      # the whole image config blob
    key: str                                    # cache key of the last step
    shell: list[str]
    env: dict[str, str]                         # image Env as a dict (walk's base_env)
    cmd_set: bool = False                       # a CMD in this stage (ENTRYPOINT keeps it)
