"""Registry auth as Docker does it: the registry's 401 carries a `Www-Authenticate` challenge;
Basic means send the credentials; Bearer means fetch a token from the realm for exactly the
scopes this request needs. Tokens are cached per (realm, service, scopes) until shortly
before they expire, so a second repository gets its own token (oras-py reuses one)."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from imagetool.registry.credentials import Credentials
from imagetool.registry.errors import AuthError, TransportError, registry_message
from imagetool.registry.transport import Response, Transport

_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')
_SCHEME = re.compile(r"\s*,?\s*([A-Za-z][A-Za-z0-9_-]*)\s*")
DEFAULT_EXPIRES = 60


@dataclass
class Challenge:
    scheme: str  # lower case: "bearer" or "basic"
    params: dict[str, str] = field(default_factory=dict)


def parse_challenges(header: str) -> list[Challenge]:
    """`Bearer realm="...",service="...",scope="a b", Basic realm="x"` -> challenges."""
    out: list[Challenge] = []
    pos = 0
    header = header or ""
    while pos < len(header):
        m = _SCHEME.match(header, pos)
        if not m or m.end() == pos:
            break
        ch = Challenge(m.group(1).lower())
        pos = m.end()
        while pos < len(header):
            pm = _PARAM.match(header, pos)
            if not pm or pm.end() == pos:
                break
            value = pm.group(2) if pm.group(2) is not None else pm.group(3)
            ch.params[pm.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
            pos = pm.end()
        out.append(ch)
    return out


def repo_scope(repository: str, actions: tuple[str, ...] | list[str]) -> str:
    return f"repository:{repository}:{','.join(actions)}"


@dataclass
class _Token:
    value: str
    expires_at: float  # time.monotonic() seconds

    def fresh(self) -> bool:
        return time.monotonic() < self.expires_at


class Authenticator:
    """Auth state for one registry host: its challenge, credentials and token cache."""

    def __init__(self, transport: Transport, registry: str,
                 credentials: Credentials | None = None) -> None:
        self.transport = transport
        self.registry = registry
        self.credentials = credentials
        self.challenge: Challenge | None = None
        self._tokens: dict[tuple[str, str, tuple[str, ...]], _Token] = {}
        self._lock = threading.Lock()
        self.token_requests = 0  # how many tokens were fetched (tests read it)

    def learn(self, header: str | None) -> Challenge | None:
        """Remember the registry's preferred challenge (Bearer over Basic)."""
        chs = parse_challenges(header or "")
        pick = next((c for c in chs if c.scheme == "bearer"), None) or next(
            (c for c in chs if c.scheme == "basic"), None)
        if pick:
            self.challenge = pick
        return pick

    def header(self, scopes: tuple[str, ...]) -> str | None:
        """The Authorization value to send for these scopes, fetching a token if needed."""
        ch = self.challenge
        if ch is None:
            return None
        if ch.scheme == "basic":
            if not self.credentials or not self.credentials.username:
                raise AuthError(f"{self.registry}: authentication required (imagetool login "
                                f"{self.registry})")
            return self.credentials.basic()
        return "Bearer " + self.token(scopes)

    def token(self, scopes: tuple[str, ...]) -> str:
        ch = self.challenge
        assert ch is not None and ch.scheme == "bearer"
        realm, service = ch.params.get("realm", ""), ch.params.get("service", "")
        key = (realm, service, tuple(sorted(scopes)))
        with self._lock:
            tok = self._tokens.get(key)
            if tok and tok.fresh():
                return tok.value
            tok = self._fetch(realm, service, key[2])
            self._tokens[key] = tok
            return tok.value

    def forget(self, scopes: tuple[str, ...]) -> None:
        """Drop a cached token the registry refused (revoked or expired early)."""
        ch = self.challenge
        if ch is not None:
            key = (ch.params.get("realm", ""), ch.params.get("service", ""),
                   tuple(sorted(scopes)))
            with self._lock:
                self._tokens.pop(key, None)

    def _fetch(self, realm: str, service: str, scopes: tuple[str, ...]) -> _Token:
        if not realm.startswith(("http://", "https://")):
            raise AuthError(f"{self.registry}: bearer challenge without a usable realm")
        creds = self.credentials
        params: list[tuple[str, str]] = [("service", service)] if service else []
        params += [("scope", s) for s in scopes]
        headers: dict[str, str] = {}
        realm_host = urlsplit(realm).netloc
        if creds and creds.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "client_id": "imagetool", "service": service, "scope": " ".join(scopes)}
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            resp = self._send("POST", realm, headers, body.encode(), realm_host)
        else:
            if creds and creds.username:
                params.append(("account", creds.username))
                headers["Authorization"] = creds.basic()
            query = urlencode(params)
            url = realm + ("&" if "?" in realm else "?") + query if query else realm
            resp = self._send("GET", url, headers, None, realm_host)
        with resp:
            if resp.status_code in (401, 403):
                who = ("with the stored identity token" if creds and creds.identity_token
                       else f"as {creds.username}" if creds and creds.username
                       else "anonymously")
                raise AuthError(f"{self.registry}: token server {realm} refused {who} for "
                                f"{' '.join(scopes) or 'login'} (HTTP {resp.status_code})")
            if resp.status_code != 200:
                msg = registry_message(resp.content)
                raise AuthError(f"{self.registry}: token server {realm} answered HTTP "
                                f"{resp.status_code}{': ' + msg if msg else ''}")
            try:
                data = resp.json()
            except ValueError:
                raise AuthError(f"{self.registry}: token server {realm} sent no JSON") from None
        value = data.get("token") or data.get("access_token")
        if not isinstance(value, str) or not value:
            raise AuthError(f"{self.registry}: token server {realm} sent no token")
        try:
            lifetime = float(data.get("expires_in") or DEFAULT_EXPIRES)
        except (TypeError, ValueError):
            lifetime = DEFAULT_EXPIRES
        # Renew a little early, so a token doesn't run out between our check and the request.
        margin = min(10.0, lifetime / 5)
        self.token_requests += 1
        return _Token(value, time.monotonic() + lifetime - margin)

    def _send(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
              host: str) -> Response:
        try:
            return self.transport.send(method, url, registry=host, headers=headers, body=body)
        except TransportError as e:
            raise AuthError(f"{self.registry}: token server unreachable: {e}") from e
