"""GPG simple signing with real peers, both ways, against a docker-registry on 127.0.0.1:
skopeo 1.9 (`copy --sign-by`) signs -> `imagetool verify --signature-policy` and `pull`
accept it under a signedBy policy and refuse a changed image or a signature moved to another
digest; `imagetool sign --sign-by` signs -> `skopeo copy --policy` and `podman pull
--signature-policy` accept it and refuse an unsigned or re-tagged image. Every peer gets its
own policy, registries.d and registries.conf (never the machine's); GnuPG runs in a
throwaway GNUPGHOME whose agent is stopped at the end."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile

import pytest

from tests.imagetool.images import skopeo_copy
from tests.imagetool.trust.gnupg import GnuPG
from tests.imagetool.trust.test_policy import docker, names, write_policy

pytestmark = pytest.mark.skipif(not shutil.which("gpg") or not shutil.which("skopeo"),
                                reason="needs gpg and skopeo")


@pytest.fixture(scope="module")
def gnupg():
    g = GnuPG()
    try:
        g.fprs = [g.new_key("imagetool test <trusted@example.test>"),  # type: ignore[attr-defined]
                  g.new_key("someone else <other@example.test>")]
        yield g
    finally:
        g.close()


@pytest.fixture
def setup(it, pushed, gnupg):
    """registries.d with a file:// lookaside for the test registry, the trusted key's file,
    a signedBy policy for the repository, and the environment for gpg/skopeo."""
    regd = os.path.join(it.tmp, "registries.d")
    look = os.path.join(it.tmp, "lookaside")
    os.makedirs(regd)
    with open(os.path.join(regd, "test.yaml"), "w") as f:
        f.write(f"docker:\n  {pushed.host}:\n    lookaside: file://{look}\n"
                f"    lookaside-staging: file://{look}\n")
    key = gnupg.export(gnupg.fprs[0], os.path.join(it.tmp, "trusted.asc"))
    policy = write_policy(it, docker({f"{pushed.host}/{pushed.repo}": [
        {"type": "signedBy", "keyType": "GPGKeys", "keyPath": key}]},
        default="insecureAcceptAnything"))
    it.env["GNUPGHOME"] = gnupg.home
    return {"regd": regd, "look": look, "key": key, "policy": policy, "env": it.env}


def skopeo(s, *args: str, check: bool = True, policy: bool = True
           ) -> subprocess.CompletedProcess:
    """skopeo with the test's registries.d and (policy=False: no) signature policy."""
    pol = ["--policy", s["policy"]] if policy else ["--insecure-policy"]
    p = subprocess.run(["skopeo", "--registries.d", s["regd"], *pol, *args],
                       capture_output=True, text=True, env=s["env"], timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"skopeo {args}: {p.stderr}")
    return p


def test_skopeo_signs_imagetool_verifies(it, pushed, gnupg, setup):
    repo = f"{pushed.host}/{pushed.repo}"
    skopeo(setup, "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
           "--sign-by", gnupg.fprs[0], f"docker://{pushed.ref}", f"docker://{repo}:signed",
           policy=False)
    sigs = glob.glob(os.path.join(setup["look"], pushed.repo + "@sha256=*", "signature-1"))
    assert len(sigs) == 1
    ok = it.run("verify", "--signature-policy", setup["policy"], "--registries.d",
                setup["regd"], f"{repo}:signed").stdout.decode()
    assert "accepted by" in ok and "signedBy" in ok
    it.run("pull", "-q", "--signature-policy", setup["policy"], "--registries.d",
           setup["regd"], f"{repo}:signed")
    assert names(it) == [f"{repo}:signed"]
    # the same signature for a tag it does not name: refused (matchRepoDigestOrExact)
    assert "signed for" in it.fails("pull", "-q", "--signature-policy", setup["policy"],
                                    "--registries.d", setup["regd"], pushed.ref)
    # a changed image under the signed tag: no signature for its digest
    skopeo_copy(f"docker://{pushed.ref}", f"docker://{repo}:signed", "--format", "v2s2",
                "--src-tls-verify=false", "--dest-tls-verify=false", "--insecure-policy")
    assert "none found" in it.fails("pull", "-q", "--signature-policy", setup["policy"],
                                    "--registries.d", setup["regd"], f"{repo}:signed")
    # the old signature copied to the new digest's place: the payload names the old digest
    new = pushed.raw.manifest(pushed.repo, "signed")
    from tests.imagetool.trust.rawreg import sha256
    dest = os.path.join(setup["look"], f"{pushed.repo}@sha256={sha256(new[0])[7:]}")
    os.makedirs(dest)
    shutil.copy(sigs[0], os.path.join(dest, "signature-1"))
    assert "signed payload is for" in it.fails(
        "pull", "-q", "--signature-policy", setup["policy"], "--registries.d", setup["regd"],
        f"{repo}:signed")
    # signed by a key the policy does not trust
    skopeo(setup, "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
           "--sign-by", gnupg.fprs[1], f"docker://{pushed.ref}", f"docker://{repo}:other",
           policy=False)
    assert "does not trust" in it.fails("verify", "--signature-policy", setup["policy"],
                                        "--registries.d", setup["regd"], f"{repo}:other")
    assert names(it) == [f"{repo}:signed"]  # from the first pull only


