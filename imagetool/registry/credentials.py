"""Credentials in Docker's own config.json ($DOCKER_CONFIG/config.json or ~/.docker/config.json),
so `docker login`, `skopeo login --authfile` and `imagetool login` share them: `auths`
(base64 user:password or an identity token), `credsStore` and `credHelpers`, which run
`docker-credential-<name> get|store|erase` with Docker's stdin/stdout protocol."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from imagetool.registry.errors import RegistryError

HUB_AUTH_KEY = "https://index.docker.io/v1/"
_HUB_NAMES = {"docker.io", "index.docker.io", "registry-1.docker.io"}


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    identity_token: str | None = None

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def config_path(path: str | None = None) -> str:
    if path:
        return path
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def server_key(registry: str) -> str:
    """The key Docker files a registry's credentials under."""
    return HUB_AUTH_KEY if registry in _HUB_NAMES else registry


def registry_host(key: str) -> str:
    """`https://host:port/v1/` -> `host:port`; hub aliases -> docker.io."""
    host = urlsplit(key).netloc if "://" in key else key.split("/", 1)[0]
    return "docker.io" if host in _HUB_NAMES else host


def _load(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise RegistryError(f"docker config {path}: {e}") from None
    if not isinstance(data, dict):
        raise RegistryError(f"docker config {path}: top level must be an object")
    return data


def _save(path: str, data: dict) -> None:
    """Atomic, mode 0600: the file holds secrets."""
    from imagetool.atomicfile import atomic_file  # here: pull and push only read the file
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    with atomic_file(path, mode=0o600, text=True) as f:
        json.dump(data, f, indent="\t")
        f.write("\n")


def _helper_for(data: dict, registry: str) -> str | None:
    helpers = data.get("credHelpers") or {}
    for key, name in helpers.items():
        if registry_host(key) == registry_host(registry) and isinstance(name, str):
            return name
    store = data.get("credsStore")
    return store if isinstance(store, str) and store else None


def _run_helper(name: str, verb: str, payload: str) -> str:
    import subprocess  # imported here: most configs have no helper
    prog = f"docker-credential-{name}"
    try:
        p = subprocess.run([prog, verb], input=payload, capture_output=True, text=True,
                           timeout=60)
    except FileNotFoundError:
        raise RegistryError(f"credential helper {prog} not found in PATH") from None
    except subprocess.TimeoutExpired:
        raise RegistryError(f"credential helper {prog} {verb}: timed out") from None
    if p.returncode != 0:
        msg = (p.stdout.strip() or p.stderr.strip()).splitlines()
        text = msg[0] if msg else f"exit status {p.returncode}"
        if verb == "get" and "credentials not found" in text:
            raise KeyError(text)
        raise RegistryError(f"credential helper {prog} {verb}: {text}")
    return p.stdout


def get_credentials(registry: str, path: str | None = None) -> Credentials | None:
    """The credentials stored for `registry` (helper first, then `auths`), or None."""
    data = _load(config_path(path))
    helper = _helper_for(data, registry)
    if helper:
        try:
            out = json.loads(_run_helper(helper, "get", server_key(registry)))
        except KeyError:
            out = None
        except ValueError:
            raise RegistryError(f"credential helper docker-credential-{helper}: "
                                "bad JSON on stdout") from None
        if out:
            user, secret = out.get("Username", ""), out.get("Secret", "")
            if user == "<token>":
                return Credentials("", "", identity_token=secret)
            return Credentials(user, secret)
    for key, entry in (data.get("auths") or {}).items():
        if registry_host(key) != registry_host(registry) or not isinstance(entry, dict):
            continue
        user, password = entry.get("username", ""), entry.get("password", "")
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise RegistryError(f"docker config: bad 'auth' for {key}") from None
        token = entry.get("identitytoken") or None
        if user or password or token:
            return Credentials(user, password, identity_token=token)
    return None


def store_credentials(registry: str, creds: Credentials, path: str | None = None) -> None:
    cfg = config_path(path)
    data = _load(cfg)
    helper = _helper_for(data, registry)
    if helper:
        _run_helper(helper, "store", json.dumps({
            "ServerURL": server_key(registry), "Username": creds.username,
            "Secret": creds.password}))
        data.setdefault("auths", {})[server_key(registry)] = {}
    else:
        raw = f"{creds.username}:{creds.password}".encode()
        data.setdefault("auths", {})[server_key(registry)] = {
            "auth": base64.b64encode(raw).decode()}
    _save(cfg, data)


def erase_credentials(registry: str, path: str | None = None) -> bool:
    """Forget `registry`; True when something was stored."""
    cfg = config_path(path)
    data = _load(cfg)
    found = False
    helper = _helper_for(data, registry)
    if helper:
        try:
            _run_helper(helper, "erase", server_key(registry))
            found = True
        except RegistryError:
            pass
    auths = data.get("auths") or {}
    for key in [k for k in auths if registry_host(k) == registry_host(registry)]:
        del auths[key]
        found = True
    if found:
        _save(cfg, data)
    return found

