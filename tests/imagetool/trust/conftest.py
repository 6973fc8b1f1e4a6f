"""Trust fixtures: a plain docker-registry on 127.0.0.1 (tests/imagetool/conftest.py) holding
a busybox image pushed by skopeo, a passphrase file, and `it(...)`: the imagetool command
line with a private store, no machine registry or policy configuration, one-line errors."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from typing import Any

import pytest

from tests.imagetool.images import skopeo_copy
from tests.imagetool.storehelp import IMAGETOOL
from tests.imagetool.trust.rawreg import Raw

PASSPHRASE = "correct horse battery staple"


@dataclass
class Env:
    root: str
    env: dict[str, str]
    tmp: str

    def run(self, *args: str, check: bool = True, timeout: float = 120,
            input: bytes | None = None) -> subprocess.CompletedProcess:
        stdin = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
        p = subprocess.run([IMAGETOOL, "--root", self.root, *args], capture_output=True,
                           env=self.env, timeout=timeout, **stdin)
        if check and p.returncode != 0:
            raise AssertionError(f"imagetool {args} failed ({p.returncode}): "
                                 f"{p.stderr.decode()}")
        return p

    def fails(self, *args: str) -> str:
        """Run a verb that must fail; its stderr must be one `imagetool: ` line."""
        p = self.run(*args, check=False)
        assert p.returncode != 0, f"{args} succeeded: {p.stdout!r} {p.stderr!r}"
        err = p.stderr.decode().strip()
        assert err.startswith("imagetool: ") and len(err.splitlines()) == 1, err
        return err


@pytest.fixture
def it(tmp_path) -> Env:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COSIGN_", "IMAGETOOL_"))}
    env["DOCKER_CONFIG"] = str(tmp_path / "docker-config")
    os.makedirs(env["DOCKER_CONFIG"])
    env["IMAGETOOL_REGISTRIES_CONF"] = str(tmp_path / "registries.json")
    with open(env["IMAGETOOL_REGISTRIES_CONF"], "w") as f:
        f.write('{"certs_d": []}')  # nothing from the machine
    env["IMAGETOOL_SIGNATURE_POLICY"] = ""  # no policy unless a test gives one
    return Env(str(tmp_path / "store"), env, str(tmp_path))


@pytest.fixture
def passfile(tmp_path) -> str:
    p = str(tmp_path / "pass.txt")
    with open(p, "w") as f:
        f.write(PASSPHRASE + "\n")
    return p


@pytest.fixture
def keypair(it, passfile) -> tuple[str, str]:
    prefix = os.path.join(it.tmp, "cosign")
    it.run("key", "generate", "--output-prefix", prefix, "--passphrase-file", passfile)
    return prefix + ".key", prefix + ".pub"


@dataclass
class Pushed:
    host: str
    repo: str
    tag: str
    raw: Raw
    registry: Any

    @property
    def ref(self) -> str:
        return f"{self.host}/{self.repo}:{self.tag}"

    def digest(self) -> str:
        got = self.raw.manifest(self.repo, self.tag)
        assert got is not None
        from tests.imagetool.trust.rawreg import sha256
        return sha256(got[0])


@pytest.fixture
def pushed(registry, busybox_oci) -> Pushed:
    """busybox at <registry>/trust/app:1 (pushed by skopeo, as an OCI manifest)."""
    reg = registry("plain")
    skopeo_copy(f"oci:{busybox_oci}:latest", f"docker://{reg.ref('trust/app:1')}",
                *reg.skopeo_args())
    return Pushed(reg.host, "trust/app", "1", Raw(reg.host), reg)
