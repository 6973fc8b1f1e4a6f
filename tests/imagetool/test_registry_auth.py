"""Auth against a real docker-registry: htpasswd Basic, and Docker's token scheme with our test
issuer (RS256 JWTs, scopes checked per repository). Credentials come from Docker's
config.json: `auths` written by login(), and a credential helper program on PATH."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
import time

import pytest

from imagetool.pull import pull
from imagetool.registry import manifests
from imagetool.registry.auth import parse_challenges
from imagetool.registry.client import RegistryClient, login, logout
from imagetool.registry.credentials import Credentials, get_credentials
from imagetool.registry.errors import AuthError
from imagetool.registry.transport import Transport
from imagetool.store import Store
from tests.imagetool.conftest import PASSWORD, USER, assert_clean
from tests.imagetool.images import skopeo_copy
from tests.imagetool.token_issuer import Grant


def test_parse_challenges() -> None:
    chs = parse_challenges('Bearer realm="https://auth.example/token",service="reg",'
                           'scope="repository:a/b:pull,push repository:c:pull", '
                           'Basic realm="x \\"y\\""')
    assert [c.scheme for c in chs] == ["bearer", "basic"]
    assert chs[0].params == {"realm": "https://auth.example/token", "service": "reg",
                             "scope": "repository:a/b:pull,push repository:c:pull"}
    assert chs[1].params == {"realm": 'x "y"'}
    assert parse_challenges("Basic realm=unquoted")[0].params == {"realm": "unquoted"}
    assert parse_challenges("") == []


def _seed(reg, busybox_oci: str, *repos: str) -> None:
    for repo in repos:
        skopeo_copy(f"oci:{busybox_oci}:latest", f"docker://{reg.ref(repo + ':latest')}",
                    *reg.skopeo_args())


TEAM = [Grant("alice", "team/*", ("pull", "push")), Grant("", "public/*", ("pull",)),
        Grant("alice", "ro/*", ("pull",))]


def test_token_per_scope_cached_and_checked(registry, busybox_oci, store, docker_config):
    reg = registry("token", grants=TEAM + [Grant("alice", "public/*", ("pull", "push")),
                                           Grant("alice", "ro/*", ("push",))])
    _seed(reg, busybox_oci, "team/a", "team/b", "public/x")
    reg.issuer.grants[:] = TEAM  # from now on alice may only pull ro/*
    reg.issuer.log.clear()
    creds = Credentials(USER, PASSWORD)
    with RegistryClient(reg.host, config=reg.config(), credentials=creds) as c:
        a1 = manifests.fetch(c, "team/a", "latest", "team/a")
        manifests.fetch(c, "team/a", a1.digest, "team/a")
        assert len(reg.issuer.requests_for("team/a")) == 1  # cached
        manifests.fetch(c, "team/b", "latest", "team/b")  # a second repository: a new token
        assert [r.scopes for r in reg.issuer.log] == [["repository:team/a:pull"],
                                                      ["repository:team/b:pull"]]
        assert all(r.user == "alice" for r in reg.issuer.log)
    # A whole pull with credentials from config.json, then anonymous where allowed.
    login(reg.host, USER, PASSWORD, config=reg.config())
    assert pull(store, reg.ref("team/b:latest"), config=reg.config(), progress=False)
    os.unlink(os.path.join(docker_config, "config.json"))
    assert pull(store, reg.ref("public/x:latest"), config=reg.config(), progress=False)
    assert reg.issuer.log[-1].user == ""  # anonymous token
    with pytest.raises(AuthError) as e:
        pull(store, reg.ref("team/a:latest"), config=reg.config(), progress=False)
    assert f"{reg.host}/team/a:latest: unauthorized" in str(e.value)
    assert store.get_image(reg.ref("team/a:latest")) is None
    assert_clean(store)


def test_token_without_push_scope_is_denied(registry, busybox_oci, store, docker_config):
    from imagetool.push import push
    reg = registry("token", grants=TEAM)
    _seed(reg, busybox_oci, "team/a")
    login(reg.host, USER, PASSWORD, config=reg.config())
    pull(store, reg.ref("team/a:latest"), config=reg.config(), progress=False)
    with pytest.raises(AuthError) as e:
        push(store, reg.ref("team/a:latest"), reg.ref("ro/x:latest"), config=reg.config(),
             progress=False)
    assert "ro/x:latest" in str(e.value) and reg.host in str(e.value)
    granted = reg.issuer.requests_for("ro/x")[-1].granted
    assert {"type": "repository", "name": "ro/x", "actions": ["pull"]} in granted


def test_token_expiry_fetches_a_new_token(registry, busybox_oci, docker_config):
    reg = registry("token", grants=TEAM, expires_in=2)
    _seed(reg, busybox_oci, "team/a")
    reg.issuer.log.clear()
    with RegistryClient(reg.host, config=reg.config(),
                        credentials=Credentials(USER, PASSWORD)) as c:
        manifests.fetch(c, "team/a", "latest", "x")
        manifests.fetch(c, "team/a", "latest", "x")
        assert len(reg.issuer.log) == 1
        time.sleep(1.7)  # renewed a little before expiry (lifetime/5 early)
        manifests.fetch(c, "team/a", "latest", "x")
        assert len(reg.issuer.log) == 2


def test_identity_token_from_config_json(registry, busybox_oci, store, docker_config):
    """An `identitytoken` in config.json is traded for access tokens with an OAuth2
    refresh_token POST, as Docker does after `docker login` to such registries."""
    reg = registry("token", grants=TEAM)
    _seed(reg, busybox_oci, "team/a")
    reg.issuer.refresh_tokens["idtok-123"] = USER
    with open(os.path.join(docker_config, "config.json"), "w") as f:
        json.dump({"auths": {reg.host: {"identitytoken": "idtok-123"}}}, f)
    reg.issuer.log.clear()
    assert pull(store, reg.ref("team/a:latest"), config=reg.config(), progress=False)
    assert [(r.user, r.scopes) for r in reg.issuer.log] == [
        (USER, ["repository:team/a:pull"])]
    reg.issuer.refresh_tokens.clear()  # revoked: a clear refusal
    with pytest.raises(AuthError) as e:
        pull(Store(store.root + "2"), reg.ref("team/a:latest"), config=reg.config(),
             progress=False)
    assert f"{reg.issuer.realm} refused with the stored identity token" in str(e.value)


def test_token_wrong_password(registry, busybox_oci, store, docker_config):
    reg = registry("token", grants=TEAM)
    _seed(reg, busybox_oci, "team/a")
    with pytest.raises(AuthError) as e:
        login(reg.host, USER, "wrong", config=reg.config())
    assert "refused as alice" in str(e.value)
    assert not os.path.exists(os.path.join(docker_config, "config.json"))
    with RegistryClient(reg.host, config=reg.config(),
                        credentials=Credentials(USER, "wrong")) as c, pytest.raises(AuthError):
        manifests.fetch(c, "team/a", "latest", "x")


def test_basic_auth_login_logout(registry, busybox_oci, store, docker_config):
    reg = registry("basic")
    _seed(reg, busybox_oci, "app")
    ref = reg.ref("app:latest")
    with pytest.raises(AuthError) as e:
        pull(store, ref, config=reg.config(), progress=False)
    assert "authentication required" in str(e.value) and reg.host in str(e.value)
    with pytest.raises(AuthError) as e:
        login(reg.host, USER, "nope", config=reg.config())
    assert f"login to {reg.host} as alice failed" in str(e.value)
    login(reg.host, USER, PASSWORD, config=reg.config())
    with open(os.path.join(docker_config, "config.json")) as f:
        saved = json.load(f)
    assert base64.b64decode(saved["auths"][reg.host]["auth"]).decode() == f"{USER}:{PASSWORD}"
    assert stat.S_IMODE(os.stat(os.path.join(docker_config, "config.json")).st_mode) == 0o600
    digest = pull(store, ref, config=reg.config(), progress=False)
    assert store.get_image(ref)["digest"] == digest
    assert logout(reg.host) is True
    assert get_credentials(reg.host) is None
    assert logout(reg.host) is False
    # Wrong credentials from the file: the registry says 401 again, with a clear line.
    saved["auths"][reg.host]["auth"] = base64.b64encode(b"alice:bad").decode()
    with open(os.path.join(docker_config, "config.json"), "w") as f:
        json.dump(saved, f)
    with pytest.raises(AuthError) as e:
        pull(store, reg.ref("app:other"), config=reg.config(), progress=False)
    assert f"{reg.host}/app:other: unauthorized on {reg.host}" in str(e.value)
    assert_clean(store)


HELPER = """\
import json, os, sys
# A docker-credential helper keeping secrets in $HELPER_DB (one JSON file).
db = os.environ["HELPER_DB"]
data = json.load(open(db)) if os.path.exists(db) else {}
verb = sys.argv[1]
if verb == "get":
    entry = data.get(sys.stdin.read().strip())
    print(json.dumps(entry) if entry else "credentials not found in native keychain")
    sys.exit(0 if entry else 1)
