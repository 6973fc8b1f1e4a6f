"""Reference parsing against Docker's normalisation rules (distribution/reference)."""

from __future__ import annotations

import pytest

from imagetool.reference import ReferenceError, normalize, parse

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text,expected", [
    ("alpine", "docker.io/library/alpine:latest"),
    ("alpine:3.19", "docker.io/library/alpine:3.19"),
    ("library/alpine", "docker.io/library/alpine:latest"),
    ("docker.io/alpine", "docker.io/library/alpine:latest"),
    ("index.docker.io/library/alpine:edge", "docker.io/library/alpine:edge"),
    ("registry-1.docker.io/user/app", "docker.io/user/app:latest"),
    ("user/app:1.0", "docker.io/user/app:1.0"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/app:x", "localhost:5000/app:x"),
    ("127.0.0.1:5000/a/b/c:v_1.2-3", "127.0.0.1:5000/a/b/c:v_1.2-3"),
    ("quay.io/org/img", "quay.io/org/img:latest"),
    ("myhost:5000/img", "myhost:5000/img:latest"),
    (f"alpine@{DIGEST}", f"docker.io/library/alpine@{DIGEST}"),
    (f"quay.io/org/img:tag@{DIGEST}", f"quay.io/org/img:tag@{DIGEST}"),
    ("a__b/c-d---e.f_g", "docker.io/a__b/c-d---e.f_g:latest"),
    ("localhost:5000", "docker.io/library/localhost:5000"),  # a tag, as Docker reads it
    ("[::1]:5000/img", "[::1]:5000/img:latest"),
])
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_parts_and_hub_api_host() -> None:
    r = parse("alpine")
    assert (r.registry, r.repository, r.tag, r.digest) == (
        "docker.io", "library/alpine", "latest", None)
    assert r.api_host == "registry-1.docker.io"
    assert r.target == "latest"
    assert r.familiar() == "alpine:latest"
    d = parse(f"127.0.0.1:5000/x:1@{DIGEST}")
    assert d.api_host == "127.0.0.1:5000"
    assert d.target == DIGEST  # the digest wins over the tag when fetching
    assert parse("user/app").familiar() == "user/app:latest"
    assert parse("q.io/a:1").familiar() == "q.io/a:1"


def test_no_default_tag() -> None:
    assert parse("alpine", default_tag=False).tag is None


@pytest.mark.parametrize("text,fragment", [
    ("", "empty"),
    (" alpine", "spaces"),
    ("Alpine", "lowercase"),
    ("docker.io/Alpine", "lowercase"),
    ("alpine:bad/tag", "bad registry"),  # `alpine:bad` reads as a host:port
    ("alpine:" + "x" * 129, "bad tag"),
    ("alpine@sha256:abc", "digest"),
    ("alpine@sha256:" + "g" * 64, "digest"),
    ("a//b", "component"),
    ("-a/b", "component"),
    ("a/b-", "component"),
    ("host:port:x/img", "registry"),
    ("a/" + "b" * 260, "longer"),
])
def test_invalid(text: str, fragment: str) -> None:
    with pytest.raises(ReferenceError) as e:
        parse(text)
    assert fragment in str(e.value)
    assert repr(text)[:20] in str(e.value)