def podman(s, root: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in s["env"].items() if k != "DOCKER_CONFIG"}
    env.update(HOME=os.path.join(root, "home"),
               CONTAINERS_REGISTRIES_CONF=os.path.join(root, "registries.conf"),
               CONTAINERS_CONF=os.path.join(root, "containers.conf"))
    return subprocess.run(["podman", "--root", os.path.join(root, "storage"), "--runroot",
                           os.path.join(root, "run"), "--tmpdir", os.path.join(root, "tmp"),
                           "--volumepath", os.path.join(root, "volumes"),
                           "--network-config-dir", os.path.join(root, "net"),
                           "--storage-driver", "vfs",
                           "--cgroup-manager", "cgroupfs", "--events-backend", "none", *args],
                          capture_output=True, text=True, env=env, timeout=180)


@pytest.fixture
def podman_root(setup):
    """podman's own storage and config; registries.d comes from $HOME/.config/containers."""
    root = tempfile.mkdtemp(prefix="imagetool-podman-")
    home_regd = os.path.join(root, "home", ".config", "containers")
    os.makedirs(home_regd)
    shutil.copytree(setup["regd"], os.path.join(home_regd, "registries.d"))
    for name in ("registries.conf", "containers.conf"):
        with open(os.path.join(root, name), "w") as f:
            f.write("")
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_imagetool_signs_peers_verify(it, pushed, gnupg, setup, podman_root, tmp_path):
    repo = f"{pushed.host}/{pushed.repo}"
    it.run("sign", "--sign-by", gnupg.fprs[0], "--registries.d", setup["regd"], pushed.ref)
    assert glob.glob(os.path.join(setup["look"], pushed.repo + "@sha256=*", "signature-1"))
    out = str(tmp_path / "out")
    skopeo(setup, "copy", "--quiet", "--remove-signatures", "--src-tls-verify=false",
           f"docker://{pushed.ref}", f"oci:{out}:x")
    p = podman(setup, podman_root, "pull", "-q", "--tls-verify=false", "--signature-policy",
               setup["policy"], f"docker://{pushed.ref}")
    assert p.returncode == 0, p.stderr
    # unsigned: another image under another tag
    skopeo_copy(f"docker://{pushed.ref}", f"docker://{repo}:unsigned", "--format", "v2s2",
                "--src-tls-verify=false", "--dest-tls-verify=false", "--insecure-policy")
    # re-tagged: the signed manifest under a tag the signature does not name
    skopeo_copy(f"docker://{pushed.ref}", f"docker://{repo}:retagged",
                "--src-tls-verify=false", "--dest-tls-verify=false", "--insecure-policy")
    assert pushed.raw.manifest(pushed.repo, "retagged")[0] == \
        pushed.raw.manifest(pushed.repo, pushed.tag)[0]
    for tag in ("unsigned", "retagged"):
        p = skopeo(setup, "copy", "--quiet", "--remove-signatures", "--src-tls-verify=false",
                   f"docker://{repo}:{tag}", f"oci:{out}:{tag}", check=False)
        assert p.returncode != 0 and "ignature" in p.stderr, (tag, p.stderr)
        p = podman(setup, podman_root, "pull", "-q", "--tls-verify=false",
                   "--signature-policy", setup["policy"], f"docker://{repo}:{tag}")
        assert p.returncode != 0 and "ignature" in p.stderr, (tag, p.stderr)
    # a key the policy does not trust
    it.run("sign", "--sign-by", gnupg.fprs[1], "--registries.d", setup["regd"],
           f"{repo}:unsigned")
    p = skopeo(setup, "copy", "--quiet", "--remove-signatures", "--src-tls-verify=false",
               f"docker://{repo}:unsigned", f"oci:{out}:u2", check=False)
    assert p.returncode != 0, p.stderr
    # and imagetool agrees with both
    it.run("pull", "-q", "--signature-policy", setup["policy"], "--registries.d", setup["regd"],
           pushed.ref)
    for tag in ("unsigned", "retagged"):
        it.fails("pull", "-q", "--signature-policy", setup["policy"], "--registries.d",
                 setup["regd"], f"{repo}:{tag}")
