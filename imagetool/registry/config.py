"""Per-machine registry settings: docker.io mirrors, insecure registries, the certs.d dirs.
One small JSON file (default /etc/imagetool/registries.json, or $IMAGETOOL_REGISTRIES_CONF):

    {"mirrors": {"docker.io": ["https://mirror.example", "http://10.0.0.5:5000"]},
     "insecure": ["myreg.lan:5000", "10.0.0.0/8"],
     "certs_d": ["/etc/imagetool/certs.d", "/etc/docker/certs.d"]}

Loopback registries (127.0.0.0/8, ::1, localhost) may always fall back to plain HTTP."""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field

from imagetool.errors import ImagetoolError

DEFAULT_PATH = "/etc/imagetool/registries.json"
ENV_PATH = "IMAGETOOL_REGISTRIES_CONF"
DEFAULT_CERTS_D = ("/etc/imagetool/certs.d", "/etc/docker/certs.d")


class ConfigError(ImagetoolError, ValueError):
    """The registries config file is unreadable or malformed; the message names the field."""


def in_network(host: str, entry: str) -> bool:
    """`host` is an IP address inside `entry` when that is a CIDR (insecure registries and
    NO_PROXY both allow them); names and bad entries never match."""
    if "/" not in entry:
        return False
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False


def host_of(registry: str) -> str:
    """The host part of `host[:port]`, without IPv6 brackets."""
    if registry.startswith("["):
        return registry[1:registry.index("]")]
    return registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry


def is_loopback(registry: str) -> bool:
    host = host_of(registry)
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class RegistryConfig:
    mirrors: dict[str, list[str]] = field(default_factory=dict)
    insecure: list[str] = field(default_factory=list)
    certs_d: list[str] = field(default_factory=lambda: list(DEFAULT_CERTS_D))

    @classmethod
    def load(cls, path: str | None = None) -> RegistryConfig:
        """Read the config; a missing default file means defaults, a missing named file fails."""
        explicit = path or os.environ.get(ENV_PATH)
        path = explicit or DEFAULT_PATH
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            if explicit:
                raise ConfigError(f"registries config {path}: file not found") from None
            return cls()
        except (OSError, ValueError) as e:
            raise ConfigError(f"registries config {path}: {e}") from None
        return cls.from_dict(data, path)

    @classmethod
    def from_dict(cls, data: object, where: str = "registries config") -> RegistryConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: top level must be an object")
        mirrors = data.get("mirrors", {})
        if not isinstance(mirrors, dict) or not all(
                isinstance(v, list) and all(isinstance(u, str) for u in v)
                for v in mirrors.values()):
            raise ConfigError(f"{where}: 'mirrors' must map a registry to a list of URLs")
        insecure = data.get("insecure", [])
        if not isinstance(insecure, list) or not all(isinstance(x, str) for x in insecure):
            raise ConfigError(f"{where}: 'insecure' must be a list of registries or CIDRs")
        certs_d = data.get("certs_d", list(DEFAULT_CERTS_D))
        if isinstance(certs_d, str):
            certs_d = [certs_d]
        if not isinstance(certs_d, list) or not all(isinstance(x, str) for x in certs_d):
            raise ConfigError(f"{where}: 'certs_d' must be a directory or a list of them")
        for u in (u for v in mirrors.values() for u in v):
            if not u.startswith(("http://", "https://")):
                raise ConfigError(f"{where}: mirror {u!r} must start with http:// or https://")
        return cls({k: list(v) for k, v in mirrors.items()}, list(insecure), list(certs_d))

    def is_insecure(self, registry: str) -> bool:
        """Marked insecure by name or by a CIDR holding its address."""
        host = host_of(registry)
        for entry in self.insecure:
            if entry in (registry, host):
                return True
            if in_network(host, entry):
                return True
        return False

    def mirrors_for(self, registry: str) -> list[str]:
        return [u.rstrip("/") for u in self.mirrors.get(registry, [])]

    def cert_dir(self, registry: str) -> str | None:
        """The first certs.d/<host[:port]> directory that exists for this registry."""
        for base in self.certs_d:
            d = os.path.join(base, registry)
            if os.path.isdir(d):
                return d
        return None