if verb == "store":
    entry = json.load(sys.stdin)
    data[entry["ServerURL"]] = entry
elif verb == "erase":
    data.pop(sys.stdin.read().strip(), None)
json.dump(data, open(db, "w"))
"""


def test_credential_helpers(registry, busybox_oci, store, docker_config, tmp_path,
                            monkeypatch):
    reg = registry("basic")
    _seed(reg, busybox_oci, "app")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-testhelper"
    helper.write_text(f"#!{sys.executable}\n{HELPER}")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("HELPER_DB", str(tmp_path / "db.json"))
    cfg = os.path.join(docker_config, "config.json")
    with open(cfg, "w") as f:
        json.dump({"credsStore": "testhelper"}, f)
    login(reg.host, USER, PASSWORD, config=reg.config())  # stored through the helper
    with open(tmp_path / "db.json") as f:
        assert json.load(f)[reg.host]["Secret"] == PASSWORD
    with open(cfg) as f:
        assert json.load(f)["auths"][reg.host] == {}  # Docker's marker, no secret
    assert pull(store, reg.ref("app:latest"), config=reg.config(), progress=False)
    # credHelpers names a helper per registry and wins over auths.
    with open(cfg, "w") as f:
        json.dump({"credHelpers": {reg.host: "testhelper"},
                   "auths": {reg.host: {"auth": base64.b64encode(b"x:y").decode()}}}, f)
    assert get_credentials(reg.host) == Credentials(USER, PASSWORD)
    assert logout(reg.host)
    assert get_credentials(reg.host) is None


def test_hub_credentials_key(docker_config) -> None:
    """docker.io credentials live under Docker's historical index URL."""
    with open(os.path.join(docker_config, "config.json"), "w") as f:
        json.dump({"auths": {"https://index.docker.io/v1/": {
            "auth": base64.b64encode(b"bob:pw").decode()}}}, f)
    assert get_credentials("docker.io") == Credentials("bob", "pw")
    assert get_credentials("quay.io") is None


def test_one_transport_many_registries(registry, busybox_oci, docker_config):
    """One pooled transport serves registries in different modes side by side."""
    plain, basic = registry("plain"), registry("basic")
    _seed(plain, busybox_oci, "x")
    _seed(basic, busybox_oci, "x")
    t = Transport(plain.config())
    try:
        a = manifests.fetch(RegistryClient(plain.host, transport=t), "x", "latest", "x")
        b = manifests.fetch(RegistryClient(basic.host, transport=t,
                                           credentials=Credentials(USER, PASSWORD)),
                            "x", "latest", "x")
        assert a.digest == b.digest
    finally:
        t.close()
