"""A test token server in Docker Hub's scheme: `GET /token?service=S&scope=repository:N:A`
(anonymous or with Basic credentials) answers an RS256 JWT whose `x5c` certificate is the
registry's rootcertbundle. Grants follow a small ACL, and every request is logged so tests can
count tokens per scope. Runs in a thread of the test process, bound to 127.0.0.1."""

from __future__ import annotations

import base64
import datetime
import fnmatch
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Grant:
    """`user` ("" = anonymous, "*" = anyone authenticated) may do `actions` on repos matching
    the glob `pattern`."""

    user: str
    pattern: str
    actions: tuple[str, ...]


@dataclass
class TokenRequest:
    user: str
    scopes: list[str]
    granted: list[dict]
    status: int


@dataclass
class TokenIssuer:
    service: str = "test-registry"
    issuer: str = "test-issuer"
    users: dict[str, str] = field(default_factory=lambda: {"alice": "s3cret"})
    grants: list[Grant] = field(default_factory=list)
    expires_in: int = 300
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # identity token -> user
    log: list[TokenRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.issuer)])
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                     .sign(self._key, hashes.SHA256()))
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> TokenIssuer:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                issuer._handle(self)

            def do_POST(self) -> None:  # noqa: N802
                issuer._handle_oauth(self)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def realm(self) -> str:
        assert self._server
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def write_bundle(self, path: str) -> str:
        with open(path, "wb") as f:
            f.write(self.cert.public_bytes(serialization.Encoding.PEM))
        return path

    def requests_for(self, scope_fragment: str) -> list[TokenRequest]:
        with self._lock:
            return [r for r in self.log if any(scope_fragment in s for s in r.scopes)]

    # -- tokens --------------------------------------------------------------------------

    def _allowed(self, user: str, repo: str) -> set[str]:
        out: set[str] = set()
        for g in self.grants:
            who_ok = g.user == user or (g.user == "*" and user != "")
            if who_ok and fnmatch.fnmatchcase(repo, g.pattern):
                out.update(g.actions)
        return out

    def sign(self, user: str, access: list[dict], lifetime: int | None = None) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256",
                  "x5c": [base64.b64encode(self.cert.public_bytes(
                      serialization.Encoding.DER)).decode()]}
        claims = {"iss": self.issuer, "sub": user, "aud": self.service,
                  "exp": now + (lifetime or self.expires_in), "nbf": now - 5, "iat": now,
                  "jti": uuid.uuid4().hex, "access": access}
        signing_input = (_b64url(json.dumps(header).encode()) + "." +
                         _b64url(json.dumps(claims).encode()))
        sig = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(sig)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        if url.path != "/token":
            h.send_error(404)
            return
        query = parse_qsl(url.query)
        user = ""
        auth = h.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                name, password = "", None
            if self.users.get(name) != password:
                self._record(name or "?", [], [], 401)
                self._reply(h, 401, {"errors": [{"code": "UNAUTHORIZED",
                                                 "message": "bad credentials"}]})
                return
            user = name
        service = dict(query).get("service")
        if service != self.service:
            self._reply(h, 400, {"errors": [{"code": "DENIED", "message": "unknown service"}]})
            return
        scopes = [s for k, v in query if k == "scope" for s in v.split()]
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) != 3 or parts[0] != "repository":
                continue
            allowed = self._allowed(user, parts[1])
            granted = [a for a in parts[2].split(",") if a in allowed]
            access.append({"type": "repository", "name": parts[1], "actions": granted})
        token = self.sign(user, access)
        self._record(user, scopes, access, 200)
        issued = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._reply(h, 200, {"token": token, "access_token": token,
                             "expires_in": self.expires_in, "issued_at": issued})

    def _handle_oauth(self, h: BaseHTTPRequestHandler) -> None:
        """POST /token with grant_type=refresh_token: Docker's identity-token login."""
        length = int(h.headers.get("Content-Length") or 0)
        form = dict(parse_qsl(h.rfile.read(length).decode()))
        user = self.refresh_tokens.get(form.get("refresh_token", ""))
        if form.get("grant_type") != "refresh_token" or user is None:
            self._record("?", [], [], 401)
            self._reply(h, 401, {"error": "invalid_grant"})
            return
        scopes = form.get("scope", "").split()
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) == 3 and parts[0] == "repository":
                allowed = self._allowed(user, parts[1])
                access.append({"type": "repository", "name": parts[1],
                               "actions": [a for a in parts[2].split(",") if a in allowed]})
        token = self.sign(user, access)
        self._record(user, scopes, access, 200)
        self._reply(h, 200, {"access_token": token, "expires_in": self.expires_in,
                             "scope": form.get("scope", "")})

    def _record(self, user: str, scopes: list[str], access: list[dict], status: int) -> None:
        with self._lock:
            self.log.append(TokenRequest(user, scopes, access, status))

    @staticmethod
    def _reply(h: BaseHTTPRequestHandler, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)


def registry_auth_config(issuer: TokenIssuer, bundle_dir: str) -> dict:
    """The `auth:` section of a docker-registry config trusting this issuer."""
    bundle = issuer.write_bundle(os.path.join(bundle_dir, "token.crt"))
    return {"token": {"realm": issuer.realm, "service": issuer.service,
                      "issuer": issuer.issuer, "rootcertbundle": bundle,
                      "autoredirect": False}}
