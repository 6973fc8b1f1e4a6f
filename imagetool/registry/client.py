"""One registry's API surface: /v2/ ping, then requests scoped to a repository with the right
Authorization, re-authenticating once on 401. Errors become one line naming what failed."""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

from imagetool.reference import DEFAULT_REGISTRY, DOCKER_HUB_API
from imagetool.registry.auth import Authenticator, repo_scope
from imagetool.registry.config import RegistryConfig
from imagetool.registry.credentials import (
    Credentials,
    erase_credentials,
    get_credentials,
    registry_host,
    store_credentials,
)
from imagetool.registry.errors import (
    AuthError,
    NotFoundError,
    RegistryError,
    TransportError,
    registry_message,
)
from imagetool.registry.transport import Body, Response, RetryPolicy, Transport

AUTO = "auto"


class RegistryClient:
    """Talks to one registry (or one mirror of it) for any number of repositories."""

    def __init__(self, registry: str, *, transport: Transport | None = None,
                 config: RegistryConfig | None = None,
                 credentials: Credentials | None | str = AUTO, api_host: str | None = None,
                 base_url: str | None = None, docker_config: str | None = None,
                 retry: RetryPolicy | None = None) -> None:
        self.registry = registry
        self.retry = retry
        self._own_transport = transport is None
        self.transport = transport or Transport(config or RegistryConfig.load())
        self.base = base_url.rstrip("/") if base_url else None
        if self.base:
            self.host = urlsplit(self.base).netloc
        else:
            self.host = api_host or (DOCKER_HUB_API if registry == DEFAULT_REGISTRY else registry)
        if credentials == AUTO:
            key = self.host if self.base else registry
            credentials = get_credentials(key, docker_config)
        assert credentials is None or isinstance(credentials, Credentials)
        self.auth = Authenticator(self.transport, self.host, credentials)
        self._ready = False
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._own_transport:
            self.transport.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def display(self) -> str:
        return self.base or self.registry

    def ensure_ready(self) -> None:
        """Ping once: learns the scheme (TLS or, where allowed, plain) and the challenge."""
        with self._lock:
            if self._ready:
                return
            if self.base:
                resp = self.transport.send("GET", f"{self.base}/v2/", registry=self.host,
                                           retry=self.retry)
            else:
                resp = self.transport.ping(self.host, retry=self.retry)
            with resp:
                if resp.status_code == 401:
                    if not self.auth.learn(resp.headers.get("Www-Authenticate")):
                        raise AuthError(f"{self.display}: 401 without a challenge we know")
                elif resp.status_code == 404:
                    raise RegistryError(f"{self.display}: not a registry (no /v2/ endpoint)")
                elif resp.status_code >= 400:
                    raise RegistryError(f"{self.display}: /v2/ answered HTTP {resp.status_code}")
            self._ready = True

    def base_url(self) -> str:
        self.ensure_ready()
        return self.base or self.transport.base_url(self.host)

    def url(self, repository: str, path: str) -> str:
        return f"{self.base_url()}/v2/{repository}/{path}"

    def request(self, method: str, repository: str, path_or_url: str, *,
                actions: tuple[str, ...] = ("pull",), extra_scopes: tuple[str, ...] = (),
                headers: dict[str, str] | None = None, body: Body = None, stream: bool = False,
                retry: RetryPolicy | None = None) -> Response:
        """Send with auth for `repository:actions` (+ extra scopes); one re-auth on 401."""
        self.ensure_ready()
        url = path_or_url if "://" in path_or_url else self.url(repository, path_or_url)
        scopes = (repo_scope(repository, actions), *extra_scopes)
        for attempt in range(2):
            hdrs = dict(headers or {})
            value = self.auth.header(scopes)
            if value:
                hdrs["Authorization"] = value
            resp = self.transport.send(method, url, registry=self.host, headers=hdrs, body=body,
                                       stream=stream, retry=retry or self.retry)
            if resp.status_code != 401 or attempt:
                return resp
            challenge = resp.headers.get("Www-Authenticate")
            resp.close()
            self.auth.forget(scopes)
            if not self.auth.learn(challenge):
                break
        return resp

    def check(self, resp: Response, what: str, ok: tuple[int, ...] = (200,)) -> None:
        """Raise one clear line when `resp` isn't one of `ok`; `what` names the reference."""
        if resp.status_code in ok:
            return
        try:
            msg = registry_message(resp.content)
        except Exception:  # a body we can't read says nothing more than the status
            msg = ""
        resp.close()
        detail = f" ({msg})" if msg else ""
        code = resp.status_code
        if code == 401:
            raise AuthError(f"{what}: unauthorized on {self.display}{detail}")
        if code == 403:
            raise AuthError(f"{what}: access denied on {self.display}{detail}")
        if code == 404:
            raise NotFoundError(f"{what}: not found on {self.display}{detail}")
        if code == 429:
            raise TransportError(f"{what}: rate limited by {self.display} (HTTP 429)")
        raise RegistryError(f"{what}: {self.display} answered HTTP {code}{detail}")

    def verify_login(self) -> None:
        """Prove the credentials work, the way `docker login` does."""
        self.ensure_ready()
        ch = self.auth.challenge
        if ch is None:
            return
        if ch.scheme == "bearer":
            self.auth.token(())
            return
        hdrs = {"Authorization": self.auth.header(())} if self.auth.credentials else {}
        resp = self.transport.send("GET", f"{self.base_url()}/v2/", registry=self.host,
                                   headers={k: v for k, v in hdrs.items() if v})
        with resp:
            if resp.status_code != 200:
                user = self.auth.credentials.username if self.auth.credentials else "?"
                raise AuthError(f"login to {self.display} as {user} failed: "
                                f"HTTP {resp.status_code}")


def login(registry: str, username: str, password: str, config_path: str | None = None,
          config: RegistryConfig | None = None) -> None:
    """Check the credentials against the registry, then store them like `docker login`."""
    registry = registry_host(registry)
    creds = Credentials(username, password)
    client = RegistryClient(registry, config=config, credentials=creds)
    try:
        client.verify_login()
    finally:
        client.close()
    store_credentials(registry, creds, config_path)


def logout(registry: str, config_path: str | None = None) -> bool:
    """Forget the credentials, like `docker logout`; False when none were stored."""
    return erase_credentials(registry_host(registry), config_path)
