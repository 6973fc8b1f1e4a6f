"""specs/ against runtime-spec 1.1-1.3 fields the Debian schema (1.0.2) predates: idmapped
mounts, linux.netDevices, linux.intelRdt's schemata and enableMonitoring. A good config passes
ours (and the official one, which lets unknown fields through); bad values fail at their path.
"""

from __future__ import annotations

import copy

import pytest

from runtime.spec import default_spec
from runtime.validate import validate_config

MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def _config() -> dict:
    c = copy.deepcopy(default_spec())
    c["mounts"].append({"destination": "/data", "type": "bind", "source": "/srv",
                        "options": ["rbind", "ridmap"], "uidMappings": MAP, "gidMappings": MAP})
    c["linux"]["netDevices"] = {"eth1": {}, "veth-x": {"name": "ctr0"}}
    c["linux"]["intelRdt"] = {"closID": "g", "schemata": ["L3:0=ff", "MB:0=70"],
                              "enableMonitoring": True}
    return c


def test_new_fields_are_valid():
    assert validate_config(_config()) == []


def test_new_fields_pass_the_official_schema():
    from tests.runtime.test_schema import OFFICIAL, official_paths
    if not (OFFICIAL / "config-schema.json").is_file():
        pytest.skip("golang-github-opencontainers-specs-dev not installed")
    assert official_paths(_config()) == []


@pytest.mark.parametrize("edit,path", [
    (lambda c: c["linux"]["netDevices"].update({"eth1": {"name": "a/b"}}),
     "linux.netDevices.eth1.name"),
    (lambda c: c["linux"]["netDevices"].update({"eth1": {"name": "x" * 16}}),
     "linux.netDevices.eth1.name"),
    (lambda c: c["linux"]["netDevices"].update({"eth1": "eth2"}), "linux.netDevices.eth1"),
    (lambda c: c["linux"]["intelRdt"].update(schemata="L3:0=ff"), "linux.intelRdt.schemata"),
    (lambda c: c["linux"]["intelRdt"].update(enableMonitoring="yes"),
     "linux.intelRdt.enableMonitoring"),
    (lambda c: c["mounts"][-1]["uidMappings"][0].update(size=0),
     "mounts[7].uidMappings[0].size"),
])
def test_bad_values_named_by_path(edit, path):
    c = _config()
    edit(c)
    problems = validate_config(c)
    assert any(p.startswith(f"config.json: {path}:") for p in problems), problems


def test_bad_interface_key():
    c = _config()
    c["linux"]["netDevices"]["no/slash"] = {}
    problems = validate_config(c)
    assert any("linux.netDevices" in p for p in problems), problems
